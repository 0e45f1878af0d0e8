/* dpo.c - direct preference optimisation: the objective behind `rein dpo`. See dpo.h. */
#include "train/dpo.h"
#include "base/base.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

rein_dpo_params rein_dpo_default_params(void) {
    rein_dpo_params p = {0.1f, REIN_DPO_SIGMOID, 0.0f};
    return p;
}

static const char *const loss_names[] = {"sigmoid", "ipo", "hinge"};

const char *rein_dpo_loss_name(rein_dpo_loss l) {
    return (unsigned)l < 3 ? loss_names[l] : "?";
}

rein_status rein_dpo_loss_from_name(const char *name, rein_dpo_loss *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, loss_names[i])) {
            *out = (rein_dpo_loss)i;
            return REIN_OK;
        }
    return rein_error(REIN_ERR_INVALID, "unknown DPO loss '%s' (sigmoid, ipo or hinge)", name);
}

static double softplus(double x) {
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

double rein_dpo_pair_loss(const rein_dpo_params *p, double z, double *dz) {
    const double b = p->beta;
    switch (p->loss) {
    case REIN_DPO_IPO: {
        double u = z - 1.0 / (2.0 * b);
        *dz = 2.0 * u;
        return u * u;
    }
    case REIN_DPO_HINGE:
        *dz = 1.0 - b * z > 0 ? -b : 0.0;
        return 1.0 - b * z > 0 ? 1.0 - b * z : 0.0;
    case REIN_DPO_SIGMOID:
    default: {
        const double e = p->label_smoothing;
        *dz = -(1.0 - e) * b * sigmoid(-b * z) + e * b * sigmoid(b * z);
        return (1.0 - e) * softplus(-b * z) + e * softplus(b * z);
    }
    }
}

/* Summed log-probabilities and learned-token counts of each sequence of the batch in ts. */
static void seq_sums(const rein_train_state *ts, const int32_t *targets, const float *logp,
                     double *sum, int *count) {
    for (int s = 0; s < ts->n_seqs; s++) {
        double a = 0;
        int k = 0;
        for (int t = ts->cu[s]; t < ts->cu[s + 1]; t++)
            if (targets[t] >= 0) a += logp[t], k++;
        sum[s] = a;
        count[s] = k;
    }
}

/* One pair's z, loss, derivative and metrics, from its policy and reference log-probabilities.
 * scale_c / scale_r: dz/dpi of chosen and rejected (1 and -1, or divided by length under IPO). */
static double pair_eval(const rein_dpo_params *p, double pc, double pr, double rc, double rr,
                        int nc, int nr, double *dz, double *scale_c, double *scale_r,
                        rein_dpo_metrics *mt) {
    double ic = 1, ir = 1;
    if (p->loss == REIN_DPO_IPO) {
        ic = 1.0 / (nc > 0 ? nc : 1);
        ir = 1.0 / (nr > 0 ? nr : 1);
    }
    double z = (pc * ic - pr * ir) - (rc * ic - rr * ir);
    double loss = rein_dpo_pair_loss(p, z, dz);
    *scale_c = ic;
    *scale_r = -ir;
    double wc = p->beta * (pc - rc) * ic, wr = p->beta * (pr - rr) * ir;
    mt->pairs++;
    mt->loss += loss;
    mt->correct += wc > wr;
    mt->chosen += wc;
    mt->rejected += wr;
    mt->kl += 0.5 * ((pc - rc) + (pr - rr));
    return loss;
}

static int item_tokens(void *ctx, size_t i) {
    const rein_dpo_ctx *c = ctx;
    const rein_pref_pair *pp = &c->train->pairs[i];
    return c->train->len[pp->better] + c->train->len[pp->worse];
}

static double item_weight(void *ctx, size_t i) {
    (void)ctx;
    (void)i;
    return 1.0;
}

/* Pack pairs[items[0..n)] of ps as 2n sequences (chosen, rejected, ...), forward, log-probs. */
static rein_status pairs_forward(rein_dpo_ctx *c, rein_model *m, rein_train_state *ts,
                                 const rein_pref_set *ps, const size_t *items, int n,
                                 double *sum, int *count) {
    for (int i = 0; i < n; i++) {
        c->b.idx[2 * i] = ps->pairs[items[i]].better;
        c->b.idx[2 * i + 1] = ps->pairs[items[i]].worse;
    }
    rein_pref_pack(ps, c->b.idx, 2 * n, c->b.tokens, c->b.targets, c->b.cu);
    REIN_TRY(rein_train_forward(m, ts, c->b.tokens, c->b.cu, 2 * n));
    REIN_TRY(rein_lm_head_logprobs(m, ts, c->b.targets, c->logp));
    seq_sums(ts, c->b.targets, c->logp, sum, count);
    return REIN_OK;
}

static rein_status micro_step(void *ctx, rein_model *m, rein_train_state *ts, const size_t *items,
                              int n, float scale, double *loss) {
    rein_dpo_ctx *c = ctx;
    const rein_pref_set *ps = c->train;
    double *sum = rein_malloc(sizeof(double) * 2 * (size_t)n);
    int *count = rein_malloc(sizeof(int) * 2 * (size_t)n);
    if (!sum || !count) {
        rein_free(sum);
        rein_free(count);
        return REIN_ERR_NOMEM;
    }
    rein_status st = pairs_forward(c, m, ts, ps, items, n, sum, count);
    double total = 0;
    int any = 0;
    if (!st) {
        memset(c->dlogp, 0, sizeof(float) * (size_t)ts->T);
        for (int i = 0; i < n; i++) {
            const rein_pref_pair *pp = &ps->pairs[items[i]];
            double dz, sc, sr;
            total += pair_eval(&c->p, sum[2 * i], sum[2 * i + 1], c->ref_train[pp->better],
                               c->ref_train[pp->worse], count[2 * i], count[2 * i + 1], &dz, &sc,
                               &sr, &c->step);
            for (int s = 2 * i; s < 2 * i + 2; s++) {
                float g = (float)(scale * dz * (s == 2 * i ? sc : sr));
                any |= g != 0;
                for (int t = c->b.cu[s]; t < c->b.cu[s + 1]; t++)
                    if (c->b.targets[t] >= 0) c->dlogp[t] = g;
            }
        }
        *loss += total;
        if (!isfinite(total)) st = rein_error(REIN_ERR_NUMERIC, "the DPO loss is not finite");
    }
    rein_free(sum);
    rein_free(count);
    REIN_TRY(st);
    if (!any) return REIN_OK; /* every pair past its margin (hinge): no gradient */
    REIN_TRY(rein_lm_head_backward(m, ts, c->b.targets, c->dlogp));
    return rein_train_backward(m, ts);
}

static void put_metrics(rein_buf *out, const char *prefix, const rein_dpo_metrics *mt) {
    double n = mt->pairs > 0 ? mt->pairs : 1;
    rein_buf_appendf(out,
                     ",\"%sacc\":%.4f,\"%sreward_chosen\":%.6g,\"%sreward_rejected\":%.6g,"
                     "\"%smargin\":%.6g,\"%skl\":%.6g",
                     prefix, mt->correct / n, prefix, mt->chosen / n, prefix, mt->rejected / n,
                     prefix, (mt->chosen - mt->rejected) / n, prefix, mt->kl / n);
}

static void step_metrics(void *ctx, rein_buf *out) {
    rein_dpo_ctx *c = ctx;
    if (c->step.pairs > 0) put_metrics(out, "", &c->step);
    memset(&c->step, 0, sizeof c->step);
}

rein_status rein_dpo_evaluate(rein_dpo_ctx *c, rein_model *m, rein_train_state *ts,
                              const rein_pref_set *ps, const float *ref, rein_dpo_metrics *out) {
    memset(out, 0, sizeof *out);
    size_t *items = rein_malloc(sizeof(size_t) * (ps->n_pairs ? ps->n_pairs : 1));
    double *sum = rein_malloc(sizeof(double) * 2 * (ps->n_pairs ? ps->n_pairs : 1));
    int *count = rein_malloc(sizeof(int) * 2 * (ps->n_pairs ? ps->n_pairs : 1));
    rein_status st = (!items || !sum || !count) ? REIN_ERR_NOMEM : REIN_OK;
    size_t p = 0;
    int cap = REIN_MIN(c->b.cap, ts->cap);
    while (!st && p < ps->n_pairs) {
        int n = 0, used = 0;
        while (p < ps->n_pairs) {
            int t = ps->len[ps->pairs[p].better] + ps->len[ps->pairs[p].worse];
            if (used + t > cap) break;
            used += t;
            items[n++] = p++;
        }
        if (n == 0) {
            st = rein_error(REIN_ERR_RANGE, "line %d: a pair of %d tokens does not fit a batch of %d",
                            ps->ex->ex[ps->pairs[p].better].line,
                            ps->len[ps->pairs[p].better] + ps->len[ps->pairs[p].worse], cap);
            break;
        }
        st = pairs_forward(c, m, ts, ps, items, n, sum, count);
        for (int i = 0; !st && i < n; i++) {
            const rein_pref_pair *pp = &ps->pairs[items[i]];
            double dz, sc, sr;
            pair_eval(&c->p, sum[2 * i], sum[2 * i + 1], ref[pp->better], ref[pp->worse],
                      count[2 * i], count[2 * i + 1], &dz, &sc, &sr, out);
        }
    }
    rein_free(items);
    rein_free(sum);
    rein_free(count);
    return st;
}

static rein_status evaluate(void *ctx, rein_model *m, rein_train_state *ts, double *loss) {
    rein_dpo_ctx *c = ctx;
    REIN_TRY(rein_dpo_evaluate(c, m, ts, c->eval, c->ref_eval, &c->last_eval));
    *loss = c->last_eval.pairs > 0 ? c->last_eval.loss / c->last_eval.pairs : 0;
    return REIN_OK;
}

static void eval_metrics(void *ctx, rein_buf *out) {
    put_metrics(out, "eval_", &((rein_dpo_ctx *)ctx)->last_eval);
}

rein_status rein_dpo_logps(rein_model *m, rein_train_state *ts, const rein_pref_set *ps,
                           float *out) {
    int was_on = rein_lora_is_enabled(m);
    rein_pref_batch b;
    REIN_TRY(rein_pref_batch_init(&b, ts->cap));
    float *logp = rein_malloc(sizeof(float) * (size_t)ts->cap);
    double *sum = rein_malloc(sizeof(double) * (size_t)ts->cap);
    int *count = rein_malloc(sizeof(int) * (size_t)ts->cap);
    rein_status st = (!logp || !sum || !count) ? REIN_ERR_NOMEM : REIN_OK;
    if (was_on) rein_lora_set_enabled(m, 0);
    int done = 0;
    while (!st && !(st = rein_pref_batch_next(&b, ps, &done)) && !done) {
        st = rein_train_forward(m, ts, b.tokens, b.cu, b.n);
        if (!st) st = rein_lm_head_logprobs(m, ts, b.targets, logp);
        if (!st) {
            seq_sums(ts, b.targets, logp, sum, count);
            for (int s = 0; s < b.n; s++) out[b.first + s] = (float)sum[s];
        }
    }
    if (was_on) rein_lora_set_enabled(m, 1);
    rein_pref_batch_free(&b);
    rein_free(logp);
    rein_free(sum);
    rein_free(count);
    return st;
}

rein_status rein_dpo_reference(rein_dpo_ctx *c, rein_model *m, int batch_tokens) {
    rein_train_state *ts;
    REIN_TRY(rein_train_state_new(m, batch_tokens, 0, &ts));
    rein_status st = rein_dpo_logps(m, ts, c->train, c->ref_train);
    if (!st && c->eval) st = rein_dpo_logps(m, ts, c->eval, c->ref_eval);
    rein_train_state_free(ts);
    return st;
}

void rein_dpo_ctx_free(rein_dpo_ctx *c) {
    rein_free(c->ref_train);
    rein_free(c->ref_eval);
    rein_pref_batch_free(&c->b);
    rein_free(c->logp);
    rein_free(c->dlogp);
    memset(c, 0, sizeof *c);
}

rein_status rein_dpo_objective(rein_dpo_ctx *c, const rein_dpo_params *p,
                               const rein_pref_set *train, const rein_pref_set *eval,
                               int batch_tokens, rein_objective *obj) {
    memset(c, 0, sizeof *c);
    memset(obj, 0, sizeof *obj);
    if (!(p->beta > 0) || !(p->label_smoothing >= 0 && p->label_smoothing < 0.5f))
        return rein_error(REIN_ERR_INVALID, "DPO needs beta > 0 and label smoothing in [0, 0.5)");
    c->p = *p;
    c->train = train;
    c->eval = eval && eval->n_pairs ? eval : NULL;
    size_t cap = (size_t)batch_tokens;
    rein_status st = rein_pref_batch_init(&c->b, batch_tokens);
    c->ref_train = rein_calloc(train->ex->n, sizeof(float));
    if (c->eval) c->ref_eval = rein_calloc(c->eval->ex->n, sizeof(float));
    c->logp = rein_malloc(sizeof(float) * cap);
    c->dlogp = rein_malloc(sizeof(float) * cap);
    if (st || !c->ref_train || (c->eval && !c->ref_eval) || !c->logp || !c->dlogp) {
        rein_dpo_ctx_free(c);
        return REIN_ERR_NOMEM;
    }
    obj->kind = "dpo";
    obj->ctx = c;
    obj->n_items = train->n_pairs;
    obj->data_hash = train->hash;
    obj->item_tokens = item_tokens;
    obj->item_weight = item_weight;
    obj->micro_step = micro_step;
    obj->step_metrics = step_metrics;
    if (c->eval) {
        obj->evaluate = evaluate;
        obj->eval_name = "eval_loss";
        obj->eval_metrics = eval_metrics;
    }
    return REIN_OK;
}
