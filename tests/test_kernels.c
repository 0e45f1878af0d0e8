/* test_kernels.c - each forward kernel against a plain double-precision reference.
 *
 * The matrix products (NT, NN, TN) are checked on each of their kernels the CPU can run (AVX-512,
 * AVX2, portable) over shapes that hit every remainder case, and on shapes past every block of
 * the blocked product in f32 and with BF16 products; that a row of a batch has the same bits as
 * the row alone on each fast kernel; the others against direct formulas.
 */
#include "base/base.h"
#include "kernels/adamw.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

/* |a-b| <= atol + rtol*|b| elementwise; returns the worst excess and prints it on failure. */
static int close_all(const char *what, const float *a, const double *b, int64_t n, double atol,
                     double rtol) {
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) - (atol + rtol * fabs(b[i]));
        if (d > worst || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : d;
            at = i;
        }
    }
    if (worst > 0) fprintf(stderr, "%s: index %lld: %g vs %g\n", what, (long long)at, a[at], b[at]);
    return worst <= 0;
}

/* The three products: 0 = NT, 1 = NN, 2 = TN. Each case is (N, K, M) as for NT: y has N x M
 * outputs, each a sum over K products; the operands are laid out as each variant reads them. */
static const char *const mm_names[3] = {"nt", "nn", "tn"};

static void mm_call(int variant, float *y, const float *x, const float *w, int N, int K, int M,
                    int acc) {
    if (variant == 0) rein_matmul_nt(y, x, w, N, K, M, acc);
    if (variant == 1) rein_matmul_nn(y, x, w, N, K, M, acc);
    if (variant == 2) rein_matmul_tn(y, x, w, K, N, M, acc); /* x (K, N), w (K, M) */
}

/* x[i, k] and w[j, k] of the product sum_k x[i, k] w[j, k], wherever the variant stores them */
static float mm_x(int variant, const float *x, int i, int k, int N, int K) {
    return variant == 2 ? x[(int64_t)k * N + i] : x[(int64_t)i * K + k];
}
static float mm_w(int variant, const float *w, int j, int k, int K, int M) {
    return variant == 0 ? w[(int64_t)j * K + k] : w[(int64_t)k * M + j];
}

/* One product of the variant against the double-precision sum, with and without accumulating
 * into y; adds its two cases to *n_cases and *n_ok and the worst |diff| (in atols) to *worst. */
static void mm_check(int variant, int N, int K, int M, int *n_cases, int *n_ok, double *worst) {
    float *x = test_randn(&rng, (int64_t)N * K, 1), *w = test_randn(&rng, (int64_t)M * K, 1);
    float *y = test_randn(&rng, (int64_t)N * M, 1);
    double *ref = rein_malloc(sizeof(double) * (size_t)N * M);
    for (int acc = 0; acc < 2; acc++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < M; j++) {
                double s = acc ? y[i * M + j] : 0;
                for (int k = 0; k < K; k++)
                    s += (double)mm_x(variant, x, i, k, N, K) * mm_w(variant, w, j, k, K, M);
                ref[i * M + j] = s;
            }
        mm_call(variant, y, x, w, N, K, M, acc);
        char what[96];
        snprintf(what, sizeof what, "matmul_%s %s N=%d K=%d M=%d acc=%d", mm_names[variant],
                 rein_matmul_kernel_name(), N, K, M, acc);
        /* fp32 sums of K products of unit normals: error grows like sqrt(K) eps */
        double atol = 1e-5 * sqrt(K) * 4;
        int ok = close_all(what, y, ref, (int64_t)N * M, atol, 1e-5);
        for (int64_t i = 0; i < (int64_t)N * M; i++) *worst = fmax(*worst, fabs(y[i] - ref[i]) / atol);
        CHECKF(ok, "%s", what);
        (*n_cases)++;
        *n_ok += ok;
    }
    rein_free(x), rein_free(w), rein_free(y), rein_free(ref);
}

/* Force the named kernel (NULL: the CPU's best); 0, with a SKIP line, when the CPU cannot run it. */
static int use_kernel(const char *kernel, const char *what) {
    if (rein_matmul_force_kernel(kernel)) return 1;
    printf("SKIP part: %s on the %s kernel: this CPU cannot run it\n", what, kernel ? kernel : "default");
    return 0;
}

