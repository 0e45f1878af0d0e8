/* sampler.c - choosing the next token from logits.
 *
 * The chain, in llama.cpp's order: repetition penalty over the recent history, then greedy
 * (temperature 0) or top-k -> temperature -> softmax -> top-p -> min-p -> a draw from the seeded
 * RNG. Same seed, same logits, same choice. top-p sorts only the candidates that can matter: it
 * keeps lowering a probability threshold until the tokens above it hold p of the mass, then sorts
 * just those, which gives the exact nucleus without sorting the whole vocabulary.
 */
#include "base/base.h"

#include <math.h>
#include <string.h>

struct rein_sampler {
    rein_sampler_params p;
    int32_t n_vocab;
    rein_rng rng;
    int32_t *ids;  /* (n_vocab) candidate ids */
    float *probs;  /* (n_vocab) */
    uint8_t *seen; /* (n_vocab) marks for the repetition penalty */
};

rein_sampler_params rein_sampler_default_params(void) {
    rein_sampler_params p = {.temperature = 0.8f,
                             .top_k = 40,
                             .top_p = 0.95f,
                             .min_p = 0.05f,
                             .repeat_penalty = 1.0f,
                             .repeat_last_n = 64,
                             .seed = 42};
    return p;
}

rein_status rein_sampler_new(const rein_sampler_params *p, int32_t n_vocab, rein_sampler **out) {
    *out = NULL;
    if (n_vocab < 1) return rein_error(REIN_ERR_INVALID, "sampler needs a vocabulary");
    if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) ||
        !(p->min_p >= 0 && p->min_p < 1) || !(p->repeat_penalty > 0) || p->repeat_last_n < 0)
        return rein_error(REIN_ERR_INVALID,
                          "sampling parameters out of range: temperature >= 0, top-k >= 0, "
                          "0 < top-p <= 1, 0 <= min-p < 1, repeat penalty > 0 (got %g, %d, %g, "
                          "%g, %g)",
                          p->temperature, p->top_k, p->top_p, p->min_p, p->repeat_penalty);
    rein_sampler *s = rein_calloc(1, sizeof *s);
    if (!s) return REIN_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    rein_rng_seed(&s->rng, p->seed);
    s->ids = rein_malloc(sizeof(int32_t) * (size_t)n_vocab);
    s->probs = rein_malloc(sizeof(float) * (size_t)n_vocab);
    s->seen = rein_calloc((size_t)n_vocab, 1);
    if (!s->ids || !s->probs || !s->seen) {
        rein_sampler_free(s);
        return REIN_ERR_NOMEM;
    }
    *out = s;
    return REIN_OK;
}

void rein_sampler_free(rein_sampler *s) {
    if (!s) return;
    rein_free(s->ids);
    rein_free(s->probs);
    rein_free(s->seen);
    rein_free(s);
}

/* qsort_r comparator: ids by descending key[id] (logits or probabilities). */
static int by_logit_desc(const void *a, const void *b, void *key_) {
    const float *key = key_;
    float x = key[*(const int32_t *)a], y = key[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b; /* ties by id: deterministic */
}

/* Keep the k highest of n candidates (ids), sorted, by repeatedly partitioning. */
static int top_k_ids(int32_t *ids, int n, int k, const float *logits) {
    if (k >= n) k = n;
    /* quickselect on ids by logits so that ids[0..k) are the k largest */
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = logits[ids[(lo + hi) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (logits[ids[i]] > pivot) i++;
            while (logits[ids[j]] < pivot) j--;
            if (i <= j) {
                int32_t t = ids[i];
                ids[i++] = ids[j];
                ids[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort_r(ids, (size_t)k, sizeof *ids, by_logit_desc, (void *)logits);
    return k;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int32_t rein_sampler_sample(rein_sampler *s, float *logits, const int32_t *history, size_t n_hist) {
    const rein_sampler_params *p = &s->p;
    const int32_t V = s->n_vocab;
    if (p->repeat_penalty != 1.0f && n_hist > 0 && p->repeat_last_n > 0) {
        size_t from = n_hist > (size_t)p->repeat_last_n ? n_hist - (size_t)p->repeat_last_n : 0;
        for (size_t i = from; i < n_hist; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || s->seen[t]) continue;
            s->seen[t] = 1;
            logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        }
        for (size_t i = from; i < n_hist; i++)
            if (history[i] >= 0 && history[i] < V) s->seen[history[i]] = 0;
    }
    if (p->temperature <= 0) return argmax(logits, V);

    /* candidates: the top k (sorted), or everyone */
    int n = V;
    for (int32_t i = 0; i < V; i++) s->ids[i] = i;
    int sorted = 0;
    if (p->top_k > 0) {
        n = top_k_ids(s->ids, V, p->top_k, logits);
        sorted = 1;
    }
    float mx = logits[sorted ? s->ids[0] : argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = expf((logits[s->ids[i]] - mx) / p->temperature);
        s->probs[s->ids[i]] = e;
        sum += e;
    }
    for (int i = 0; i < n; i++) s->probs[s->ids[i]] = (float)(s->probs[s->ids[i]] / sum);

    if (p->top_p < 1.0f) {
        if (!sorted) {
            /* lower a threshold until the tokens above it hold top_p of the mass; only those
             * can be in the nucleus, so only those need sorting */
            float pmax = s->probs[s->ids[0]];
            for (int i = 1; i < n; i++) pmax = REIN_MAX(pmax, s->probs[s->ids[i]]);
            for (float t = pmax * 0.1f;; t *= 0.1f) {
                double mass = 0;
                int m = 0;
                for (int i = 0; i < n; i++)
                    if (s->probs[s->ids[i]] >= t) mass += s->probs[s->ids[i]];
                if (mass >= p->top_p || t < 1e-30f) {
                    for (int i = 0; i < n; i++)
                        if (s->probs[s->ids[i]] >= t) {
                            int32_t tmp = s->ids[m];
                            s->ids[m++] = s->ids[i];
                            s->ids[i] = tmp;
                        }
                    n = m;
                    break;
                }
            }
            qsort_r(s->ids, (size_t)n, sizeof *s->ids, by_logit_desc, s->probs);
            sorted = 1;
        }
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s->probs[s->ids[i]];
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0) {
        float pmax = 0;
        for (int i = 0; i < n; i++) pmax = REIN_MAX(pmax, s->probs[s->ids[i]]);
        int m = 0;
        for (int i = 0; i < n; i++)
            if (s->probs[s->ids[i]] >= p->min_p * pmax) s->ids[m++] = s->ids[i];
        n = m;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->probs[s->ids[i]];
    double u = rein_rng_uniform(&s->rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->probs[s->ids[i]];
        if (u < acc) return s->ids[i];
    }
    return s->ids[n - 1];
}
