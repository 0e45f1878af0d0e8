/* sft.c - supervised fine-tuning: the objective behind `rein sft`. */
#include "train/sft.h"
#include "base/base.h"
#include "train/checkpoint.h"

#include <string.h>

static int count_targets(const rein_example *e) {
    int n = 0;
    for (size_t i = 1; i < e->n; i++) n += e->mask[i] != 0;
    return n;
}

/* Pack examples[items] into ctx's arrays: tokens, next-token targets (-1 where not learned or at
 * the end of a sequence), cu_seqlens. Returns the number of sequences. */
static int pack(rein_sft_ctx *c, const rein_example_set *set, const size_t *items, int n) {
    int t = 0;
    c->cu[0] = 0;
    for (int s = 0; s < n; s++) {
        const rein_example *e = &set->ex[items[s]];
        for (size_t i = 0; i < e->n; i++) {
            c->tokens[t] = e->tokens[i];
            c->targets[t] = i + 1 < e->n && e->mask[i + 1] ? e->tokens[i + 1] : -1;
            t++;
        }
        c->cu[s + 1] = t;
    }
    return n;
}

static int item_tokens(void *ctx, size_t i) {
    return (int)((rein_sft_ctx *)ctx)->train->ex[i].n;
}

static double item_weight(void *ctx, size_t i) {
    return count_targets(&((rein_sft_ctx *)ctx)->train->ex[i]);
}

static rein_status micro_step(void *ctx, rein_model *m, rein_train_state *ts, const size_t *items,
                              int n, float scale, double *loss) {
    rein_sft_ctx *c = ctx;
    int n_seqs = pack(c, c->train, items, n);
    REIN_TRY(rein_train_forward(m, ts, c->tokens, c->cu, n_seqs));
    double sum = 0;
    rein_status st = rein_lm_head_xent(m, ts, c->targets, scale, &sum);
    *loss += sum;
    REIN_TRY(st);
    return rein_train_backward(m, ts);
}

rein_status rein_sft_eval_loss(rein_sft_ctx *c, rein_model *m, rein_train_state *ts,
                               const rein_example_set *set, double *loss) {
    double total = 0, count = 0;
    size_t *items = rein_malloc(sizeof(size_t) * (set->n ? set->n : 1));
    float *logp = rein_malloc(sizeof(float) * (size_t)c->cap);
    rein_status st = (!items || !logp) ? REIN_ERR_NOMEM : REIN_OK;
    size_t i = 0;
    while (!st && i < set->n) {
        int n = 0, used = 0;
        while (i < set->n && (n == 0 || used + (int)set->ex[i].n <= c->batch_tokens)) {
            used += (int)set->ex[i].n;
            items[n++] = i++;
        }
        if (used > c->cap) {
            st = rein_error(REIN_ERR_INVALID, "evaluation example at line %d has %d tokens, more "
                            "than a micro-batch holds", set->ex[items[0]].line, used);
            break;
        }
        int n_seqs = pack(c, set, items, n);
        st = rein_train_forward(m, ts, c->tokens, c->cu, n_seqs);
        if (!st) st = rein_lm_head_logprobs(m, ts, c->targets, logp);
        for (int t = 0; !st && t < used; t++)
            if (c->targets[t] >= 0) {
                total -= logp[t];
                count++;
            }
    }
    rein_free(items);
    rein_free(logp);
    *loss = count > 0 ? total / count : 0;
    return st;
}

static rein_status evaluate(void *ctx, rein_model *m, rein_train_state *ts, double *loss) {
    rein_sft_ctx *c = ctx;
    return rein_sft_eval_loss(c, m, ts, c->eval, loss);
}

rein_status rein_sft_objective(rein_sft_ctx *c, const rein_example_set *train,
                               const rein_example_set *eval, int batch_tokens,
                               rein_objective *obj) {
    memset(c, 0, sizeof *c);
    memset(obj, 0, sizeof *obj);
    c->train = train;
    c->eval = eval;
    c->batch_tokens = batch_tokens;
    c->cap = batch_tokens;
    c->tokens = rein_malloc(sizeof(int32_t) * (size_t)batch_tokens);
    c->targets = rein_malloc(sizeof(int32_t) * (size_t)batch_tokens);
    c->cu = rein_malloc(sizeof(int32_t) * (size_t)(batch_tokens + 1));
    if (!c->tokens || !c->targets || !c->cu) {
        rein_sft_ctx_free(c);
        return REIN_ERR_NOMEM;
    }
    uint64_t h = REIN_FNV_INIT;
    for (size_t i = 0; i < train->n; i++) {
        h = rein_fnv1a(h, train->ex[i].tokens, sizeof(int32_t) * train->ex[i].n);
        h = rein_fnv1a(h, train->ex[i].mask, train->ex[i].n);
    }
    obj->kind = "sft";
    obj->ctx = c;
    obj->n_items = train->n;
    obj->data_hash = h;
    obj->item_tokens = item_tokens;
    obj->item_weight = item_weight;
    obj->micro_step = micro_step;
    if (eval && eval->n) {
        obj->evaluate = evaluate;
        obj->eval_name = "eval_loss";
    }
    return REIN_OK;
}

void rein_sft_ctx_free(rein_sft_ctx *c) {
    rein_free(c->tokens);
    rein_free(c->targets);
    rein_free(c->cu);
    c->tokens = c->targets = c->cu = NULL;
}