/* Shapes that hit every remainder case of every kernel's tiling. */
static void test_matmul(int variant, const char *kernel) {
    if (!use_kernel(kernel, "matmul shapes")) return;
    static const int Ns[] = {1, 2, 3, 4, 7, 8, 9, 33, 130};
    static const int Ks[] = {1, 15, 16, 17, 100, 576, 1100};
    static const int Ms[] = {1, 5, 31, 32, 33, 100};
    int n_cases = 0, n_ok = 0;
    double worst_rel = 0;
    for (size_t a = 0; a < sizeof Ns / sizeof *Ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t c = 0; c < sizeof Ms / sizeof *Ms; c++) {
                if (Ns[a] == 130 && Ks[b] > 576) continue; /* keep the portable path quick */
                mm_check(variant, Ns[a], Ks[b], Ms[c], &n_cases, &n_ok, &worst_rel);
            }
    printf("matmul_%s (%s): %d/%d shape cases within tolerance, worst |diff| = %.3f of atol\n",
           mm_names[variant], rein_matmul_kernel_name(), n_ok, n_cases, worst_rel);
    rein_matmul_force_kernel(NULL);
}

/* The AVX2 kernel's tiling (micro-tiles of 6 rows x 16 columns, reduction steps of 8 in its
 * packing): every row count from 1 to 70, columns and reductions around multiples of 8 and 16,
 * and the model's layer shapes scaled down (576 -> 72, 1536 -> 192, a vocabulary of 49152 -> 768:
 * several panel groups). */
static void test_matmul_avx2(void) {
    if (!use_kernel("avx2", "matmul rows 1 to 70")) return;
    static const int KMs[][2] = {{1, 1}, {7, 15}, {8, 16}, {9, 17}, {63, 40}, {72, 192}, {192, 72},
                                 {72, 768}};
    int n_cases = 0, n_ok = 0;
    double worst_rel = 0;
    for (int variant = 0; variant < 3; variant++)
        for (int N = 1; N <= 70; N++)
            for (size_t s = 0; s < sizeof KMs / sizeof *KMs; s++)
                if (KMs[s][1] < 768 || N % 23 == 0) /* the widest on a few row counts */
                    mm_check(variant, N, KMs[s][0], KMs[s][1], &n_cases, &n_ok, &worst_rel);
    printf("matmul nt/nn/tn (avx2), rows 1 to 70: %d/%d cases within tolerance, worst |diff| = "
           "%.3f of atol\n", n_ok, n_cases, worst_rel);
    rein_matmul_force_kernel(NULL);
}

/* A row of a product has the same bits whatever else is computed with it: a batch of rows (NT,
 * NN) or of output features (TN, whose rows are the columns of its first operand) computed whole,
 * in slices of other sizes and offsets, and on one thread or two. The model relies on it: a
 * sequence's logits do not depend on the batch it is decoded in. */
static void test_matmul_batch_alone(const char *kernel) {
    if (!use_kernel(kernel, "batch-versus-alone bits")) return;
    enum { N = 300, K = 700, M = 450 }; /* several row blocks, reduction blocks and panel groups */
    static const int slices[][2] = {{0, 4}, {1, 5}, {7, 13}, {100, 61}, {250, 50}, {299, 1}};
    int n_same = 0, n = 0;
    for (int variant = 0; variant < 3; variant++) {
        /* rows of y are rows of x (N, K) for NT and NN, and columns of x (K, N) for TN */
        float *x = test_randn(&rng, (int64_t)N * K, 1), *w = test_randn(&rng, (int64_t)M * K, 1);
        float *whole = rein_malloc(sizeof(float) * N * M), *part = rein_malloc(sizeof(float) * N * M);
        float *xs = rein_malloc(sizeof(float) * N * K);
        mm_call(variant, whole, x, w, N, K, M, 0);
        for (size_t s = 0; s < sizeof slices / sizeof *slices; s++) {
            int i0 = slices[s][0], rows = slices[s][1];
            if (variant == 0 && rows < 4) continue; /* NT's matrix-vector path sums otherwise */
            for (int k = 0; k < K; k++)
                for (int i = 0; i < rows; i++)
                    if (variant == 2) xs[(int64_t)k * rows + i] = x[(int64_t)k * N + i0 + i];
                    else xs[(int64_t)i * K + k] = x[(int64_t)(i0 + i) * K + k];
            for (int threads = 1; threads <= 2; threads++) {
                rein_set_threads(threads);
                mm_call(variant, part, xs, w, rows, K, M, 0);
                int same = !memcmp(part, whole + (int64_t)i0 * M, sizeof(float) * rows * M);
                CHECKF(same, "matmul_%s %s: rows %d..%d alone on %d threads differ from the batch",
                       mm_names[variant], kernel, i0, i0 + rows - 1, threads);
                n_same += same;
                n++;
            }
        }
        rein_free(x), rein_free(w), rein_free(whole), rein_free(part), rein_free(xs);
    }
    rein_set_threads(2);
    printf("matmul (%s): %d/%d slices of a batch equal to the bit when computed alone\n", kernel,
           n_same, n);
    rein_matmul_force_kernel(NULL);
}

