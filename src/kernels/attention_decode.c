/* attention_decode.c - attention for decoding: a few query rows, each against its own keys and
 * values (a sequence's KV cache), with grouped-query heads.
 *
 * One online-softmax pass over the keys per (row, head): in chunks of ATT_CHUNK keys, the scores,
 * the chunk's maximum (rescaling what was summed under the old one), the weights with the vector
 * exp, then the weighted values. On the AVX-512 path, for head sizes 64 and 128:
 * - the query heads that share a KV head are handled together (up to ATT_G at once), so each key
 *   and value vector is loaded once for the group;
 * - the scores of 8 keys are formed as 8 vectors of partial products per head and summed
 *   horizontally in one tree (hsum8) rather than one reduction per key; 8 rather than 16 so that
 *   a group's partial sums (3 heads x 8) stay in registers, as the weighted values' sums do
 *   within a chunk (kept in the output rows between chunks). Both spilled to the stack before,
 *   at half the speed;
 * - keys and values are prefetched a little ahead: at batch 16 the cache's reads are the cost.
 * Each head's arithmetic is the same whether it runs alone or with the others of its group, and
 * each row's whether it runs alone or in a batch, so a sequence decoded in a batch gets the bits
 * it would get alone; batch 1 runs heads one at a time (more tasks than KV heads for the threads),
 * larger batches whole groups. Keys and values may be f16 (a cache's choice): each is widened to
 * f32 exactly as it is loaded, and the arithmetic is the f32 rows' own.
 */
#include "kernels/ops.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/vexp.h"

#include <math.h>
#include <string.h>

typedef struct att_job {
    float *out;
    const float *q;
    int N, H, KVH, D;
    const rein_kv_rows *rows;
    int64_t key_bytes, head_bytes; /* from one key to the next, from one KV head to the next */
    int f16;                       /* the rows' elements are f16 (else f32) */
    float scale;
    int avx;
    int per_task; /* query heads a task takes together (1, or the heads of a KV head, <= ATT_G) */
} att_job;

#define ATT_CHUNK 128 /* keys whose scores are formed before their softmax weights */
#define ATT_G 4       /* query heads sharing a KV head handled together, at most */

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Lane j (j < 8) of the result = the sum of the 16 lanes of v[j]: pairs of vectors interleaved
 * and added within 128-bit lanes, then the 128-bit lanes added in pairs, then the pairs; 24
 * operations for 8 sums, all in registers. */
