/* attention.c - causal attention over packed sequences for training: forward with saved
 * log-sum-exp, and backward, FlashAttention-style on the CPU.
 *
 * Scores are formed a tile of BK = 16 keys at a time: the tile's keys are packed transposed
 * (D, 16) so that a query row's 16 scores are one vector, built from D broadcast-multiply-adds.
 * Products with values, queries and keys are "c (rows, D) += a (rows, n) @ b (n, D)" with b rows in
 * place. Those two primitives (scores, acc_ab) are the only inner loops; each has an AVX-512 and a
 * portable version.
 *
 * Forward: one task per (sequence, block of query heads sharing a KV head, block of queries). The
 * task's rows (heads x queries) sweep the key tiles up to their last query with an online softmax
 * (running maximum m and sum l per row, the output accumulator rescaled when m grows), then write
 * out = acc / l and lse = m + log l.
 *
 * Backward, with P = exp(scale q.k - lse) recomputed from the saved lse, dP = dout . v,
 * dS = P (dP - rowsum(dout * out)): dv = P^T dout, dk = scale dS^T q, dq = scale dS k. It runs as
 * two passes so that no two tasks write the same rows: pass 1 has one task per (sequence, KV
 * head, key tile) and owns that tile's dk and dv rows, sweeping every query head of the group and
 * every later query; pass 2 has the forward's tasks and owns their dq rows. Recomputing P in both
 * passes costs about 40% more arithmetic than one pass with atomic dq updates, but needs neither
 * atomics nor scratch memory, and the result does not depend on the thread count.
 */
#include "kernels/attention.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/vexp.h"
#include "kernels/vtranspose.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BK 16        /* keys per tile: one 16-wide vector of scores */
#define ROWS_MAX 64  /* query rows (heads x queries) per task */
#define D_MAX 256    /* largest head dimension */
#define HEADS_MAX 16 /* query heads of one group handled together */

typedef struct att_job {
    float *out, *lse, *dq, *dk, *dv; /* outputs of the forward, or of the backward */
    const float *q, *k, *v, *dout, *o, *lse_in;
    float *di;            /* backward: (T, H) rowsum(dout * out), once per row, or NULL */
    const int32_t *cu;
    int n_seqs, T, H, KVH, D, G;
    int hc, bq;           /* heads per task (a divisor of G), queries per task */
    int tasks_per_kvhead; /* of a pass over one sequence, per KV head: computed per sequence */
    float scale;
    int avx;
} att_job;

/* ---- the two primitives -------------------------------------------------------------------- */

/* s (rows, BK) = a (rows, D) @ bt (D, BK); a rows lda apart. */
static void scores_portable(float *s, const float *a, int64_t lda, int rows, const float *bt,
                            int D) {
    for (int r = 0; r < rows; r++) {
        float acc[BK] = {0};
        const float *ar = a + r * lda;
        for (int d = 0; d < D; d++)
            for (int j = 0; j < BK; j++) acc[j] += ar[d] * bt[d * BK + j];
        for (int j = 0; j < BK; j++) s[r * BK + j] = acc[j];
    }
}

/* c (rows, D) += a (rows, n) @ b (n, D); a rows lda apart, b rows ldb apart, c rows ldc apart. */
static void acc_ab_portable(float *c, int64_t ldc, const float *a, int64_t lda, const float *b,
                            int64_t ldb, int rows, int n, int D) {
    for (int r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        for (int j = 0; j < n; j++) {
            float arj = a[r * lda + j];
            const float *bj = b + j * ldb;
            for (int d = 0; d < D; d++) cr[d] += arj * bj[d];
        }
    }
}

/* p[jj] = exp(s[jj] * scale - sub) for jj < valid, 0 for the rest of the BK; returns their sum.
 * p may equal s. */
static float tile_exp_portable(float *p, const float *s, float scale, float sub, int valid) {
    float sum = 0;
    for (int jj = 0; jj < BK; jj++) {
        p[jj] = jj < valid ? expf(s[jj] * scale - sub) : 0.0f;
        sum += p[jj];
    }
    return sum;
}

static float dot_portable(const float *a, const float *b, int D) {
    float s = 0;
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))

/* Eight rows at a time (eight independent chains of multiply-adds, enough to hide their latency);
 * a missing row of the last group repeats row 0 and is not stored. */
