/* test_quant_int8.c - the int8-activation decode mode (rein_qmatmul_set_int8, qpack_vnni.c)
 * against plain references.
 *
 * The activation quantizer against a scalar one written here (same bits), on random rows and on
 * edge blocks (all zero, huge, subnormal, mixed), never NaN, each element within d / 2. The
 * products for Q8_0 and Q4_1 weights with rows not a multiple of 16 and N = 1 .. 33:
 *   - against a scalar reference that quantizes the activations the same way, sums the integer
 *     products of a block exactly and scales them in the order the header of qpack_vnni.c states
 *     (so the bits agree; the check allows 1e-6 of sum |x w| for the rounding of that scaling);
 *   - against the f32 product within the quantization error bound: per output
 *     sum over blocks of (d_x / 2) * sum |w|, plus 1e-5 of sum |x w| for float rounding;
 *   - each row alone, at 1 and 2 threads, with the same bits as in the batch; accumulate on and
 *     off; the multi-weight call (with an F32 weight beside, which keeps its exact path) equal to
 *     separate calls; a weight with only one of the two layouts runs the path of that layout.
 * SKIP when the CPU lacks AVX-512 VNNI.
 */
#include "testutil.h"

#include "base/base.h"
#include "kernels/qmatmul.h"
#include "kernels/qpack_vnni.h"
#include "kernels/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

static rein_rng rng;

/* ---- the independent scalar reference -------------------------------------------------------- */

/* One block of 32 quantized as the header says: d = max|x| / 127, q = round(x / d) to nearest
 * even, clamped to [-127, 127]; all zero when d is 0. Returns sum(q). */
static int ref_quantize(const float *x, int8_t *q, float *d) {
    float amax = 0;
    for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[k]));
    *d = amax / 127.0f;
    int sum = 0;
    for (int k = 0; k < 32; k++) {
        float v = *d > 0 ? nearbyintf(x[k] / *d) : 0.0f;
        q[k] = (int8_t)fmaxf(-127.0f, fminf(127.0f, v));
        sum += q[k];
    }
    return sum;
}

/* Element k of block c of weight row r as the file's integers, and the block's d and m. */
static int ref_wq(const rein_qweight *w, int r, int c, int k, float *d, float *m) {
    const uint8_t *b = (const uint8_t *)w->data + (int64_t)r * w->row_bytes +
                       (int64_t)c * (int64_t)rein_type_block_bytes(w->type);
    uint16_t h;
    memcpy(&h, b, 2);
    *d = rein_fp16_to_fp32(h);
    if (w->type == REIN_TYPE_Q8_0) {
        *m = 0;
        return (int8_t)b[2 + k];
    }
    memcpy(&h, b + 2, 2);
    *m = rein_fp16_to_fp32(h);
    return k < 16 ? b[4 + k] & 15 : b[4 + k - 16] >> 4;
}

/* y (N, M) (+)= the int8 mode's product, computed plainly. */
static void ref_int8(float *y, const float *x, const rein_qweight *w, int N, int accumulate) {
    const int K = w->cols, M = w->rows, nb = K / 32;
    int8_t qx[32];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < M; j++) {
            float acc = 0;
            for (int c = 0; c < nb; c++) {
                float dx, dw, mw;
                const int sx = ref_quantize(x + (int64_t)i * K + c * 32, qx, &dx);
                int32_t s = 0;
                for (int k = 0; k < 32; k++) s += ref_wq(w, j, c, k, &dw, &mw) * qx[k];
                acc = fmaf((float)s * dx, dw, acc);
                if (w->type == REIN_TYPE_Q4_1) acc = fmaf(mw, dx * (float)sx, acc);
            }
            float *yo = y + (int64_t)i * M + j;
            *yo = accumulate ? *yo + acc : acc;
        }
}

/* ---- checks -------------------------------------------------------------------------------- */

