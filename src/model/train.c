/* train.c - the training forward and backward of the Llama model, and the LM head as a loss.
 *
 * Forward (per layer, T packed tokens):
 *   xb = rmsnorm(x_l); q, k, v = lin(xb); rotary(q, k); att = attention(q, k, v)   [saved: q k v att lse]
 *   x_mid = x_l + lin_o(att)                                                       [saved: x_mid]
 *   xb = rmsnorm(x_mid); gate, up = lin(xb); x_{l+1} = x_mid + lin_down(silu(gate) up)   [saved: gate up]
 * Normalised inputs and silu(gate) * up are cheap to recompute, so the backward recomputes them
 * instead of keeping them: that keeps LoRA training of a 135M model at 256 tokens well under 1.5 GB.
 */
#include "model/train.h"
#include "base/base.h"
#include "kernels/attention.h"
#include "kernels/loss.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

#include <math.h>
#include <string.h>

#define HEAD_CHUNK 256 /* rows of logits computed at a time by the LM head (50 MB for 49152) */

static int64_t lora_rank(const rein_model *m) {
    return m->lora ? m->lora->p.rank : 0;
}

static rein_status grads_new(const rein_model *m, rein_grads **out) {
    rein_grads *g = rein_calloc(1, sizeof *g);
    if (!g) return REIN_ERR_NOMEM;
    g->n_floats = m->n_floats;
    g->arena = rein_malloc_aligned(sizeof(float) * (size_t)m->n_floats, 64);
    g->layers = rein_calloc((size_t)m->cfg.n_layers, sizeof *g->layers);
    if (!g->arena || !g->layers) {
        rein_free_aligned(g->arena);
        rein_free(g->layers);
        rein_free(g);
        return REIN_ERR_NOMEM;
    }
    memset(g->arena, 0, sizeof(float) * (size_t)m->n_floats);
    /* the same offsets as the weights */
#define MIRROR(p) ((p) ? g->arena + ((p) - m->arena) : NULL)
    g->tok_embd = MIRROR(m->tok_embd);
    g->out_norm = MIRROR(m->out_norm);
    g->output = MIRROR(m->output);
    g->rope_freqs = MIRROR(m->rope_freqs);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const rein_layer *L = &m->layers[l];
        rein_layer *G = &g->layers[l];
        G->attn_norm = MIRROR(L->attn_norm);
        G->wq = MIRROR(L->wq);
        G->wk = MIRROR(L->wk);
        G->wv = MIRROR(L->wv);
        G->wo = MIRROR(L->wo);
        G->ffn_norm = MIRROR(L->ffn_norm);
        G->w_gate = MIRROR(L->w_gate);
        G->w_up = MIRROR(L->w_up);
        G->w_down = MIRROR(L->w_down);
    }
#undef MIRROR
    *out = g;
    return REIN_OK;
}

static void grads_free(rein_grads *g) {
    if (!g) return;
    rein_free_aligned(g->arena);
    rein_free(g->layers);
    rein_free(g);
}

void rein_train_state_free(rein_train_state *ts) {
    if (!ts) return;
    rein_free(ts->tokens);
    rein_free(ts->pos);
    rein_free(ts->cu);
    rein_free(ts->rope_cs);
    rein_free(ts->rope_sn);
    rein_free_aligned(ts->x);
    rein_free_aligned(ts->xa);
    rein_free_aligned(ts->scratch);
    grads_free(ts->grads);
    rein_free(ts);
}

