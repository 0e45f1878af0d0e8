/* qpack_vnni.c - decoding with int8 activations: Q8_0 and Q4_1 weights laid out for AVX-512 VNNI,
 * the activation quantizer, and the kernel (the opt-in mode of qmatmul.h, rein_qmatmul_set_int8).
 *
 * The exact decode kernels (qpack.c) multiply in f32, 16 multiply-adds per instruction; at batch
 * 16 those FMAs, not the weight bytes, bound a step. Here each activation row is quantized per
 * block of 32 to int8 with an f32 scale (as llama.cpp's Q8_0 / Q8_1: d = max|x| / 127,
 * q = round(x / d)), once per call, and the weights' integers meet it in vpdpbusd, which sums four
 * u8 x s8 products into each 32-bit lane: 64 multiply-adds per instruction, exact in int32.
 *
 * Layout. As in qpack.c, a weight is cut into groups of QPACK_G = 16 rows, one vector lane a row,
 * and each group is one stream of bytes: first the scales of all its blocks (rounded up to 64
 * bytes), then the integers of all its blocks, so that every vector of integers is one aligned
 * cache line. For block c of 32 columns:
 *   Q8_0: scales 32 bytes, the 16 rows' f16 d; integers 512 bytes, 8 vectors: vector v holds in
 *         lane r the bytes q[r][4v .. 4v+3] + 128 (biased to u8: vpdpbusd's unsigned operand);
 *   Q4_1: scales 64 bytes, the 16 rows' f16 d then their f16 m; integers 256 bytes, 4 vectors:
 *         vector v holds in lane r four bytes, byte b with q[r][8v+b] in its low nibble and
 *         q[r][8v+4+b] in its high one (an and, or a shift and an and, gives two u8 operands).
 * Rows past the end are zero. The f16 values are the file's, moved, never converted.
 *
 * Arithmetic. For activation row i, weight row r and block c, the integer sum
 *   S = sum_k qw[r][k] * qx[i][k]
 * comes out of vpdpbusd exactly: for Q8_0 the accumulator starts at -128 * sum_k qx[i][k] (a
 * scalar per activation row and block, made by the quantizer) to cancel the bias. Then, in f32,
 *   acc = fma((float)S * dx[i][c], dw[r][c], acc)                           (both types)
 *   acc = fma(mw[r][c], sx[i][c], acc)   with sx = dx * sum_k qx[i][k]      (Q4_1's min)
 * block by block in order from acc = 0, and y = acc (or y + acc when accumulating). That chain is
 * the same whatever N, the tile, the thread or the task, so each output row depends on its own
 * input row only and has the same bits batched as alone. The results differ from the exact path's
 * by the activations' rounding (at most d / 2 an element).
 *
 * Kernel. A tile is NX activation rows by NP groups with NX * NP <= 8 (8 int32 and 8 f32
 * accumulators in registers). At batch 1 and 2 four groups run side by side (independent chains,
 * the weights streamed once, the next tile's bytes prefetched in address order as qpack.c does);
 * from batch 5 on a task walks its groups one at a time and runs every tile of activation rows
 * over the group before the next (8 rows a tile: one unpacked weight vector feeds eight
 * vpdpbusd), so the group's bytes come from memory once and from L1 after.
 *
 * Limits, measured on the Zen 5 here (no counters; loops of each instruction beside vpdpbusd).
 * vpdpbusd issues two a cycle, but f32 multiplies and FMAs take the same two pipes, while
 * conversions, integer and/shift, adds and in-lane shuffles do not. Each 16-row, one-activation,
 * 32-element step is 8 vpdpbusd and, for the scales, 3 such f32 operations for Q4_1 (2 for
 * Q8_0), whatever the tiling; so this arithmetic can reach at most 8 / 11 = 73% (80%) of the
 * vpdpbusd peak. vpmaddubsw, vpmaddwd, vpdpwssd and vdpbf16ps take the same two pipes, so no
 * other dot product adds throughput; vscalefps does not, so power-of-two activation scales would
 * lift the ceilings to 80% (89%), at the price of up to twice the activations' rounding error
 * (not done). On data in L1 the kernel runs at 64-67% (Q4_1) and 60-65% (Q8_0). Tried and
 * no faster: 4 x 2 tiles sharing each broadcast between two groups (49-50 -> 53-54 cycles a
 * tile-block for Q4_1); lanes of 4 rows x 4 activations, with activations expanded in memory so
 * no broadcast is needed (56-60 cycles: registers run out); the scale terms reordered so that
 * fewer wait on the integer sums (same speed).
 */
