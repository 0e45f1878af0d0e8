/* ops.c - RMSNorm, rotary embedding, SwiGLU and residual add (forward), and the backward of the
 * norm, rotary embedding, SwiGLU and embedding lookup. (Decoding's attention, declared in ops.h,
 * is attention_decode.c.)
 *
 * These are memory-bound or small next to the matrix products, so they are written plainly; the
 * norm's forward and SwiGLU (whose exponentials have AVX-512 paths) run in chunks over the thread
 * pool, and the rotary angles' cos/sin can be computed once per forward (rein_rope_table) for
 * every layer. The norm's backward sums its weight gradient per chunk of rows and adds the chunks
 * in order; the embedding's backward accumulates into shared rows of the table, so it runs on one
 * thread in row order. Every result is independent of the thread count.
 */
#include "kernels/ops.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/vexp.h"

#include <math.h>

/* Row- or element-wise work split in chunks over the thread pool (each chunk computed exactly as
 * the whole would be, so the results do not depend on the split). */
typedef struct ew_job {
    float *o1, *o2;
    const float *a, *b, *c;
    int64_t n, per;
    int C;
    float eps;
} ew_job;

/* sum x^2 over a row (C), in double; with dy, also sum dy w x. AVX-512 where there is one. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void row_sums_avx512(const float *x, const float *dy,
                                                               const float *w, int C, double *ss,
                                                               double *dot) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, d0 = s0, d1 = s0;
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        __m512d xa = _mm512_cvtps_pd(_mm256_loadu_ps(x + c)), xb = _mm512_cvtps_pd(_mm256_loadu_ps(x + c + 8));
        s0 = _mm512_add_pd(s0, _mm512_mul_pd(xa, xa));
        s1 = _mm512_add_pd(s1, _mm512_mul_pd(xb, xb));
        if (dy) {
            __m512 g = _mm512_mul_ps(_mm512_loadu_ps(dy + c), _mm512_loadu_ps(w + c));
            d0 = _mm512_add_pd(d0, _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(g)), xa));
            d1 = _mm512_add_pd(d1, _mm512_mul_pd(
                                       _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                                           _mm512_castps_pd(g), 1))),
                                       xb));
        }
    }
    double a = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), b = _mm512_reduce_add_pd(_mm512_add_pd(d0, d1));
    for (; c < C; c++) {
        a += (double)x[c] * x[c];
        if (dy) b += (double)(dy[c] * w[c]) * x[c];
    }
    *ss = a;
    if (dot) *dot = b;
}
#endif

static void row_sums(const float *x, const float *dy, const float *w, int C, double *ss,
                     double *dot) {
#if defined(__x86_64__)
    if (rein_kernels_use_avx512()) {
        row_sums_avx512(x, dy, w, C, ss, dot);
        return;
    }
#endif
    double a = 0, b = 0;
    for (int c = 0; c < C; c++) {
        a += (double)x[c] * x[c];
        if (dy) b += (double)(dy[c] * w[c]) * x[c];
    }
    *ss = a;
    if (dot) *dot = b;
}

#if defined(__x86_64__)
/* o = x r w, 16 at a time, the scalar loop's two roundings: the columns it did. */
__attribute__((target("avx512f"))) static int scale_row_avx512(float *o, const float *x, float r,
                                                               const float *w, int C) {
    const __m512 vr = _mm512_set1_ps(r);
    int c = 0;
    for (; c + 16 <= C; c += 16)
        _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + c), vr),
                                              _mm512_loadu_ps(w + c)));
    return c;
}
#endif

static void rmsnorm_rows(float *out, const float *x, const float *w, int64_t r0, int64_t r1, int C,
                         float eps) {
    for (int64_t i = r0; i < r1; i++) {
        const float *xi = x + i * C;
        float *oi = out + i * C;
        double ss;
        row_sums(xi, NULL, NULL, C, &ss, NULL);
        float r = (float)(1.0 / sqrt(ss / C + eps));
        int c = 0;
#if defined(__x86_64__)
        if (rein_kernels_use_avx512()) c = scale_row_avx512(oi, xi, r, w, C);
#endif
        for (; c < C; c++) oi[c] = xi[c] * r * w[c];
    }
}

static void rmsnorm_task(void *ctx, int t, int n_tasks) {
    const ew_job *j = ctx;
    rmsnorm_rows(j->o1, j->a, j->b, t * j->per, REIN_MIN(j->n, (t + 1) * j->per), j->C, j->eps);
}

