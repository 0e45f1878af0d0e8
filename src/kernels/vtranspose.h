/* vtranspose.h - a 16 x 16 transpose of 32-bit lanes in AVX-512 registers, for the packing of
 * gemm_avx512.c and the decode kernels of qmatmul.c (private to src/kernels).
 *
 * 64 shuffles: pairs of rows interleaved (unpacklo/hi), then 4 x 4 blocks within each 128-bit lane
 * (shuffle_ps), then the lanes themselves (two rounds of shuffle_f32x4).
 */
#ifndef REIN_KERNELS_VTRANSPOSE_H
#define REIN_KERNELS_VTRANSPOSE_H

#if defined(__x86_64__)
#include <immintrin.h>

/* r[c] = column c of the 16 x 16 block whose rows were r[0..15]. */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g + c], 128-bit lane l: rows 4g..4g+3 of column 4l + c */
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
        r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
    }
}
#endif

#endif
