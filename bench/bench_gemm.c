/* bench_gemm.c - rein's matrix products beside OpenBLAS on the model's shapes, in one run.
 *
 * The forward product of each linear layer shape of the default model at 1024 tokens (NT: y = x
 * W^T) and its two backward products (NN: dX = dY W; TN: dW = dY^T X), as GFLOP/s and % of the
 * machine's FP32 FMA peak (measured in the same run by a loop of 512-bit FMAs: about 520 GFLOP/s
 * on both cores here, a few percent less when the machine runs slower; REIN_PEAK_GFLOPS
 * overrides), at rein's
 * thread count, and with BF16 products where the CPU has them (against twice that peak, the rate
 * of vdpbf16ps), and with the AVX2 kernel where the CPU has AVX2 and FMA (rein_matmul_force_kernel),
 * against the peak of 256-bit FMAs, which a loop of them measures here before the products
 * (REIN_AVX2_PEAK_GFLOPS overrides). OpenBLAS is loaded at run time with dlopen (libopenblas.so.0, as installed, with
 * whatever OPENBLAS_* the environment sets), so neither librein nor this program links it; without
 * it only rein's column is printed. Figures, not a test.
 */
#include "benchutil.h"
#include "base/base.h"
#include "kernels/matmul.h"

#include <dlfcn.h>
#include <string.h>

/* cblas_sgemm's signature (CBLAS enums as ints: RowMajor 101, NoTrans 111, Trans 112). */
typedef void (*sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc);
typedef void (*set_threads_fn)(int);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static float *randn(int64_t n, rein_rng *r) {
    float *x = rein_malloc_aligned(sizeof(float) * (size_t)n, 64);
    for (int64_t i = 0; i < n; i++) x[i] = rein_rng_normal(r);
    return x;
}

/* Best of `reps` runs of one product, in seconds. kind: 0 NT, 1 NN, 2 TN; BLAS when sg != NULL. */
static double run(int kind, int T, int out, int in, const float *x, const float *w, const float *dy,
                  float *y, sgemm_fn sg, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = rein_time_now();
        if (kind == 0) {
            if (sg) sg(ROW_MAJOR, NO_TRANS, TRANS, T, out, in, 1, x, in, w, in, 0, y, out);
            else rein_matmul_nt(y, x, w, T, in, out, 0);
        } else if (kind == 1) {
            if (sg) sg(ROW_MAJOR, NO_TRANS, NO_TRANS, T, in, out, 1, dy, out, w, in, 0, y, in);
            else rein_matmul_nn(y, dy, w, T, out, in, 0);
        } else {
            if (sg) sg(ROW_MAJOR, TRANS, NO_TRANS, out, in, T, 1, dy, out, x, in, 0, y, in);
            else rein_matmul_tn(y, dy, x, T, out, in, 0);
        }
        best = REIN_MIN(best, rein_time_now() - t);
    }
    return best;
}

/* GFLOP/s of each product of each shape, with rein (bf16: its BF16 products) or BLAS (sg). */
static void measure(sgemm_fn sg, int bf16, double gf[9]) {
    const int T = 1024, shapes[3][2] = {{1536, 576}, {576, 1536}, {49152, 576}};
    rein_rng r;
    rein_rng_seed(&r, 1);
    rein_matmul_set_bf16(bf16);
    for (int s = 0; s < 3; s++) {
        int out = shapes[s][0], in = shapes[s][1];
        float *x = randn((int64_t)T * in, &r), *w = randn((int64_t)out * in, &r);
        float *dy = randn((int64_t)T * out, &r);
        int64_t ny = REIN_MAX(REIN_MAX((int64_t)T * out, (int64_t)T * in), (int64_t)out * in);
        float *y = rein_malloc_aligned(sizeof(float) * (size_t)ny, 64);
        for (int kind = 0; kind < 3; kind++) {
            double flops = 2.0 * T * out * in;
            /* best of a second or so of runs (the same for every column): a 4 ms product on this
             * shared machine moves by several percent from one run to the next */
            int reps = flops > 3e10 ? 6 : 24;
            run(kind, T, out, in, x, w, dy, y, sg, 1); /* warm up */
            gf[3 * s + kind] = flops / run(kind, T, out, in, x, w, dy, y, sg, reps) / 1e9;
        }
        rein_free_aligned(x), rein_free_aligned(w), rein_free_aligned(dy), rein_free_aligned(y);
    }
    rein_matmul_set_bf16(0);
}

