/* batch.c - many sequences decoded together: the rollout engine of PPO and self-alignment.
 *
 * Each prompt runs once (its own forward pass, exactly as rein_generate runs it) and its KV rows
 * are shared with the prompt's other samples (rein_kv_cache_share: they read the prompt's rows
 * where its first sample holds them, so a step reads a long prompt's keys and values once, not
 * once a sample). Then every step samples one token for each active
 * sequence from its row of logits (each sequence has its own seeded sampler and history), records
 * the token's log-probability under the raw logits, applies that sequence's stopping rules, and
 * feeds all surviving tokens back in one forward pass (in chunks of at most REIN_DECODE_ROWS rows,
 * the size up to which the forward computes each row independently of the others). Because a
 * row's result does not depend on the batch, every sequence's tokens equal what rein_generate
 * gives it alone with the same seed.
 */
#include "base/base.h"
#include "generate/stop.h"
#include "kernels/loss.h"
#include "model/model.h"

#include <string.h>

void rein_generate_result_free(rein_generate_result *r) {
    if (!r) return;
    rein_tokens_free(&r->ids);
    rein_free(r->logprobs);
    rein_buf_free(&r->text);
    memset(r, 0, sizeof *r);
}

/* One step's sampling of the active rows, threaded over rows: each row has its own sampler. */
typedef struct sample_job {
    rein_sampler **smp;
    rein_tokens *hist;
    const int32_t *row_seq; /* (n) sequence of each row */
    float *logits;          /* (n, V), raw: a row is copied to scratch before a penalty edits it */
    float *scratch;         /* (threads, V) */
    int32_t *ids;           /* (n) out */
    int V, penalty;
} sample_job;

static void sample_task(void *ctx, int r, int n) {
    sample_job *j = ctx;
    int s = j->row_seq[r];
    float *row = j->logits + (int64_t)r * j->V;
    if (j->penalty) {
        float *copy = j->scratch + (int64_t)r * j->V;
        memcpy(copy, row, sizeof(float) * (size_t)j->V);
        row = copy;
    }
    j->ids[r] = rein_sampler_sample(j->smp[s], row, j->hist[s].ids, j->hist[s].n);
}

/* Forward `n` tokens, one per sequence, in chunks the forward computes row by row. */
static rein_status forward_rows(rein_model *m, rein_kv_cache *kv, const int32_t *tok,
                                const int32_t *seq, int n, float *logits) {
    const int64_t V = m->cfg.n_vocab;
    for (int i = 0; i < n; i += REIN_DECODE_ROWS) {
        int k = REIN_MIN(REIN_DECODE_ROWS, n - i);
        REIN_TRY(rein_model_forward(m, kv, tok + i, seq + i, (size_t)k, NULL, logits + i * V));
    }
    return REIN_OK;
}

