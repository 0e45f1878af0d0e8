/* pref_compare.c - does a preference-trained model answer better? Greedy answers of a base model
 * and of the base with an adapter (a `rein dpo` run) to the first N prompts of a preference file,
 * each scored by a reward model (`rein rm train`), as PPO would score them: the reward of prompt +
 * generated tokens (ending at the end-of-turn token when the answer ended there).
 *
 * Not part of the build (a measuring tool, like the python scripts here). From the repository
 * root, after `make`:
 *   cc -O2 -std=c11 -Iinclude -Isrc -D_GNU_SOURCE tools/pref_compare.c build/librein.a \
 *      -lpcre2-8 -lcjson -lsqlite3 -lm -lpthread -o build/pref_compare
 *   build/pref_compare MODEL ADAPTER_DIR RM_DIR DATA.jsonl FORMAT N MAX_PROMPT MAX_NEW OUT.jsonl
 * Prompts longer than MAX_PROMPT tokens are passed over (the first N that fit are used). Prints
 * the mean reward of each model, the DPO model's win rate, and writes every answer with its
 * rewards to OUT.jsonl.
 */
#include "base/base.h"
#include "formats/dataset.h"
#include "train/reward.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BATCH = 10 };

static void die(const char *what) {
    fprintf(stderr, "pref_compare: %s: %s\n", what, rein_last_error());
    exit(1);
}

/* Greedy answers to prompts[0..n): results (n). */
static void answer(rein_model *m, int32_t **prompts, size_t *lens, int n, int max_new,
                   rein_generate_result *res) {
    rein_generate_params gp = rein_generate_default_params();
    gp.sampler.temperature = 0;
    gp.max_tokens = max_new;
    size_t longest = 0;
    for (int i = 0; i < n; i++) longest = lens[i] > longest ? lens[i] : longest;
    for (int b = 0; b < n; b += BATCH) {
        int k = n - b < BATCH ? n - b : BATCH;
        rein_kv_cache *kv;
        if (rein_kv_cache_new(m, k, (int)longest + max_new + 1, &kv)) die("KV cache");
        if (rein_generate_batch(m, kv, (const int32_t *const *)prompts + b, lens + b, k, 1, &gp,
                                res + b))
            die("generation");
        rein_kv_cache_free(kv);
        fprintf(stderr, "\r  %d / %d answers", b + k, n);
    }
    fprintf(stderr, "\n");
}

