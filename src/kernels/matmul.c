/* matmul.c - the three products of a linear layer (NT, NN, TN), blocked and threaded.
 *
 * All three are one product y (rows, cols) (+)= A (rows, red) @ B (red, cols), where A and B are
 * read through strides: NT reads B = W^T (W rows contiguous in the reduction), NN reads B = W
 * (rows contiguous in the output columns), TN reads A = a^T (8 output rows side by side in memory
 * at each reduction step). Two regimes:
 * - N small in NT (decoding): each output is a dot product of a row of x and a row of W; W is
 *   streamed once from memory, four rows at a time, and the work is split over rows of W.
 * - otherwise (prefill, training): the blocked product of gemm.h, cut into tasks of (rows,
 *   column panels) and run by gemm_avx512.c, in f32 or, when rein_matmul_set_bf16 asks and the
 *   CPU can, with BF16 products and f32 accumulation; or by gemm_avx2.c (f32) on a CPU with AVX2
 *   and FMA but not AVX-512. A `make BLAS=openblas` build hands these products to OpenBLAS
 *   instead, for comparison.
 * Which kernel (avx512, avx2, portable) is decided once from the CPU's features, or REIN_KERNEL;
 * the other kernels (attention, loss, ops, AdamW) ask rein_kernels_use_avx512 and follow.
 * The references below are the plain triple loops in the same summation order per output (the
 * reduction index from 0 up), used by the tests; the fast paths differ from them only by float
 * rounding of reordered sums.
 */
#include "kernels/matmul.h"
#include "base/base.h"
#include "kernels/gemm.h"

#include <string.h>

#if defined(REIN_USE_OPENBLAS)
#include <cblas.h>
#endif

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

void rein_matmul_nn_ref(float *y, const float *x, const float *w, int N, int K, int M,
                        int accumulate) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < M; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += x[(int64_t)i * K + k] * w[(int64_t)k * M + j];
            y[(int64_t)i * M + j] = accumulate ? y[(int64_t)i * M + j] + s : s;
        }
}

void rein_matmul_tn_ref(float *y, const float *a, const float *b, int N, int M, int K,
                        int accumulate) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < K; j++) {
            float s = 0;
            for (int n = 0; n < N; n++) s += a[(int64_t)n * M + i] * b[(int64_t)n * K + j];
            y[(int64_t)i * K + j] = accumulate ? y[(int64_t)i * K + j] + s : s;
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

/* ---- AVX2 paths (CPUs with AVX2 and FMA but not AVX-512) ------------------------------------ */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* s[q] = x . w[q] (K) for 4 rows of W: 8 lanes a row, added across at the end. */
AVX2 static void dot4_avx2(const float *x, const float *const w[4], int K, float s[4]) {
    int kv = K & ~7;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < kv; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[0] + k), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[1] + k), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[2] + k), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[3] + k), a3);
    }
    if (kv < K) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(K - kv),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 xv = _mm256_maskload_ps(x + kv, m);
        a0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w[0] + kv, m), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w[1] + kv, m), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w[2] + kv, m), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w[3] + kv, m), a3);
    }
    s[0] = hsum256(a0), s[1] = hsum256(a1), s[2] = hsum256(a2), s[3] = hsum256(a3);
}

/* Dot products of one row of x with 4 rows of W at a time; past the last group of 4, the last
 * row stands in for the missing ones (read again from cache, not stored). */
AVX2 static void matvec_avx2(void *ctx, int t, int n_tasks) {
    mm_job *j = ctx;
    int r0 = t * j->rows_per_task, r1 = REIN_MIN(j->M, r0 + j->rows_per_task);
    for (int i = 0; i < j->N; i++) {
        const float *xi = j->x + (int64_t)i * j->K;
        float *yi = j->y + (int64_t)i * j->M;
        for (int r = r0; r < r1; r += 4) {
            const float *w[4];
            float s[4];
            for (int q = 0; q < 4; q++) w[q] = j->w + (int64_t)REIN_MIN(r + q, r1 - 1) * j->K;
            dot4_avx2(xi, w, j->K, s);
            for (int q = 0; q < 4 && r + q < r1; q++) yi[r + q] = j->acc ? yi[r + q] + s[q] : s[q];
        }
    }
}

#endif /* __x86_64__ */

/* Portable NT: dot products, one chunk of rows of x per task. */
static void gemm_nt_portable(void *ctx, int t, int n_tasks) {
    mm_job *j = ctx;
    int i0 = t * j->rows_per_task, i1 = REIN_MIN(j->N, i0 + j->rows_per_task);
    mm_job sub = *j;
    sub.x = j->x + (int64_t)i0 * j->K;
    sub.y = j->y + (int64_t)i0 * j->M;
    sub.N = i1 - i0;
    sub.rows_per_task = j->M;
    matvec_portable(&sub, 0, 1);
}

/* Portable NN and TN (B rows contiguous): each row of y is a sum of scaled rows of B, in
 * reduction order; one chunk of rows of y per task. */