rein_status rein_generate_batch(rein_model *m, rein_kv_cache *kv, const int32_t *const *prompts,
                                const size_t *n_prompt, int n_prompts, int n_samples,
                                const rein_generate_params *p, rein_generate_result *results) {
    const rein_tokenizer *tok = m->tok;
    if (!tok) return rein_error(REIN_ERR_INVALID, "the model has no tokenizer to decode with");
    if (n_prompts < 1 || n_samples < 1 || (int64_t)n_prompts * n_samples > kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "%d prompts x %d samples need that many KV cache "
                          "sequences; the cache has %d", n_prompts, n_samples, kv->n_seq);
    for (size_t s = 0; s < p->n_stop; s++)
        if (!p->stop[s] || !p->stop[s][0])
            return rein_error(REIN_ERR_INVALID, "stop string %zu is empty", s);
    for (int i = 0; i < n_prompts; i++) {
        if (n_prompt[i] == 0 || !prompts[i])
            return rein_error(REIN_ERR_INVALID, "prompt %d is empty: give at least one token", i);
        if (n_prompt[i] > (size_t)kv->n_ctx)
            return rein_error(REIN_ERR_RANGE, "prompt %d (%zu tokens) does not fit the context of "
                              "%d positions", i, n_prompt[i], kv->n_ctx);
    }
    const int n_seq = n_prompts * n_samples;
    const int V = m->cfg.n_vocab, nt = rein_get_threads();
    size_t max_prompt = 0;
    for (int i = 0; i < n_prompts; i++) max_prompt = REIN_MAX(max_prompt, n_prompt[i]);
    rein_sampler **smp = rein_calloc((size_t)n_seq, sizeof *smp);
    rein_tokens *hist = rein_calloc((size_t)n_seq, sizeof *hist);
    float *logits = rein_malloc(sizeof(float) * (size_t)n_seq * V);
    float *scratch = NULL;
    int32_t *row_seq = rein_malloc(sizeof(int32_t) * (size_t)n_seq);
    int32_t *ids = rein_malloc(sizeof(int32_t) * (size_t)n_seq);
    int32_t *next_seq = rein_malloc(sizeof(int32_t) * (size_t)n_seq);
    float *lp = rein_malloc(sizeof(float) * (size_t)n_seq);
    int32_t *pseq = rein_malloc(sizeof(int32_t) * max_prompt);
    uint8_t *want = rein_calloc(max_prompt, 1);
    rein_status st = (!smp || !hist || !logits || !row_seq || !ids || !next_seq || !lp || !pseq ||
                      !want) ? REIN_ERR_NOMEM : REIN_OK;
    int penalty = p->sampler.repeat_penalty != 1.0f;
    if (!st && penalty) {
        scratch = rein_malloc(sizeof(float) * (size_t)n_seq * V);
        if (!scratch) st = REIN_ERR_NOMEM;
    }
    (void)nt;
    for (int i = 0; i < n_seq && !st; i++) {
        rein_sampler_params sp = p->sampler;
        sp.seed = p->sampler.seed + (uint64_t)i;
        st = rein_sampler_new(&sp, V, &smp[i]);
    }
    /* the last sequences first: a previous call's samples share their prompt with the sequence
     * before them, and a source cleared before its sharers would copy the rows out to them first */
    for (int i = n_seq - 1; i >= 0 && !st; i--) rein_kv_cache_clear(kv, i);

    /* prefill: each prompt alone, then its KV shared with its other samples, its last logits
     * copied */
    double t0 = rein_time_now();
    int64_t n_prompt_total = 0, n_gen_total = 0;
    for (int i = 0; i < n_prompts && !st; i++) {
        int s0 = i * n_samples, n = (int)n_prompt[i];
        for (int t = 0; t < n; t++) pseq[t] = s0, want[t] = t == n - 1;
        st = rein_model_forward(m, kv, prompts[i], pseq, (size_t)n, want,
                                logits + (int64_t)s0 * V);
        for (int j = 1; j < n_samples && !st; j++) {
            st = rein_kv_cache_share(kv, s0, s0 + j, n);
            memcpy(logits + (int64_t)(s0 + j) * V, logits + (int64_t)s0 * V, sizeof(float) * V);
        }
        for (int j = 0; j < n_samples && !st; j++)
            for (int t = 0; t < n && !st; t++) st = rein_tokens_push(&hist[s0 + j], prompts[i][t]);
        n_prompt_total += n;
    }
    double t1 = rein_time_now();
    int n_active = n_seq;
    for (int i = 0; i < n_seq; i++) row_seq[i] = i;
    if (p->max_tokens <= 0) n_active = 0;
    for (int step = 0; !st && n_active > 0; step++) {
        sample_job sj = {smp, hist, row_seq, logits, scratch, ids, V, penalty};
        rein_parallel_for(n_active, sample_task, &sj);
        rein_token_logprobs(lp, logits, ids, n_active, V);
        int n_next = 0;
        for (int r = 0; r < n_active && !st; r++) {
            int s = row_seq[r];
            int32_t id = ids[r];
            rein_generate_result *res = &results[s];
            n_gen_total++;
            if ((st = rein_tokens_push(&res->ids, id))) break;
            float *grown = rein_realloc(res->logprobs, sizeof(float) * res->ids.n);
            if (!grown) {
                st = REIN_ERR_NOMEM;
                break;
            }
            res->logprobs = grown;
            res->logprobs[res->ids.n - 1] = lp[r];
            if (p->stop_at_eog && rein_token_is_eog(tok, id)) {
                res->stop = REIN_STOP_EOG;
                continue;
            }
            if ((st = rein_tokens_push(&hist[s], id))) break;
            size_t before = res->text.len;
            if ((st = rein_token_to_bytes(tok, id, 0, &res->text))) break;
            int64_t hit = p->n_stop ? rein_stop_find(res->text.data, res->text.len,
                                                     rein_stop_search_from(before, p->stop,
                                                                           p->n_stop),
                                                     p->stop, p->n_stop)
                                    : -1;
            if (hit >= 0) {
                res->text.len = (size_t)hit;
                res->text.data[hit] = 0;
                res->stop = REIN_STOP_STRING;
                continue;
            }
            if (step + 1 >= p->max_tokens) {
                res->stop = REIN_STOP_MAX_TOKENS;
                continue;
            }
            if (kv->len[s] >= kv->n_ctx) {
                res->stop = REIN_STOP_CONTEXT;
                continue;
            }
            ids[n_next] = id; /* n_next <= r: the slot was already read */
            next_seq[n_next++] = s;
        }
        if (st) break;
        memcpy(row_seq, next_seq, sizeof(int32_t) * (size_t)n_next);
        n_active = n_next;
        if (n_active) st = forward_rows(m, kv, ids, row_seq, n_active, logits);
    }
    if (p->stats) {
        p->stats->n_prompt = (int32_t)n_prompt_total;
        p->stats->n_generated = (int32_t)n_gen_total;
        p->stats->prefill_s = t1 - t0;
        p->stats->decode_s = rein_time_now() - t1;
    }
    for (int i = 0; i < n_seq; i++) {
        if (st) rein_generate_result_free(&results[i]);
        else if (!results[i].text.data) st = rein_buf_append(&results[i].text, "", 0);
    }
    if (st)
        for (int i = 0; i < n_seq; i++) rein_generate_result_free(&results[i]);
    for (int i = 0; smp && i < n_seq; i++) rein_sampler_free(smp[i]);
    for (int i = 0; hist && i < n_seq; i++) rein_tokens_free(&hist[i]);
    rein_free(smp), rein_free(hist), rein_free(logits), rein_free(scratch), rein_free(row_seq);
    rein_free(ids), rein_free(next_seq), rein_free(lp), rein_free(pseq), rein_free(want);
    return st;
}