static double bf16_round(float v) {
    return rein_bf16_to_fp32(rein_fp32_to_bf16(v));
}

/* Shapes past every block of the blocked product (several reduction blocks, row blocks and panel
 * groups, odd reductions), in f32 (the CPU's best kernel and AVX2) and with BF16 products. A BF16
 * product must equal the f32 sum of the products of its operands rounded to bfloat16 (to nearest
 * even) within f32 tolerance, and the unrounded product within bfloat16's: |diff| <= 2^-7 sum_k |x_k w_k| (two roundings of 2^-9). */
static void test_matmul_blocked(int bf16) {
    static const int shapes[][3] = {{300, 600, 1000}, {17, 1025, 401}, {140, 513, 33}, {9, 2, 800},
                                    {20, 16500, 40}}; /* the last: a split reduction */
    rein_matmul_set_bf16(bf16);
    if (bf16 && !rein_matmul_bf16()) {
        printf("blocked matmul with BF16 products: not checked, none here (no AVX512_BF16, or a BLAS=openblas build)\n");
        rein_matmul_set_bf16(0);
        return;
    }
    int n_cases = 0, n_ok = 0;
    for (int variant = 0; variant < 3; variant++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
            float *x = test_randn(&rng, (int64_t)N * K, 1), *w = test_randn(&rng, (int64_t)M * K, 1);
            float *y = test_randn(&rng, (int64_t)N * M, 1);
            double *ref = rein_malloc(sizeof(double) * (size_t)N * M);
            double *mag = rein_malloc(sizeof(double) * (size_t)N * M);
            for (int acc = 0; acc < 2; acc++) {
                for (int i = 0; i < N; i++)
                    for (int j = 0; j < M; j++) {
                        double r = acc ? y[i * M + j] : 0, m = 0;
                        for (int k = 0; k < K; k++) {
                            float a = mm_x(variant, x, i, k, N, K), b = mm_w(variant, w, j, k, K, M);
                            r += bf16 ? bf16_round(a) * bf16_round(b) : (double)a * b;
                            m += fabs((double)a * b);
                        }
                        ref[i * M + j] = r;
                        mag[i * M + j] = m;
                    }
                /* what y holds before the product: each kernel's start, and the unrounded
                 * product's for the second bound */
                float *y_in = rein_malloc(sizeof(float) * (size_t)N * M);
                memcpy(y_in, y, sizeof(float) * (size_t)N * M);
                /* f32: the CPU's best kernel and the AVX2 one against the same reference */
                static const char *const kernels[] = {NULL, "avx2"};
                for (int kn = 0; kn < (bf16 ? 1 : 2); kn++) {
                    if (!rein_matmul_force_kernel(kernels[kn])) continue;
                    memcpy(y, y_in, sizeof(float) * (size_t)N * M);
                    mm_call(variant, y, x, w, N, K, M, acc);
                    char what[96];
                    snprintf(what, sizeof what, "blocked matmul_%s %s %s N=%d K=%d M=%d acc=%d",
                             mm_names[variant], bf16 ? "bf16" : "f32", rein_matmul_kernel_name(), N,
                             K, M, acc);
                    int ok = close_all(what, y, ref, (int64_t)N * M, 1e-5 * sqrt(K) * 4, 1e-5);
                    if (bf16) {
                        for (int i = 0; i < N; i++)
                            for (int j = 0; j < M; j++) {
                                double r = acc ? y_in[i * M + j] : 0;
                                for (int k = 0; k < K; k++)
                                    r += (double)mm_x(variant, x, i, k, N, K) *
                                         mm_w(variant, w, j, k, K, M);
                                double d = fabs(y[i * M + j] - r);
                                if (d > 0x1p-7 * mag[i * M + j] + 1e-4) {
                                    fprintf(stderr, "%s: (%d, %d): %g vs unrounded %g\n", what, i,
                                            j, y[i * M + j], r);
                                    ok = 0;
                                    i = N;
                                    break;
                                }
                            }
                    }
                    CHECKF(ok, "%s", what);
                    n_cases++;
                    n_ok += ok;
                }
                rein_matmul_force_kernel(NULL);
                rein_free(y_in);
            }
            rein_free(x), rein_free(w), rein_free(y), rein_free(ref), rein_free(mag);
        }
    printf("blocked matmul (%s products, %s): %d/%d cases within tolerance\n",
           bf16 ? "bf16" : "f32", bf16 ? "avx512" : "the CPU's best kernel and avx2", n_ok, n_cases);
    rein_matmul_set_bf16(0);
}

