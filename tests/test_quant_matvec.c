/* test_quant_matvec.c - the decode kernels (rein_qmatmul_nt) against their plain reference, for
 * every weight type they read.
 *
 * For F32, F16, BF16, Q8_0, Q4_0, Q4_1 (quantized from random floats) and Q4_K, Q6_K (random
 * blocks with sane scales): the AVX-512 and the portable paths against rein_qmatmul_nt_ref for
 * 1 to 37 activation rows, normalised by sum |x w|; the portable path bit for bit; each output row
 * the same bits whatever the other rows and the thread count (batched decoding depends on it; F32
 * is computed one way below batch 8 and another from 8 on);
 * the multi-weight call equal to separate calls; accumulation; and dequantization in registers
 * exact: x = the identity gives back rein_dequantize's values bit for bit; F16 and BF16 the bits of
 * F32 with their values. Q8_0 and Q4_1 pass the same checks again repacked by rein_qmatmul_pack
 * (the layout their AVX-512 kernels read).
 */
#include "testutil.h"

#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/qmatmul.h"
#include "kernels/qpack.h"
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

/* A weight (M, K) of `type` in a fresh buffer (freed by the caller). */
static uint8_t *make_weight(int type, int M, int K, rein_qweight *w) {
    int bs = rein_type_block_size(type);
    size_t bb = rein_type_block_bytes(type);
    size_t row_bytes = (size_t)(K / bs) * bb;
    uint8_t *data = malloc(row_bytes * (size_t)M + 64);
    if (type == REIN_TYPE_Q4_K || type == REIN_TYPE_Q6_K) {
        /* random blocks; the f16 scales set to small normal values */
        for (size_t i = 0; i < row_bytes * (size_t)M; i++) data[i] = (uint8_t)rein_rng_u64(&rng);
        for (size_t b = 0; b < row_bytes * (size_t)M / bb; b++) {
            uint8_t *blk = data + b * bb;
            uint16_t d = rein_fp32_to_fp16(0.001f + 0.01f * rein_rng_uniform(&rng));
            uint16_t dm = rein_fp32_to_fp16(0.001f + 0.01f * rein_rng_uniform(&rng));
            if (type == REIN_TYPE_Q4_K) {
                memcpy(blk, &d, 2);
                memcpy(blk + 2, &dm, 2);
            } else {
                memcpy(blk + 208, &d, 2);
            }
        }
    } else {
        float *f = malloc(sizeof(float) * (size_t)M * K);
        for (int64_t i = 0; i < (int64_t)M * K; i++) f[i] = rein_rng_normal(&rng) * 0.5f;
        for (int r = 0; r < M; r++)
            CHECK_OK(rein_quantize(type, f + (int64_t)r * K, data + row_bytes * r, K));
        free(f);
    }
    *w = (rein_qweight){.type = type, .data = data, .row_bytes = (int64_t)row_bytes, .rows = M,
                        .cols = K};
    return data;
}

/* Worst |a - b| / (sum_k |x_k w_k| + tiny) over all outputs. */
static double norm_err(const float *a, const float *b, const float *x, const rein_qweight *w, int N) {
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    double worst = 0;
    for (int j = 0; j < w->rows; j++) {
        rein_dequantize(w->type, (const uint8_t *)w->data + j * w->row_bytes, row, w->cols);
        for (int i = 0; i < N; i++) {
            double s = 1e-30;
            for (int k = 0; k < w->cols; k++) s += fabs((double)x[(int64_t)i * w->cols + k] * row[k]);
            double e = fabs((double)a[(int64_t)i * w->rows + j] - b[(int64_t)i * w->rows + j]) / s;
            if (e > worst) worst = e;
        }
    }
    free(row);
    return worst;
}

