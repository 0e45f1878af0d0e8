/* attention.h - causal self-attention for training, over packed sequences (forward and backward).
 *
 * A batch of training sequences is packed into T rows: sequence s holds rows
 * [cu_seqlens[s], cu_seqlens[s+1]), and a token attends to itself and the earlier tokens of its own
 * sequence. The forward keeps no (T x T) matrix: it sweeps key tiles with an online softmax and
 * saves each row's log-sum-exp, from which the backward recomputes the probabilities tile by
 * tile. Query heads that share a KV head (grouped-query attention) are handled in one task, so
 * each K/V tile is read once for the whole group.
 *
 * Shapes in PyTorch order; all arrays dense and row-major. Threaded on rein's pool; the inner
 * loops take an AVX-512 path when rein_kernels_use_avx512() says so.
 */
#ifndef REIN_KERNELS_ATTENTION_H
#define REIN_KERNELS_ATTENTION_H

#include <stdint.h>

/* Causal self-attention for training over n_seqs packed sequences: sequence s holds rows
 * [cu_seqlens[s], cu_seqlens[s+1]) of the T tokens (cu_seqlens has n_seqs+1 entries,
 * cu_seqlens[0]=0, cu_seqlens[n_seqs]=T); a token attends to itself and the earlier tokens of its
 * own sequence. q (T, H, D), k (T, KVH, D), v (T, KVH, D) -> out (T, H, D); lse (T, H) = the
 * log-sum-exp of each row's scaled scores (scale * q . k), saved for the backward. Query head h
 * uses KV head h / (H / KVH). Requires H % KVH == 0 and D <= 256; out and lse are overwritten. */
void rein_attention_train_forward(float *out, float *lse, const float *q, const float *k,
                                  const float *v, const int32_t *cu_seqlens, int n_seqs, int T,
                                  int H, int KVH, int D, float scale);

/* Gradients dq (T, H, D), dk (T, KVH, D), dv (T, KVH, D), all overwritten, from dout (T, H, D)
 * and the forward's inputs, out and lse. The outputs alias nothing. */
void rein_attention_train_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *out, const float *lse, const float *q,
                                   const float *k, const float *v, const int32_t *cu_seqlens,
                                   int n_seqs, int T, int H, int KVH, int D, float scale);

#endif