/* The AdamW update: the vector path gives the plain loop's bits, and the plain loop follows the
 * formula (in double) to float rounding. */
static void test_adamw(void) {
    enum { N = 1000 }; /* not a multiple of 16 */
    float *g = test_randn(&rng, N, 1), *w0 = test_randn(&rng, N, 1), *m0 = test_randn(&rng, N, 0.1f);
    float w[2][N], m[2][N], v[2][N];
    for (int i = 0; i < N; i++) {
        for (int p = 0; p < 2; p++) {
            w[p][i] = w0[i];
            m[p][i] = m0[i];
            v[p][i] = 0.01f * (float)(i % 7);
        }
    }
    /* the gradient scaled by 0.75 inside the update (clipping folded in) */
    rein_adamw_coef c = {0.1f, 0.999f, 0.001f, 0.3f, 1e-8f, 0.003f, 0.9999f, 0.75f};
    rein_adamw_update(w[0], g, m[0], v[0], N, &c);
    rein_adamw_update_ref(w[1], g, m[1], v[1], N, &c);
    CHECK(!memcmp(w[0], w[1], sizeof w[0]) && !memcmp(m[0], m[1], sizeof m[0]) &&
          !memcmp(v[0], v[1], sizeof v[0]));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double gi = (double)g[i] * c.gscale;
        double mm = m0[i] + (gi - m0[i]) * c.c1;
        double vv = 0.01 * (i % 7) * c.b2 + gi * gi * c.c2;
        double ww = (double)w0[i] * c.decay - c.step * mm / (sqrt(vv) / c.bc2_sqrt + c.eps);
        worst = fmax(worst, fabs(ww - w[1][i]) / (fabs(ww) + 1e-6));
    }
    CHECKF(worst < 1e-5, "AdamW update: worst relative difference %g from the formula", worst);
    /* the same bits as scaling the gradient first and updating with scale 1 */
    float gs[N], w2[N], m2[N], v2[N];
    for (int i = 0; i < N; i++) {
        gs[i] = g[i] * 0.75f;
        w2[i] = w0[i], m2[i] = m0[i], v2[i] = 0.01f * (float)(i % 7);
    }
    rein_adamw_coef c1 = c;
    c1.gscale = 1.0f;
    rein_adamw_update(w2, gs, m2, v2, N, &c1);
    CHECK(!memcmp(w2, w[0], sizeof w2) && !memcmp(m2, m[0], sizeof m2) &&
          !memcmp(v2, v[0], sizeof v2));
    rein_free(g), rein_free(w0), rein_free(m0);
}

static void test_matmul_ref(void) {
    /* the plain references themselves, on products worked out by hand */
    float x[6] = {1, 2, 3, 4, 5, 6};     /* (2, 3) */
    float w[6] = {1, 0, -1, 0.5f, 1, 2}; /* (2, 3) */
    float y[9];
    rein_matmul_nt_ref(y, x, w, 2, 3, 2, 0);
    CHECK(y[0] == -2 && y[1] == 8.5f && y[2] == -2 && y[3] == 19);
    /* x (2, 3) @ w viewed as (3, 2) */
    rein_matmul_nn_ref(y, x, w, 2, 3, 2, 0);
    CHECK(y[0] == 2 && y[1] == 7 && y[2] == 5 && y[3] == 14.5f);
    rein_matmul_nn_ref(y, x, w, 2, 3, 2, 1);
    CHECK(y[0] == 4 && y[1] == 14 && y[2] == 10 && y[3] == 29);
    /* x viewed as (2, 3) transposed @ w (2, 3) -> (3, 3) */
    rein_matmul_tn_ref(y, x, w, 2, 3, 3, 0);
    CHECK(y[0] == 3 && y[1] == 4 && y[2] == 7 && y[4] == 5 && y[8] == 9);
    for (int v = 0; v < 3; v++) { /* fast paths on the same small case */
        float z[4] = {0};
        mm_call(v, z, x, w, 2, v == 2 ? 2 : 3, 2, 0);
        float r[4];
        if (v == 0) rein_matmul_nt_ref(r, x, w, 2, 3, 2, 0);
        if (v == 1) rein_matmul_nn_ref(r, x, w, 2, 3, 2, 0);
        if (v == 2) rein_matmul_tn_ref(r, x, w, 2, 2, 2, 0);
        CHECKF(!memcmp(z, r, sizeof z), "matmul_%s small case equals its reference", mm_names[v]);
    }
}