static uint8_t *make_weight(int type, int M, int K, rein_qweight *w) {
    const size_t row_bytes = (size_t)(K / rein_type_block_size(type)) * rein_type_block_bytes(type);
    uint8_t *data = malloc(row_bytes * (size_t)M);
    float *f = malloc(sizeof(float) * (size_t)M * K);
    for (int64_t i = 0; i < (int64_t)M * K; i++) f[i] = rein_rng_normal(&rng) * 0.5f;
    if (type == REIN_TYPE_Q4_1) /* a shifted row now and then: the min term matters */
        for (int64_t i = 0; i < (int64_t)M * K; i++) f[i] += (i / K) % 3 == 0 ? 0.7f : 0.0f;
    for (int r = 0; r < M; r++)
        if (type == REIN_TYPE_F32) memcpy(data + row_bytes * r, f + (int64_t)r * K, (size_t)K * 4);
        else CHECK_OK(rein_quantize(type, f + (int64_t)r * K, data + row_bytes * r, K));
    free(f);
    *w = (rein_qweight){.type = type, .data = data, .row_bytes = (int64_t)row_bytes, .rows = M,
                        .cols = K};
    return data;
}

static void check_quantizer(void) {
    enum { N = 3, K = 11 * 32 };
    float x[N * K];
    for (int i = 0; i < N * K; i++) x[i] = rein_rng_normal(&rng) * 3.0f;
    /* edge blocks: all zero; up to FLT_MAX; subnormal; one huge value among tiny ones; small
     * integers; a block whose d is subnormal; a negative maximum */
    for (int k = 0; k < 32; k++) {
        x[k] = 0.0f;
        x[32 + k] = (k & 1 ? -1.0f : 1.0f) * (FLT_MAX / 32.0f) * (float)(k + 1);
        x[64 + k] = (float)(k - 16) * 1e-45f;
        x[96 + k] = k == 5 ? 3e38f : 1e-30f * (float)k;
        x[128 + k] = (float)(k - 16) * 0.5f;
        x[160 + k] = k == 0 ? 1e-38f : 0.0f;
        x[192 + k] = k == 7 ? -5.0f : 0.0f;
    }
    void *mem = rein_malloc_aligned(qvnni_x_size(N, K), 64);
    qvnni_x q;
    qvnni_quantize(x, N, K, mem, &q);
    int same = 1, finite = 1, within = 1;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < K / 32; c++) {
            int8_t rq[32];
            float rd;
            const int64_t e = (int64_t)i * K + c * 32, o = (int64_t)c * N + i; /* block-major */
            const int sum = ref_quantize(x + e, rq, &rd);
            const int8_t *qq = q.q + o * 32;
            same &= !memcmp(rq, qq, 32) && rd == q.d[o] && q.bias[o] == -128 * sum &&
                    q.s[o] == rd * (float)sum;
            finite &= isfinite(q.d[o]) && isfinite(q.s[o]);
            for (int k = 0; k < 32 && q.d[o] > FLT_MIN; k++)
                within &= fabs((double)x[e + k] - (double)q.d[o] * qq[k]) <= 0.5001 * q.d[o];
        }
    printf("activation quantizer: %s the scalar reference, finite: %s, within d/2: %s\n",
           same ? "same bits as" : "DIFFERS from", finite ? "yes" : "NO", within ? "yes" : "NO");
    CHECK(same && finite && within);
    CHECK(q.d[0] == 0 && q.s[0] == 0 && q.bias[0] == 0); /* the all-zero block */
    rein_free_aligned(mem);
}