rein_status rein_train_state_new(const rein_model *m, int cap, int train_base,
                                 rein_train_state **out) {
    *out = NULL;
    const rein_model_config *c = &m->cfg;
    if (cap < 1) return rein_error(REIN_ERR_INVALID, "a training batch needs room for a token");
    rein_train_state *ts = rein_calloc(1, sizeof *ts);
    if (!ts) return REIN_ERR_NOMEM;
    ts->cap = cap;
    const int64_t T = cap, L = c->n_layers, D = c->dim, F = c->ffn_dim;
    const int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t H = c->n_heads;
    /* one block for the saved activations, in the order of the fields */
    int64_t sizes[] = {(L + 1) * T * D, L * T * D, L * T * Q, L * T * Q, L * T * KV, L * T * KV,
                       L * T * H,       L * T * F, L * T * F, T * D,     T * D,     T * D};
    float **slots[] = {&ts->x,   &ts->x_mid, &ts->q,  &ts->att, &ts->k,  &ts->v,
                       &ts->lse, &ts->gate,  &ts->up, &ts->xf,  &ts->dxf, &ts->demb};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += (sizes[i] + 15) & ~15;
    const int64_t r = REIN_MAX(lora_rank(m), 1);
    ts->scratch_n = T * (3 * D + 2 * Q + 2 * KV + 4 * F + 2 * r) + (int64_t)HEAD_CHUNK * c->n_vocab +
                    HEAD_CHUNK * D * 2 + D + 64;
    ts->tokens = rein_malloc(sizeof(int32_t) * (size_t)T);
    ts->pos = rein_malloc(sizeof(int32_t) * (size_t)T);
    ts->cu = rein_malloc(sizeof(int32_t) * (size_t)(T + 1));
    ts->rope_cs = rein_malloc(sizeof(float) * (size_t)(T * (c->rope_dim / 2) + 1));
    ts->rope_sn = rein_malloc(sizeof(float) * (size_t)(T * (c->rope_dim / 2) + 1));
    ts->x = rein_malloc_aligned(sizeof(float) * (size_t)total, 64);
    ts->scratch = rein_malloc_aligned(sizeof(float) * (size_t)ts->scratch_n, 64);
    rein_status st = (!ts->tokens || !ts->pos || !ts->cu || !ts->x || !ts->scratch ||
                      !ts->rope_cs || !ts->rope_sn)
                         ? rein_error(REIN_ERR_NOMEM, "out of memory for a training batch of %d "
                                      "tokens (%.0f MiB of activations)", cap,
                                      total * 4.0 / 1048576)
                         : REIN_OK;
    if (!st) {
        float *p = ts->x;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            *slots[i] = p;
            p += (sizes[i] + 15) & ~15;
        }
        if (m->lora) {
            ts->xa_rank = m->lora->p.rank;
            ts->xa = rein_malloc_aligned(
                sizeof(float) * (size_t)(L * REIN_LIN_COUNT * T * ts->xa_rank), 64);
            if (!ts->xa) st = REIN_ERR_NOMEM;
        }
    }
    if (!st && train_base) st = grads_new(m, &ts->grads);
    if (st) {
        rein_train_state_free(ts);
        return st;
    }
    *out = ts;
    return REIN_OK;
}

void rein_train_zero_grads(rein_model *m, rein_train_state *ts) {
    if (ts->grads) memset(ts->grads->arena, 0, sizeof(float) * (size_t)ts->grads->n_floats);
    if (m->lora) {
        /* gradients sit in the second half of the adapter arena, same layout as the weights */
        const rein_lora_linear *first = NULL, *last = NULL;
        for (int i = 0; i < m->cfg.n_layers * REIN_LIN_COUNT; i++)
            if (m->lora->lin[i].A) {
                if (!first) first = &m->lora->lin[i];
                last = &m->lora->lin[i];
            }
        if (first) {
            int o, in;
            rein_model_linear_weight(m, (int)((last - m->lora->lin) / REIN_LIN_COUNT),
                                     (int)((last - m->lora->lin) % REIN_LIN_COUNT), &o, &in);
            float *end = last->dB + (int64_t)o * m->lora->p.rank;
            memset(first->dA, 0, sizeof(float) * (size_t)(end - first->dA));
        }
    }
}

