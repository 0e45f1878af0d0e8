/* qmatmul.h - matrix products for decoding: a few rows of activations times a weight matrix read
 * in its file's own element type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K).
 *
 * Decoding is bound by how many bytes of weights it reads per token, so these products read the
 * weights in their file types: in place (memory-mapped, no copy), or for Q8_0 and Q4_1, which the
 * AVX-512 kernels read fastest interleaved, from a copy repacked once at load time
 * (rein_qmatmul_pack, qpack.c). Each block is dequantized in registers to exactly the f32 values
 * rein_dequantize gives (same operations, same rounding), then multiplied in f32. By default the
 * activations are not quantized: the results are those of the f32 product up to the order of
 * summation, so a decoded token sees the logits the prefill would give it. The opt-in int8 mode
 * (rein_qmatmul_set_int8) quantizes them for Q8_0 and Q4_1 weights and trades that for speed.
 *
 * Each output row depends on its input row only: the sum for (row i, weight row j) runs over the
 * reduction in one fixed order whatever N, the thread count or the other rows are. Batched
 * decoding relies on that to give each sequence the tokens it would get alone.
 */
#ifndef REIN_KERNELS_QMATMUL_H
#define REIN_KERNELS_QMATMUL_H

#include "rein.h"

#include <stdint.h>

/* A weight (rows, cols) = (out, in) in one element type, rows row_bytes apart. */
typedef struct rein_qweight {
    int type;           /* rein_type */
    const void *data;   /* (rows, cols) */
    int64_t row_bytes;  /* cols / block_size * block_bytes for a packed tensor */
    int rows, cols;
    const void *packed; /* the same values repacked by rein_qmatmul_pack, or NULL */
    const void *packed_int8; /* the same values laid out for the int8 mode (qpack_vnni.c), or
                              * NULL */
} rein_qweight;

/* Whether the kernels read this element type (cols must be a multiple of its block size). */
int rein_qmatmul_supports(int type);

/* y (N, w.rows) = x (N, w.cols) @ W^T, or += when `accumulate`. Threaded over W's rows. */
void rein_qmatmul_nt(float *y, const float *x, const rein_qweight *w, int N, int accumulate);

/* Several products sharing one input, in one pass of the thread pool (q, k, v; gate, up):
 * y[i] (N, w[i].rows) = x (N, cols) @ w[i]^T (+= when accumulate). Every w[i] has the same cols. */
void rein_qmatmul_nt_multi(float *const *y, const float *x, const rein_qweight *w, int n_w, int N,
                           int accumulate);

/* Opt-in decoding with int8 activations (off by default). While it is on (and the CPU has
 * AVX-512 F/BW/VL and VNNI, and the AVX-512 kernels are not forced off), the products with Q8_0
 * and Q4_1 weights that carry a `packed_int8` copy quantize each activation row per block of 32
 * to int8 with an f32 scale (d = max|x| / 127, q = round(x / d)), once per call, and multiply
 * integers with VNNI dot products (qpack_vnni.c): several times the exact path's speed at batch
 * 16, at the cost of the activations' rounding (each element off by at most d / 2), so decoding
 * no longer gives exactly the logits the prefill gives. Each output row still depends on its own
 * input row only, in the same order whatever N and the threads: batched decoding still gives
 * each sequence the tokens it would get alone in this mode. The other weight types, and Q8_0 and
 * Q4_1 weights without that copy, take the exact path.
 * Set it while no product runs, before the copies are made: rein_qmatmul_pack makes the layout
 * of the mode in force when it is called (the model calls it at its first forward, and again
 * when the mode has changed since). Not thread-safe against concurrent products. */
void rein_qmatmul_set_int8(int on);
/* Whether the int8 mode runs: asked for by rein_qmatmul_set_int8 and the CPU has what it needs. */
int rein_qmatmul_int8(void);

/* Copy the weights w[0..n) whose type has a repacked layout (Q8_0, Q4_1) into one new block,
 * threaded, in the layout of the mode in force: the exact mode's (qpack.c) into their `packed`,
 * the int8 mode's (qpack_vnni.c) into their `packed_int8`; weights that hold that layout already,
 * and the other types, are left as they are. The two fields never share a layout, so a weight may
 * hold both. The block (huge pages where the system gives them) is the caller's, freed with
 * rein_qmatmul_pack_free; *block is NULL when no weight was repacked. w[i].data must stay valid:
 * the portable kernels read it. */
rein_status rein_qmatmul_pack(rein_qweight *w, int n, void **block);
void rein_qmatmul_pack_free(void *block);

/* The plain reference: each weight row dequantized with rein_dequantize, then a sequential dot
 * product (for tests). */
void rein_qmatmul_nt_ref(float *y, const float *x, const rein_qweight *w, int N, int accumulate);

#endif