AVX512 INLINE __m256 hsum8(const __m512 *v) {
    __m512 s[4], u[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* lane l: v2i, v2i+1 at positions {0, 2} and {1, 3} */
        s[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lane l, position p: v4i+p over elements 4l..4l+3 */
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* lanes: u0 over lanes (0,1), (2,3), then u1 likewise; then those pairs added */
    const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 f = _mm512_add_ps(_mm512_shuffle_f32x4(w, w, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(w, w, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_castps512_ps256(f);
}

/* The 16 * DV running sums of one head, held in its output row, times f. */
AVX512 INLINE void scale_out(float *oh, int DV, __m512 f) {
#pragma GCC unroll 16
    for (int d = 0; d < DV; d++)
        _mm512_storeu_ps(oh + 16 * d, _mm512_mul_ps(_mm512_loadu_ps(oh + 16 * d), f));
}

/* 16 elements of a key or value row from p, as f32. */
AVX512 INLINE __m512 load16(const char *p, int f16) {
    return f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p))
               : _mm512_loadu_ps((const float *)p);
}

/* G query heads (q[h], out o[h]) of one row against one KV head, D = 16 * DV, elements f16 when
 * F16 (else f32): key t at (t < n_sh ? ksh : kb) + t * stride bytes, values likewise. */
AVX512 INLINE void att_group(int G, int DV, int F16, float *const *o, const float *const *q,
                             const char *kb, const char *vb, const char *ksh, const char *vsh,
                             int n_sh, int n_keys, int64_t stride, float scale) {
    const int elt = F16 ? 2 : 4;
    G = REIN_MIN(G, ATT_G); /* as the caller makes it: bounds the arrays for the compiler */
    /* the weighted values are summed in o[h] between chunks, in registers within one */
    float mx[ATT_G], den[ATT_G];
    float sc[ATT_G][ATT_CHUNK] __attribute__((aligned(64)));
#pragma GCC unroll 16
    for (int h = 0; h < G; h++) {
#pragma GCC unroll 16
        for (int d = 0; d < DV; d++) _mm512_storeu_ps(o[h] + 16 * d, _mm512_setzero_ps());
        mx[h] = -INFINITY, den[h] = 0;
    }
    for (int j0 = 0; j0 < n_keys; j0 += ATT_CHUNK) {
        const int nk = REIN_MIN(ATT_CHUNK, n_keys - j0);
        for (int jb = 0; jb < nk; jb += 8) {
            const int nj = REIN_MIN(8, nk - jb);
            __m512 part[ATT_G][8]; /* keys past nj stay 0 */
#pragma GCC unroll 4
            for (int h = 0; h < ATT_G; h++)
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) part[h][j] = _mm512_setzero_ps();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                if (j >= nj) continue;
                const int t = j0 + jb + j;
                const char *ks = (t < n_sh ? ksh : kb) + (int64_t)t * stride;
                const char *vn = (t < n_sh ? vsh : vb) + (int64_t)t * stride;
                /* the key 32 on, and this value, on their way, a line at a time: each (row, KV
                 * head) is a short stream of its own, too short for the hardware's prefetcher
                 * (with it, 1.2-1.5x at batch 16) */
#pragma GCC unroll 16
                for (int b = 0; b < 16 * DV * elt; b += 64) {
                    _mm_prefetch(ks + 32 * stride + b, _MM_HINT_T0);
                    _mm_prefetch(vn + b, _MM_HINT_T0);
                }
                __m512 kv[16] = {0}; /* only the first DV are used */
#pragma GCC unroll 16
                for (int d = 0; d < DV; d++) kv[d] = load16(ks + 16 * d * elt, F16);
#pragma GCC unroll 16
                for (int h = 0; h < G; h++) {
                    __m512 s = _mm512_mul_ps(_mm512_loadu_ps(q[h]), kv[0]);
#pragma GCC unroll 16
                    for (int d = 1; d < DV; d++)
                        s = _mm512_fmadd_ps(_mm512_loadu_ps(q[h] + 16 * d), kv[d], s);
                    part[h][j] = s;
                }
            }
            const __mmask8 m = (__mmask8)((1u << nj) - 1);
#pragma GCC unroll 16
            for (int h = 0; h < G; h++)
                _mm256_mask_storeu_ps(sc[h] + jb, m,
                                      _mm256_mul_ps(hsum8(part[h]), _mm256_set1_ps(scale)));
        }
#pragma GCC unroll 16
        for (int h = 0; h < G; h++) {
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            for (int j = 0; j < nk; j += 16) {
                __mmask16 m = (__mmask16)(nk - j >= 16 ? 0xffff : (1u << (nk - j)) - 1);
                vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, sc[h] + j));
            }
            const float cmax = _mm512_reduce_max_ps(vmax);
            if (cmax > mx[h]) {
                const __m512 c = _mm512_set1_ps(expf(mx[h] - cmax)); /* 0 on the first chunk */
                den[h] *= _mm512_cvtss_f32(c);
                scale_out(o[h], DV, c);
                mx[h] = cmax;
            }
            for (int j = 0; j < nk; j += 16) {
                __mmask16 m = (__mmask16)(nk - j >= 16 ? 0xffff : (1u << (nk - j)) - 1);
                __m512 e = _mm512_maskz_mov_ps(
                    m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc[h] + j), _mm512_set1_ps(mx[h]))));
                _mm512_mask_storeu_ps(sc[h] + j, m, e);
                den[h] += _mm512_reduce_add_ps(e);
            }
        }
        __m512 acc[ATT_G][16];
#pragma GCC unroll 16
        for (int h = 0; h < G; h++)
#pragma GCC unroll 16
            for (int d = 0; d < DV; d++) acc[h][d] = _mm512_loadu_ps(o[h] + 16 * d);
        for (int j = 0; j < nk; j++) {
            const int t = j0 + j;
            const char *vs = (t < n_sh ? vsh : vb) + (int64_t)t * stride;
            __m512 vv[16] = {0};
#pragma GCC unroll 16
            for (int d = 0; d < DV; d++) vv[d] = load16(vs + 16 * d * elt, F16);
#pragma GCC unroll 16
            for (int h = 0; h < G; h++) {
                const __m512 p = _mm512_set1_ps(sc[h][j]);
#pragma GCC unroll 16
                for (int d = 0; d < DV; d++) acc[h][d] = _mm512_fmadd_ps(p, vv[d], acc[h][d]);
            }
        }
#pragma GCC unroll 16
        for (int h = 0; h < G; h++)
#pragma GCC unroll 16
            for (int d = 0; d < DV; d++) _mm512_storeu_ps(o[h] + 16 * d, acc[h][d]);
    }
#pragma GCC unroll 16
    for (int h = 0; h < G; h++)
        scale_out(o[h], DV, _mm512_set1_ps(den[h] > 0 ? 1.0f / den[h] : 0.0f));
}

/* The instantiations: constant G, DV and element type, so that the loops unroll and the sums stay
 * in registers. */
