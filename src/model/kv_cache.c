/* kv_cache.c - the key/value cache: n_seq independent sequences of up to n_ctx positions.
 *
 * Layout (n_layers, n_seq, n_ctx, kv_dim) for keys and values alike, so that the keys one token
 * attends to are one contiguous run of rows. Sequences are independent: a batch may mix them, and
 * a shared prompt prefix can be copied from one sequence to others.
 */
#include "model/model.h"
#include "base/base.h"

#include <string.h>

rein_status rein_kv_cache_new(const rein_model *m, int n_seq, int n_ctx, rein_kv_cache **out) {
    *out = NULL;
    const rein_model_config *c = &m->cfg;
    if (n_seq < 1 || n_ctx < 1)
        return rein_error(REIN_ERR_INVALID, "KV cache needs n_seq >= 1 and n_ctx >= 1 (got %d, %d)",
                          n_seq, n_ctx);
    int kv_dim = c->n_kv_heads * c->head_dim;
    double bytes = 2.0 * c->n_layers * (double)n_seq * n_ctx * kv_dim * sizeof(float);
    if (bytes > (double)SIZE_MAX / 2)
        return rein_error(REIN_ERR_NOMEM, "KV cache of %.3g bytes is too large", bytes);
    rein_kv_cache *kv = rein_calloc(1, sizeof *kv);
    if (!kv) return REIN_ERR_NOMEM;
    kv->n_layers = c->n_layers;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->kv_dim = kv_dim;
    size_t n = (size_t)c->n_layers * (size_t)n_seq * (size_t)n_ctx * (size_t)kv_dim;
    kv->k = rein_malloc_aligned(n * sizeof(float), 64);
    kv->v = rein_malloc_aligned(n * sizeof(float), 64);
    kv->len = rein_calloc((size_t)n_seq, sizeof(int));
    if (!kv->k || !kv->v || !kv->len) {
        rein_kv_cache_free(kv);
        return rein_error(REIN_ERR_NOMEM, "out of memory for a KV cache of %.0f MiB",
                          bytes / 1048576.0);
    }
    *out = kv;
    return REIN_OK;
}

void rein_kv_cache_free(rein_kv_cache *kv) {
    if (!kv) return;
    rein_free_aligned(kv->k);
    rein_free_aligned(kv->v);
    rein_free(kv->len);
    rein_free(kv);
}

int rein_kv_cache_len(const rein_kv_cache *kv, int seq) {
    return seq >= 0 && seq < kv->n_seq ? kv->len[seq] : 0;
}

int rein_kv_cache_n_ctx(const rein_kv_cache *kv) {
    return kv->n_ctx;
}

int rein_kv_cache_n_seq(const rein_kv_cache *kv) {
    return kv->n_seq;
}

void rein_kv_cache_clear(rein_kv_cache *kv, int seq) {
    if (seq < 0) memset(kv->len, 0, sizeof(int) * (size_t)kv->n_seq);
    else if (seq < kv->n_seq) kv->len[seq] = 0;
}

rein_status rein_kv_cache_truncate(rein_kv_cache *kv, int seq, int len) {
    if (seq < 0 || seq >= kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "sequence %d out of range (cache has %d)", seq,
                          kv->n_seq);
    if (len < 0 || len > kv->len[seq])
        return rein_error(REIN_ERR_RANGE, "cannot truncate sequence %d of length %d to %d", seq,
                          kv->len[seq], len);
    kv->len[seq] = len;
    return REIN_OK;
}

rein_status rein_kv_cache_copy(rein_kv_cache *kv, int src, int dst, int len) {
    if (src < 0 || src >= kv->n_seq || dst < 0 || dst >= kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "sequence %d or %d out of range (cache has %d)", src,
                          dst, kv->n_seq);
    if (len < 0 || len > kv->len[src])
        return rein_error(REIN_ERR_RANGE, "cannot copy %d positions of sequence %d (it has %d)",
                          len, src, kv->len[src]);
    if (src != dst)
        for (int l = 0; l < kv->n_layers; l++) {
            size_t bytes = sizeof(float) * (size_t)len * (size_t)kv->kv_dim;
            memcpy(rein_kv_at(kv, kv->k, l, dst, 0), rein_kv_at(kv, kv->k, l, src, 0), bytes);
            memcpy(rein_kv_at(kv, kv->v, l, dst, 0), rein_kv_at(kv, kv->v, l, src, 0), bytes);
        }
    kv->len[dst] = len;
    return REIN_OK;
}
