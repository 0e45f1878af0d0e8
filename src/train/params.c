/* params.c - which tensors a training run updates, in a fixed order (checkpoints rely on it). */
#include "train/params.h"
#include "base/base.h"

#include <stdio.h>

static const char *const lin_names[REIN_LIN_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

rein_status rein_train_param_list(const rein_model *m, const rein_train_state *ts,
                                  rein_param_list *pl) {
    const rein_model_config *c = &m->cfg;
    char name[96];
    if (ts->grads) {
        const rein_grads *g = ts->grads;
        int64_t emb = (int64_t)c->n_vocab * c->dim;
        REIN_TRY(rein_params_add(pl, "token_embd.weight", m->tok_embd, g->tok_embd, emb, 1));
        for (int l = 0; l < c->n_layers; l++) {
            const rein_layer *L = &m->layers[l], *G = &g->layers[l];
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
            REIN_TRY(rein_params_add(pl, name, L->attn_norm, G->attn_norm, c->dim, 0));
            for (int w = 0; w < REIN_LIN_COUNT; w++) {
                int o, i;
                float *W = rein_model_linear_weight(m, l, w, &o, &i);
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_names[w]);
                REIN_TRY(rein_params_add(pl, name, W, g->arena + (W - m->arena), (int64_t)o * i, 1));
                if (w == REIN_LIN_O) {
                    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
                    REIN_TRY(rein_params_add(pl, name, L->ffn_norm, G->ffn_norm, c->dim, 0));
                }
            }
        }
        REIN_TRY(rein_params_add(pl, "output_norm.weight", m->out_norm, g->out_norm, c->dim, 0));
        if (!c->tied_head)
            REIN_TRY(rein_params_add(pl, "output.weight", m->output, g->output, emb, 1));
    }
    if (m->lora) {
        const int r = m->lora->p.rank;
        for (int l = 0; l < c->n_layers; l++)
            for (int w = 0; w < REIN_LIN_COUNT; w++) {
                rein_lora_linear *ll = &m->lora->lin[l * REIN_LIN_COUNT + w];
                if (!ll->A) continue;
                int o, i;
                rein_model_linear_weight(m, l, w, &o, &i);
                snprintf(name, sizeof name, "blk.%d.%s.lora_a", l, lin_names[w]);
                REIN_TRY(rein_params_add(pl, name, ll->A, ll->dA, (int64_t)r * i, 1));
                snprintf(name, sizeof name, "blk.%d.%s.lora_b", l, lin_names[w]);
                REIN_TRY(rein_params_add(pl, name, ll->B, ll->dB, (int64_t)o * r, 1));
            }
    }
    if (pl->n == 0)
        return rein_error(REIN_ERR_INVALID, "nothing to train: no base gradients and no adapter");
    return REIN_OK;
}