AVX512 static void att_group_avx512(int G, int DV, int f16, float *const *o,
                                    const float *const *q, const char *kb, const char *vb,
                                    const char *ksh, const char *vsh, int n_sh, int n_keys,
                                    int64_t stride, float scale) {
#define CASE(g, dv, h)                                                                         \
    case (h) * 256 + (g) * 16 + (dv):                                                          \
        att_group(g, dv, h, o, q, kb, vb, ksh, vsh, n_sh, n_keys, stride, scale);               \
        return
    switch (f16 * 256 + G * 16 + DV) {
        CASE(1, 4, 0); CASE(2, 4, 0); CASE(3, 4, 0); CASE(4, 4, 0);
        CASE(1, 8, 0); CASE(2, 8, 0); CASE(3, 8, 0); CASE(4, 8, 0);
        CASE(1, 4, 1); CASE(2, 4, 1); CASE(3, 4, 1); CASE(4, 4, 1);
        CASE(1, 8, 1); CASE(2, 8, 1); CASE(3, 8, 1); CASE(4, 8, 1);
    default: /* other sizes, not unrolled */
        if (f16) att_group(G, DV, 1, o, q, kb, vb, ksh, vsh, n_sh, n_keys, stride, scale);
        else att_group(G, DV, 0, o, q, kb, vb, ksh, vsh, n_sh, n_keys, stride, scale);
    }
#undef CASE
}
#endif

/* Element d of a key or value row. */
static float elem(const char *row, int d, int f16) {
    if (!f16) return ((const float *)row)[d];
    uint16_t h;
    memcpy(&h, row + 2 * d, 2);
    return rein_fp16_to_fp32(h);
}

/* One (row, head), any D: the plain loop, key by key. */
static void att_head_portable(const att_job *a, float *oh, const float *qh, const char *kb,
                              const char *vb, const char *ksh, const char *vsh, int n_sh,
                              int n_keys) {
    const int D = a->D, f16 = a->f16;
    const int64_t stride = a->key_bytes;
    float acc[1024];
    for (int d = 0; d < D; d++) acc[d] = 0;
    float mx = -INFINITY, den = 0;
    for (int s = 0; s < n_keys; s++) {
        const char *ks = (s < n_sh ? ksh : kb) + (int64_t)s * stride;
        float dot = 0;
        for (int d = 0; d < D; d++) dot += qh[d] * elem(ks, d, f16);
        dot *= a->scale;
        const char *vs = (s < n_sh ? vsh : vb) + (int64_t)s * stride;
        if (dot > mx) {
            float c = expf(mx - dot); /* rescale what was summed under the old maximum */
            den *= c;
            for (int d = 0; d < D; d++) acc[d] *= c;
            mx = dot;
        }
        float p = expf(dot - mx);
        den += p;
        for (int d = 0; d < D; d++) acc[d] += p * elem(vs, d, f16);
    }
    float inv = den > 0 ? 1.0f / den : 0.0f;
    for (int d = 0; d < D; d++) oh[d] = acc[d] * inv;
}

/* Task t: row i, query heads [h0, h0 + per_task) (all of one KV head). */
static void att_task(void *ctx, int t, int n_tasks) {
    const att_job *a = ctx;
    const int tasks_per_row = a->H / a->per_task, i = t / tasks_per_row;
    const int h0 = (t % tasks_per_row) * a->per_task, g = h0 / (a->H / a->KVH), D = a->D;
    const rein_kv_rows *r = &a->rows[i];
    const int64_t head = g * a->head_bytes;
    const char *kb = (const char *)r->k + head, *vb = (const char *)r->v + head;
    const int n_sh = r->k_shared ? REIN_MIN(r->n_shared, r->n_keys) : 0;
    const char *ksh = n_sh ? (const char *)r->k_shared + head : kb;
    const char *vsh = n_sh ? (const char *)r->v_shared + head : vb;
    float *o[ATT_G];
    const float *q[ATT_G];
    for (int h = 0; h < a->per_task; h++) {
        q[h] = a->q + ((int64_t)i * a->H + h0 + h) * D;
        o[h] = a->out + ((int64_t)i * a->H + h0 + h) * D;
    }
#if defined(__x86_64__)
    if (a->avx) {
        att_group_avx512(a->per_task, D / 16, a->f16, o, q, kb, vb, ksh, vsh, n_sh, r->n_keys,
                         a->key_bytes, a->scale);
        return;
    }
#endif
    for (int h = 0; h < a->per_task; h++)
        att_head_portable(a, o[h], q[h], kb, vb, ksh, vsh, n_sh, r->n_keys);
}

void rein_attention_forward(float *out, const float *q, int N, int H, int KVH, int D,
                            const rein_kv_rows *rows, int64_t kv_stride, int64_t kv_head_stride,
                            int kv_f16, float scale) {
    REIN_ASSERT(D <= 1024 && KVH > 0 && H % KVH == 0);
    const int elt = kv_f16 ? 2 : 4;
    att_job a = {out, q, N, H, KVH, D, rows, kv_stride * elt, kv_head_stride * elt,
                 kv_f16 != 0, scale, 0, 1};
    a.avx = rein_kernels_use_avx512() && D % 16 == 0 && D <= 256;
    /* whole groups when there are enough of them for the threads (a batch), else a head a task:
     * the largest divisor of the group size that is at most ATT_G */
    const int group = H / KVH;
    if (a.avx && (int64_t)N * KVH >= 4 * rein_get_threads())
        for (int g = REIN_MIN(ATT_G, group); g >= 1; g--)
            if (group % g == 0) {
                a.per_task = g;
                break;
            }
    rein_parallel_for(N * (H / a.per_task), att_task, &a);
}