static void score(rein_reward_model *rm, int32_t **prompts, size_t *lens, int n,
                  const rein_generate_result *res, float *r) {
    for (int i = 0; i < n; i++) {
        rein_tokens t = {0};
        for (size_t j = 0; j < lens[i]; j++) rein_tokens_push(&t, prompts[i][j]);
        for (size_t j = 0; j < res[i].ids.n; j++) rein_tokens_push(&t, res[i].ids.ids[j]);
        int32_t cu[2] = {0, (int32_t)t.n};
        if (rein_rm_score(rm, t.ids, cu, 1, &r[i])) die("scoring");
        rein_tokens_free(&t);
    }
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: pref_compare MODEL ADAPTER_DIR RM_DIR DATA FORMAT N MAX_PROMPT "
                        "MAX_NEW OUT.jsonl\n");
        return 2;
    }
    int n_want = atoi(argv[6]), max_prompt = atoi(argv[7]), max_new = atoi(argv[8]);
    rein_data_format fmt;
    if (rein_data_format_from_name(argv[5], &fmt)) die("format");
    rein_dataset_params dp = rein_dataset_default_params();
    dp.format = fmt;
    rein_dataset *ds;
    if (rein_dataset_read(argv[4], &dp, &ds, NULL)) die(argv[4]);
    rein_model *m;
    if (rein_model_load(argv[1], &m)) die(argv[1]);
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    const rein_chat_template *tmpl = rein_model_chat_template(m);

    /* the first n_want conversational prompts that fit */
    int32_t **prompts = calloc((size_t)n_want, sizeof *prompts);
    size_t *lens = calloc((size_t)n_want, sizeof *lens);
    int *lines = calloc((size_t)n_want, sizeof *lines);
    int n = 0, passed = 0;
    for (size_t i = 0; i < ds->n && n < n_want; i++) {
        const rein_pref_record *r = &ds->pref[i];
        if (!r->conversational) continue;
        rein_chat_msg msgs[64];
        if (r->prompt.n > 64) continue;
        for (size_t k = 0; k < r->prompt.n; k++) {
            msgs[k].role = rein_role_name(r->prompt.msgs[k].role);
            msgs[k].content = r->prompt.msgs[k].content;
        }
        rein_buf text = {0};
        rein_tokens t = {0};
        if (rein_chat_apply(tmpl, msgs, r->prompt.n, 1, &text) ||
            rein_tokenize(tok, text.data, text.len, REIN_TOKENIZE_ADD_BOS | REIN_TOKENIZE_PARSE_SPECIAL, &t))
            die("prompt");
        rein_buf_free(&text);
        if ((int)t.n > max_prompt) {
            passed++;
            rein_tokens_free(&t);
            continue;
        }
        prompts[n] = t.ids;
        lens[n] = t.n;
        lines[n] = r->line;
        n++;
    }
    fprintf(stderr, "pref_compare: %d prompts of %s (%d longer than %d tokens passed over)\n", n,
            argv[4], passed, max_prompt);
    rein_generate_result *base = calloc((size_t)n, sizeof *base);
    rein_generate_result *tuned = calloc((size_t)n, sizeof *tuned);
    double t0 = rein_time_now();
    fprintf(stderr, "base model:\n");
    answer(m, prompts, lens, n, max_new, base);
    if (rein_lora_load(m, argv[2])) die(argv[2]);
    fprintf(stderr, "with the adapter:\n");
    answer(m, prompts, lens, n, max_new, tuned);
    double t_gen = rein_time_now() - t0;
    rein_model_free(m);

    /* the reward model may still be training: wait for its folder (up to an hour) */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/reward_config.json", argv[3]);
    for (int w = 0; w < 360 && access(cfg, R_OK) != 0; w++) {
        if (!w) fprintf(stderr, "waiting for %s\n", cfg);
        sleep(10);
    }
    sleep(2); /* the head is written just before the config */
    rein_reward_model *rm;
    if (rein_rm_load(argv[3], NULL, &rm)) die(argv[3]);
    float *rb = calloc((size_t)n, sizeof *rb), *rt = calloc((size_t)n, sizeof *rt);
    score(rm, prompts, lens, n, base, rb);
    score(rm, prompts, lens, n, tuned, rt);
    float mean, sd;
    rein_rm_norm(rm, &mean, &sd);

    FILE *out = fopen(argv[9], "w");
    if (!out) die(argv[9]);
    double sb = 0, st = 0, wins = 0, lb = 0, lt = 0, eb = 0, et = 0;
    for (int i = 0; i < n; i++) {
        sb += rb[i];
        st += rt[i];
        wins += rt[i] > rb[i] ? 1 : rt[i] == rb[i] ? 0.5 : 0;
        lb += (double)base[i].ids.n;
        lt += (double)tuned[i].ids.n;
        eb += base[i].stop == REIN_STOP_EOG;
        et += tuned[i].stop == REIN_STOP_EOG;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "line", lines[i]);
        cJSON_AddStringToObject(j, "base", base[i].text.data ? base[i].text.data : "");
        cJSON_AddStringToObject(j, "dpo", tuned[i].text.data ? tuned[i].text.data : "");
        cJSON_AddNumberToObject(j, "reward_base", rb[i]);
        cJSON_AddNumberToObject(j, "reward_dpo", rt[i]);
        char *s = cJSON_PrintUnformatted(j);
        fprintf(out, "%s\n", s);
        free(s);
        cJSON_Delete(j);
    }
    fclose(out);
    printf("{\"prompts\":%d,\"reward_base\":%.4f,\"reward_dpo\":%.4f,\"normalised_base\":%.4f,"
           "\"normalised_dpo\":%.4f,\"dpo_wins\":%.4f,\"tokens_base\":%.1f,\"tokens_dpo\":%.1f,"
           "\"ended_base\":%.2f,\"ended_dpo\":%.2f,\"generation_s\":%.1f}\n",
           n, sb / n, st / n, (sb / n - mean) / sd, (st / n - mean) / sd, wins / n, lb / n, lt / n,
           eb / n, et / n, t_gen);
    for (int i = 0; i < n; i++) {
        rein_generate_result_free(&base[i]);
        rein_generate_result_free(&tuned[i]);
        free(prompts[i]);
    }
    rein_rm_free(rm);
    rein_dataset_free(ds);
    return 0;
}