AVX512 static void scores_avx512(float *s, const float *a, int64_t lda, int rows, const float *bt,
                                 int D) {
    for (int r0 = 0; r0 < rows; r0 += 8) {
        int nr = REIN_MIN(8, rows - r0);
        const float *ar[8];
        for (int r = 0; r < 8; r++) ar[r] = a + (r0 + (r < nr ? r : 0)) * lda;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
        for (int d = 0; d < D; d++) {
            __m512 b = _mm512_load_ps(bt + d * BK);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ar[r][d]), b, acc[r]);
        }
        /* constant indices (a bound of nr here kept the sums in memory, not registers) */
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            if (r < nr) _mm512_storeu_ps(s + (r0 + r) * BK, acc[r]);
    }
}

/* Columns in chunks of 64 (four vectors, the last ones masked), rows four at a time as above. */
AVX512 static void acc_ab_avx512(float *c, int64_t ldc, const float *a, int64_t lda,
                                 const float *b, int64_t ldb, int rows, int n, int D) {
    for (int d0 = 0; d0 < D; d0 += 64) {
        __mmask16 m[4];
        for (int v = 0; v < 4; v++) {
            int w = REIN_MAX(0, REIN_MIN(16, D - d0 - 16 * v));
            m[v] = (__mmask16)((1u << w) - 1);
        }
        for (int r0 = 0; r0 < rows; r0 += 4) {
            int nr = REIN_MIN(4, rows - r0);
            const float *ar[4];
            float *cr[4];
            for (int r = 0; r < 4; r++) {
                ar[r] = a + (r0 + (r < nr ? r : 0)) * lda;
                cr[r] = c + (r0 + (r < nr ? r : 0)) * ldc + d0;
            }
            __m512 acc[4][4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) acc[r][v] = _mm512_maskz_loadu_ps(m[v], cr[r] + 16 * v);
            for (int j = 0; j < n; j++) {
                const float *bj = b + j * ldb + d0;
                __m512 bv[4];
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) bv[v] = _mm512_maskz_loadu_ps(m[v], bj + 16 * v);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m512 av = _mm512_set1_ps(ar[r][j]);
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                }
            }
            /* constant indices (a bound of nr here kept the sums in memory, not registers) */
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    if (r < nr) _mm512_mask_storeu_ps(cr[r] + 16 * v, m[v], acc[r][v]);
        }
    }
}
AVX512 static float tile_exp_avx512(float *p, const float *s, float scale, float sub, int valid) {
    __mmask16 m = (__mmask16)(valid >= BK ? 0xffff : valid <= 0 ? 0 : (1u << valid) - 1);
    __m512 x = _mm512_fmsub_ps(_mm512_loadu_ps(s), _mm512_set1_ps(scale), _mm512_set1_ps(sub));
    __m512 e = _mm512_maskz_mov_ps(m, exp512(x));
    _mm512_storeu_ps(p, e);
    return _mm512_reduce_add_ps(e);
}

