/* qpack_vnni.h - decoding with int8 activations: Q8_0 and Q4_1 weights repacked for AVX-512 VNNI
 * dot products, and the activation quantizer (internal to kernels/; the switch is
 * rein_qmatmul_set_int8 in qmatmul.h).
 *
 * rein_qmatmul_pack (qmatmul.h) writes this layout into rein_qweight.packed_int8 while the int8
 * mode is on; rein_qmatmul_nt quantizes its activation rows once (qvnni_quantize) and reads the
 * copy through qvnni_rows. The layout and the arithmetic are described in qpack_vnni.c.
 */
#ifndef REIN_KERNELS_QPACK_VNNI_H
#define REIN_KERNELS_QPACK_VNNI_H

#include "kernels/qmatmul.h"

#include <stddef.h>
#include <stdint.h>

#define QVNNI_BLK 32 /* activation elements per quantization block: one Q8_0 / Q4_1 block */

/* Activation rows quantized per block of 32, block-major: x[i][32c + k] ~ d[c][i] * q[c][i][k].
 * Block-major, so that a kernel reaches every row of a tile from one pointer at fixed offsets. */
typedef struct qvnni_x {
    int8_t *q;     /* (K / 32, N, 32) in [-127, 127] */
    float *d;      /* (K / 32, N) max |x| / 127 over the block (0 for an all-zero block) */
    float *s;      /* (K / 32, N) d * sum(q) over the block: Q4_1's min term */
    int32_t *bias; /* (K / 32, N) -128 * sum(q): Q8_0's weights are stored biased by +128 */
    int nb, N;     /* K / 32, rows */
} qvnni_x;

/* Whether the CPU runs the kernels (AVX-512 F, BW, VL and VNNI). */
int qvnni_cpu(void);

/* Bytes of a qvnni_x for N rows of K (a multiple of 32) elements, its arrays included. */
size_t qvnni_x_size(int N, int K);

/* Lay out a qvnni_x in mem (qvnni_x_size bytes, 64-byte aligned) and quantize x (N, K) into it:
 * per block d = max|x| / 127 and q = x / d rounded to the nearest integer (ties to even), clamped
 * to [-127, 127]; an all-zero block (or one whose d is 0 in f32) is all q = 0, d = 0. */
void qvnni_quantize(const float *x, int N, int K, void *mem, qvnni_x *out);

/* The same in two steps, for quantizing on several threads: lay the arrays out, then quantize
 * blocks [c0, c1) of every row of x (N, K) into them (blocks are quantized independently, and
 * block c of all rows is one contiguous stretch of each array). */
void qvnni_layout(void *mem, int N, int K, qvnni_x *out);
void qvnni_quantize_blocks(const float *x, int K, const qvnni_x *out, int c0, int c1);

/* Bytes of w's VNNI copy, or 0 when its type has none (Q8_0 and Q4_1 do). */
size_t qvnni_size(const rein_qweight *w);

/* Write w's VNNI copy into dst (qvnni_size bytes, 64-byte aligned). */
void qvnni_write(const rein_qweight *w, void *dst);

/* y (N, w->rows) (+)= x (N, w->cols) @ W^T for the weight rows of groups [g0, g1) (of QPACK_G
 * rows), x given quantized, reading w->packed_int8. */
void qvnni_rows(const rein_qweight *w, const qvnni_x *x, int N, float *y, int accumulate, int g0,
                int g1);

#endif
