/* bench_rl.c - where the time and the memory of a PPO iteration go, on the default model.
 *
 * PPO with a LoRA adapter (r=16, every linear layer) against a reward model: 8 prompts, one sample
 * each, up to 48 new tokens, 2 epochs of 1 minibatch, 3 iterations. The reward model is the
 * default model with a fresh adapter and a random head, saved and loaded as `rein rm` saves them
 * (the scoring costs what a trained one costs). Printed: the time split per iteration (rollout,
 * scoring, reference log-probs, the policy's old log-probs and values, update), rollout tokens/s,
 * and the process's peak RSS set beside what PPO as commonly run keeps: four separate f32 copies
 * of the model (policy, reference, value model, reward model) plus AdamW's two moments for the
 * policy and the value model. rein keeps two: the policy (its reference is the same weights with
 * the adapter switched off, its value head a scalar head on the same trunk) and the reward model.
 * Figures, not a test.
 */
#include "benchutil.h"
#include "base/base.h"
#include "train/reward.h"
#include "train/rl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prompts_text[] = {
    "What is the capital of France?", "Give me a tip for sleeping better.",
    "Write a haiku about the sea.", "How do I boil an egg?", "What is 12 + 30?",
    "Name three primary colours.", "Why is the sky blue?", "Suggest a name for a cat.",
};

int main(int argc, char **argv) {
    const char *model = getenv("REIN_MODEL");
    if (!model) model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (access(model, R_OK) != 0) {
        printf("bench_rl: SKIP: %s is absent (make model)\n", model);
        return 0;
    }
    int iters = argc > 1 ? atoi(argv[1]) : 3;
    if (iters < 1) iters = 3;
    char tmp[] = "/tmp/rein-bench-rl-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char rm_dir[256], prompts[256], out[256];
    snprintf(rm_dir, sizeof rm_dir, "%s/rm", tmp);
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", tmp);
    snprintf(out, sizeof out, "%s/run", tmp);
    FILE *f = fopen(prompts, "w");
    for (size_t i = 0; i < sizeof prompts_text / sizeof *prompts_text; i++)
        fprintf(f, "{\"prompt\":\"%s\"}\n", prompts_text[i]);
    fclose(f);

    /* the reward model: the same base, a fresh adapter, a random head */
    rein_status st;
    rein_model *m = NULL;
    if ((st = rein_model_load(model, &m))) goto fail;
    rein_lora_params lp = rein_lora_default_params();
    if ((st = rein_lora_attach(m, &lp))) goto fail;
    rein_reward_head head;
    if ((st = rein_reward_head_init(&head, rein_model_get_config(m)->dim, 7))) goto fail;
    st = rein_rm_save(rm_dir, m, &head, 0, model, 0.0f, 1.0f, 0, 0.0f);
    rein_reward_head_free(&head);
    rein_lora_detach(m);
    if (st) goto fail;

    rein_rl_prompts *ps = NULL;
    if ((st = rein_rl_prompts_read(prompts, m, 256, 0, &ps, NULL))) goto fail;
    rein_scorers *sc = NULL;
    if ((st = rein_scorers_new(&sc)) || (st = rein_scorers_add_rm(sc, rm_dir, 1.0f, 1, m)))
        goto fail;
    rein_rl_opts o = rein_rl_default_opts(REIN_RL_PPO);
    o.out_dir = out;
    o.iterations = iters;
    o.n_prompts = 8;
    o.n_samples = 1;
    o.max_tokens = 48;
    o.epochs = 2;
    o.quiet = 1;
    o.plain_log = 1;
    rein_rl_report rep;
    double t0 = rein_time_now();
    if ((st = rein_rl_run(m, &o, ps, sc, &rep))) goto fail;
    double total = rein_time_now() - t0;

    const rein_model_config *c = rein_model_get_config(m);
    double n_params = (double)rein_model_n_params(m);
    double f32_model_mb = n_params * 4 / 1048576.0;
    double four = 4 * f32_model_mb + 2 * 2 * f32_model_mb; /* + AdamW m, v of policy and value */
    double n = (double)rep.iterations;
    printf("bench_rl: PPO on %s (%.0fM parameters, dim %d, %d layers), LoRA r=16, %d threads\n",
           model, n_params / 1e6, c->dim, c->n_layers, rein_get_threads());
    printf("  %d prompts x 1 sample, <= %d new tokens, %d epochs, reward model: the same base + "
           "adapter + head\n", o.n_prompts, o.max_tokens, o.epochs);
    printf("  per iteration (mean of %lld):\n", (long long)rep.iterations);
    double it = (rep.t_rollout + rep.t_score + rep.t_ref + rep.t_values + rep.t_update) / n;
    printf("    rollout          %7.2f s  (%4.1f%%)  %.0f tokens sampled, %.1f tokens/s\n",
           rep.t_rollout / n, 100 * rep.t_rollout / n / it, rep.rollout_tokens / n,
           rep.rollout_tokens / rep.t_rollout);
    printf("    scoring (RM)     %7.2f s  (%4.1f%%)\n", rep.t_score / n, 100 * rep.t_score / n / it);
    printf("    reference logp   %7.2f s  (%4.1f%%)  adapter off, one forward\n", rep.t_ref / n,
           100 * rep.t_ref / n / it);
    printf("    old logp, values %7.2f s  (%4.1f%%)  adapter on, one forward\n", rep.t_values / n,
           100 * rep.t_values / n / it);
    printf("    update           %7.2f s  (%4.1f%%)  %d epochs of forward + backward + AdamW\n",
           rep.t_update / n, 100 * rep.t_update / n / it, o.epochs);
    printf("    total            %7.2f s  (whole run %.1f s, model loads and checkpoints included)\n",
           it, total);
    printf("  peak RSS %.0f MB (policy + reference + value head, and the reward model: two models)\n",
           bench_peak_rss_mb());
    printf("  four separate f32 copies (policy, reference, value, reward) + AdamW moments of policy "
           "and value: %.0f MB (%.0f MB of weights)\n", four,
           4 * f32_model_mb);
    rein_scorers_free(sc);
    rein_rl_prompts_free(ps);
    rein_model_free(m);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return 0;
fail:
    fprintf(stderr, "bench_rl: %s: %s\n", rein_status_str(st), rein_last_error());
    return 1;
}