AVX512 static float dot_avx512(const float *a, const float *b, int D) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < D; d += 16) {
        __mmask16 m = (__mmask16)(D - d >= 16 ? 0xffff : (1u << (D - d)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* max of s[0..valid), times scale > 0 (which keeps the order); -inf when valid <= 0 (a row whose
 * query comes before every key of the tile). */
AVX512 static float tile_max_avx512(const float *s, float scale, int valid) {
    __mmask16 m = (__mmask16)(valid >= BK ? 0xffff : valid <= 0 ? 0 : (1u << valid) - 1);
    return _mm512_mask_reduce_max_ps(m, _mm512_maskz_loadu_ps(m, s)) * scale;
}

AVX512 static void scale_row_avx512(float *x, float c, int D) {
    for (int d = 0; d < D; d += 16) {
        __mmask16 m = (__mmask16)(D - d >= 16 ? 0xffff : (1u << (D - d)) - 1);
        _mm512_mask_storeu_ps(x + d, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + d), _mm512_set1_ps(c)));
    }
}

/* dp (BK) = p (BK) * (dp - di) */
AVX512 static void ds_tile_avx512(float *dp, const float *p, float di) {
    _mm512_storeu_ps(dp, _mm512_mul_ps(_mm512_loadu_ps(p),
                                       _mm512_sub_ps(_mm512_loadu_ps(dp), _mm512_set1_ps(di))));
}
#endif

static float tile_max(const att_job *j, const float *s, int valid) {
#if defined(__x86_64__)
    if (j->avx) return tile_max_avx512(s, j->scale, valid);
#endif
    float mx = -INFINITY;
    for (int jj = 0; jj < valid; jj++) mx = fmaxf(mx, s[jj]);
    return mx * j->scale;
}

static void scale_row(const att_job *j, float *x, float c) {
#if defined(__x86_64__)
    if (j->avx) {
        scale_row_avx512(x, c, j->D);
        return;
    }
#endif
    for (int d = 0; d < j->D; d++) x[d] *= c;
}

static void ds_tile(const att_job *j, float *dp, const float *p, float di) {
#if defined(__x86_64__)
    if (j->avx) {
        ds_tile_avx512(dp, p, di);
        return;
    }
#endif
    for (int jj = 0; jj < BK; jj++) dp[jj] = p[jj] * (dp[jj] - di);
}

static void scores(const att_job *j, float *s, const float *a, int64_t lda, int rows,
                   const float *bt) {
#if defined(__x86_64__)
    if (j->avx) {
        scores_avx512(s, a, lda, rows, bt, j->D);
        return;
    }
#endif
    scores_portable(s, a, lda, rows, bt, j->D);
}

static void acc_ab(const att_job *j, float *c, int64_t ldc, const float *a, int64_t lda,
                   const float *b, int64_t ldb, int rows, int n) {
#if defined(__x86_64__)
    if (j->avx) {
        acc_ab_avx512(c, ldc, a, lda, b, ldb, rows, n, j->D);
        return;
    }
#endif
    acc_ab_portable(c, ldc, a, lda, b, ldb, rows, n, j->D);
}

static float tile_exp(const att_job *j, float *p, const float *s, float sub, int valid) {
#if defined(__x86_64__)
    if (j->avx) return tile_exp_avx512(p, s, j->scale, sub, valid);
#endif
    return tile_exp_portable(p, s, j->scale, sub, valid);
}

static float dotf(const att_job *j, const float *a, const float *b) {
#if defined(__x86_64__)
    if (j->avx) return dot_avx512(a, b, j->D);
#endif
    return dot_portable(a, b, j->D);
}

/* ---- shared pieces -------------------------------------------------------------------------- */

#if defined(__x86_64__)
/* pack_tile, 16 of the D columns at a time: the tile's rows (zero past n) transposed in
 * registers. */
AVX512 static void pack_tile_avx512(float *dst, const float *src, int64_t ld, int n, int D) {
    for (int d0 = 0; d0 < D; d0 += 16) {
        const __mmask16 m = (__mmask16)(D - d0 >= 16 ? 0xffff : (1u << (D - d0)) - 1);
        __m512 r[16];
        for (int jj = 0; jj < BK; jj++)
            r[jj] = jj < n ? _mm512_maskz_loadu_ps(m, src + jj * ld + d0) : _mm512_setzero_ps();
        transpose16(r);
        for (int c = 0; c < 16 && d0 + c < D; c++) _mm512_storeu_ps(dst + (d0 + c) * BK, r[c]);
    }
}

/* transpose_rows: 16 rows at a time, the rows past nq zero. */
AVX512 static void transpose_rows_avx512(float *dst, const float *s, int nq) {
    for (int i0 = 0; i0 < nq; i0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i0 + i < nq ? _mm512_loadu_ps(s + (i0 + i) * BK) : _mm512_setzero_ps();
        transpose16(r);
        for (int jj = 0; jj < BK; jj++) _mm512_storeu_ps(dst + jj * ROWS_MAX + i0, r[jj]);
    }
}
#endif

/* dst (D, BK) = the n rows (ld apart) of src transposed, zero past n. */
static void pack_tile(const att_job *j, float *dst, const float *src, int64_t ld, int n) {
    const int D = j->D;
#if defined(__x86_64__)
    if (j->avx && BK == 16) {
        pack_tile_avx512(dst, src, ld, n, D);
        return;
    }
#endif
    for (int d = 0; d < D; d++)
        for (int jj = 0; jj < BK; jj++) dst[d * BK + jj] = jj < n ? src[jj * ld + d] : 0;
}

/* dst (BK, ROWS_MAX) = s (nq, BK) transposed: dst[jj][i] = s[i][jj] for i < nq (the columns past
 * nq of dst are not read). */
static void transpose_rows(const att_job *j, float *dst, const float *s, int nq) {
#if defined(__x86_64__)
    if (j->avx && BK == 16) {
        transpose_rows_avx512(dst, s, nq);
        return;
    }
#endif
    for (int i = 0; i < nq; i++)
        for (int jj = 0; jj < BK; jj++) dst[jj * ROWS_MAX + i] = s[i * BK + jj];
}

/* Where a query-block task sits: sequence rows [base, base+L), its queries [q0, q0+nq) of that
 * sequence, KV head g, and query heads [h0, h0+hc). */
typedef struct qtask {
    int base, L, q0, nq, g, h0;
} qtask;

/* Tasks of a pass over one sequence of length L: per KV head, (G / hc) head blocks times the
 * query blocks (or key tiles when `per_key_tile`). */
static int seq_tasks(const att_job *j, int L, int per_key_tile) {
    int blocks = per_key_tile ? (L + BK - 1) / BK : (L + j->bq - 1) / j->bq;
    return j->KVH * (per_key_tile ? 1 : j->G / j->hc) * blocks;
}

/* Task t of a pass -> its place. The last blocks (the most keys to sweep) come first. */
static qtask find_task(const att_job *j, int t, int per_key_tile) {
    int s = 0;
    for (;; s++) {
        REIN_ASSERT(s < j->n_seqs);
        int n = seq_tasks(j, j->cu[s + 1] - j->cu[s], per_key_tile);
        if (t < n) break;
        t -= n;
    }
    qtask x = {.base = j->cu[s], .L = j->cu[s + 1] - j->cu[s]};
    int width = per_key_tile ? BK : j->bq;
    int blocks = (x.L + width - 1) / width;
    int hb = per_key_tile ? 1 : j->G / j->hc;
    int blk = blocks - 1 - t % blocks;
    t /= blocks;
    x.h0 = (t % hb) * j->hc;
    x.g = t / hb;
    x.h0 += x.g * j->G;
    x.q0 = blk * width;
    x.nq = REIN_MIN(width, x.L - x.q0);
    return x;
}

/* For the rows of a query task (head hh, query i -> row hh * nq + i) and key tile [j0, j0+nk):
 * s (rows, BK) = q . k for every row (scores of keys past nk are 0). */
static void task_scores(const att_job *j, float *s, const float *x, const qtask *w,
                        const float *tile_t) {
    int64_t ld = (int64_t)j->H * j->D;
    for (int hh = 0; hh < j->hc; hh++)
        scores(j, s + hh * w->nq * BK, x + ((int64_t)(w->base + w->q0) * j->H + w->h0 + hh) * j->D,
               ld, w->nq, tile_t);
}

/* ---- forward -------------------------------------------------------------------------------- */

static void forward_task(void *ctx, int t, int n_tasks) {
    const att_job *j = ctx;
    const int D = j->D;
    qtask w = find_task(j, t, 0);
    int rows = j->hc * w.nq;
    float acc[ROWS_MAX * D_MAX], m[ROWS_MAX], l[ROWS_MAX];
    float kt[D_MAX * BK] __attribute__((aligned(64))), s[ROWS_MAX * BK];
    for (int r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        l[r] = 0;
        for (int d = 0; d < D; d++) acc[r * D + d] = 0;
    }
    int64_t kv_ld = (int64_t)j->KVH * D;
    for (int j0 = 0; j0 < w.q0 + w.nq; j0 += BK) {
        int nk = REIN_MIN(BK, w.q0 + w.nq - j0);
        const float *krow = j->k + ((int64_t)(w.base + j0) * j->KVH + w.g) * D;
        pack_tile(j, kt, krow, kv_ld, nk);
        task_scores(j, s, j->q, &w, kt);
        for (int r = 0; r < rows; r++) {
            int qi = w.q0 + r % w.nq;
            int valid = REIN_MIN(nk, qi - j0 + 1); /* keys j0 .. qi of this tile */
            float *sr = s + r * BK;
            float mx = fmaxf(m[r], tile_max(j, sr, valid));
            /* exp(-inf) = 0 on the first tile; exp(0) = 1 exactly, so no call while m holds */
            float corr = mx > m[r] ? expf(m[r] - mx) : 1.0f;
            l[r] = l[r] * corr + tile_exp(j, sr, sr, mx, valid);
            m[r] = mx;
            if (corr != 1.0f) scale_row(j, acc + r * D, corr);
        }
        const float *vrow = j->v + ((int64_t)(w.base + j0) * j->KVH + w.g) * D;
        acc_ab(j, acc, D, s, BK, vrow, kv_ld, rows, nk);
    }
    for (int r = 0; r < rows; r++) {
        int hh = r / w.nq, i = r % w.nq;
        int64_t row = (int64_t)(w.base + w.q0 + i) * j->H + w.h0 + hh;
        float inv = 1.0f / l[r]; /* l >= 1: the maximum's own term */
        for (int d = 0; d < D; d++) j->out[row * D + d] = acc[r * D + d] * inv;
        j->lse[row] = m[r] + logf(l[r]);
    }
}

/* hc: the largest divisor of G up to HEADS_MAX; bq: queries so that hc * bq <= ROWS_MAX. */
static void plan(att_job *j, const int32_t *cu, int n_seqs, int T, int H, int KVH, int D,
                 float scale) {
    REIN_ASSERT(KVH > 0 && H % KVH == 0 && D > 0 && D <= D_MAX && n_seqs >= 0);
    REIN_ASSERT(cu[0] == 0 && cu[n_seqs] == T);
    for (int s = 0; s < n_seqs; s++) REIN_ASSERT(cu[s + 1] >= cu[s]);
    j->cu = cu;
    j->n_seqs = n_seqs, j->T = T, j->H = H, j->KVH = KVH, j->D = D, j->G = H / KVH;
    j->hc = REIN_MIN(j->G, HEADS_MAX);
    while (j->G % j->hc) j->hc--;
    j->bq = ROWS_MAX / j->hc;
    if (j->bq > 4) j->bq &= ~3; /* whole groups of four rows in the primitives */
    j->scale = scale;
    j->avx = rein_kernels_use_avx512();
}

static int total_tasks(const att_job *j, int per_key_tile) {
    int n = 0;
    for (int s = 0; s < j->n_seqs; s++) n += seq_tasks(j, j->cu[s + 1] - j->cu[s], per_key_tile);
    return n;
}

void rein_attention_train_forward(float *out, float *lse, const float *q, const float *k,
                                  const float *v, const int32_t *cu_seqlens, int n_seqs, int T,
                                  int H, int KVH, int D, float scale) {
    att_job j = {.out = out, .lse = lse, .q = q, .k = k, .v = v};
    plan(&j, cu_seqlens, n_seqs, T, H, KVH, D, scale);
    rein_parallel_for(total_tasks(&j, 0), forward_task, &j);
}

/* ---- backward ------------------------------------------------------------------------------- */

/* For rows (head-major, nq queries each from query q0 of the sequence at `base`, heads from h0)
 * and key tile [j0, j0+nk): turn s = q.k and dp = dout.v in place into p and ds = p (dp - Di). */
static void probs_and_ds(const att_job *j, float *s, float *dp, int rows, int nq, int base, int q0,
                         int h0, int j0, int nk) {
    const int D = j->D;
    for (int r = 0; r < rows; r++) {
        int hh = r / nq, qi = q0 + r % nq;
        int64_t row = (int64_t)(base + qi) * j->H + h0 + hh;
        int valid = REIN_MIN(nk, qi - j0 + 1);
        float di = j->di ? j->di[row] : dotf(j, j->dout + row * D, j->o + row * D);
        tile_exp(j, s + r * BK, s + r * BK, j->lse_in[row], valid);
        ds_tile(j, dp + r * BK, s + r * BK, di);
    }
}

/* D_i of the rows of tokens [64 t, 64 t + 64). */
static void di_task(void *ctx, int t, int n_tasks) {
    const att_job *j = ctx;
    int64_t r1 = (int64_t)REIN_MIN(j->T, 64 * (t + 1)) * j->H;
    for (int64_t row = (int64_t)64 * t * j->H; row < r1; row++)
        j->di[row] = dotf(j, j->dout + row * j->D, j->o + row * j->D);
}

/* Pass 1: one task per key tile of one KV head; owns dk, dv of those rows. */
static void backward_kv_task(void *ctx, int t, int n_tasks) {
    const att_job *j = ctx;
    const int D = j->D;
    qtask w = find_task(j, t, 1); /* here q0, nq are the key tile's first key and size */
    int j0 = w.q0, nk = w.nq;
    int64_t kv_ld = (int64_t)j->KVH * D, q_ld = (int64_t)j->H * D;
    float kt[D_MAX * BK] __attribute__((aligned(64))), vt[D_MAX * BK] __attribute__((aligned(64)));
    float dk[BK * D_MAX] = {0}, dv[BK * D_MAX] = {0};
    float s[ROWS_MAX * BK], dp[ROWS_MAX * BK], pt[BK * ROWS_MAX], dst[BK * ROWS_MAX];
    int64_t kv0 = ((int64_t)(w.base + j0) * j->KVH + w.g) * D;
    pack_tile(j, kt, j->k + kv0, kv_ld, nk);
    pack_tile(j, vt, j->v + kv0, kv_ld, nk);
    for (int h = w.g * j->G; h < (w.g + 1) * j->G; h++) {
        for (int i0 = j0; i0 < w.L; i0 += ROWS_MAX) { /* queries that see this tile */
            int nq = REIN_MIN(ROWS_MAX, w.L - i0);
            int64_t qoff = ((int64_t)(w.base + i0) * j->H + h) * D;
            scores(j, s, j->q + qoff, q_ld, nq, kt);
            scores(j, dp, j->dout + qoff, q_ld, nq, vt);
            probs_and_ds(j, s, dp, nq, nq, w.base, i0, h, j0, nk);
            transpose_rows(j, pt, s, nq);
            transpose_rows(j, dst, dp, nq);
            acc_ab(j, dv, D, pt, ROWS_MAX, j->dout + qoff, q_ld, nk, nq);
            acc_ab(j, dk, D, dst, ROWS_MAX, j->q + qoff, q_ld, nk, nq);
        }
    }
    for (int jj = 0; jj < nk; jj++)
        for (int d = 0; d < D; d++) {
            j->dk[kv0 + jj * kv_ld + d] = dk[jj * D + d] * j->scale;
            j->dv[kv0 + jj * kv_ld + d] = dv[jj * D + d];
        }
}

/* Pass 2: the forward's tasks; each owns dq of its rows. */
static void backward_q_task(void *ctx, int t, int n_tasks) {
    const att_job *j = ctx;
    const int D = j->D;
    qtask w = find_task(j, t, 0);
    int rows = j->hc * w.nq;
    int64_t kv_ld = (int64_t)j->KVH * D;
    float kt[D_MAX * BK] __attribute__((aligned(64))), vt[D_MAX * BK] __attribute__((aligned(64)));
    float acc[ROWS_MAX * D_MAX] = {0}, s[ROWS_MAX * BK], dp[ROWS_MAX * BK];
    for (int j0 = 0; j0 < w.q0 + w.nq; j0 += BK) {
        int nk = REIN_MIN(BK, w.q0 + w.nq - j0);
        int64_t kv0 = ((int64_t)(w.base + j0) * j->KVH + w.g) * D;
        pack_tile(j, kt, j->k + kv0, kv_ld, nk);
        pack_tile(j, vt, j->v + kv0, kv_ld, nk);
        task_scores(j, s, j->q, &w, kt);
        task_scores(j, dp, j->dout, &w, vt);
        probs_and_ds(j, s, dp, rows, w.nq, w.base, w.q0, w.h0, j0, nk);
        acc_ab(j, acc, D, dp, BK, j->k + kv0, kv_ld, rows, nk);
    }
    for (int r = 0; r < rows; r++) {
        int64_t row = (int64_t)(w.base + w.q0 + r % w.nq) * j->H + w.h0 + r / w.nq;
        for (int d = 0; d < D; d++) j->dq[row * D + d] = acc[r * D + d] * j->scale;
    }
}

void rein_attention_train_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *out, const float *lse, const float *q,
                                   const float *k, const float *v, const int32_t *cu_seqlens,
                                   int n_seqs, int T, int H, int KVH, int D, float scale) {
    att_job j = {.dq = dq, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .dout = dout, .o = out,
                 .lse_in = lse};
    plan(&j, cu_seqlens, n_seqs, T, H, KVH, D, scale);
    /* D_i = rowsum(dout * out) of each row, once rather than for every key tile it meets (no
     * memory for it: each tile computes it again, as the same dot product) */
    j.di = rein_malloc(sizeof(float) * (size_t)((int64_t)T * H + 1));
    if (j.di) rein_parallel_for((T + 63) / 64, di_task, &j);
    rein_parallel_for(total_tasks(&j, 1), backward_kv_task, &j);
    rein_parallel_for(total_tasks(&j, 0), backward_q_task, &j);
    rein_free(j.di);
}