#include "kernels/qpack_vnni.h"
#include "base/base.h"
#include "kernels/qpack.h"
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BLK QVNNI_BLK
#define G QPACK_G

/* Scale bytes and integer bytes of one block of one group. */
static int64_t scale_bytes(int type) {
    return type == REIN_TYPE_Q8_0 ? 2 * G : 4 * G;
}
static int64_t int_bytes(int type) {
    return type == REIN_TYPE_Q8_0 ? BLK * G : BLK * G / 2;
}

/* Bytes of one group's scales (all its blocks, whole cache lines) and of the whole group. */
static int64_t scales_region(int type, int nb) {
    return (nb * scale_bytes(type) + 63) / 64 * 64;
}
static int64_t group_bytes(int type, int nb) {
    return scales_region(type, nb) + nb * int_bytes(type);
}

size_t qvnni_size(const rein_qweight *w) {
    if ((w->type != REIN_TYPE_Q8_0 && w->type != REIN_TYPE_Q4_1) || w->cols % BLK) return 0;
    return (size_t)((w->rows + G - 1) / G * group_bytes(w->type, w->cols / BLK));
}

void qvnni_write(const rein_qweight *w, void *dst) {
    const int type = w->type, nb = w->cols / BLK, ng = (w->rows + G - 1) / G;
    const int64_t sb = (int64_t)rein_type_block_bytes(type), gs = group_bytes(type, nb);
    const int64_t sr = scales_region(type, nb);
    memset(dst, 0, (size_t)(ng * gs));
    for (int g = 0; g < ng; g++) {
        uint8_t *o = (uint8_t *)dst + g * gs;
        for (int r = 0; r < G && g * G + r < w->rows; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (int64_t)(g * G + r) * w->row_bytes;
            for (int c = 0; c < nb; c++) {
                const uint8_t *b = row + c * sb;
                uint8_t *sc = o + c * scale_bytes(type), *q = o + sr + c * int_bytes(type);
                memcpy(sc + 2 * r, b, 2); /* d */
                if (type == REIN_TYPE_Q8_0) {
                    for (int k = 0; k < BLK; k++)
                        q[64 * (k / 4) + 4 * r + k % 4] = (uint8_t)((int8_t)b[2 + k] + 128);
                    continue;
                }
                memcpy(sc + 2 * G + 2 * r, b + 2, 2); /* m */
                /* file: byte j holds element j (low nibble) and j + 16 (high) */
                const uint8_t *qs = b + 4;
                for (int k = 0; k < BLK; k++) {
                    const int e = k < 16 ? qs[k] & 15 : qs[k - 16] >> 4;
                    const int v = k / 8, byte = k % 4, high = k % 8 >= 4;
                    q[64 * v + 4 * r + byte] |= (uint8_t)(e << (4 * high));
                }
            }
        }
    }
}

size_t qvnni_x_size(int N, int K) {
    const size_t nb = (size_t)(K / BLK), n = (size_t)N;
    return (n * (size_t)K + 63) / 64 * 64 + 3 * ((n * nb * 4 + 63) / 64 * 64);
}

#if defined(__x86_64__)

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* The arrays of a qvnni_x laid out in mem, in the order qvnni_x_size counts them. */
static void x_layout(void *mem, int N, int K, qvnni_x *x) {
    const size_t nb = (size_t)(K / BLK), n = (size_t)N, arr = (n * nb * 4 + 63) / 64 * 64;
    uint8_t *p = mem;
    x->q = (int8_t *)p;
    p += (n * (size_t)K + 63) / 64 * 64;
    x->d = (float *)p;
    x->s = (float *)(p + arr);
    x->bias = (int32_t *)(p + 2 * arr);
    x->nb = (int)nb;
    x->N = N;
}