/* Worst |a - b| / (sum |x w| + tiny), and whether a - b stays within the quantization bound. */
static double check_f32(const float *got, const float *ref, const float *x, const rein_qweight *w,
                        int N, int *in_bound) {
    const int K = w->cols, M = w->rows;
    float *row = malloc(sizeof(float) * (size_t)K);
    double worst = 0;
    for (int j = 0; j < M; j++) {
        rein_dequantize(w->type, (const uint8_t *)w->data + j * w->row_bytes, row, K);
        for (int i = 0; i < N; i++) {
            const float *xi = x + (int64_t)i * K;
            double mag = 1e-30, bound = 0;
            for (int c = 0; c < K / 32; c++) {
                double amax = 0, wsum = 0;
                for (int k = c * 32; k < c * 32 + 32; k++) {
                    mag += fabs((double)xi[k] * row[k]);
                    amax = fmax(amax, fabs(xi[k]));
                    wsum += fabs(row[k]);
                }
                bound += amax / 127.0 / 2.0 * wsum;
            }
            const double e = fabs((double)got[(int64_t)i * M + j] - ref[(int64_t)i * M + j]);
            *in_bound &= e <= bound * 1.0001 + 1e-5 * mag;
            worst = fmax(worst, e / mag);
        }
    }
    free(row);
    return worst;
}

static double norm_diff(const float *a, const float *b, const float *x, const rein_qweight *w,
                        int N) {
    int ignore = 1;
    return check_f32(a, b, x, w, N, &ignore);
}

static void check_type(int type, int M, int K) {
    enum { NMAX = 33 };
    rein_qweight w;
    uint8_t *data = make_weight(type, M, K, &w);
    void *block = NULL;
    CHECK_OK(rein_qmatmul_pack(&w, 1, &block));
    CHECK(w.packed_int8 && !w.packed);
    float *x = malloc(sizeof(float) * (size_t)NMAX * K);
    const size_t ny = sizeof(float) * (size_t)NMAX * M;
    float *ref = malloc(ny), *got = malloc(ny), *f32 = malloc(ny);
    float *one = malloc(sizeof(float) * (size_t)M);
    for (int64_t i = 0; i < (int64_t)NMAX * K; i++) x[i] = rein_rng_normal(&rng);
    ref_int8(ref, x, &w, NMAX, 0);
    rein_qmatmul_nt_ref(f32, x, &w, NMAX, 0);
    double worst_ref = 0, worst_f32 = 0;
    int exact = 1, in_bound = 1, rows_same = 1;
    for (int N = 1; N <= NMAX; N++) {
        for (int th = 1; th <= 2; th++) {
            rein_set_threads(th);
            rein_qmatmul_nt(got, x, &w, N, 0);
            exact &= !memcmp(got, ref, sizeof(float) * (size_t)N * M);
            worst_ref = fmax(worst_ref, norm_diff(got, ref, x, &w, N));
            if (N == NMAX || N == 16)
                worst_f32 = fmax(worst_f32, check_f32(got, f32, x, &w, N, &in_bound));
            for (int i = 0; i < N; i += (N > 4 ? 5 : 1)) { /* each row alone */
                rein_qmatmul_nt(one, x + (int64_t)i * K, &w, 1, 0);
                rows_same &= !memcmp(one, got + (int64_t)i * M, sizeof(float) * (size_t)M);
            }
        }
    }
    /* accumulate: y += x W^T */
    for (int64_t i = 0; i < (int64_t)NMAX * M; i++) got[i] = ref[i] = (float)(i % 17) * 0.25f;
    ref_int8(ref, x, &w, NMAX, 1);
    rein_qmatmul_nt(got, x, &w, NMAX, 1);
    const double acc_err = norm_diff(got, ref, x, &w, NMAX);
    printf("%-5s (%d, %d) int8: vs scalar int8 reference %s (worst %.3g); vs f32 worst %.3g, "
           "within the quantization bound: %s; rows independent of the batch: %s; accumulate "
           "%.3g\n", rein_type_name(type), M, K, exact ? "bit-exact" : "differs", worst_ref,
           worst_f32, in_bound ? "yes" : "NO", rows_same ? "yes" : "NO", acc_err);
    CHECKF(worst_ref <= 1e-6, "%s: %.3g", rein_type_name(type), worst_ref);
    CHECKF(acc_err <= 1e-6, "%s accumulate: %.3g", rein_type_name(type), acc_err);
    CHECK(in_bound);
    CHECK(rows_same);
    rein_set_threads(0);
    rein_qmatmul_pack_free(block);
    free(x), free(ref), free(got), free(f32), free(one), free(data);
}