/* The saved x A^T of adapter `which` in layer l, or NULL without an active adapter there. */
static float *xa_slot(const rein_model *m, const rein_train_state *ts, int l, int which) {
    if (!ts->xa || !rein_lora_active(m, l, which)) return NULL;
    return ts->xa + (((int64_t)l * REIN_LIN_COUNT + which) * ts->cap) * ts->xa_rank;
}

rein_status rein_train_forward(rein_model *m, rein_train_state *ts, const int32_t *tokens,
                               const int32_t *cu_seqlens, int n_seqs) {
    const rein_model_config *c = &m->cfg;
    if (n_seqs < 1 || cu_seqlens[0] != 0)
        return rein_error(REIN_ERR_INVALID, "a batch needs at least one sequence, starting at 0");
    const int T = cu_seqlens[n_seqs];
    if (T < 1 || T > ts->cap)
        return rein_error(REIN_ERR_RANGE, "batch of %d tokens; the training state holds %d", T,
                          ts->cap);
    if (m->lora && (!ts->xa || ts->xa_rank != m->lora->p.rank))
        return rein_error(REIN_ERR_INVALID, "the training state was made before this LoRA adapter "
                          "was attached; make it again");
    for (int s = 0; s < n_seqs; s++) {
        if (cu_seqlens[s + 1] <= cu_seqlens[s])
            return rein_error(REIN_ERR_INVALID, "sequence %d of the batch is empty", s);
        if (cu_seqlens[s + 1] - cu_seqlens[s] > c->ctx_len && c->ctx_len > 0)
            return rein_error(REIN_ERR_RANGE, "sequence %d has %d tokens; the model's context is %d",
                              s, cu_seqlens[s + 1] - cu_seqlens[s], c->ctx_len);
        for (int i = cu_seqlens[s]; i < cu_seqlens[s + 1]; i++) ts->pos[i] = i - cu_seqlens[s];
    }
    /* the rotary angles of this batch, once for every layer's q and k, forward and backward */
    rein_rope_table(ts->rope_cs, ts->rope_sn, ts->pos, T, c->rope_dim, c->rope_base, m->rope_freqs);
    for (int i = 0; i < T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return rein_error(REIN_ERR_RANGE, "token %d at batch index %d is outside the vocabulary",
                              tokens[i], i);
    if (m->lora) REIN_TRY(rein_workspace_reserve(m, 1));
    ts->T = T;
    ts->n_seqs = n_seqs;
    memcpy(ts->tokens, tokens, sizeof(int32_t) * (size_t)T);
    memcpy(ts->cu, cu_seqlens, sizeof(int32_t) * (size_t)(n_seqs + 1));

    const int D = c->dim, F = c->ffn_dim, H = c->n_heads, KVH = c->n_kv_heads, hd = c->head_dim;
    const int Q = H * hd, KV = KVH * hd;
    const int64_t TD = (int64_t)T * D, TF = (int64_t)T * F, TQ = (int64_t)T * Q,
                  TKV = (int64_t)T * KV;
    float *xb = ts->scratch, *act = xb + TD, *lscr = act + TF;
    for (int i = 0; i < T; i++)
        memcpy(ts->x + (int64_t)i * D, m->tok_embd + (int64_t)tokens[i] * D, sizeof(float) * D);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int l = 0; l < c->n_layers; l++) {
        const rein_layer *Lw = &m->layers[l];
        float *xl = ts->x + l * TD, *xm = ts->x_mid + l * TD, *xn = ts->x + (l + 1) * TD;
        float *q = ts->q + l * TQ, *k = ts->k + l * TKV, *v = ts->v + l * TKV;
        float *att = ts->att + l * TQ, *lse = ts->lse + (int64_t)l * T * H;
        float *gate = ts->gate + l * TF, *up = ts->up + l * TF;
        rein_rmsnorm_forward(xb, xl, Lw->attn_norm, T, D, c->rms_eps);
        rein_linear_forward(m, l, REIN_LIN_Q, q, xb, T, 0, xa_slot(m, ts, l, REIN_LIN_Q), lscr);
        rein_linear_forward(m, l, REIN_LIN_K, k, xb, T, 0, xa_slot(m, ts, l, REIN_LIN_K), lscr);
        rein_linear_forward(m, l, REIN_LIN_V, v, xb, T, 0, xa_slot(m, ts, l, REIN_LIN_V), lscr);
        rein_rope_apply(q, ts->rope_cs, ts->rope_sn, T, H, hd, c->rope_dim);
        rein_rope_apply(k, ts->rope_cs, ts->rope_sn, T, KVH, hd, c->rope_dim);
        rein_attention_train_forward(att, lse, q, k, v, ts->cu, n_seqs, T, H, KVH, hd, scale);
        memcpy(xm, xl, sizeof(float) * (size_t)TD);
        rein_linear_forward(m, l, REIN_LIN_O, xm, att, T, 1, xa_slot(m, ts, l, REIN_LIN_O), lscr);
        rein_rmsnorm_forward(xb, xm, Lw->ffn_norm, T, D, c->rms_eps);
        rein_linear_forward(m, l, REIN_LIN_GATE, gate, xb, T, 0, xa_slot(m, ts, l, REIN_LIN_GATE),
                            lscr);
        rein_linear_forward(m, l, REIN_LIN_UP, up, xb, T, 0, xa_slot(m, ts, l, REIN_LIN_UP), lscr);
        rein_swiglu_forward(act, gate, up, TF);
        memcpy(xn, xm, sizeof(float) * (size_t)TD);
        rein_linear_forward(m, l, REIN_LIN_DOWN, xn, act, T, 1, xa_slot(m, ts, l, REIN_LIN_DOWN),
                            lscr);
    }
    rein_rmsnorm_forward(ts->xf, ts->x + c->n_layers * TD, m->out_norm, T, D, c->rms_eps);
    memset(ts->dxf, 0, sizeof(float) * (size_t)TD);
    return REIN_OK;
}