/* Tasks of about 64K elements (rows of C), at least one. */
static int64_t chunk_of(int64_t unit) {
    return REIN_MAX(1, (65536 + unit - 1) / unit);
}

void rein_rmsnorm_forward(float *out, const float *x, const float *w, int N, int C, float eps) {
    ew_job j = {.o1 = out, .a = x, .b = w, .n = N, .C = C, .eps = eps, .per = chunk_of(C)};
    rein_parallel_for((int)((N + j.per - 1) / j.per), rmsnorm_task, &j);
}

/* The angles' inverse frequencies base^(-2p/rope_dim) / freq_factors[p], in double. */
static void rope_inv_freq(double *inv, int rope_dim, float base, const float *freq_factors) {
    for (int p = 0; p < rope_dim / 2; p++) {
        inv[p] = pow((double)base, -2.0 * p / rope_dim);
        if (freq_factors) inv[p] /= freq_factors[p];
    }
}

void rein_rope_table(float *cs, float *sn, const int32_t *pos, int N, int rope_dim, float base,
                     const float *freq_factors) {
    int half = rope_dim / 2;
    double inv[512];
    REIN_ASSERT(half <= 512);
    rope_inv_freq(inv, rope_dim, base, freq_factors);
    for (int i = 0; i < N; i++)
        for (int p = 0; p < half; p++) {
            double theta = (double)pos[i] * inv[p];
            cs[(int64_t)i * half + p] = (float)cos(theta);
            sn[(int64_t)i * half + p] = (float)sin(theta);
        }
}

#if defined(__x86_64__)
/* The pairs [p0, p0 + 8k) of one head, 8 pairs a vector: lane 2q holds a = x[2p], lane 2q + 1
 * b = x[2p + 1]; with c and s spread to both lanes of their pair, a c - b s in the even lanes and
 * b c + a s (the scalar loop's a s + b c: the same sum) in the odd ones. Returns the pairs done. */
__attribute__((target("avx512f"))) static int rope_head_avx512(float *xh, const float *c,
                                                               const float *s, int half,
                                                               float sign) {
    const __m512i spread = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512 vsign = _mm512_set1_ps(sign);
    int p = 0;
    for (; p + 8 <= half; p += 8) {
        const __m512 x = _mm512_loadu_ps(xh + 2 * p);
        const __m512 cc = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_loadu_ps(c + p)));
        const __m512 ss = _mm512_mul_ps(
            vsign, _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_loadu_ps(s + p))));
        const __m512 t1 = _mm512_mul_ps(x, cc);
        const __m512 t2 = _mm512_mul_ps(_mm512_permute_ps(x, 0xB1), ss); /* b s | a s */
        _mm512_storeu_ps(xh + 2 * p,
                         _mm512_mask_add_ps(_mm512_sub_ps(t1, t2), 0xAAAA, t1, t2));
    }
    return p;
}
#endif

/* Rotate the first rope_dim values of each head of x (N, H, D) by the angles of the table, or by
 * their opposites when sign is -1 (the inverse and transpose: the backward). */
static void rope_apply(float *x, const float *cs, const float *sn, int N, int H, int D,
                       int rope_dim, float sign) {
    int half = rope_dim / 2;
    REIN_ASSERT(rope_dim <= D);
#if defined(__x86_64__)
    const int vec = rein_kernels_use_avx512();
#endif
    for (int i = 0; i < N; i++) {
        const float *c = cs + (int64_t)i * half, *s = sn + (int64_t)i * half;
        for (int h = 0; h < H; h++) {
            float *xh = x + ((int64_t)i * H + h) * D;
            int p = 0;
#if defined(__x86_64__)
            if (vec) p = rope_head_avx512(xh, c, s, half, sign);
#endif
            for (; p < half; p++) {
                float a = xh[2 * p], b = xh[2 * p + 1], sp = sign * s[p];
                xh[2 * p] = a * c[p] - b * sp;
                xh[2 * p + 1] = a * sp + b * c[p];
            }
        }
    }
}

typedef struct rope_job {
    float *x;
    const float *cs, *sn;
    int N, H, D, rope_dim, per;
    float sign;
} rope_job;