int main(void) {
    int threads = rein_get_threads();
    /* the peak of 512-bit FMAs, measured in this run before and after rein's products (the
     * higher of the two): this machine's clock moves by several percent from one hour to the
     * next, and a ratio means something only against the peak of the same moment. About 520
     * GFLOP/s on both cores here; REIN_PEAK_GFLOPS overrides, and stands in where there is no
     * AVX-512. */
    const char *pe = getenv("REIN_PEAK_GFLOPS");
    double peak = pe ? atof(pe) : 520.0;
#if defined(__x86_64__)
    const int wide = !pe && __builtin_cpu_supports("avx512f");
    if (wide) peak = bench_fma_peak(REIN_MIN(threads, 64), 1);
#else
    const int wide = 0;
#endif
    rein_matmul_set_bf16(1);
    int bf16 = rein_matmul_bf16();
    rein_matmul_set_bf16(0);
    /* rein first: OpenBLAS's threads spin for a while after it starts and after each call, which
     * would take a core from whatever runs next */
    double gr[9], gh[9], gb[9], ga[9], apeak = 0;
    measure(NULL, 0, gr);
#if defined(__x86_64__)
    if (wide) peak = REIN_MAX(peak, bench_fma_peak(REIN_MIN(threads, 64), 1));
#endif
    double bpeak = 2 * peak; /* vdpbf16ps: two products per lane and instruction */
    if (bf16) measure(NULL, 1, gh);
    int avx2 = rein_matmul_force_kernel("avx2");
    if (avx2) {
        const char *e = getenv("REIN_AVX2_PEAK_GFLOPS");
#if defined(__x86_64__)
        apeak = e ? atof(e) : bench_fma_peak(REIN_MIN(threads, 64), 0);
#else
        apeak = e ? atof(e) : 0;
#endif
        measure(NULL, 0, ga);
        rein_matmul_force_kernel(NULL);
    }
    void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    sgemm_fn sg = lib ? (sgemm_fn)(uintptr_t)dlsym(lib, "cblas_sgemm") : NULL;
    set_threads_fn st = lib ? (set_threads_fn)(uintptr_t)dlsym(lib, "openblas_set_num_threads") : NULL;
    if (st) st(threads);
    if (sg) measure(sg, 0, gb);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("== GEMM, %d threads, rein kernel %s; OpenBLAS %s%s%s\n", threads,
           rein_matmul_kernel_name(), sg ? "libopenblas.so.0" : "not found",
           ct ? ", OPENBLAS_CORETYPE=" : "", ct ? ct : "");
    printf("%-6s %-18s %10s %7s | %10s %7s | %6s | %10s %7s | %10s %7s\n", "op", "shape (M,N,K)",
           "rein GF/s", "% peak", "BLAS GF/s", "% peak", "ratio", "bf16 GF/s", "% bpeak",
           "avx2 GF/s", "% apeak");
    const int T = 1024, shapes[3][2] = {{1536, 576}, {576, 1536}, {49152, 576}};
    static const char *names[3] = {"NT", "NN", "TN"};
    for (int s = 0; s < 3; s++)
        for (int kind = 0; kind < 3; kind++) {
            int out = shapes[s][0], in = shapes[s][1], i = 3 * s + kind;
            /* the product's own (M, N, K): rows of the result, its columns, the reduction */
            int M = kind == 2 ? out : T, N = kind == 0 ? out : in, K = kind == 0 ? in : kind == 1 ? out : T;
            char shape[32], b1[16] = "n/a", b2[16] = "-", rt[16] = "-", h1[16] = "n/a", h2[16] = "-";
            char a1[16] = "n/a", a2[16] = "-";
            snprintf(shape, sizeof shape, "%dx%dx%d", M, N, K);
            if (sg) {
                snprintf(b1, sizeof b1, "%.1f", gb[i]);
                snprintf(b2, sizeof b2, "%.1f%%", 100 * gb[i] / peak);
                snprintf(rt, sizeof rt, "%.2fx", gr[i] / gb[i]);
            }
            if (bf16) {
                snprintf(h1, sizeof h1, "%.1f", gh[i]);
                snprintf(h2, sizeof h2, "%.1f%%", 100 * gh[i] / bpeak);
            }
            if (avx2) {
                snprintf(a1, sizeof a1, "%.1f", ga[i]);
                if (apeak > 0) snprintf(a2, sizeof a2, "%.1f%%", 100 * ga[i] / apeak);
            }
            printf("%-6s %-18s %10.1f %6.1f%% | %10s %7s | %6s | %10s %7s | %10s %7s\n", names[kind],
                   shape, gr[i], 100 * gr[i] / peak, b1, b2, rt, h1, h2, a1, a2);
        }
    printf("%% of a %.0f GFLOP/s FP32 FMA peak (%s); ratio = rein / OpenBLAS; bf16: rein with "
           "BF16 products (rein_matmul_set_bf16), %% of a %.0f GFLOP/s BF16 peak\n", peak,
           wide ? "512-bit FMAs, measured in this run" : "given", bpeak);
    if (avx2)
        printf("avx2: rein's AVX2+FMA kernel, %% of a %.0f GFLOP/s peak of 256-bit FMAs (%s)\n", apeak,
               getenv("REIN_AVX2_PEAK_GFLOPS") ? "REIN_AVX2_PEAK_GFLOPS" : "measured");
    if (lib) dlclose(lib);
    return 0;
}