/* Backward of one linear layer y = x W^T (+ adapter): dx (n, in) = (or +=) dy W (+ adapter's),
 * and the weight's gradient (when the base trains) and the adapter's. */
static void linear_backward(const rein_model *m, const rein_train_state *ts, int l, int which,
                            const float *dy, const float *x, float *dx, int accumulate,
                            float *scratch) {
    int o, in;
    const float *W = rein_model_linear_weight(m, l, which, &o, &in);
    const int n = ts->T;
    rein_matmul_nn(dx, dy, W, n, o, in, accumulate);
    if (ts->grads) {
        int o2, in2;
        float *dW = rein_model_linear_weight(m, l, which, &o2, &in2) - m->arena + ts->grads->arena;
        rein_matmul_tn(dW, dy, x, n, o, in, 1);
    }
    const rein_lora_linear *ll = rein_lora_active(m, l, which);
    if (!ll) return;
    const int r = m->lora->p.rank;
    const float s = m->lora->scale;
    const float *xa = xa_slot(m, ts, l, which);
    float *t = scratch, *xas = scratch + (int64_t)n * r;
    /* dB += s dy^T (x A^T);  t = s dy B;  dA += t^T x;  dx += t A */
    for (int64_t k = 0; k < (int64_t)n * r; k++) xas[k] = xa[k] * s;
    rein_matmul_tn(ll->dB, dy, xas, n, o, r, 1);
    rein_matmul_nn(t, dy, ll->B, n, o, r, 0);
    for (int64_t k = 0; k < (int64_t)n * r; k++) t[k] *= s;
    rein_matmul_tn(ll->dA, t, x, n, r, in, 1);
    rein_matmul_nn(dx, t, ll->A, n, r, in, 1);
}