int qvnni_cpu(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* One block of 32: q, and its d, s and bias. Division rather than a reciprocal: 1 / d overflows
 * for a block of subnormals, and 0 * inf would be NaN. */
VNNI static void quantize_block(const float *x, int8_t *q, float *d, float *s, int32_t *bias) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float dd = amax / 127.0f;
    if (!(dd > 0)) {
        memset(q, 0, BLK);
        *d = *s = 0;
        *bias = 0;
        return;
    }
    const __m512 vd = _mm512_set1_ps(dd);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    /* cvtps rounds in the current mode: to nearest, ties to even */
    __m512i qa = _mm512_cvtps_epi32(_mm512_div_ps(a, vd));
    __m512i qb = _mm512_cvtps_epi32(_mm512_div_ps(b, vd));
    qa = _mm512_min_epi32(_mm512_max_epi32(qa, lo), hi);
    qb = _mm512_min_epi32(_mm512_max_epi32(qb, lo), hi);
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(qb));
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    *d = dd;
    *s = dd * (float)sum;
    *bias = -128 * sum;
}

void qvnni_layout(void *mem, int N, int K, qvnni_x *out) {
    x_layout(mem, N, K, out);
}

void qvnni_quantize_blocks(const float *x, int K, const qvnni_x *out, int c0, int c1) {
    const int N = out->N;
    for (int c = c0; c < c1; c++)
        for (int i = 0; i < N; i++) {
            const int64_t o = (int64_t)c * N + i;
            quantize_block(x + (int64_t)i * K + c * BLK, out->q + o * BLK, &out->d[o], &out->s[o],
                           &out->bias[o]);
        }
}

void qvnni_quantize(const float *x, int N, int K, void *mem, qvnni_x *out) {
    x_layout(mem, N, K, out);
    qvnni_quantize_blocks(x, K, out, 0, out->nb);
}

/* The activation's four bytes p[0..3] in every lane (vpdpbusd's signed operand). */
VNNI INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Groups p < NP starting at pk (gs bytes apart) against activation rows i0 .. i0 + NX - 1: y rows
 * row0 + 16p .. (of M; those past M are neither read nor written). `prefetch`: fetch the next
 * tile's groups meanwhile, in address order, as far through as this tile is through its own. */
VNNI INLINE void tile(int type, const uint8_t *pk, int64_t gs, int nb, const qvnni_x *x, int i0,
                      int NX, int NP, float *y, int M, int row0, int accumulate, int prefetch) {
    const int64_t sr = scales_region(type, nb), ib = int_bytes(type), sb = scale_bytes(type);
    const int pf_lines = (int)((NP * gs + nb * 64 - 1) / (nb * 64)); /* a fixed count a block */
    const uint8_t *next = pk + NP * gs;
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[8];
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++) {
        const int n = REIN_MAX(0, REIN_MIN(G, M - row0 - G * p));
        mk[p] = (__mmask16)((1u << n) - 1);
    }
#pragma GCC unroll 8
    for (int a = 0; a < NX * NP; a++) acc[a] = _mm512_setzero_ps();
    for (int c = 0; c < nb; c++) {
        if (prefetch)
            for (int l = 0; l < pf_lines; l++)
                _mm_prefetch((const char *)next + ((int64_t)c * pf_lines + l) * 64, _MM_HINT_T0);
        const int64_t xo = (int64_t)c * x->N + i0; /* block c of row i0 */
        const int8_t *xq = x->q + xo * BLK;
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) {
            const uint8_t *g = pk + p * gs;
            const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(g + c * sb)));
            const uint8_t *q = g + sr + c * ib;
            __m512i s[8];
#pragma GCC unroll 8
            for (int i = 0; i < NX; i++) {
                const int32_t bias = x->bias[xo + i];
                s[i] = type == REIN_TYPE_Q8_0 ? _mm512_set1_epi32(bias) : _mm512_setzero_si512();
            }
