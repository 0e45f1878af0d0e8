/* train.h - the model's training pass: a forward that keeps what the backward needs, the LM head
 * as a loss, and the backward to every weight (or to the LoRA adapters only).
 *
 * A batch is T tokens packed from n_seqs sequences (no padding): sequence s is rows
 * [cu_seqlens[s], cu_seqlens[s+1]); positions restart at 0 in each and attention stays inside it.
 * The objective (SFT's cross-entropy, a preference loss, a policy-gradient loss) talks to the model
 * only through the final hidden states xf (T, dim) and their gradient dxf; the LM head helpers
 * below turn per-token log-probabilities and their gradients into exactly that, a chunk of rows at
 * a time so that the (T, n_vocab) logits never exist whole.
 */
#ifndef REIN_MODEL_TRAIN_H
#define REIN_MODEL_TRAIN_H

#include "model/model.h"

/* Gradients of the base weights, laid out exactly like the model's arena (same offsets), so that an
 * optimizer can walk weights and gradients as two flat arrays. */
typedef struct rein_grads {
    float *arena;     /* (n_floats) */
    int64_t n_floats;
    float *tok_embd, *out_norm, *output, *rope_freqs;
    rein_layer *layers;
} rein_grads;

typedef struct rein_train_state {
    int cap;             /* tokens the buffers hold */
    int T, n_seqs;       /* the current batch */
    int32_t *tokens;     /* (T) */
    int32_t *pos;        /* (T) position of each token in its sequence */
    int32_t *cu;         /* (n_seqs + 1) copy of cu_seqlens (cap + 1 entries) */
    float *rope_cs, *rope_sn; /* (T, rope_dim / 2) the rotary angles' cos and sin, per batch */
    /* saved activations, for layer l at offset l * T * width */
    float *x;            /* (n_layers + 1, T, dim): residual stream entering each layer; last = output */
    float *x_mid;        /* (n_layers, T, dim): residual after attention */
    float *q, *att;      /* (n_layers, T, n_heads * head_dim): q after rotary; attention output */
    float *k, *v;        /* (n_layers, T, n_kv_heads * head_dim): k after rotary */
    float *lse;          /* (n_layers, T, n_heads) attention log-sum-exp */
    float *gate, *up;    /* (n_layers, T, ffn_dim) */
    float *xa;           /* (n_layers, REIN_LIN_COUNT, T, rank): x A^T of each adapter, or NULL */
    int xa_rank;
    float *xf;           /* (T, dim) final normalised hidden states: the objective's input */
    float *dxf;          /* (T, dim) gradient of the loss with respect to xf: the objective's output */
    float *demb;         /* (T, dim) gradient with respect to the input embeddings, after backward */
    float *scratch;      /* backward and head scratch */
    int64_t scratch_n;
    rein_grads *grads;   /* base-weight gradients (full fine-tuning), or NULL (adapters only) */
} rein_train_state;

/* A state for batches of up to cap tokens. With train_base the base weights get gradients (full
 * fine-tuning); otherwise only an attached LoRA adapter does. */
rein_status rein_train_state_new(const rein_model *m, int cap, int train_base,
                                 rein_train_state **out);
void rein_train_state_free(rein_train_state *ts);
/* Zero every gradient: the base's (when kept) and the adapter's. */
void rein_train_zero_grads(rein_model *m, rein_train_state *ts);

/* Forward over a packed batch; keeps activations and fills ts->xf; zeroes ts->dxf. */
rein_status rein_train_forward(rein_model *m, rein_train_state *ts, const int32_t *tokens,
                               const int32_t *cu_seqlens, int n_seqs);

/* Cross-entropy through the LM head, fused: for rows with targets[i] >= 0, loss += -log p(target);
 * dxf += scale * d(loss)/d(xf), and the head's gradient when the base is trained. Returns the
 * summed loss (not scaled) in *loss_sum. */
rein_status rein_lm_head_xent(rein_model *m, rein_train_state *ts, const int32_t *targets,
                              float scale, double *loss_sum);
/* Per-token log-probabilities of targets (0 where targets[i] < 0) into logp (T). */
rein_status rein_lm_head_logprobs(rein_model *m, rein_train_state *ts, const int32_t *targets,
                                  float *logp);
/* Given d(loss)/d(logp[i]) in dlogp (T), add the resulting gradient to dxf (and the head's). */
rein_status rein_lm_head_backward(rein_model *m, rein_train_state *ts, const int32_t *targets,
                                  const float *dlogp);

/* Backward from ts->dxf through every layer: accumulates into ts->grads (if any) and the adapter's
 * gradients (if one is active), and leaves the input-embedding gradient in ts->demb. */
rein_status rein_train_backward(rein_model *m, rein_train_state *ts);

#endif