rein_status rein_train_backward(rein_model *m, rein_train_state *ts) {
    const rein_model_config *c = &m->cfg;
    const int T = ts->T;
    const int D = c->dim, F = c->ffn_dim, H = c->n_heads, KVH = c->n_kv_heads, hd = c->head_dim;
    const int Q = H * hd, KV = KVH * hd;
    const int64_t TD = (int64_t)T * D, TF = (int64_t)T * F, TQ = (int64_t)T * Q,
                  TKV = (int64_t)T * KV;
    const int64_t r = REIN_MAX(lora_rank(m), 1);
    float *xb = ts->scratch, *dx = xb + TD, *dxb = dx + TD;
    float *datt = dxb + TD, *dq = datt + TQ, *dk = dq + TQ, *dv = dk + TKV;
    float *act = dv + TKV, *dact = act + TF, *dgate = dact + TF, *dup = dgate + TF;
    float *lscr = dup + TF, *dnorm_dummy = lscr + 2 * (int64_t)T * r;
    rein_grads *g = ts->grads;
    const float scale = 1.0f / sqrtf((float)hd);

    /* through the final norm */
    if (!g) memset(dnorm_dummy, 0, sizeof(float) * (size_t)D);
    rein_rmsnorm_backward(dx, g ? g->out_norm : dnorm_dummy, ts->dxf, ts->x + c->n_layers * TD,
                          m->out_norm, T, D, c->rms_eps);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const rein_layer *Lw = &m->layers[l];
        const float *xl = ts->x + l * TD, *xm = ts->x_mid + l * TD;
        const float *q = ts->q + l * TQ, *k = ts->k + l * TKV, *v = ts->v + l * TKV;
        const float *att = ts->att + l * TQ, *lse = ts->lse + (int64_t)l * T * H;
        const float *gate = ts->gate + l * TF, *up = ts->up + l * TF;
        /* feed-forward */
        rein_rmsnorm_forward(xb, xm, Lw->ffn_norm, T, D, c->rms_eps);
        rein_swiglu_forward(act, gate, up, TF);
        linear_backward(m, ts, l, REIN_LIN_DOWN, dx, act, dact, 0, lscr);
        rein_swiglu_backward(dgate, dup, dact, gate, up, TF);
        linear_backward(m, ts, l, REIN_LIN_GATE, dgate, xb, dxb, 0, lscr);
        linear_backward(m, ts, l, REIN_LIN_UP, dup, xb, dxb, 1, lscr);
        rein_rmsnorm_backward(dxb, g ? g->layers[l].ffn_norm : dnorm_dummy, dxb, xm, Lw->ffn_norm,
                              T, D, c->rms_eps);
        rein_add_inplace(dx, dxb, TD);
        /* attention */
        rein_rmsnorm_forward(xb, xl, Lw->attn_norm, T, D, c->rms_eps);
        linear_backward(m, ts, l, REIN_LIN_O, dx, att, datt, 0, lscr);
        rein_attention_train_backward(dq, dk, dv, datt, att, lse, q, k, v, ts->cu, ts->n_seqs, T,
                                      H, KVH, hd, scale);
        rein_rope_apply_backward(dq, ts->rope_cs, ts->rope_sn, T, H, hd, c->rope_dim);
        rein_rope_apply_backward(dk, ts->rope_cs, ts->rope_sn, T, KVH, hd, c->rope_dim);
        linear_backward(m, ts, l, REIN_LIN_Q, dq, xb, dxb, 0, lscr);
        linear_backward(m, ts, l, REIN_LIN_K, dk, xb, dxb, 1, lscr);
        linear_backward(m, ts, l, REIN_LIN_V, dv, xb, dxb, 1, lscr);
        rein_rmsnorm_backward(dxb, g ? g->layers[l].attn_norm : dnorm_dummy, dxb, xl,
                              Lw->attn_norm, T, D, c->rms_eps);
        rein_add_inplace(dx, dxb, TD);
    }
    memcpy(ts->demb, dx, sizeof(float) * (size_t)TD);
    if (g) rein_embedding_backward(g->tok_embd, dx, ts->tokens, T, D);
    return REIN_OK;
}

