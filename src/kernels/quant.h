/* quant.h - tensor element types and their block formats: f16 / bf16 scalars, and the ggml blocks
 * Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
 *
 * The public side (rein_type_name, rein_dequantize, rein_quantize, ...) is declared in rein.h; this
 * header adds the scalar conversions other modules need and the byte layout of each block, so that
 * a kernel can read a block in place. Every layout is bit-exact with ggml's reference formats
 * (little-endian, packed, no padding): a block of `block_size` elements takes `block_bytes` bytes.
 * Multi-byte fields inside a block may be unaligned in a file: read them with memcpy.
 */
#ifndef REIN_KERNELS_QUANT_H
#define REIN_KERNELS_QUANT_H

#include "rein.h"

#include <stdint.h>

/* IEEE half precision <-> single precision. fp32 -> fp16 rounds to nearest even, keeps
 * subnormals, overflows to infinity, and keeps NaN a (quiet) NaN: the same bits as numpy's
 * astype(float16) and ggml's conversion. */
float rein_fp16_to_fp32(uint16_t h);
uint16_t rein_fp32_to_fp16(float f);
/* n values at once, the bits of rein_fp32_to_fp16 (vectorized with AVX-512 where it runs). */
void rein_fp32_to_fp16_row(uint16_t *dst, const float *src, int64_t n);

/* bfloat16 <-> single precision. fp32 -> bf16 rounds to nearest even and quiets NaN, as ggml's
 * ggml_compute_fp32_to_bf16 does. */
float rein_bf16_to_fp32(uint16_t h);
uint16_t rein_fp32_to_bf16(float f);

/* Block sizes (elements per block) of the block formats. */
enum { REIN_QK = 32, REIN_QK_K = 256 };

/* Byte layouts, as offsets into one block (all little-endian):
 *   Q8_0  34 bytes: f16 d | int8 qs[32]                  x[i] = qs[i] * d
 *   Q4_0  18 bytes: f16 d | u8 qs[16]                    x[j] = (lo(qs[j]) - 8) * d,
 *                                                        x[j+16] = (hi(qs[j]) - 8) * d
 *   Q4_1  20 bytes: f16 d | f16 m | u8 qs[16]            x[j] = lo(qs[j]) * d + m, x[j+16]: hi
 *   Q4_K 144 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
 *                   8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed in scales;
 *                   x = (d * sc) * q - (dmin * m), q a 4-bit value
 *   Q6_K 210 bytes: u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d
 *                   16 sub-blocks of 16, x = (d * scale) * (q - 32), q a 6-bit value from ql + qh
 */

#endif /* REIN_KERNELS_QUANT_H */