static void test_rmsnorm(void) {
    int N = 5, C = 67;
    float *x = test_randn(&rng, N * C, 3), *w = test_randn(&rng, C, 1), *o = rein_malloc(sizeof(float) * N * C);
    double *ref = rein_malloc(sizeof(double) * N * C);
    for (int i = 0; i < N; i++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[i * C + c] * x[i * C + c];
        double r = 1 / sqrt(ss / C + 1e-5);
        for (int c = 0; c < C; c++) ref[i * C + c] = x[i * C + c] * r * w[c];
    }
    rein_rmsnorm_forward(o, x, w, N, C, 1e-5f);
    CHECK(close_all("rmsnorm", o, ref, N * C, 1e-6, 1e-5));
    rein_rmsnorm_forward(x, x, w, N, C, 1e-5f); /* in place */
    CHECK(close_all("rmsnorm in place", x, ref, N * C, 1e-6, 1e-5));
    rein_free(x), rein_free(w), rein_free(o), rein_free(ref);
}

static void test_rope(void) {
    int N = 3, H = 2, D = 8, R = 6;
    int32_t pos[3] = {0, 1, 1000};
    float *x = test_randn(&rng, N * H * D, 1);
    double *ref = rein_malloc(sizeof(double) * N * H * D);
    float ff[3] = {1, 2, 8};
    for (int variant = 0; variant < 2; variant++) {
        const float *factors = variant ? ff : NULL;
        for (int i = 0; i < N; i++)
            for (int h = 0; h < H; h++) {
                const float *xh = x + (i * H + h) * D;
                double *rh = ref + (i * H + h) * D;
                for (int d = 0; d < D; d++) rh[d] = xh[d]; /* beyond rope_dim: unchanged */
                for (int p = 0; p < R / 2; p++) {
                    double th = pos[i] * pow(10000.0, -2.0 * p / R) / (factors ? factors[p] : 1);
                    rh[2 * p] = xh[2 * p] * cos(th) - xh[2 * p + 1] * sin(th);
                    rh[2 * p + 1] = xh[2 * p] * sin(th) + xh[2 * p + 1] * cos(th);
                }
            }
        float *y = rein_malloc(sizeof(float) * N * H * D);
        memcpy(y, x, sizeof(float) * N * H * D);
        rein_rope_forward(y, pos, N, H, D, R, 10000.0f, factors);
        CHECK(close_all(variant ? "rope with factors" : "rope", y, ref, N * H * D, 1e-5, 1e-5));
        rein_free(y);
    }
    rein_free(x), rein_free(ref);
}

/* The vector paths of the norm's scaling and of the rotation by a table (AVX-512) give the plain
 * loops' bits: head sizes whose pairs are whole vectors and not (40 rotated of 64: 16 + 4 pairs),
 * forward and backward, rows of 67 for the norm (64 + a tail). */
static void test_rows_fast_vs_portable(void) {
    enum { N = 5, H = 3, D = 64, C = 67 };
    int32_t pos[N] = {0, 1, 7, 300, 4095};
    float cs[N * D / 2], sn[N * D / 2];
    float *x = test_randn(&rng, N * H * D, 2), *y[2], *w = test_randn(&rng, C, 1);
    float *xn = test_randn(&rng, N * C, 3), *on[2];
    for (int R = 64; R >= 40; R -= 24) {
        rein_rope_table(cs, sn, pos, N, R, 10000.0f, NULL);
        for (int portable = 0; portable <= 1; portable++) {
            rein_matmul_force_portable(portable);
            y[portable] = rein_malloc(sizeof(float) * N * H * D);
            memcpy(y[portable], x, sizeof(float) * N * H * D);
            rein_rope_apply(y[portable], cs, sn, N, H, D, R);
            rein_rope_apply_backward(y[portable] + D, cs, sn, N - 1, H, D, R); /* shifted rows */
        }
        CHECKF(!memcmp(y[0], y[1], sizeof(float) * N * H * D), "rope (%d of %d): vector path differs",
               R, D);
        rein_free(y[0]), rein_free(y[1]);
    }
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        on[portable] = rein_malloc(sizeof(float) * N * C);
        rein_rmsnorm_forward(on[portable], xn, w, N, C, 1e-5f);
    }
    CHECK(!memcmp(on[0], on[1], sizeof(float) * N * C));
    rein_matmul_force_portable(0);
    rein_free(x), rein_free(w), rein_free(xn), rein_free(on[0]), rein_free(on[1]);
}