/* The multi-weight call equals separate calls; an F32 weight among them keeps its exact path;
 * a weight with only the exact layout (or with the mode off, only the int8 one) runs exactly. */
static void check_multi_and_layouts(void) {
    enum { N = 5, K = 128 };
    rein_qweight w[3];
    uint8_t *d0 = make_weight(REIN_TYPE_Q4_1, 96, K, &w[0]);
    uint8_t *d1 = make_weight(REIN_TYPE_Q8_0, 35, K, &w[1]);
    uint8_t *d2 = make_weight(REIN_TYPE_F32, 40, K, &w[2]);
    float x[N * K], y0[N * 96], y1[N * 35], y2[N * 40], s0[N * 96], s1[N * 35], s2[N * 40];
    float e1[N * 35], r1[N * 35];
    for (int i = 0; i < N * K; i++) x[i] = rein_rng_normal(&rng);
    float *ys[3] = {y0, y1, y2};
    void *blocks[2] = {NULL, NULL};
    /* the exact layout first, as a model made before the mode was turned on */
    rein_qmatmul_set_int8(0);
    CHECK_OK(rein_qmatmul_pack(w, 3, &blocks[0]));
    rein_qmatmul_nt(e1, x, &w[1], N, 0); /* exact, from the exact layout */
    rein_qmatmul_set_int8(1);
    rein_qmatmul_nt(s1, x, &w[1], N, 0); /* int8 on, no int8 layout yet: the exact path */
    CHECK(!memcmp(s1, e1, sizeof s1));
    CHECK_OK(rein_qmatmul_pack(w, 3, &blocks[1]));
    CHECK(w[0].packed && w[0].packed_int8 && w[1].packed && w[1].packed_int8 && !w[2].packed_int8);
    rein_qmatmul_nt_multi(ys, x, w, 3, N, 0);
    rein_qmatmul_nt(s0, x, &w[0], N, 0);
    rein_qmatmul_nt(s1, x, &w[1], N, 0);
    rein_qmatmul_nt(s2, x, &w[2], N, 0);
    CHECK(!memcmp(y0, s0, sizeof y0) && !memcmp(y1, s1, sizeof y1) && !memcmp(y2, s2, sizeof y2));
    ref_int8(r1, x, &w[1], N, 0);
    CHECK(!memcmp(s1, r1, sizeof s1) || norm_diff(s1, r1, x, &w[1], N) <= 1e-6);
    rein_qmatmul_set_int8(0);
    rein_qmatmul_nt(y2, x, &w[2], N, 0); /* F32: the same bits in either mode */
    CHECK(!memcmp(y2, s2, sizeof y2));
    rein_qmatmul_nt(s1, x, &w[1], N, 0); /* mode off: the exact layout again */
    CHECK(!memcmp(s1, e1, sizeof s1));
    /* only the int8 layout, mode off: read through the file's blocks, not the int8 copy */
    rein_qweight only = w[1];
    only.packed = NULL;
    rein_qmatmul_nt(s1, x, &only, N, 0);
    rein_qmatmul_nt_ref(r1, x, &only, N, 0);
    CHECK(norm_diff(s1, r1, x, &only, N) <= 1e-6);
    rein_qmatmul_pack_free(blocks[0]);
    rein_qmatmul_pack_free(blocks[1]);
    free(d0), free(d1), free(d2);
}

int main(void) {
    rein_rng_seed(&rng, 8);
    rein_qmatmul_set_int8(1);
    if (!rein_qmatmul_int8())
        test_skip("the int8 mode does not run here: the CPU lacks AVX-512 VNNI (or the AVX-512 "
                  "kernels are off)");
    check_quantizer();
    check_type(REIN_TYPE_Q8_0, 70, 576);
    check_type(REIN_TYPE_Q4_1, 131, 1536);
    check_type(REIN_TYPE_Q8_0, 9, 64);
    check_type(REIN_TYPE_Q4_1, 33, 96);
    check_multi_and_layouts();
    rein_qmatmul_set_int8(0);
    return test_finish();
}
