/* kv_cache.c - the key/value cache: n_seq independent sequences of up to n_ctx positions.
 *
 * Layout (n_layers, n_seq, n_kv_heads, n_ctx, head_dim) for keys and values alike, so that the
 * keys of one KV head that one token attends to are one contiguous run. Sequences are independent:
 * a batch may mix them. A prompt prefix common to several sequences is either copied into each
 * (rein_kv_cache_copy) or shared (rein_kv_cache_share): then the sequences read the prefix's rows
 * where one sequence holds them, so that a batch decoding 16 continuations of a long prompt reads
 * its keys and values from memory once a step, not 16 times. A sharer's own rows hold only what
 * follows the prefix.
 *
 * Sharing never changes what a sequence reads: whatever would overwrite or drop rows that others
 * read (clearing or truncating the source, copying or sharing into it) first gives those sequences
 * their own copy of the rows concerned.
 *
 * Elements are f32, or f16 (rein_kv_cache_new_typed): rounded once, by the forward pass that writes
 * them; everything here moves them as bytes.
 */
#include "model/model.h"
#include "base/base.h"

#include <stdatomic.h>
#include <string.h>

static _Atomic int default_type = REIN_TYPE_F32;

static rein_status check_type(rein_type type) {
    if (type != REIN_TYPE_F32 && type != REIN_TYPE_F16)
        return rein_error(REIN_ERR_INVALID, "a KV cache holds F32 or F16 elements, not %s",
                          rein_type_name(type) ? rein_type_name(type) : "an unknown type");
    return REIN_OK;
}

rein_status rein_set_kv_cache_type(rein_type type) {
    REIN_TRY(check_type(type));
    atomic_store(&default_type, (int)type);
    return REIN_OK;
}

rein_type rein_kv_cache_type(const rein_kv_cache *kv) {
    return kv->type;
}

rein_status rein_kv_cache_new(const rein_model *m, int n_seq, int n_ctx, rein_kv_cache **out) {
    return rein_kv_cache_new_typed(m, n_seq, n_ctx, (rein_type)atomic_load(&default_type), out);
}

