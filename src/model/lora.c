/* lora.c - LoRA adapters: attach, switch on and off, merge; and the linear layer that uses them.
 *
 * An adapter on W (out, in) adds scale * B A with A (r, in), B (out, r), scale = alpha / r. A starts
 * uniform in +-1/sqrt(in) (PEFT's kaiming-uniform with a = sqrt(5)) and B at zero, so a fresh
 * adapter changes nothing. The base weights are never touched until merge, so switching the
 * adapter off gives back the base model exactly.
 */
#include "base/base.h"
#include "kernels/matmul.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

rein_lora_params rein_lora_default_params(void) {
    rein_lora_params p = {.rank = 16, .alpha = 32, .targets = REIN_LORA_ALL, .seed = 42};
    return p;
}

float *rein_model_linear_weight(const rein_model *m, int l, int which, int *out_dim, int *in_dim) {
    const rein_model_config *c = &m->cfg;
    const rein_layer *L = &m->layers[l];
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (which) {
    case REIN_LIN_Q: *out_dim = q, *in_dim = c->dim; return L->wq;
    case REIN_LIN_K: *out_dim = kv, *in_dim = c->dim; return L->wk;
    case REIN_LIN_V: *out_dim = kv, *in_dim = c->dim; return L->wv;
    case REIN_LIN_O: *out_dim = c->dim, *in_dim = q; return L->wo;
    case REIN_LIN_GATE: *out_dim = c->ffn_dim, *in_dim = c->dim; return L->w_gate;
    case REIN_LIN_UP: *out_dim = c->ffn_dim, *in_dim = c->dim; return L->w_up;
    case REIN_LIN_DOWN: *out_dim = c->dim, *in_dim = c->ffn_dim; return L->w_down;
    }
    REIN_ASSERT(!"linear index out of range");
    return NULL;
}

rein_status rein_lora_attach(rein_model *m, const rein_lora_params *p) {
    const rein_model_config *c = &m->cfg;
    if (p->rank < 1 || p->rank > 4096 || !(p->alpha > 0) || !(p->targets & REIN_LORA_ALL) ||
        (p->targets & ~(uint32_t)REIN_LORA_ALL))
        return rein_error(REIN_ERR_INVALID,
                          "LoRA needs rank in 1..4096, alpha > 0 and at least one target layer "
                          "(got rank %d, alpha %g, targets 0x%x)",
                          p->rank, p->alpha, p->targets);
    rein_lora *lo = rein_calloc(1, sizeof *lo);
    if (!lo) return REIN_ERR_NOMEM;
    lo->p = *p;
    lo->scale = p->alpha / (float)p->rank;
    lo->enabled = 1;
    lo->lin = rein_calloc((size_t)c->n_layers * REIN_LIN_COUNT, sizeof *lo->lin);
    int64_t total = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            if (!(p->targets & (1u << w))) continue;
            int o, i;
            rein_model_linear_weight(m, l, w, &o, &i);
            total += ((int64_t)p->rank * (i + o) + 15) & ~(int64_t)15;
        }
    lo->arena = lo->lin ? rein_malloc_aligned(sizeof(float) * (size_t)total * 2, 64) : NULL;
    if (!lo->arena) {
        rein_free(lo->lin);
        rein_free(lo);
        return REIN_ERR_NOMEM;
    }
    memset(lo->arena, 0, sizeof(float) * (size_t)total * 2);
    lo->n_floats = 0;
    rein_rng rng;
    rein_rng_seed(&rng, p->seed);
    float *params = lo->arena, *grads = lo->arena + total;
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            if (!(p->targets & (1u << w))) continue;
            int o, i;
            rein_model_linear_weight(m, l, w, &o, &i);
            rein_lora_linear *ll = &lo->lin[l * REIN_LIN_COUNT + w];
            int64_t na = (int64_t)p->rank * i, nb = (int64_t)o * p->rank;
            int64_t span = (na + nb + 15) & ~(int64_t)15;
            ll->A = params, ll->B = params + na;
            ll->dA = grads, ll->dB = grads + na;
            float bound = 1.0f / sqrtf((float)i);
            for (int64_t k = 0; k < na; k++) ll->A[k] = (2 * rein_rng_uniform(&rng) - 1) * bound;
            params += span, grads += span;
            lo->n_floats += na + nb;
        }
    rein_lora_detach(m);
    m->lora = lo;
    return REIN_OK;
}

void rein_lora_detach(rein_model *m) {
    if (!m->lora) return;
    rein_free_aligned(m->lora->arena);
    rein_free(m->lora->lin);
    rein_free(m->lora);
    m->lora = NULL;
}

void rein_lora_set_enabled(rein_model *m, int on) {
    if (m->lora) m->lora->enabled = on != 0;
}

int rein_lora_is_enabled(const rein_model *m) {
    return m->lora && m->lora->enabled;
}

int64_t rein_lora_n_params(const rein_model *m) {
    return m->lora ? m->lora->n_floats : 0;
}

const rein_lora_linear *rein_lora_active(const rein_model *m, int l, int which) {
    if (!m->lora || !m->lora->enabled) return NULL;
    const rein_lora_linear *ll = &m->lora->lin[l * REIN_LIN_COUNT + which];
    return ll->A ? ll : NULL;
}

rein_status rein_lora_merge(rein_model *m) {
    if (!m->lora) return rein_error(REIN_ERR_INVALID, "no LoRA adapter is attached to merge");
    const rein_lora *lo = m->lora;
    int r = lo->p.rank;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            const rein_lora_linear *ll = &lo->lin[l * REIN_LIN_COUNT + w];
            if (!ll->A) continue;
            int o, i;
            float *W = rein_model_linear_weight(m, l, w, &o, &i);
            /* W (o, i) += scale * B (o, r) @ A (r, i): scale B into a copy, then one product */
            float *Bs = rein_malloc(sizeof(float) * (size_t)o * r);
            if (!Bs) return REIN_ERR_NOMEM;
            for (int64_t k = 0; k < (int64_t)o * r; k++) Bs[k] = ll->B[k] * lo->scale;
            rein_matmul_nn(W, Bs, ll->A, o, r, i, 1);
            rein_free(Bs);
        }
    rein_lora_detach(m);
    rein_model_weights_changed(m); /* decoding must read the merged arena, not the file */
    return REIN_OK;
}

void rein_linear_forward(const rein_model *m, int l, int which, float *y, const float *x, int n,
                         int accumulate, float *xa, float *scratch) {
    int o, i;
    const float *W = rein_model_linear_weight(m, l, which, &o, &i);
    rein_matmul_nt(y, x, W, n, i, o, accumulate);
    const rein_lora_linear *ll = rein_lora_active(m, l, which);
    if (!ll) return;
    const int r = m->lora->p.rank;
    float *t = xa ? xa : scratch;
    REIN_ASSERT(t != NULL);
    rein_matmul_nt(t, x, ll->A, n, i, r, 0); /* (n, r) = x A^T */
    /* y += scale * t B^T: scale t in a copy only when it must be kept for the backward */
    if (xa) {
        REIN_ASSERT(scratch != NULL);
        for (int64_t k = 0; k < (int64_t)n * r; k++) scratch[k] = xa[k] * m->lora->scale;
        t = scratch;
    } else {
        for (int64_t k = 0; k < (int64_t)n * r; k++) t[k] *= m->lora->scale;
    }
    rein_matmul_nt(y, t, ll->B, n, r, o, 1);
}