static void test_swiglu(void) {
    float g[4] = {-3, 0, 1, 10}, u[4] = {2, 5, -1, 0.5f}, o[4];
    double ref[4];
    for (int i = 0; i < 4; i++) ref[i] = g[i] / (1 + exp(-g[i])) * u[i];
    rein_swiglu_forward(o, g, u, 4);
    CHECK(close_all("swiglu", o, ref, 4, 1e-6, 1e-6));
    /* 37 values: the vector path (16 at a time) and its scalar tail, and the portable path */
    float g2[37], u2[37], o2[37];
    double ref2[37];
    for (int i = 0; i < 37; i++) {
        g2[i] = (float)(i - 18) * 1.1f, u2[i] = (float)(i % 5) - 2.0f;
        ref2[i] = g2[i] / (1 + exp(-(double)g2[i])) * u2[i];
    }
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        rein_swiglu_forward(o2, g2, u2, 37);
        CHECK(close_all("swiglu", o2, ref2, 37, 1e-6, 1e-6));
    }
    rein_matmul_force_portable(0);
}

static void test_attention(int D, int T) {
    /* 3 queries of H=4 heads over KVH=2 groups; query i sees n_keys[i] rows of its own run */
    int N = 3, H = 4, KVH = 2;
    int64_t stride = KVH * D + 3; /* rows need not be packed */
    float *q = test_randn(&rng, N * H * D, 1), *kb = test_randn(&rng, 2 * T * stride, 1), *vb = test_randn(&rng, 2 * T * stride, 1);
    const float *k[3] = {kb, kb + T * stride, kb}, *v[3] = {vb, vb + T * stride, vb};
    int n_keys[3] = {1, T, T / 2 + 3};
    float *o = rein_malloc(sizeof(float) * N * H * D);
    double *ref = rein_calloc((size_t)N * H * D, sizeof(double));
    float scale = 1.0f / sqrtf((float)D);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KVH);
            double s[512], mx = -1e300, den = 0;
            for (int t = 0; t < n_keys[i]; t++) {
                s[t] = 0;
                for (int d = 0; d < D; d++)
                    s[t] += (double)q[(i * H + h) * D + d] * k[i][t * stride + g * D + d];
                s[t] *= scale;
                mx = fmax(mx, s[t]);
            }
            for (int t = 0; t < n_keys[i]; t++) den += exp(s[t] - mx);
            for (int t = 0; t < n_keys[i]; t++)
                for (int d = 0; d < D; d++)
                    ref[(i * H + h) * D + d] += exp(s[t] - mx) / den * v[i][t * stride + g * D + d];
        }
    rein_kv_rows rows[3];
    for (int i = 0; i < N; i++) rows[i] = (rein_kv_rows){.k = k[i], .v = v[i], .n_keys = n_keys[i]};
    for (int portable = 0; portable <= 1; portable++) { /* both paths; T > 128: several chunks */
        rein_matmul_force_portable(portable);
        rein_attention_forward(o, q, N, H, KVH, D, rows, stride, D, 0, scale);
        CHECK(close_all("attention", o, ref, N * H * D, 1e-5, 1e-4));
    }
    rein_matmul_force_portable(0);
    rein_free(q), rein_free(kb), rein_free(vb), rein_free(o), rein_free(ref);
}

int main(void) {
    rein_rng_seed(&rng, 1234);
    rein_set_threads(2);
    test_matmul_ref();
    for (int v = 0; v < 3; v++) {
        test_matmul(v, NULL);
        test_matmul(v, "avx2");
        test_matmul(v, "portable");
    }
    test_matmul_avx2();
    test_matmul_blocked(0);
    test_matmul_blocked(1);
    test_matmul_batch_alone("avx512");
    test_matmul_batch_alone("avx2");
    test_adamw();
    test_rmsnorm();
    test_rope();
    test_rows_fast_vs_portable();
    test_swiglu();
    test_attention(16, 37);
    test_attention(64, 300);
    return test_finish();
}
