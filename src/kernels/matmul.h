/* matmul.h - matrix products for the model's linear layers, forward and backward.
 *
 * A linear layer y = x W^T, with W (out, in) stored as PyTorch stores nn.Linear weights, needs
 * three products: the forward y = x W^T (rein_matmul_nt), the input gradient dX = dY W
 * (rein_matmul_nn) and the weight gradient dW += dY^T X (rein_matmul_tn). Each runs on rein's
 * thread pool with the best kernel the CPU has, chosen at run time: AVX-512, AVX2+FMA, or a
 * portable path; each `_ref` is the plain triple loop the fast paths are tested against.
 *
 * All matrices are dense and row-major (last index contiguous); y never aliases an input.
 */
#ifndef REIN_KERNELS_MATMUL_H
#define REIN_KERNELS_MATMUL_H

#include <stdint.h>

/* y (N, M) = x (N, K) @ w (M, K)^T, overwriting y. If `accumulate`, y += instead. */
void rein_matmul_nt(float *y, const float *x, const float *w, int N, int K, int M, int accumulate);
void rein_matmul_nt_ref(float *y, const float *x, const float *w, int N, int K, int M,
                        int accumulate);

/* y (N, M) = x (N, K) @ w (K, M)   [dX = dY @ W for a linear layer: dY (N, out), W (out, in)].
 * Overwrites y, or adds to it if `accumulate`. */
void rein_matmul_nn(float *y, const float *x, const float *w, int N, int K, int M, int accumulate);
void rein_matmul_nn_ref(float *y, const float *x, const float *w, int N, int K, int M,
                        int accumulate);

/* y (M, K) = a (N, M)^T @ b (N, K)   [dW += dY^T @ X: dY (N, out), X (N, in), dW (out, in)].
 * Overwrites y, or adds to it if `accumulate`. */
void rein_matmul_tn(float *y, const float *a, const float *b, int N, int M, int K, int accumulate);
void rein_matmul_tn_ref(float *y, const float *a, const float *b, int N, int M, int K,
                        int accumulate);

/* BF16 products (rein_matmul_nt with N >= 4, rein_matmul_nn, rein_matmul_tn): with `on`, and a CPU
 * with AVX512_BF16, both operands are rounded to bfloat16 (to nearest even) and their products
 * accumulated in f32; the arrays themselves stay f32. Off by default; training turns it on with
 * --bf16. The matrix-vector path of decoding (N < 4) and the AVX2 and portable kernels stay f32. */
void rein_matmul_set_bf16(int on);
/* 1 when the products run in BF16 now (asked for, and the CPU can), else 0. */
int rein_matmul_bf16(void);

/* Which kernel the products use here: "avx512", "avx2" or "portable". By default the CPU's best:
 * avx512 with AVX-512F and VL, else avx2 with AVX2 and FMA, else portable. REIN_KERNEL=avx512,
 * avx2 or portable asks for one (for tests and comparisons); a name that is not a kernel, or one
 * the CPU cannot run, gets the CPU's best and a warning on stderr. */
const char *rein_matmul_kernel_name(void);
/* Force the kernel named as rein_matmul_kernel_name names them, or go back to the default with
 * NULL; for tests and benchmarks. Returns 1 on success, 0 (nothing changed) when the name is not a
 * kernel or the CPU cannot run it. The other kernels (attention, loss, ops, AdamW) follow: their
 * AVX-512 paths run only under avx512, their portable ones otherwise. */
int rein_matmul_force_kernel(const char *name);
/* rein_matmul_force_kernel("portable") with 1, rein_matmul_force_kernel(NULL) with 0. */
void rein_matmul_force_portable(int on);
/* 1 when the kernels take their AVX-512 paths now (the CPU has AVX-512F/VL and nothing forces
 * another kernel), else 0. */
int rein_kernels_use_avx512(void);

#endif
