/* matmul.c - y = x W^T for f32, blocked and threaded.
 *
 * Layout: x (N, K) and W (M, K) both have K contiguous. Two regimes:
 * - N small (decoding): each output is a dot product of a row of x and a row of W; W is streamed
 *   once from memory, four rows at a time, and the work is split over rows of W.
 * - N larger (prefill, training): each thread takes panels of 32 rows of W, packs a panel
 *   transposed (K, 32) so that one k step is two 16-wide vector loads, and multiplies it by blocks
 *   of 8 rows of x held in 16 accumulator registers (8 rows x 32 columns).
 * The reference below is the plain triple loop in the same summation order per output (k from 0
 * up), used by the tests; the fast paths differ from it only by float rounding of reordered sums.
 */
#include "kernels/matmul.h"
#include "base/base.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

void rein_matmul_nt_ref(float *y, const float *x, const float *w, int N, int K, int M,
                        int accumulate) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < M; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += x[(int64_t)i * K + k] * w[(int64_t)j * K + k];
            y[(int64_t)i * M + j] = accumulate ? y[(int64_t)i * M + j] + s : s;
        }
}

typedef struct mm_job {
    float *y;
    const float *x, *w;
    int N, K, M, acc;
    int rows_per_task; /* matvec: rows of W per task */
} mm_job;

/* ---- portable paths ------------------------------------------------------------------------ */

static void matvec_portable(void *ctx, int t, int n_tasks) {
    mm_job *j = ctx;
    int r0 = t * j->rows_per_task, r1 = REIN_MIN(j->M, r0 + j->rows_per_task);
    for (int i = 0; i < j->N; i++) {
        const float *xi = j->x + (int64_t)i * j->K;
        for (int r = r0; r < r1; r++) {
            const float *wr = j->w + (int64_t)r * j->K;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int k = 0;
            for (; k + 4 <= j->K; k += 4) {
                s0 += xi[k] * wr[k];
                s1 += xi[k + 1] * wr[k + 1];
                s2 += xi[k + 2] * wr[k + 2];
                s3 += xi[k + 3] * wr[k + 3];
            }
            for (; k < j->K; k++) s0 += xi[k] * wr[k];
            float s = (s0 + s1) + (s2 + s3);
            float *yo = j->y + (int64_t)i * j->M + r;
            *yo = j->acc ? *yo + s : s;
        }
    }
}

#if defined(__x86_64__)
/* ---- AVX-512 paths ------------------------------------------------------------------------- */

#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))

AVX512 static float hsum512(__m512 v) {
    return _mm512_reduce_add_ps(v);
}

/* Dot products of one row of x with 4 rows of W at a time. */
AVX512 static void matvec_avx512(void *ctx, int t, int n_tasks) {
    mm_job *j = ctx;
    const int K = j->K;
    int r0 = t * j->rows_per_task, r1 = REIN_MIN(j->M, r0 + j->rows_per_task);
    int kv = K & ~15;
    __mmask16 tail = (__mmask16)((1u << (K - kv)) - 1);
    for (int i = 0; i < j->N; i++) {
        const float *xi = j->x + (int64_t)i * K;
        float *yi = j->y + (int64_t)i * j->M;
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const float *w0 = j->w + (int64_t)r * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < kv; k += 16) {
                __m512 xv = _mm512_loadu_ps(xi + k);
                a0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w0 + k), a0);
                a1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w1 + k), a1);
                a2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w2 + k), a2);
                a3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w3 + k), a3);
            }
            if (tail) {
                __m512 xv = _mm512_maskz_loadu_ps(tail, xi + kv);
                a0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w0 + kv), a0);
                a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w1 + kv), a1);
                a2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w2 + kv), a2);
                a3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w3 + kv), a3);
            }
            float s[4] = {hsum512(a0), hsum512(a1), hsum512(a2), hsum512(a3)};
            for (int q = 0; q < 4; q++) yi[r + q] = j->acc ? yi[r + q] + s[q] : s[q];
        }
        for (; r < r1; r++) {
            const float *w0 = j->w + (int64_t)r * K;
            __m512 a0 = _mm512_setzero_ps();
            for (int k = 0; k < kv; k += 16)
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(xi + k), _mm512_loadu_ps(w0 + k), a0);
            if (tail)
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, xi + kv),
                                     _mm512_maskz_loadu_ps(tail, w0 + kv), a0);
            float s = hsum512(a0);
            yi[r] = j->acc ? yi[r] + s : s;
        }
    }
}

#define PANEL 32 /* rows of W per packed panel: two 16-wide vectors */
#define MR 8     /* rows of x per micro-kernel call */
#define KC 512   /* k block, so a packed panel block (KC x 32 floats = 64 KiB) stays near L1/L2 */

