/* forward.c - the Llama forward pass over a batch of tokens from any number of sequences.
 *
 * For n tokens, each bound to a sequence of the KV cache:
 *   x = embed(tokens)                                   (n, dim)
 *   per layer:  h = rmsnorm(x);  q, k, v = h Wq^T, h Wk^T, h Wv^T;  rotary on q, k;
 *               k, v -> cache;   x += attention(q, cache) Wo^T
 *               h = rmsnorm(x);  x += (silu(h Wgate^T) * h Wup^T) Wdown^T
 *   logits = rmsnorm(x) Wout^T, for the rows asked for.
 * All of a layer's keys and values are written to the cache before its attention runs, so tokens
 * of one sequence in the same batch see each other causally and other sequences not at all.
 *
 * Up to REIN_DECODE_ROWS tokens (decoding) take the decode path: the linear layers read the
 * decode view (the file's quantized blocks while the weights are the file's) through
 * rein_qmatmul_nt, q/k/v and gate/up in one pass each, and every row is computed as it would be
 * alone, so batched decoding gives each sequence its own tokens. Larger batches (prefill) use the
 * f32 arena and the blocked matrix product. The output head always takes the decode kernels when
 * few rows want logits (a prompt's last token).
 */
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/qmatmul.h"
#include "kernels/quant.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

/* One key or value row (kv_dim floats, the KV heads side by side) into the cache at position pos
 * of sequence seq, head by head, rounded to f16 if the cache holds f16. */
static void kv_write(const rein_kv_cache *kv, void *base, int l, int seq, int pos,
                     const float *src) {
    const int hd = kv->head_dim;
    for (int h = 0; h < kv->n_kv_heads; h++) {
        void *dst = rein_kv_at(kv, base, l, seq, h, pos);
        if (kv->type == REIN_TYPE_F16) rein_fp32_to_fp16_row(dst, src + (int64_t)h * hd, hd);
        else memcpy(dst, src + (int64_t)h * hd, sizeof(float) * (size_t)hd);
    }
}

/* The decode path of linear layers first .. first+count-1 of layer l, which share the input x
 * (n, in): y[i] (n, out_i) (+)= x W_i^T through the decode weights in one pass, then each active
 * LoRA adapter on top (t = x A^T, scaled, y += t B^T), row by row as well. */
static void linear_decode(rein_model *m, int l, int first, int count, float *const *y,
                          const float *x, int n, int accumulate) {
    rein_qweight w[3] = {{0}}; /* count is 1 to 3 */
    for (int i = 0; i < count; i++) w[i] = rein_model_decode_weight(m, l, first + i);
    rein_qmatmul_nt_multi(y, x, w, count, n, accumulate);
    for (int i = 0; i < count; i++) {
        const rein_lora_linear *ll = rein_lora_active(m, l, first + i);
        if (!ll) continue;
        const int r = m->lora->p.rank, in = w[i].cols, out = w[i].rows;
        float *t = m->ws.lora_tmp;
        rein_qweight A = {.type = REIN_TYPE_F32, .data = ll->A, .row_bytes = (int64_t)in * 4,
                          .rows = r, .cols = in};
        rein_qweight B = {.type = REIN_TYPE_F32, .data = ll->B, .row_bytes = (int64_t)r * 4,
                          .rows = out, .cols = r};
        rein_qmatmul_nt(t, x, &A, n, 0);
        for (int64_t k = 0; k < (int64_t)n * r; k++) t[k] *= m->lora->scale;
        rein_qmatmul_nt(y[i], t, &B, n, 1);
    }
}