/* ---- the LM head as a loss --------------------------------------------------------------- */

/* Rows of the batch with a target, gathered HEAD_CHUNK at a time. mode 0: cross-entropy with
 * gradient (scale); 1: log-probs only; 2: backward from dlogp. */
static rein_status head_pass(rein_model *m, rein_train_state *ts, const int32_t *targets,
                             int mode, float scale, const float *dlogp, float *logp,
                             double *loss_sum) {
    const rein_model_config *c = &m->cfg;
    const int D = c->dim, V = c->n_vocab, T = ts->T;
    float *logits = ts->scratch, *xc = logits + (int64_t)HEAD_CHUNK * V, *dxc = xc + HEAD_CHUNK * D;
    int32_t rows[HEAD_CHUNK], tg[HEAD_CHUNK];
    float *dW = ts->grads ? ts->grads->output : NULL;
    double total = 0;
    int i = 0;
    if (logp) memset(logp, 0, sizeof(float) * (size_t)T);
    for (int j = 0; j < T; j++)
        if (targets[j] >= V)
            return rein_error(REIN_ERR_RANGE, "target %d at index %d is outside the vocabulary",
                              targets[j], j);
    while (i < T) {
        int n = 0;
        for (; i < T && n < HEAD_CHUNK; i++)
            if (targets[i] >= 0 && (mode != 2 || dlogp[i] != 0)) {
                rows[n] = i;
                tg[n] = targets[i];
                memcpy(xc + (int64_t)n * D, ts->xf + (int64_t)i * D, sizeof(float) * D);
                n++;
            }
        if (!n) continue;
        rein_matmul_nt(logits, xc, m->output, n, D, V, 0);
        if (mode == 1) {
            float lp[HEAD_CHUNK];
            total += rein_token_logprobs(lp, logits, tg, n, V);
            for (int r = 0; r < n; r++) logp[rows[r]] = lp[r];
            continue;
        }
        /* d(loss)/d(logits) = (softmax - onehot) * weight; for mode 2 the weight of a row is
         * -dlogp (since d logp / d logits = onehot - softmax) */
        total += rein_cross_entropy(logits, logits, tg, n, V, mode == 0 ? scale : 1.0f);
        if (mode == 2)
            for (int r = 0; r < n; r++) {
                float w = -dlogp[rows[r]];
                float *row = logits + (int64_t)r * V;
                for (int v = 0; v < V; v++) row[v] *= w;
            }
        rein_matmul_nn(dxc, logits, m->output, n, V, D, 0);
        for (int r = 0; r < n; r++)
            rein_add_inplace(ts->dxf + (int64_t)rows[r] * D, dxc + (int64_t)r * D, D);
        if (dW) rein_matmul_tn(dW, logits, xc, n, V, D, 1);
    }
    if (loss_sum) *loss_sum = total;
    if (!isfinite(total))
        return rein_error(REIN_ERR_NUMERIC, "the loss is not finite (%g)", total);
    return REIN_OK;
}

rein_status rein_lm_head_xent(rein_model *m, rein_train_state *ts, const int32_t *targets,
                              float scale, double *loss_sum) {
    return head_pass(m, ts, targets, 0, scale, NULL, NULL, loss_sum);
}

rein_status rein_lm_head_logprobs(rein_model *m, rein_train_state *ts, const int32_t *targets,
                                  float *logp) {
    return head_pass(m, ts, targets, 1, 0, NULL, logp, NULL);
}

rein_status rein_lm_head_backward(rein_model *m, rein_train_state *ts, const int32_t *targets,
                                  const float *dlogp) {
    return head_pass(m, ts, targets, 2, 0, dlogp, NULL, NULL);
}