/* acc(rows, 32) += x[rows, k0:k0+kc] @ panel[kc, 32]; rows <= MR. */
AVX512 static void micro_8x32(const float *x, int ldx, int rows, const float *panel, int kc,
                              __m512 acc[MR][2]) {
    const float *xr[MR];
    for (int r = 0; r < MR; r++) xr[r] = x + (int64_t)(r < rows ? r : 0) * ldx;
    if (rows == MR) {
        for (int k = 0; k < kc; k++) {
            __m512 b0 = _mm512_load_ps(panel + k * PANEL);
            __m512 b1 = _mm512_load_ps(panel + k * PANEL + 16);
#define ROW(r)                                                                                 \
    {                                                                                          \
        __m512 a = _mm512_set1_ps(xr[r][k]);                                                   \
        acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                                         \
        acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                                         \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
        }
    } else {
        for (int k = 0; k < kc; k++) {
            __m512 b0 = _mm512_load_ps(panel + k * PANEL);
            __m512 b1 = _mm512_load_ps(panel + k * PANEL + 16);
            for (int r = 0; r < rows; r++) {
                __m512 a = _mm512_set1_ps(xr[r][k]);
                acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
            }
        }
    }
}

typedef struct gemm_job {
    mm_job mm;
    int n_panels;
    int panels_per_task;
} gemm_job;

/* One task: a run of consecutive panels of W, each multiplied by every row of x. */
AVX512 static void gemm_avx512(void *ctx, int t, int n_tasks) {
    gemm_job *g = ctx;
    const mm_job *j = &g->mm;
    const int K = j->K, M = j->M, N = j->N;
    float pack[KC * PANEL] __attribute__((aligned(64))); /* 64 KiB: one packed panel block */
    int p1 = REIN_MIN(g->n_panels, (t + 1) * g->panels_per_task);
    for (int p = t * g->panels_per_task; p < p1; p++) {
        int j0 = p * PANEL, cols = REIN_MIN(PANEL, M - j0);
        __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
        __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = REIN_MIN(KC, K - k0);
            /* pack W[j0:j0+cols, k0:k0+kc] transposed into pack[kc][32], zero-padded */
            for (int c = 0; c < PANEL; c++) {
                if (c < cols) {
                    const float *wr = j->w + (int64_t)(j0 + c) * K + k0;
                    for (int k = 0; k < kc; k++) pack[k * PANEL + c] = wr[k];
                } else {
                    for (int k = 0; k < kc; k++) pack[k * PANEL + c] = 0;
                }
            }
            for (int i0 = 0; i0 < N; i0 += MR) {
                int rows = REIN_MIN(MR, N - i0);
                __m512 acc[MR][2];
                float *yb = j->y + (int64_t)i0 * M + j0;
                for (int r = 0; r < rows; r++) {
                    if (k0 == 0 && !j->acc) {
                        acc[r][0] = _mm512_setzero_ps();
                        acc[r][1] = _mm512_setzero_ps();
                    } else {
                        acc[r][0] = _mm512_maskz_loadu_ps(m0, yb + (int64_t)r * M);
                        acc[r][1] = _mm512_maskz_loadu_ps(m1, yb + (int64_t)r * M + 16);
                    }
                }
                micro_8x32(j->x + (int64_t)i0 * K + k0, K, rows, pack, kc, acc);
                for (int r = 0; r < rows; r++) {
                    _mm512_mask_storeu_ps(yb + (int64_t)r * M, m0, acc[r][0]);
                    _mm512_mask_storeu_ps(yb + (int64_t)r * M + 16, m1, acc[r][1]);
                }
            }
        }
    }
}
#endif /* __x86_64__ */

static void gemm_portable(void *ctx, int t, int n_tasks) {
    mm_job *j = ctx;
    int i0 = t * j->rows_per_task, i1 = REIN_MIN(j->N, i0 + j->rows_per_task);
    mm_job sub = *j;
    sub.x = j->x + (int64_t)i0 * j->K;
    sub.y = j->y + (int64_t)i0 * j->M;
    sub.N = i1 - i0;
    sub.rows_per_task = j->M;
    matvec_portable(&sub, 0, 1);
}

static int force_portable;

static int use_avx512(void) {
    static int cached = -1;
    if (force_portable) return 0;
    if (cached < 0) {
        const char *e = getenv("REIN_KERNEL");
        cached = 0;
#if defined(__x86_64__)
        if (!(e && !strcmp(e, "portable")))
            cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
        (void)e;
#endif
    }
    return cached;
}

void rein_matmul_force_portable(int on) {
    force_portable = on;
}

const char *rein_matmul_kernel_name(void) {
    return use_avx512() ? "avx512" : "portable";
}

void rein_matmul_nt(float *y, const float *x, const float *w, int N, int K, int M, int accumulate) {
    if (N <= 0 || M <= 0) return;
    if (K <= 0) {
        if (!accumulate) memset(y, 0, sizeof(float) * (size_t)N * (size_t)M);
        return;
    }
    int nt = rein_get_threads();
    mm_job j = {y, x, w, N, K, M, accumulate, 0};
#if defined(__x86_64__)
    if (use_avx512()) {
        if (N < 4) {
            /* split W's rows into ~4 tasks a thread, in multiples of 4 rows */
            int per = (M + 4 * nt - 1) / (4 * nt);
            per = REIN_MAX(16, (per + 3) & ~3);
            j.rows_per_task = per;
            rein_parallel_for((M + per - 1) / per, matvec_avx512, &j);
            return;
        }
        gemm_job g = {j, (M + PANEL - 1) / PANEL, 1};
        int n_tasks = REIN_MIN(g.n_panels, 8 * nt);
        g.panels_per_task = (g.n_panels + n_tasks - 1) / n_tasks;
        rein_parallel_for((g.n_panels + g.panels_per_task - 1) / g.panels_per_task, gemm_avx512, &g);
        return;
    }
#endif
    if (N < 4) {
        int per = REIN_MAX(16, (M + 4 * nt - 1) / (4 * nt));
        j.rows_per_task = per;
        rein_parallel_for((M + per - 1) / per, matvec_portable, &j);
        return;
    }
    (void)gemm_portable;
    j.rows_per_task = REIN_MAX(1, (N + 4 * nt - 1) / (4 * nt));
    rein_parallel_for((N + j.rows_per_task - 1) / j.rows_per_task, gemm_portable, &j);
}