rein_status rein_kv_cache_new_typed(const rein_model *m, int n_seq, int n_ctx, rein_type type,
                                    rein_kv_cache **out) {
    *out = NULL;
    const rein_model_config *c = &m->cfg;
    if (n_seq < 1 || n_ctx < 1)
        return rein_error(REIN_ERR_INVALID, "KV cache needs n_seq >= 1 and n_ctx >= 1 (got %d, %d)",
                          n_seq, n_ctx);
    REIN_TRY(check_type(type));
    const int elt = (int)rein_type_block_bytes(type), kv_dim = c->n_kv_heads * c->head_dim;
    double bytes = 2.0 * c->n_layers * (double)n_seq * n_ctx * kv_dim * elt;
    if (bytes > (double)SIZE_MAX / 2)
        return rein_error(REIN_ERR_NOMEM, "KV cache of %.3g bytes is too large", bytes);
    rein_kv_cache *kv = rein_calloc(1, sizeof *kv);
    if (!kv) return REIN_ERR_NOMEM;
    kv->n_layers = c->n_layers;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->n_kv_heads = c->n_kv_heads;
    kv->head_dim = c->head_dim;
    kv->type = type;
    kv->elt = elt;
    size_t n = (size_t)c->n_layers * (size_t)n_seq * (size_t)n_ctx * (size_t)kv_dim;
    kv->k = rein_malloc_aligned(n * (size_t)elt, 64);
    kv->v = rein_malloc_aligned(n * (size_t)elt, 64);
    kv->len = rein_calloc((size_t)n_seq, sizeof(int));
    kv->share_src = rein_calloc((size_t)n_seq, sizeof(int));
    kv->share_len = rein_calloc((size_t)n_seq, sizeof(int));
    if (!kv->k || !kv->v || !kv->len || !kv->share_src || !kv->share_len) {
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
    rein_free(kv->share_src);
    rein_free(kv->share_len);
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

/* Positions [from, to) of src's own rows into dst's own rows, every layer and head. */
static void copy_rows(rein_kv_cache *kv, int src, int dst, int from, int to) {
    if (to <= from) return;
    const size_t bytes = (size_t)kv->elt * (size_t)(to - from) * (size_t)kv->head_dim;
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_kv_heads; h++) {
            memcpy(rein_kv_at(kv, kv->k, l, dst, h, from), rein_kv_at(kv, kv->k, l, src, h, from),
                   bytes);
            memcpy(rein_kv_at(kv, kv->v, l, dst, h, from), rein_kv_at(kv, kv->v, l, src, h, from),
                   bytes);
        }
}

/* Positions [from, to) of sequence `seq` copied from wherever it reads them into its own rows. */
static void own_rows(rein_kv_cache *kv, int seq, int from, int to) {
    if (from >= kv->share_len[seq]) return; /* its own already */
    copy_rows(kv, kv->share_src[seq], seq, from, REIN_MIN(to, kv->share_len[seq]));
}

/* Rows of `seq` from position `from` on are about to change: the sequences that read them through
 * sharing get their own copy first, and share only what stays. */
static void release_sharers(rein_kv_cache *kv, int seq, int from) {
    for (int s = 0; s < kv->n_seq; s++)
        if (s != seq && kv->share_len[s] > from && kv->share_src[s] == seq) {
            own_rows(kv, s, from, kv->share_len[s]);
            kv->share_len[s] = from;
        }
}

void rein_kv_cache_clear(rein_kv_cache *kv, int seq) {
    if (seq < 0) {
        memset(kv->len, 0, sizeof(int) * (size_t)kv->n_seq);
        memset(kv->share_len, 0, sizeof(int) * (size_t)kv->n_seq);
    } else if (seq < kv->n_seq) {
        release_sharers(kv, seq, 0);
        kv->len[seq] = kv->share_len[seq] = 0;
    }
}

rein_status rein_kv_cache_truncate(rein_kv_cache *kv, int seq, int len) {
    if (seq < 0 || seq >= kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "sequence %d out of range (cache has %d)", seq,
                          kv->n_seq);
    if (len < 0 || len > kv->len[seq])
        return rein_error(REIN_ERR_RANGE, "cannot truncate sequence %d of length %d to %d", seq,
                          kv->len[seq], len);
    release_sharers(kv, seq, len);
    kv->len[seq] = len;
    kv->share_len[seq] = REIN_MIN(kv->share_len[seq], len);
    return REIN_OK;
}

/* Checks shared by copy and share. */
static rein_status check_pair(const rein_kv_cache *kv, int src, int dst, int len) {
    if (src < 0 || src >= kv->n_seq || dst < 0 || dst >= kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "sequence %d or %d out of range (cache has %d)", src,
                          dst, kv->n_seq);
    if (len < 0 || len > kv->len[src])
        return rein_error(REIN_ERR_RANGE, "cannot copy %d positions of sequence %d (it has %d)",
                          len, src, kv->len[src]);
    return REIN_OK;
}

/* dst := the first len positions of src, as src reads them. Sharing goes one level deep, so that
 * a row is always found in one step: what src reads from its own source, dst reads (or copies)
 * from there too; src's own rows past that are copied (a sequence reads from one place besides
 * itself). */
static rein_status take_prefix(rein_kv_cache *kv, int src, int dst, int len, int share) {
    REIN_TRY(check_pair(kv, src, dst, len));
    if (src == dst) return len < kv->len[dst] ? rein_kv_cache_truncate(kv, dst, len) : REIN_OK;
    release_sharers(kv, dst, 0);
    int root = src, sh = len; /* dst's positions [0, sh) are root's */
    if (kv->share_len[src] > 0) {
        root = kv->share_src[src];
        sh = REIN_MIN(len, kv->share_len[src]);
    }
    if (!share) copy_rows(kv, root, dst, 0, sh);
    copy_rows(kv, src, dst, sh, len);
    kv->len[dst] = len;
    kv->share_src[dst] = root;
    kv->share_len[dst] = share ? sh : 0;
    return REIN_OK;
}

rein_status rein_kv_cache_copy(rein_kv_cache *kv, int src, int dst, int len) {
    return take_prefix(kv, src, dst, len, 0);
}

rein_status rein_kv_cache_share(rein_kv_cache *kv, int src, int dst, int len) {
    return take_prefix(kv, src, dst, len, 1);
}