/* Every check on one weight, as the file stores it or (packed) repacked by rein_qmatmul_pack. */
static void check_weight(rein_qweight w, const uint8_t *data, int packed) {
    const int type = w.type, M = w.rows, K = w.cols;
    const int NMAX = 37;
    float *x = malloc(sizeof(float) * (size_t)NMAX * K);
    float *ref = malloc(sizeof(float) * (size_t)NMAX * M), *got = malloc(sizeof(float) * (size_t)NMAX * M);
    float *one = malloc(sizeof(float) * (size_t)M);
    for (int64_t i = 0; i < (int64_t)NMAX * K; i++) x[i] = rein_rng_normal(&rng);
    const int Ns[] = {1, 2, 3, 4, 5, 16, 37};
    double worst_fast = 0;
    int port_exact = 1, rows_same = 1;
    for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++) {
        int N = Ns[ni];
        rein_qmatmul_nt_ref(ref, x, &w, N, 0);
        for (int portable = 0; portable <= 1; portable++) {
            rein_matmul_force_portable(portable);
            for (int th = 1; th <= 2; th++) {
                rein_set_threads(th);
                rein_qmatmul_nt(got, x, &w, N, 0);
                if (portable) port_exact &= !memcmp(got, ref, sizeof(float) * (size_t)N * M);
                else worst_fast = fmax(worst_fast, norm_err(got, ref, x, &w, N));
                /* each row alone gives the same bits */
                for (int i = 0; i < N; i += (N > 4 ? 3 : 1)) {
                    rein_qmatmul_nt(one, x + (int64_t)i * K, &w, 1, 0);
                    rows_same &= !memcmp(one, got + (int64_t)i * M, sizeof(float) * (size_t)M);
                }
            }
        }
        rein_matmul_force_portable(0);
    }
    printf("%-5s (%d, %d)%s: avx512 vs reference worst normalised error %.3g; portable %s; rows "
           "independent of the batch: %s\n", rein_type_name(type), M, K, packed ? " repacked" : "",
           worst_fast,
           port_exact ? "bit-exact" : "DIFFERS", rows_same ? "yes" : "NO");
    CHECKF(worst_fast <= 1e-6, "%s: %.3g", rein_type_name(type), worst_fast);
    CHECK(port_exact);
    CHECK(rows_same);

    /* accumulate: y += x W^T */
    for (int64_t i = 0; i < (int64_t)3 * M; i++) got[i] = ref[i] = (float)i * 0.25f;
    rein_qmatmul_nt_ref(ref, x, &w, 3, 1);
    rein_qmatmul_nt(got, x, &w, 3, 1);
    double e = norm_err(got, ref, x, &w, 3);
    CHECKF(e <= 2e-6, "%s accumulate: %.3g", rein_type_name(type), e);

    /* identity rows: exact dequantization in registers, both paths */
    int kk = K < 64 ? K : 64;
    float *eye = calloc((size_t)kk * K, sizeof(float)), *deq = malloc(sizeof(float) * (size_t)K);
    float *ye = malloc(sizeof(float) * (size_t)kk * M);
    for (int i = 0; i < kk; i++) eye[(int64_t)i * K + (i * 7) % K] = 1.0f;
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        rein_qmatmul_nt(ye, eye, &w, kk, 0);
        int exact = 1;
        for (int j = 0; j < M; j++) {
            rein_dequantize(type, data + w.row_bytes * j, deq, K);
            for (int i = 0; i < kk; i++) {
                float a = ye[(int64_t)i * M + j], b = deq[(i * 7) % K];
                exact &= a == b || (a != a && b != b);
            }
        }
        CHECKF(exact, "%s: dequantization in the kernel differs from rein_dequantize (%s)",
               rein_type_name(type), portable ? "portable" : "avx512");
    }
    rein_matmul_force_portable(0);
    free(eye), free(deq), free(ye);
    free(x), free(ref), free(got), free(one);
}

static void check_type(int type, int M, int K) {
    rein_qweight w;
    uint8_t *data = make_weight(type, M, K, &w);
    check_weight(w, data, 0);
    void *block;
    CHECK_OK(rein_qmatmul_pack(&w, 1, &block));
    if (w.packed) check_weight(w, data, 1);
    /* F32 is repacked when its spans are whole blocks of 32 (qpack.c) */
    int packable = type == REIN_TYPE_Q8_0 || type == REIN_TYPE_Q4_1 ||
                   (type == REIN_TYPE_F32 && K % 32 == 0 && qpack_span(K) % 32 == 0);
    CHECK(!w.packed == !packable);
    rein_qmatmul_pack_free(block);
    free(data);
}

/* The multi-weight call equals separate calls, the weights as stored and then two of them
 * repacked (a call may mix both). */
static void check_multi(void) {
    rein_qweight w[3];
    uint8_t *d0 = make_weight(REIN_TYPE_Q4_1, 96, 128, &w[0]);
    uint8_t *d1 = make_weight(REIN_TYPE_Q8_0, 32, 128, &w[1]);
    uint8_t *d2 = make_weight(REIN_TYPE_F16, 40, 128, &w[2]); /* never repacked */
    float x[5 * 128], y0[5 * 96], y1[5 * 32], y2[5 * 40], s0[5 * 96], s1[5 * 32], s2[5 * 40];
    for (int i = 0; i < 5 * 128; i++) x[i] = rein_rng_normal(&rng);
    float *ys[3] = {y0, y1, y2};
    void *block = NULL;
    for (int packed = 0; packed <= 1; packed++) {
        if (packed) CHECK_OK(rein_qmatmul_pack(w, 3, &block));
        rein_qmatmul_nt_multi(ys, x, w, 3, 5, 0);
        rein_qmatmul_nt(s0, x, &w[0], 5, 0);
        rein_qmatmul_nt(s1, x, &w[1], 5, 0);
        rein_qmatmul_nt(s2, x, &w[2], 5, 0);
        CHECK(!memcmp(y0, s0, sizeof y0) && !memcmp(y1, s1, sizeof y1) &&
              !memcmp(y2, s2, sizeof y2));
    }
    CHECK(w[0].packed && w[1].packed && !w[2].packed);
    rein_qmatmul_pack_free(block);
    free(d0), free(d1), free(d2);
}

