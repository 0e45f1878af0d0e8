/* bench_pref.c - preference training speed and memory on the default model: the reward model
 * (Bradley-Terry, scalar head) and DPO (sigmoid), LoRA r=16 on every linear layer and full
 * fine-tuning.
 *
 * One step = forward + backward + AdamW over 4 comparisons of 2 x 256 tokens (a 128-token shared
 * prompt and two 128-token responses, random ids), packed as one micro-batch of 2048 tokens,
 * through the same objective code `rein rm train` and `rein dpo` run. DPO's reference
 * log-probabilities are computed once before the steps (as `rein dpo` does) and timed apart. Each
 * configuration runs in a fresh process so that its peak RSS is its own. Figures, not a test.
 */
#include "benchutil.h"
#include "base/base.h"
#include "train/dpo.h"
#include "train/params.h"
#include "train/reward.h"

#include <cjson/cJSON.h>
#include <string.h>

enum { PAIRS = 4, PROMPT = 128, RESP = 128, STEPS = 3 };

/* PAIRS comparisons of random tokens: chosen (rank 0) and rejected (rank 1) share the prompt. */
static rein_example_set *synthetic(int32_t n_vocab) {
    rein_example_set *s = rein_calloc(1, sizeof *s);
    s->n = 2 * PAIRS;
    s->ex = rein_calloc(s->n, sizeof *s->ex);
    rein_rng rng;
    rein_rng_seed(&rng, 7);
    uint64_t range = (uint64_t)(n_vocab > 2000 ? n_vocab - 1000 : n_vocab); /* skip specials */
    for (size_t i = 0; i < s->n; i++) {
        rein_example *e = &s->ex[i];
        e->n = PROMPT + RESP;
        e->tokens = rein_malloc(sizeof(int32_t) * e->n);
        e->mask = rein_calloc(e->n, 1);
        for (size_t t = 0; t < e->n; t++) {
            e->tokens[t] = (i & 1) && t < PROMPT ? s->ex[i - 1].tokens[t]
                                                 : (int32_t)(rein_rng_u64(&rng) % range);
            e->mask[t] = t >= PROMPT;
        }
        e->record = i / 2;
        e->rank = (int32_t)(i & 1);
        e->line = (int)(i / 2 + 1);
    }
    return s;
}

/* One configuration, in this process: prints a JSON line. */
static int one(const char *path, int dpo, int full) {
    rein_model *m;
    if (rein_model_load(path, &m)) {
        fprintf(stderr, "%s\n", rein_last_error());
        return 1;
    }
    const int cap = 2 * PAIRS * (PROMPT + RESP);
    rein_example_set *set = synthetic(rein_model_get_config(m)->n_vocab);
    rein_pref_set ps;
    rein_objective obj;
    rein_rm_ctx rc;
    rein_dpo_ctx dc;
    rein_reward_head head;
    double ref_s = 0;
    if (rein_pref_set_build(set, NULL, &ps)) return 1;
    if (dpo) {
        rein_dpo_params p = rein_dpo_default_params();
        if (rein_dpo_objective(&dc, &p, &ps, NULL, cap, &obj)) return 1;
        double t0 = rein_time_now();
        if (rein_dpo_reference(&dc, m, cap)) return 1;
        ref_s = rein_time_now() - t0;
    } else {
        if (rein_reward_head_init(&head, rein_model_get_config(m)->dim, 1)) return 1;
        if (rein_rm_objective(&rc, &ps, NULL, &head, 0, cap, &obj)) return 1;
    }
    if (!full) {
        rein_lora_params lp = rein_lora_default_params();
        if (rein_lora_attach(m, &lp)) return 1;
    }
    rein_train_state *ts;
    rein_param_list pl = {0};
    rein_adamw opt;
    if (rein_train_state_new(m, cap, full, &ts) || rein_train_param_list(m, ts, &pl) ||
        (obj.extra_params && obj.extra_params(obj.ctx, &pl)) || rein_adamw_init(&opt, pl.total)) {
        fprintf(stderr, "%s\n", rein_last_error());
        return 1;
    }
    rein_adamw_params ap = rein_adamw_default_params();
    size_t items[2 * PAIRS];
    for (size_t i = 0; i < obj.n_items; i++) items[i] = i;
    double best = 1e30;
    for (int step = 0; step <= STEPS; step++) {
        double t0 = rein_time_now(), loss = 0;
        rein_train_zero_grads(m, ts);
        if (obj.micro_step(obj.ctx, m, ts, items, (int)obj.n_items, 1.0f / (float)obj.n_items,
                           &loss)) {
            fprintf(stderr, "%s\n", rein_last_error());
            return 1;
        }
        float gs;
        rein_grad_clip_scale(&pl, 1.0, &gs);
        rein_adamw_step_scaled(&opt, &pl, &ap, ap.lr, gs);
        double dt = rein_time_now() - t0;
        if (step > 0 && dt < best) best = dt; /* step 0 warms up */
    }
    printf("{\"tokens_per_s\": %.2f, \"step_s\": %.4f, \"ref_tokens_per_s\": %.2f, "
           "\"peak_rss_mb\": %.1f}\n", cap / best, best, ref_s > 0 ? cap / ref_s : 0.0,
           bench_peak_rss_mb());
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    if (dpo) rein_dpo_ctx_free(&dc);
    else {
        rein_rm_ctx_free(&rc);
        rein_reward_head_free(&head);
    }
    rein_pref_set_free(&ps);
    rein_example_set_free(set);
    rein_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (argc == 5 && !strcmp(argv[1], "--one"))
        return one(argv[2], !strcmp(argv[3], "dpo"), !strcmp(argv[4], "full"));
    if (argc > 1) path = argv[1];
    printf("== preference training: %s, %d comparisons of 2 x %d tokens a step (%d tokens), "
           "fp32, %d threads\n", path, PAIRS, PROMPT + RESP, 2 * PAIRS * (PROMPT + RESP),
           rein_get_threads());
    printf("%-4s %-5s %10s %9s %8s %16s\n", "obj", "mode", "tokens/s", "step s", "RSS MB",
           "reference tok/s");
    for (int dpo = 0; dpo <= 1; dpo++)
        for (int full = 0; full <= 1; full++) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "%s --one %s %s %s", argv[0], path, dpo ? "dpo" : "rm",
                     full ? "full" : "lora");
            cJSON *r = bench_run_json(cmd);
            if (!r) {
                printf("%-4s %-5s failed\n", dpo ? "dpo" : "rm", full ? "full" : "lora");
                continue;
            }
            char ref[32] = "-";
            if (dpo) snprintf(ref, sizeof ref, "%.1f", bench_num(r, "ref_tokens_per_s"));
            printf("%-4s %-5s %10.1f %9.3f %8.0f %16s\n", dpo ? "dpo" : "rm", full ? "full" : "lora",
                   bench_num(r, "tokens_per_s"), bench_num(r, "step_s"), bench_num(r, "peak_rss_mb"), ref);
            fflush(stdout);
            cJSON_Delete(r);
        }
    printf("tokens/s counts every token of both responses (prompts included) per optimizer step\n");
    return 0;
}