#define XW(i, k) bcast4(xq + (i) * BLK + (k))
            if (type == REIN_TYPE_Q8_0) {
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    const __m512i w = _mm512_load_si512(q + 64 * v);
#pragma GCC unroll 8
                    for (int i = 0; i < NX; i++) s[i] = _mm512_dpbusd_epi32(s[i], w, XW(i, 4 * v));
                }
            } else {
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    const __m512i raw = _mm512_load_si512(q + 64 * v);
                    const __m512i lo = _mm512_and_si512(raw, m4);
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
#pragma GCC unroll 8
                    for (int i = 0; i < NX; i++) {
                        s[i] = _mm512_dpbusd_epi32(s[i], lo, XW(i, 8 * v));
                        s[i] = _mm512_dpbusd_epi32(s[i], hi, XW(i, 8 * v + 4));
                    }
                }
            }
#undef XW
            __m512 mw = _mm512_setzero_ps();
            if (type == REIN_TYPE_Q4_1)
                mw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(g + c * sb + 2 * G)));
#pragma GCC unroll 8
            for (int i = 0; i < NX; i++) {
                __m512 *a = &acc[i * NP + p];
                __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(s[i]), _mm512_set1_ps(x->d[xo + i]));
                *a = _mm512_fmadd_ps(t, dw, *a);
                if (type == REIN_TYPE_Q4_1)
                    *a = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[xo + i]), *a);
            }
        }
    }
#pragma GCC unroll 8
    for (int a = 0; a < NX * NP; a++) {
        const int i = a / NP, p = a % NP;
        float *yo = y + (int64_t)(i0 + i) * M + row0 + G * p;
        __m512 v = acc[a];
        if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[p], yo), v);
        _mm512_mask_storeu_ps(yo, mk[p], v);
    }
}

/* Groups [g0, g1) against activation rows [0, N): at batch 1 to 4 several groups a tile (four,
 * or two at batch 3 and 4; a task's last ones as even as they go), one from batch 5 on; for each
 * run of groups, every tile of activation rows (8, 4, 2 or 1 a tile, as many as fit). */
VNNI INLINE void rows_of(int type, const rein_qweight *w, const qvnni_x *x, int N, float *y,
                         int accumulate, int g0, int g1) {
    const int M = w->rows, nb = w->cols / BLK;
    const int64_t gs = group_bytes(type, nb);
    const int most = N <= 2 ? 4 : N <= 4 ? 2 : 1;
    for (int g = g0; g < g1;) {
        const int np = qpack_tile_groups(g1 - g, most);
        const uint8_t *pk = (const uint8_t *)w->packed_int8 + g * gs;
        for (int i0 = 0; i0 < N;) {
            const int left = N - i0, fit = 8 / np;
            const int nx = left >= 8 && fit >= 8 ? 8 : left >= 4 && fit >= 4 ? 4
                         : left >= 2 && fit >= 2 ? 2 : 1;
#define TILE(NX, NP) tile(type, pk, gs, nb, x, i0, NX, NP, y, M, g * G, accumulate, i0 == 0)
            switch (nx * 16 + np) {
            case 8 * 16 + 1: TILE(8, 1); break;
            QPACK_SMALL_TILES(TILE);
            }
#undef TILE
            i0 += nx;
        }
        g += np;
    }
}

VNNI void qvnni_rows(const rein_qweight *w, const qvnni_x *x, int N, float *y, int accumulate,
                     int g0, int g1) {
    if (w->type == REIN_TYPE_Q8_0) rows_of(REIN_TYPE_Q8_0, w, x, N, y, accumulate, g0, g1);
    else rows_of(REIN_TYPE_Q4_1, w, x, N, y, accumulate, g0, g1);
}

#else

int qvnni_cpu(void) {
    return 0;
}

void qvnni_layout(void *mem, int N, int K, qvnni_x *out) {
    REIN_ASSERT(0); /* the int8 mode runs only where qvnni_cpu says so */
}

void qvnni_quantize_blocks(const float *x, int K, const qvnni_x *out, int c0, int c1) {
    REIN_ASSERT(0);
}

void qvnni_quantize(const float *x, int N, int K, void *mem, qvnni_x *out) {
    REIN_ASSERT(0);
}

void qvnni_rows(const rein_qweight *w, const qvnni_x *x, int N, float *y, int accumulate, int g0,
                int g1) {
    REIN_ASSERT(0);
}

#endif