static void rope_task(void *ctx, int t, int n_tasks) {
    const rope_job *j = ctx;
    int i0 = t * j->per, n = REIN_MIN(j->N, i0 + j->per) - i0, half = j->rope_dim / 2;
    rope_apply(j->x + (int64_t)i0 * j->H * j->D, j->cs + (int64_t)i0 * half,
               j->sn + (int64_t)i0 * half, n, j->H, j->D, j->rope_dim, j->sign);
}

/* By table, rows in chunks over the thread pool. */
static void rope_apply_rows(float *x, const float *cs, const float *sn, int N, int H, int D,
                            int rope_dim, float sign) {
    rope_job j = {x, cs, sn, N, H, D, rope_dim, (int)chunk_of((int64_t)H * D), sign};
    rein_parallel_for((N + j.per - 1) / j.per, rope_task, &j);
}

void rein_rope_apply(float *x, const float *cs, const float *sn, int N, int H, int D, int rope_dim) {
    rope_apply_rows(x, cs, sn, N, H, D, rope_dim, 1.0f);
}

void rein_rope_apply_backward(float *dx, const float *cs, const float *sn, int N, int H, int D,
                              int rope_dim) {
    rope_apply_rows(dx, cs, sn, N, H, D, rope_dim, -1.0f);
}

/* One row's table at a time, so that no scratch memory is needed. */
static void rope_rotate(float *x, const int32_t *pos, int N, int H, int D, int rope_dim,
                        float base, const float *freq_factors, float sign) {
    int half = rope_dim / 2;
    float cs[512], sn[512]; /* rope_dim <= 1024, checked by the model loader */
    double inv[512];
    REIN_ASSERT(half <= 512 && rope_dim <= D);
    rope_inv_freq(inv, rope_dim, base, freq_factors);
    for (int i = 0; i < N; i++) {
        for (int p = 0; p < half; p++) {
            double theta = (double)pos[i] * inv[p];
            cs[p] = (float)cos(theta);
            sn[p] = (float)sin(theta);
        }
        rope_apply(x + (int64_t)i * H * D, cs, sn, 1, H, D, rope_dim, sign);
    }
}

void rein_rope_forward(float *x, const int32_t *pos, int N, int H, int D, int rope_dim,
                       float base, const float *freq_factors) {
    rope_rotate(x, pos, N, H, D, rope_dim, base, freq_factors, 1.0f);
}

void rein_rope_backward(float *dx, const int32_t *pos, int N, int H, int D, int rope_dim,
                        float base, const float *freq_factors) {
    rope_rotate(dx, pos, N, H, D, rope_dim, base, freq_factors, -1.0f);
}

#if defined(__x86_64__)
/* silu(g) * up, 16 at a time, with the AVX-512 exp (about 2 ulp; the scalar tail uses expf). */
__attribute__((target("avx512f,avx512vl,fma"))) static int64_t
swiglu_avx512(float *out, const float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 e = exp512(_mm512_sub_ps(zero, g));
        _mm512_storeu_ps(out + i,
                         _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(up + i)));
    }
    return i;
}
#endif

