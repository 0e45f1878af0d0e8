/* matmul.h - matrix products for the model's linear layers.
 *
 * The one product a Llama layer needs in inference is y = x W^T: x (N, K) activations times the
 * transpose of a weight W (M, K) stored as PyTorch stores nn.Linear weights. rein_matmul_nt runs it
 * on rein's thread pool with an AVX-512 kernel when the CPU has one (chosen at run time) and a
 * portable path otherwise; rein_matmul_nt_ref is the plain triple loop the fast paths are tested
 * against.
 */
#ifndef REIN_KERNELS_MATMUL_H
#define REIN_KERNELS_MATMUL_H

#include <stdint.h>

/* y (N, M) = x (N, K) @ w (M, K)^T, overwriting y. If `accumulate`, y += instead. */
void rein_matmul_nt(float *y, const float *x, const float *w, int N, int K, int M, int accumulate);
void rein_matmul_nt_ref(float *y, const float *x, const float *w, int N, int K, int M,
                        int accumulate);

/* Which kernel rein_matmul_nt uses here: "avx512" or "portable". REIN_KERNEL=portable forces the
 * portable one (for tests and comparisons). */
const char *rein_matmul_kernel_name(void);
/* Force the portable kernel on (1) or go back to the CPU's best (0); for tests and benchmarks. */
void rein_matmul_force_portable(int on);

#endif