/* F16 and BF16 weights give the very bits of the F32 weight holding their values, at batch 1 and
 * batch 16 (rein export relies on it: a file converted to F32 decodes as it did). */
static void check_float_types_agree(void) {
    const int M = 40, K = 200;
    float x[16 * 200], y16[16 * 40], y32[16 * 40];
    for (int i = 0; i < 16 * K; i++) x[i] = rein_rng_normal(&rng);
    const int types[2] = {REIN_TYPE_F16, REIN_TYPE_BF16};
    for (int t = 0; t < 2; t++) {
        rein_qweight h, f;
        uint8_t *dh = make_weight(types[t], M, K, &h);
        float *vals = malloc(sizeof(float) * (size_t)M * K);
        CHECK_OK(rein_dequantize(types[t], dh, vals, (int64_t)M * K));
        f = (rein_qweight){.type = REIN_TYPE_F32, .data = vals, .row_bytes = (int64_t)K * 4,
                           .rows = M, .cols = K};
        for (int N = 1; N <= 16; N += 15) {
            rein_qmatmul_nt(y16, x, &h, N, 0);
            rein_qmatmul_nt(y32, x, &f, N, 0);
            CHECKF(!memcmp(y16, y32, sizeof(float) * (size_t)N * M), "%s and F32, batch %d",
                   rein_type_name(types[t]), N);
        }
        free(vals), free(dh);
    }
}

/* F32 weights give the same bits repacked as read in place, at every batch from 1 to 17 (the
 * packed copy keeps the spans and the order of the sums: decoding still equals the prefill). */
static void check_f32_packed_same_bits(int M, int K) {
    rein_qweight w;
    uint8_t *data = make_weight(REIN_TYPE_F32, M, K, &w);
    float *x = malloc(sizeof(float) * 17 * (size_t)K), *a = malloc(sizeof(float) * 17 * (size_t)M);
    float *b = malloc(sizeof(float) * 17 * (size_t)M);
    for (int i = 0; i < 17 * K; i++) x[i] = rein_rng_normal(&rng);
    rein_qweight p = w;
    void *block;
    CHECK_OK(rein_qmatmul_pack(&p, 1, &block));
    CHECKF(p.packed || !rein_kernels_use_avx512(), "F32 (%d, %d) not repacked", M, K);
    for (int N = 1; N <= 17; N++)
        for (int acc = 0; acc <= 1; acc++) {
            for (int i = 0; i < N * M; i++) a[i] = b[i] = (float)i * 0.5f;
            rein_qmatmul_nt(a, x, &w, N, acc);
            rein_qmatmul_nt(b, x, &p, N, acc);
            CHECKF(!memcmp(a, b, sizeof(float) * (size_t)N * M),
                   "F32 (%d, %d) batch %d%s: repacked and in place differ", M, K, N,
                   acc ? " accumulating" : "");
        }
    rein_qmatmul_pack_free(block);
    free(x), free(a), free(b), free(data);
}

int main(void) {
    rein_rng_seed(&rng, 4);
    printf("kernel: %s\n", rein_matmul_kernel_name());
    check_type(REIN_TYPE_F32, 67, 77); /* a partial last chunk */
    check_type(REIN_TYPE_F32, 64, 576);
    check_type(REIN_TYPE_F32, 40, 1100); /* spans of 220, x transposed in two pieces at batch 8+ */
    check_type(REIN_TYPE_F16, 33, 50);
    check_type(REIN_TYPE_BF16, 45, 96);
    check_type(REIN_TYPE_Q8_0, 70, 576);
    check_type(REIN_TYPE_Q4_0, 64, 256);
    check_type(REIN_TYPE_Q4_1, 131, 1536);
    check_type(REIN_TYPE_Q4_K, 48, 512);
    check_type(REIN_TYPE_Q6_K, 50, 256);
    check_multi();
    check_float_types_agree();
    check_f32_packed_same_bits(67, 576);  /* a partial last group of 16 rows */
    check_f32_packed_same_bits(48, 1536); /* spans of 256 */
    check_f32_packed_same_bits(35, 96);
    rein_set_threads(0);
    return test_finish();
}