static void swiglu_range(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i0 = 0;
#if defined(__x86_64__)
    if (rein_kernels_use_avx512()) i0 = swiglu_avx512(out, gate, up, n);
#endif
    for (int64_t i = i0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void swiglu_task(void *ctx, int t, int n_tasks) {
    const ew_job *j = ctx;
    int64_t i0 = t * j->per, n = REIN_MIN(j->n, i0 + j->per) - i0;
    swiglu_range(j->o1 + i0, j->a + i0, j->b + i0, n);
}

void rein_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    ew_job j = {.o1 = out, .a = gate, .b = up, .n = n, .per = chunk_of(1)};
    rein_parallel_for((int)((n + j.per - 1) / j.per), swiglu_task, &j);
}

static void rmsnorm_backward_rows(float *dx, float *dw, const float *dy, const float *x,
                                  const float *w, int64_t r0, int64_t r1, int C, float eps) {
    for (int64_t i = r0; i < r1; i++) {
        const float *xi = x + i * C, *dyi = dy + i * C;
        float *dxi = dx + i * C;
        double ss, dot;
        row_sums(xi, dyi, w, C, &ss, &dot);
        double rd = 1.0 / sqrt(ss / C + eps);
        float r = (float)rd, k = (float)(rd * rd * rd * dot / C);
        for (int c = 0; c < C; c++) {
            float g = dyi[c];
            dw[c] += g * xi[c] * r;
            dxi[c] = r * w[c] * g - k * xi[c];
        }
    }
}

/* Task t: its rows' dx, and their part of dw into its own zeroed row of partials (o2). */
static void rmsnorm_backward_task(void *ctx, int t, int n_tasks) {
    const ew_job *j = ctx;
    float *part = j->o2 + (int64_t)t * j->C;
    for (int c = 0; c < j->C; c++) part[c] = 0;
    rmsnorm_backward_rows(j->o1, part, j->a, j->b, j->c, t * j->per,
                          REIN_MIN(j->n, (t + 1) * j->per), j->C, j->eps);
}

/* y = x r w with r = (mean(x^2) + eps)^-1/2, so dL/dx_c = r w_c dy_c - x_c r^3 / C sum_j dy_j w_j x_j
 * and dL/dw_c = sum over rows of dy_c x_c r. dy is read at each index before dx overwrites it.
 * Chunks of rows run in parallel, each summing its part of dw apart; the parts are added to dw in
 * chunk order (the chunks do not depend on the thread count). */
void rein_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           int N, int C, float eps) {
    ew_job j = {.o1 = dx, .a = dy, .b = x, .c = w, .n = N, .C = C, .eps = eps, .per = chunk_of(C)};
    int n_tasks = (int)((N + j.per - 1) / j.per);
    j.o2 = n_tasks > 1 ? rein_malloc(sizeof(float) * (size_t)n_tasks * (size_t)C) : NULL;
    if (!j.o2) { /* one chunk (or no memory for the parts): in order, on this thread */
        rmsnorm_backward_rows(dx, dw, dy, x, w, 0, N, C, eps);
        return;
    }
    rein_parallel_for(n_tasks, rmsnorm_backward_task, &j);
    for (int t = 0; t < n_tasks; t++)
        for (int c = 0; c < C; c++) dw[c] += j.o2[(int64_t)t * C + c];
    rein_free(j.o2);
}

/* silu(g) = g s(g), s the logistic function; silu'(g) = s(g) (1 + g (1 - s(g))). */
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vl,fma"))) static int64_t
swiglu_backward_avx512(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i), u = _mm512_loadu_ps(up + i), d = _mm512_loadu_ps(dout + i);
        __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(zero, g))));
        _mm512_storeu_ps(dup + i, _mm512_mul_ps(_mm512_mul_ps(d, g), sg));
        __m512 dsilu = _mm512_mul_ps(sg, _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, sg))));
        _mm512_storeu_ps(dgate + i, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
    }
    return i;
}
#endif

static void swiglu_backward_range(float *dgate, float *dup, const float *dout, const float *gate,
                                  const float *up, int64_t n) {
    int64_t i0 = 0;
#if defined(__x86_64__)
    if (rein_kernels_use_avx512()) i0 = swiglu_backward_avx512(dgate, dup, dout, gate, up, n);
#endif
    for (int64_t i = i0; i < n; i++) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

static void swiglu_backward_task(void *ctx, int t, int n_tasks) {
    const ew_job *j = ctx;
    int64_t i0 = t * j->per, n = REIN_MIN(j->n, i0 + j->per) - i0;
    swiglu_backward_range(j->o1 + i0, j->o2 + i0, j->a + i0, j->b + i0, j->c + i0, n);
}

void rein_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n) {
    ew_job j = {.o1 = dgate, .o2 = dup, .a = dout, .b = gate, .c = up, .n = n, .per = chunk_of(1)};
    rein_parallel_for((int)((n + j.per - 1) / j.per), swiglu_backward_task, &j);
}

void rein_embedding_backward(float *dtable, const float *dy, const int32_t *tokens, int N, int C) {
    for (int i = 0; i < N; i++) {
        REIN_ASSERT(tokens[i] >= 0);
        float *row = dtable + (int64_t)tokens[i] * C;
        const float *g = dy + (int64_t)i * C;
        for (int c = 0; c < C; c++) row[c] += g[c];
    }
}

static void add_task(void *ctx, int t, int n_tasks) {
    const ew_job *j = ctx;
    int64_t i0 = t * j->per, i1 = REIN_MIN(j->n, i0 + j->per);
    for (int64_t i = i0; i < i1; i++) j->o1[i] += j->a[i];
}

void rein_add_inplace(float *x, const float *y, int64_t n) {
    ew_job j = {.o1 = x, .a = y, .n = n, .per = chunk_of(1)};
    rein_parallel_for((int)((n + j.per - 1) / j.per), add_task, &j);
}

