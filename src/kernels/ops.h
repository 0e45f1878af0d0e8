/* ops.h - the elementwise and attention kernels of a Llama layer, and the backward of each
 * elementwise one (the training attention lives in attention.h).
 *
 * Plain float* in, float* out, shapes in PyTorch order. Nothing here knows about models or caches:
 * attention takes, for each query row, a pointer to its own run of key and value rows. Each
 * backward takes the forward's inputs (not its outputs) and recomputes what it needs.
 */
#ifndef REIN_KERNELS_OPS_H
#define REIN_KERNELS_OPS_H

#include <stdint.h>

/* out (N, C) = x / sqrt(mean(x^2) + eps) * w (C). out may equal x. */
void rein_rmsnorm_forward(float *out, const float *x, const float *w, int N, int C, float eps);

/* Rotary embedding in place on x (N, H, D), GGUF/ggml "normal" layout: the first rope_dim values
 * of each head form adjacent pairs (x[2i], x[2i+1]) rotated by the angle
 * pos[n] * base^(-2i/rope_dim) / freq_factors[i] (freq_factors (rope_dim/2) or NULL for 1). */
void rein_rope_forward(float *x, const int32_t *pos, int N, int H, int D, int rope_dim,
                       float base, const float *freq_factors);

/* The same rotation in two steps, for a forward that rotates many tensors at the same positions
 * (every layer's q and k): the table cs, sn (N, rope_dim / 2) of cos and sin of the angles, then
 * the rotation by it. Equal bit for bit to rein_rope_forward. */
void rein_rope_table(float *cs, float *sn, const int32_t *pos, int N, int rope_dim, float base,
                     const float *freq_factors);
void rein_rope_apply(float *x, const float *cs, const float *sn, int N, int H, int D, int rope_dim);
/* The backward by a table: equal bit for bit to rein_rope_backward. */
void rein_rope_apply_backward(float *dx, const float *cs, const float *sn, int N, int H, int D,
                              int rope_dim);

/* out (N, F) = silu(gate) * up. out may equal gate. */
void rein_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);

/* The keys and values one query row attends to: key t (t < n_keys) of KV head g is the D elements
 * at (t < n_shared ? k_shared : k) + g * head_stride + t * stride (f32, or f16 as a cache may hold
 * them), and its value likewise (a prefix shared with other sequences is read where one of them
 * holds it: rein_kv_cache_share). */
typedef struct rein_kv_rows {
    const void *k, *v;
    const void *k_shared, *v_shared; /* NULL when n_shared is 0 */
    int n_keys, n_shared;
} rein_kv_rows;

/* Causal attention for N query rows with grouped-query heads, one online-softmax pass over keys.
 * q (N, H, D); query row i attends to rows[i]: keys kv_stride elements apart, KV heads
 * kv_head_stride apart (KVH * D and D for rows of all heads together; D and n_ctx * D for the
 * cache's, a head's keys contiguous), the elements f16 when kv_f16 (widened to f32 exactly, so the
 * result is the one of f32 rows holding the same values), else f32; query head h reads KV head
 * h / (H / KVH). out (N, H, D), which must not overlap q or the keys and values (it holds the
 * running sums).
 * out[i,h] = sum_t softmax_t(scale * q[i,h] . k[i][t,g]) v[i][t,g]. Threaded over (i, h), or
 * over (i, KV head) in a batch; each row's result is the same whatever N (attention_decode.c). */
void rein_attention_forward(float *out, const float *q, int N, int H, int KVH, int D,
                            const rein_kv_rows *rows, int64_t kv_stride, int64_t kv_head_stride,
                            int kv_f16, float scale);

/* ---- backward ------------------------------------------------------------------------------ */

/* Given dy (N, C), x (N, C), w (C): dx (N, C) = d/dx, overwritten (dx may equal dy); dw (C) += d/dw.
 * eps as in the forward. */
void rein_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           int N, int C, float eps);

/* Backward of rein_rope_forward: rotate dx (N, H, D) in place by the opposite angle (the
 * transpose of each 2x2 rotation). Same arguments as the forward. */
void rein_rope_backward(float *dx, const int32_t *pos, int N, int H, int D, int rope_dim,
                        float base, const float *freq_factors);

/* out = silu(gate) * up: dgate, dup (n) from dout (n), gate, up. dgate may not alias gate; either
 * output may alias dout. */
void rein_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n);

/* Embedding: dtable (V, C) += scatter of dy (N, C) rows at tokens (N) (0 <= token < V; a token
 * that appears twice gets both rows added). */
void rein_embedding_backward(float *dtable, const float *dy, const int32_t *tokens, int N, int C);

/* x (n) += y (n) */
void rein_add_inplace(float *x, const float *y, int64_t n);

#endif