static void gemm_rows_portable(void *ctx, int t, int n_tasks) {
    const rein_gemm *g = ctx;
    int i0 = t * g->row_chunk, i1 = REIN_MIN(g->rows, i0 + g->row_chunk);
    for (int i = i0; i < i1; i++) {
        float *restrict yi = g->y + i * g->ldy;
        if (!g->acc)
            for (int c = 0; c < g->cols; c++) yi[c] = 0;
        for (int k = 0; k < g->red; k++) {
            float aik = g->a[i * g->a_rs + k * g->a_ks];
            const float *restrict bk = g->b + k * g->b_ks;
            for (int c = 0; c < g->cols; c++) yi[c] += aik * bk[c];
        }
    }
}

/* The kernels, best last: the choice is made once from the CPU's features (REIN_KERNEL may ask
 * for another), and a test may force one for a while. */
enum { KERNEL_PORTABLE, KERNEL_AVX2, KERNEL_AVX512, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {"portable", "avx2", "avx512"};
static int forced_kernel = -1;

static int cpu_has(int k) {
#if defined(__x86_64__)
    if (k == KERNEL_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    if (k == KERNEL_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return k == KERNEL_PORTABLE;
}

static int kernel_by_name(const char *name) {
    for (int k = 0; k < N_KERNELS; k++)
        if (!strcmp(name, kernel_names[k])) return k;
    return -1;
}

/* The CPU's best kernel, or the one REIN_KERNEL names. A name that is not a kernel, or one the
 * CPU cannot run, gets the best there is and a warning (once: the choice is cached). */
static int choose_kernel(void) {
    int best = KERNEL_AVX512;
    while (!cpu_has(best)) best--;
    const char *e = getenv("REIN_KERNEL");
    if (!e || !*e) return best;
    int k = kernel_by_name(e);
    if (k >= 0 && cpu_has(k)) return k;
    rein_log(REIN_LOG_WARN, "REIN_KERNEL=%s: %s; using %s", e,
             k < 0 ? "not a kernel (avx512, avx2 or portable)" : "this CPU cannot run it",
             kernel_names[best]);
    return best;
}

static int kernel(void) {
    static int cached = -1;
    if (forced_kernel >= 0) return forced_kernel;
    if (cached < 0) cached = choose_kernel();
    return cached;
}

static int use_avx512(void) {
    return kernel() == KERNEL_AVX512;
}

int rein_matmul_force_kernel(const char *name) {
    if (!name) {
        forced_kernel = -1;
        return 1;
    }
    int k = kernel_by_name(name);
    if (k < 0 || !cpu_has(k)) return 0;
    forced_kernel = k;
    return 1;
}

void rein_matmul_force_portable(int on) {
    rein_matmul_force_kernel(on ? "portable" : NULL);
}

const char *rein_matmul_kernel_name(void) {
    return kernel_names[kernel()];
}

int rein_kernels_use_avx512(void) {
    return use_avx512();
}

static int bf16_wanted;

void rein_matmul_set_bf16(int on) {
    bf16_wanted = on;
}

int rein_matmul_bf16(void) {
#if defined(REIN_USE_OPENBLAS)
    return 0; /* OpenBLAS's products are f32 */
#else
    return bf16_wanted && use_avx512() && rein_gemm_cpu_has_bf16();
#endif
}

/* Scratch buffers for packed operands (0: A, 1: B, or the partial products of a split
 * reduction), kept between calls: the products run one at a time. */
static void *scratch[2];
static size_t scratch_size[2];

static void scratch_free(void) {
    for (int i = 0; i < 2; i++) {
        rein_free_aligned(scratch[i]);
        scratch[i] = NULL;
        scratch_size[i] = 0;
    }
}

static void *scratch_reserve(int i, size_t bytes) {
    if (bytes <= scratch_size[i]) return scratch[i];
    static int registered;
    if (!registered) {
        atexit(scratch_free);
        registered = 1;
    }
    rein_free_aligned(scratch[i]);
    scratch[i] = rein_malloc_aligned(bytes, 64);
    scratch_size[i] = scratch[i] ? bytes : 0;
    return scratch[i];
}

/* Run a prepared product (y, strides, sizes, acc set) on the best path. */
static void gemm_run(rein_gemm *g) {
    int nt = rein_get_threads();
#if defined(REIN_USE_OPENBLAS)
    /* `make BLAS=openblas`: the same product through OpenBLAS, for comparison (f32 only). Its
     * 0.3.21 returns wrong sums when a leading dimension is 1, which rein's kernel does instead. */
    int lda = (int)(g->a_ks == 1 ? g->a_rs : g->a_ks), ldb = (int)(g->b_cs == 1 ? g->b_ks : g->b_cs);
    if (lda > 1 && ldb > 1 && g->ldy > 1) {
        cblas_sgemm(CblasRowMajor, g->a_ks == 1 ? CblasNoTrans : CblasTrans,
                    g->b_cs == 1 ? CblasNoTrans : CblasTrans, g->rows, g->cols, g->red, 1.0f, g->a,
                    lda, g->b, ldb, g->acc ? 1.0f : 0.0f, g->y, (int)g->ldy);
        return;
    }
#endif
#if defined(__x86_64__)
    if (use_avx512()) {
        g->bf16 = rein_matmul_bf16();
        int slices = rein_gemm_split_slices(g);
        float *partial = slices ? scratch_reserve(0, sizeof(float) * (size_t)slices * g->rows *
                                                         (size_t)g->cols)
                                : NULL;
        if (partial) {
            rein_gemm_run_split(g, partial, slices);
            return;
        }
        int n_tasks = rein_gemm_plan(g, nt);
        /* operands packed once for every task rather than by each task that reads them: A for
         * BF16 when several groups of panels read it, B when several chunks of rows do and it
         * must be transposed (a plain copy is cheaper done where it is used) */
        enum { MAX_PACKED = 64 << 20 };
        int64_t a_bytes = 4 * rein_gemm_prepack_size(g), b_bytes = rein_gemm_prepack_b_size(g);
        void *buf;
        if (g->bf16 && n_tasks / g->n_row_chunks >= 3 && a_bytes <= MAX_PACKED &&
            (buf = scratch_reserve(0, (size_t)a_bytes)))
            rein_gemm_prepack(g, buf);
        if (g->b_ks == 1 && g->n_row_chunks >= 2 && b_bytes <= MAX_PACKED &&
            (buf = scratch_reserve(1, (size_t)b_bytes)))
            rein_gemm_prepack_b(g, buf);
        rein_parallel_for(n_tasks, rein_gemm_task_avx512, g);
        return;
    }
    if (kernel() == KERNEL_AVX2) {
        rein_parallel_for(rein_gemm_plan_avx2(g, nt), rein_gemm_task_avx2, g);
        return;
    }
#endif
    REIN_ASSERT(g->b_cs == 1);
    g->row_chunk = REIN_MAX(1, (g->rows + 4 * nt - 1) / (4 * nt));
    rein_parallel_for((g->rows + g->row_chunk - 1) / g->row_chunk, gemm_rows_portable, g);
}

/* Empty products: nothing to do, or y = 0 when the reduction is empty. */
static int gemm_trivial(float *y, int rows, int red, int cols, int accumulate) {
    if (rows <= 0 || cols <= 0) return 1;
    if (red > 0) return 0;
    if (!accumulate) memset(y, 0, sizeof(float) * (size_t)rows * (size_t)cols);
    return 1;
}

void rein_matmul_nt(float *y, const float *x, const float *w, int N, int K, int M, int accumulate) {
    if (gemm_trivial(y, N, K, M, accumulate)) return;
    int nt = rein_get_threads();
    mm_job j = {y, x, w, N, K, M, accumulate, 0};
    const int k = kernel();
    if (N < 4) {
        /* split W's rows into ~4 tasks a thread, in multiples of 4 rows */
        int per = (M + 4 * nt - 1) / (4 * nt);
        j.rows_per_task = REIN_MAX(16, (per + 3) & ~3);
        rein_task_fn fn = matvec_portable;
#if defined(__x86_64__)
        if (k == KERNEL_AVX512) fn = matvec_avx512;
        if (k == KERNEL_AVX2) fn = matvec_avx2;
#endif
        rein_parallel_for((M + j.rows_per_task - 1) / j.rows_per_task, fn, &j);
        return;
    }
    if (k != KERNEL_PORTABLE) {
        rein_gemm g = {.y = y, .ldy = M, .a = x, .a_rs = K, .a_ks = 1, .b = w, .b_ks = 1, .b_cs = K,
                      .rows = N, .red = K, .cols = M, .acc = accumulate};
        gemm_run(&g);
        return;
    }
    j.rows_per_task = REIN_MAX(1, (N + 4 * nt - 1) / (4 * nt));
    rein_parallel_for((N + j.rows_per_task - 1) / j.rows_per_task, gemm_nt_portable, &j);
}

void rein_matmul_nn(float *y, const float *x, const float *w, int N, int K, int M, int accumulate) {
    if (gemm_trivial(y, N, K, M, accumulate)) return;
    rein_gemm g = {.y = y, .ldy = M, .a = x, .a_rs = K, .a_ks = 1, .b = w, .b_ks = M, .b_cs = 1,
                  .rows = N, .red = K, .cols = M, .acc = accumulate};
    gemm_run(&g);
}

void rein_matmul_tn(float *y, const float *a, const float *b, int N, int M, int K, int accumulate) {
    if (gemm_trivial(y, M, N, K, accumulate)) return;
    rein_gemm g = {.y = y, .ldy = K, .a = a, .a_rs = 1, .a_ks = M, .b = b, .b_ks = K, .b_cs = 1,
                  .rows = M, .red = N, .cols = K, .acc = accumulate};
    gemm_run(&g);
}