rein_status rein_model_forward(rein_model *m, rein_kv_cache *kv, const int32_t *tokens,
                               const int32_t *seq, size_t n_tokens, const uint8_t *want_logits,
                               float *logits) {
    const rein_model_config *c = &m->cfg;
    if (n_tokens == 0) return REIN_OK;
    if (n_tokens > (size_t)INT32_MAX / 2)
        return rein_error(REIN_ERR_RANGE, "batch of %zu tokens is too large", n_tokens);
    if (kv->n_layers != c->n_layers || kv->n_kv_heads != c->n_kv_heads ||
        kv->head_dim != c->head_dim)
        return rein_error(REIN_ERR_INVALID, "KV cache was made for another model");
    REIN_TRY(rein_model_decode_prepare(m));
    const int n = (int)n_tokens;
    REIN_TRY(rein_workspace_reserve(m, n));
    rein_workspace *w = &m->ws;

    /* validate everything before the cache is touched */
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return rein_error(REIN_ERR_RANGE, "token %d at batch index %d is outside the vocabulary "
                              "(0..%d)", tokens[i], i, c->n_vocab - 1);
        if (seq[i] < 0 || seq[i] >= kv->n_seq)
            return rein_error(REIN_ERR_RANGE, "sequence id %d at batch index %d is outside the KV "
                              "cache (0..%d)", seq[i], i, kv->n_seq - 1);
    }
    int n_rows = 0;
    for (int i = 0; i < n; i++) {
        int p = kv->len[seq[i]];
        for (int j = 0; j < i; j++) p += seq[j] == seq[i];
        if (p >= kv->n_ctx)
            return rein_error(REIN_ERR_RANGE, "sequence %d is full: position %d does not fit a "
                              "context of %d", seq[i], p, kv->n_ctx);
        w->pos[i] = p;
        if (!want_logits || want_logits[i]) w->rows[n_rows++] = i;
    }

    const int dim = c->dim, hd = c->head_dim;
    const int kv_dim = c->n_kv_heads * hd;
    for (int i = 0; i < n; i++)
        memcpy(w->x + (int64_t)i * dim, m->tok_embd + (int64_t)tokens[i] * dim,
               sizeof(float) * (size_t)dim);
    const float scale = 1.0f / sqrtf((float)hd);
    const int decode = n <= REIN_DECODE_ROWS;
    rein_rope_table(w->rope_cs, w->rope_sn, w->pos, n, c->rope_dim, c->rope_base, m->rope_freqs);

    for (int l = 0; l < c->n_layers; l++) {
        const rein_layer *L = &m->layers[l];
        rein_rmsnorm_forward(w->xb, w->x, L->attn_norm, n, dim, c->rms_eps);
        if (decode) {
            float *qkv[3] = {w->q, w->k, w->v};
            linear_decode(m, l, REIN_LIN_Q, 3, qkv, w->xb, n, 0);
        } else {
            rein_linear_forward(m, l, REIN_LIN_Q, w->q, w->xb, n, 0, NULL, w->lora_tmp);
            rein_linear_forward(m, l, REIN_LIN_K, w->k, w->xb, n, 0, NULL, w->lora_tmp);
            rein_linear_forward(m, l, REIN_LIN_V, w->v, w->xb, n, 0, NULL, w->lora_tmp);
        }
        rein_rope_apply(w->q, w->rope_cs, w->rope_sn, n, c->n_heads, hd, c->rope_dim);
        rein_rope_apply(w->k, w->rope_cs, w->rope_sn, n, c->n_kv_heads, hd, c->rope_dim);
        for (int i = 0; i < n; i++) {
            kv_write(kv, kv->k, l, seq[i], w->pos[i], w->k + (int64_t)i * kv_dim);
            kv_write(kv, kv->v, l, seq[i], w->pos[i], w->v + (int64_t)i * kv_dim);
            const int sh = kv->share_len[seq[i]], src = kv->share_src[seq[i]];
            w->kvr[i] = (rein_kv_rows){.k = rein_kv_at(kv, kv->k, l, seq[i], 0, 0),
                                       .v = rein_kv_at(kv, kv->v, l, seq[i], 0, 0),
                                       .k_shared = sh ? rein_kv_at(kv, kv->k, l, src, 0, 0) : NULL,
                                       .v_shared = sh ? rein_kv_at(kv, kv->v, l, src, 0, 0) : NULL,
                                       .n_keys = w->pos[i] + 1, .n_shared = sh};
        }
        rein_attention_forward(w->att, w->q, n, c->n_heads, c->n_kv_heads, hd, w->kvr, hd,
                               (int64_t)kv->n_ctx * hd, kv->type == REIN_TYPE_F16, scale);
        if (decode) linear_decode(m, l, REIN_LIN_O, 1, &w->x, w->att, n, 1);
        else rein_linear_forward(m, l, REIN_LIN_O, w->x, w->att, n, 1, NULL, w->lora_tmp);

        rein_rmsnorm_forward(w->xb, w->x, L->ffn_norm, n, dim, c->rms_eps);
        if (decode) {
            float *gu[2] = {w->gate, w->up};
            linear_decode(m, l, REIN_LIN_GATE, 2, gu, w->xb, n, 0);
        } else {
            rein_linear_forward(m, l, REIN_LIN_GATE, w->gate, w->xb, n, 0, NULL, w->lora_tmp);
            rein_linear_forward(m, l, REIN_LIN_UP, w->up, w->xb, n, 0, NULL, w->lora_tmp);
        }
        rein_swiglu_forward(w->gate, w->gate, w->up, (int64_t)n * c->ffn_dim);
        if (decode) linear_decode(m, l, REIN_LIN_DOWN, 1, &w->x, w->gate, n, 1);
        else rein_linear_forward(m, l, REIN_LIN_DOWN, w->x, w->gate, n, 1, NULL, w->lora_tmp);
    }
    for (int i = 0; i < n; i++) kv->len[seq[i]] = REIN_MAX(kv->len[seq[i]], w->pos[i] + 1);

    if (n_rows > 0 && logits) {
        /* gather the wanted rows, normalise, project onto the vocabulary */
        for (int r = 0; r < n_rows; r++)
            rein_rmsnorm_forward(w->xb + (int64_t)r * dim, w->x + (int64_t)w->rows[r] * dim,
                                 m->out_norm, 1, dim, c->rms_eps);
        if (n_rows <= REIN_DECODE_ROWS) {
            rein_qweight head = rein_model_decode_weight(m, 0, REIN_LIN_COUNT);
            rein_qmatmul_nt(logits, w->xb, &head, n_rows, 0);
        } else {
            rein_matmul_nt(logits, w->xb, m->output, n_rows, dim, c->n_vocab, 0);
        }
    }
    return REIN_OK;
}
