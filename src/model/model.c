/* model.c - loading a Llama-family model from GGUF: hyperparameters, weights, tokenizer.
 *
 * Hyperparameters come from `<arch>.*` metadata with llama.cpp's defaults where a key is optional.
 * Every expected tensor is checked for presence and shape before anything is dequantized, so a
 * wrong file is reported by name ("blk.3.ffn_up.weight: shape (1536, 512), expected (1536, 576)")
 * rather than read out of bounds. Weights are dequantized to f32 into one arena. Q and K are used
 * as GGUF stores them (rows permuted so that rotary pairs are adjacent); the rotary kernel works
 * on adjacent pairs accordingly. Beside the arena, the model keeps a decode view: pointers to the
 * file's own blocks of every linear weight, which decoding reads instead of the f32 copy.
 */
#include "model/model.h"
#include "base/base.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static rein_status get_u32_key(const rein_gguf *g, const char *arch, const char *name,
                               uint32_t *out, int required, uint32_t dflt) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (rein_gguf_find_kv(g, key) < 0) {
        if (required) return rein_error(REIN_ERR_FORMAT, "missing metadata key '%s'", key);
        *out = dflt;
        return REIN_OK;
    }
    return rein_gguf_get_u32(g, key, out);
}

static rein_status get_f32_key(const rein_gguf *g, const char *arch, const char *name, float *out,
                               float dflt) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (rein_gguf_find_kv(g, key) < 0) {
        *out = dflt;
        return REIN_OK;
    }
    return rein_gguf_get_f32(g, key, out);
}

rein_status rein_model_config_from_gguf(const rein_gguf *g, rein_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *arch;
    size_t alen;
    REIN_TRY(rein_gguf_get_str(g, "general.architecture", &arch, &alen));
    if (alen >= sizeof cfg->arch) alen = sizeof cfg->arch - 1;
    memcpy(cfg->arch, arch, alen);
    if (strcmp(cfg->arch, "llama") != 0)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "architecture '%s' is not supported (rein runs the 'llama' family)",
                          cfg->arch);
    uint32_t ctx, dim, nl, ff, nh, nkv, rdim, kl;
    REIN_TRY(get_u32_key(g, cfg->arch, "embedding_length", &dim, 1, 0));
    REIN_TRY(get_u32_key(g, cfg->arch, "block_count", &nl, 1, 0));
    REIN_TRY(get_u32_key(g, cfg->arch, "feed_forward_length", &ff, 1, 0));
    REIN_TRY(get_u32_key(g, cfg->arch, "attention.head_count", &nh, 1, 0));
    REIN_TRY(get_u32_key(g, cfg->arch, "attention.head_count_kv", &nkv, 0, nh));
    REIN_TRY(get_u32_key(g, cfg->arch, "context_length", &ctx, 0, 2048));
    if (nh == 0 || dim == 0 || nl == 0 || ff == 0)
        return rein_error(REIN_ERR_FORMAT,
                          "%s: embedding_length, block_count, feed_forward_length and "
                          "attention.head_count must be positive (got %u, %u, %u, %u)",
                          cfg->arch, dim, nl, ff, nh);
    REIN_TRY(get_u32_key(g, cfg->arch, "attention.key_length", &kl, 0, dim / nh));
    REIN_TRY(get_u32_key(g, cfg->arch, "rope.dimension_count", &rdim, 0, kl));
    REIN_TRY(get_f32_key(g, cfg->arch, "rope.freq_base", &cfg->rope_base, 10000.0f));
    REIN_TRY(get_f32_key(g, cfg->arch, "attention.layer_norm_rms_epsilon", &cfg->rms_eps, 1e-5f));
    if (nkv == 0 || nh % nkv != 0)
        return rein_error(REIN_ERR_FORMAT,
                          "%s.attention.head_count_kv = %u must divide head_count = %u", cfg->arch,
                          nkv, nh);
    if (kl == 0 || kl > 1024 || rdim > kl || rdim % 2)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "head size %u / rotary dimensions %u not supported (head size at most "
                          "1024, rotary dimensions even and at most the head size)",
                          kl, rdim);
    if (dim > (1u << 20) || ff > (1u << 22) || nl > 4096 || nh > 4096)
        return rein_error(REIN_ERR_UNSUPPORTED, "model dimensions out of the supported range");
    if (!(cfg->rms_eps > 0) || !(cfg->rope_base > 0))
        return rein_error(REIN_ERR_FORMAT, "rms epsilon and rope base must be positive");
    cfg->dim = (int32_t)dim;
    cfg->n_layers = (int32_t)nl;
    cfg->ffn_dim = (int32_t)ff;
    cfg->n_heads = (int32_t)nh;
    cfg->n_kv_heads = (int32_t)nkv;
    cfg->head_dim = (int32_t)kl;
    cfg->rope_dim = (int32_t)rdim;
    cfg->ctx_len = (int32_t)ctx;
    const rein_gguf_tensor *emb = rein_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return rein_error(REIN_ERR_FORMAT, "missing tensor 'token_embd.weight'");
    if (emb->n_dims != 2 || emb->shape[0] <= 0 || emb->shape[0] > (1 << 24))
        return rein_error(REIN_ERR_FORMAT, "token_embd.weight: expected 2 dimensions (n_vocab, %u)",
                          dim);
    cfg->n_vocab = (int32_t)emb->shape[0];
    cfg->tied_head = rein_gguf_find_tensor(g, "output.weight") == NULL;
    return REIN_OK;
}

/* One tensor to load: its name, expected shape, and where its data goes in the arena. */
typedef struct wspec {
    char name[64];
    int n_dims;
    int64_t shape[2];
    float **dst;
    int optional;
} wspec;

static void spec(wspec *s, const char *name, int64_t r, int64_t c, float **dst) {
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dims = c ? 2 : 1;
    s->shape[0] = r;
    s->shape[1] = c;
    s->dst = dst;
    s->optional = 0;
}

static rein_status check_shape(const rein_gguf_tensor *t, const wspec *s) {
    int ok = t->n_dims == s->n_dims && t->shape[0] == s->shape[0] &&
             (s->n_dims == 1 || t->shape[1] == s->shape[1]);
    if (ok) return REIN_OK;
    char got[96] = "(", want[64];
    for (int d = 0; d < t->n_dims; d++) {
        size_t l = strlen(got);
        snprintf(got + l, sizeof got - l, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    }
    strcat(got, ")");
    if (s->n_dims == 1) snprintf(want, sizeof want, "(%lld)", (long long)s->shape[0]);
    else snprintf(want, sizeof want, "(%lld, %lld)", (long long)s->shape[0], (long long)s->shape[1]);
    return rein_error(REIN_ERR_FORMAT, "tensor '%s': shape %s, expected %s", s->name, got, want);
}

typedef struct load_job {
    const rein_gguf_tensor **src;
    float **dst;
    rein_status *st;
} load_job;

static void load_task(void *ctx, int i, int n) {
    load_job *j = ctx;
    j->st[i] = rein_gguf_tensor_f32(j->src[i], j->dst[i]);
}

static rein_status load_weights(rein_model *m) {
    const rein_model_config *c = &m->cfg;
    const int64_t q_dim = (int64_t)c->n_heads * c->head_dim;
    const int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    const int n_specs = 3 + 9 * c->n_layers + 1;
    wspec *specs = rein_calloc((size_t)n_specs, sizeof *specs);
    m->layers = rein_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!specs || !m->layers) {
        rein_free(specs);
        return REIN_ERR_NOMEM;
    }
    int ns = 0;
    spec(&specs[ns++], "token_embd.weight", c->n_vocab, c->dim, &m->tok_embd);
    spec(&specs[ns++], "output_norm.weight", c->dim, 0, &m->out_norm);
    if (!c->tied_head) spec(&specs[ns++], "output.weight", c->n_vocab, c->dim, &m->output);
    if (rein_gguf_find_tensor(m->gguf, "rope_freqs.weight"))
        spec(&specs[ns++], "rope_freqs.weight", c->rope_dim / 2, 0, &m->rope_freqs);
    for (int l = 0; l < c->n_layers; l++) {
        rein_layer *L = &m->layers[l];
        char nm[64];
#define LAYER(field, suffix, r, cc)                                                            \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix);                                    \
    spec(&specs[ns++], nm, r, cc, &L->field);
        LAYER(attn_norm, "attn_norm", c->dim, 0)
        LAYER(wq, "attn_q", q_dim, c->dim)
        LAYER(wk, "attn_k", kv_dim, c->dim)
        LAYER(wv, "attn_v", kv_dim, c->dim)
        LAYER(wo, "attn_output", c->dim, q_dim)
        LAYER(ffn_norm, "ffn_norm", c->dim, 0)
        LAYER(w_gate, "ffn_gate", c->ffn_dim, c->dim)
        LAYER(w_up, "ffn_up", c->ffn_dim, c->dim)
        LAYER(w_down, "ffn_down", c->dim, c->ffn_dim)
#undef LAYER
    }
    /* check every tensor, then size the arena: each tensor starts 64-byte aligned */
    const rein_gguf_tensor **src = rein_calloc((size_t)ns, sizeof *src);
    float **dst = rein_calloc((size_t)ns, sizeof *dst);
    rein_status *sts = rein_calloc((size_t)ns, sizeof *sts);
    rein_status st = (!src || !dst || !sts) ? REIN_ERR_NOMEM : REIN_OK;
    int64_t total = 0;
    for (int i = 0; i < ns && !st; i++) {
        src[i] = rein_gguf_find_tensor(m->gguf, specs[i].name);
        if (!src[i]) st = rein_error(REIN_ERR_FORMAT, "missing tensor '%s'", specs[i].name);
        else st = check_shape(src[i], &specs[i]);
        total += (src[i] ? src[i]->n_elements + 15 : 0) & ~(int64_t)15;
    }
    if (!st) {
        m->arena = rein_malloc_aligned(sizeof(float) * (size_t)total, 64);
        if (!m->arena) st = REIN_ERR_NOMEM;
    }
    if (!st) {
        m->n_floats = total;
        float *p = m->arena;
        for (int i = 0; i < ns; i++) {
            *specs[i].dst = dst[i] = p;
            p += (src[i]->n_elements + 15) & ~(int64_t)15;
        }
        load_job j = {src, dst, sts};
        rein_parallel_for(ns, load_task, &j);
        /* a worker's error message stays on its thread: redo a failed tensor here for it */
        for (int i = 0; i < ns && !st; i++)
            if (sts[i]) st = rein_error_wrap(rein_gguf_tensor_f32(src[i], dst[i]), "tensor '%s': ",
                                             specs[i].name);
    }
    if (!st && c->tied_head) m->output = m->tok_embd;
    rein_free(src);
    rein_free(dst);
    rein_free(sts);
    rein_free(specs);
    return st;
}

/* The pages of the mapped file under [p, p + n), once their values are in the arena: given back
 * (540 MB for the F32 model). The mapping is private and read-only, so whatever reads the tensor
 * later (an export) faults them in again from the file. A hint: nothing is lost if it fails. */
static void release_file_pages(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + page - 1) / page * page, e = ((uintptr_t)p + n) / page * page;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* The decode view: every linear weight and the output head as the file stores them, where the
 * decode kernels read that type (else the arena, as F32, and for F32 the arena too: the same
 * values); the Q8_0, Q4_1 and F32 ones are repacked by rein_model_decode_prepare, at the first
 * forward in each decode mode (exact, int8). */
static rein_status decode_view_init(rein_model *m) {
    static const char *const names[REIN_LIN_COUNT] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};
    const rein_model_config *c = &m->cfg;
    int n = c->n_layers * REIN_LIN_COUNT + 1;
    m->dview = rein_calloc((size_t)n, sizeof *m->dview);
    if (!m->dview) return REIN_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int l = i / REIN_LIN_COUNT, which = i % REIN_LIN_COUNT;
        char nm[64];
        const float *arena;
        int rows, cols;
        if (i == n - 1) {
            snprintf(nm, sizeof nm, "%s", c->tied_head ? "token_embd.weight" : "output.weight");
            arena = m->output, rows = c->n_vocab, cols = c->dim;
        } else {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, names[which]);
            arena = rein_model_linear_weight(m, l, which, &rows, &cols);
        }
        const rein_gguf_tensor *t = rein_gguf_find_tensor(m->gguf, nm);
        REIN_ASSERT(t && t->n_elements == (int64_t)rows * cols); /* checked by load_weights */
        if (t->type == REIN_TYPE_F32) /* the arena holds the very values: no second copy */
            release_file_pages(t->data, t->n_bytes);
        if (t->type != REIN_TYPE_F32 && rein_qmatmul_supports(t->type) &&
            cols % rein_type_block_size(t->type) == 0)
            m->dview[i] = (rein_qweight){.type = t->type, .data = t->data,
                                         .row_bytes = (int64_t)(t->n_bytes / (size_t)rows),
                                         .rows = rows, .cols = cols};
        else
            m->dview[i] = (rein_qweight){.type = REIN_TYPE_F32, .data = arena,
                                         .row_bytes = (int64_t)cols * 4, .rows = rows,
                                         .cols = cols};
    }
    m->dview_valid = 1;
    return REIN_OK;
}

int rein_set_decode_int8(int on) {
    rein_qmatmul_set_int8(on);
    return rein_qmatmul_int8();
}

rein_status rein_model_decode_prepare(rein_model *m) {
    const int mode = rein_qmatmul_int8(); /* the layout rein_qmatmul_pack makes now */
    if (m->dpack_done[mode] || !m->dview_valid) return REIN_OK;
    REIN_TRY(rein_qmatmul_pack(m->dview, m->cfg.n_layers * REIN_LIN_COUNT + 1, &m->dpack[mode]));
    m->dpack_done[mode] = 1;
    return REIN_OK;
}

void rein_model_weights_changed(rein_model *m) {
    m->dview_valid = 0;
}

rein_qweight rein_model_decode_weight(const rein_model *m, int l, int which) {
    const rein_model_config *c = &m->cfg;
    int i = which == REIN_LIN_COUNT ? c->n_layers * REIN_LIN_COUNT : l * REIN_LIN_COUNT + which;
    if (m->dview_valid) return m->dview[i];
    int rows, cols;
    const float *w;
    if (which == REIN_LIN_COUNT) w = m->output, rows = c->n_vocab, cols = c->dim;
    else w = rein_model_linear_weight(m, l, which, &rows, &cols);
    return (rein_qweight){.type = REIN_TYPE_F32, .data = w, .row_bytes = (int64_t)cols * 4,
                          .rows = rows, .cols = cols};
}

rein_status rein_model_load(const char *path, rein_model **out) {
    *out = NULL;
    rein_model *m = rein_calloc(1, sizeof *m);
    if (!m) return REIN_ERR_NOMEM;
    rein_status st = rein_gguf_open(path, &m->gguf);
    if (!st) st = rein_model_config_from_gguf(m->gguf, &m->cfg);
    if (!st) st = load_weights(m);
    if (!st) st = decode_view_init(m);
    if (!st && rein_gguf_find_kv(m->gguf, "tokenizer.ggml.model") >= 0) {
        st = rein_tokenizer_from_gguf(m->gguf, &m->tok);
        const char *tmpl = NULL;
        size_t tlen = 0;
        char *jinja = NULL;
        if (!st && rein_gguf_find_kv(m->gguf, "tokenizer.chat_template") >= 0) {
            st = rein_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, &tlen);
            if (!st) {
                jinja = rein_malloc(tlen + 1);
                if (!jinja) st = REIN_ERR_NOMEM;
                else {
                    memcpy(jinja, tmpl, tlen);
                    jinja[tlen] = 0;
                }
            }
        }
        if (!st) st = rein_chat_template_new(jinja, NULL, &m->chat);
        rein_free(jinja);
    }
    if (st) {
        rein_error_wrap(st, "%s: ", path);
        rein_model_free(m);
        return st;
    }
    *out = m;
    return REIN_OK;
}

static void workspace_free(rein_workspace *w) {
    rein_free_aligned(w->x);
    rein_free(w->lora_tmp);
    rein_free(w->pos);
    rein_free(w->kvr);
    rein_free(w->rows);
    rein_free(w->rope_cs);
    rein_free(w->rope_sn);
    memset(w, 0, sizeof *w);
}

void rein_model_free(rein_model *m) {
    if (!m) return;
    workspace_free(&m->ws);
    rein_lora_detach(m);
    rein_chat_template_free(m->chat);
    rein_tokenizer_free(m->tok);
    rein_free_aligned(m->arena);
    rein_free(m->layers);
    rein_free(m->dview);
    rein_qmatmul_pack_free(m->dpack[0]);
    rein_qmatmul_pack_free(m->dpack[1]);
    rein_gguf_free(m->gguf);
    rein_free(m);
}

const rein_model_config *rein_model_get_config(const rein_model *m) {
    return &m->cfg;
}
const rein_tokenizer *rein_model_tokenizer(const rein_model *m) {
    return m->tok;
}
const rein_chat_template *rein_model_chat_template(const rein_model *m) {
    return m->chat;
}
const rein_gguf *rein_model_gguf(const rein_model *m) {
    return m->gguf;
}

int64_t rein_model_n_params(const rein_model *m) {
    const rein_model_config *c = &m->cfg;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t layer = 2 * (int64_t)c->dim + q * c->dim * 2 + kv * c->dim * 2 +
                    3 * (int64_t)c->ffn_dim * c->dim;
    int64_t n = (int64_t)c->n_vocab * c->dim + c->dim + layer * c->n_layers;
    if (!c->tied_head) n += (int64_t)c->n_vocab * c->dim;
    return n;
}

/* Make the workspace hold n tokens. */
rein_status rein_workspace_reserve(rein_model *m, int n) {
    rein_workspace *w = &m->ws;
    int64_t lora_need = m->lora ? (int64_t)n * m->lora->p.rank : 0;
    if (lora_need > w->lora_cap) {
        rein_free(w->lora_tmp);
        w->lora_cap = 0;
        w->lora_tmp = rein_malloc(sizeof(float) * (size_t)lora_need);
        if (!w->lora_tmp) return REIN_ERR_NOMEM;
        w->lora_cap = lora_need;
    }
    if (n <= w->cap) return REIN_OK;
    const rein_model_config *c = &m->cfg;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per = 2 * (int64_t)c->dim + 2 * q + 2 * kv + 2 * (int64_t)c->ffn_dim;
    int64_t sizes[8] = {c->dim, c->dim, q, kv, kv, q, c->ffn_dim, c->ffn_dim};
    float *keep_lora = w->lora_tmp;
    int64_t keep_cap = w->lora_cap;
    w->lora_tmp = NULL;
    workspace_free(w);
    w->lora_tmp = keep_lora;
    w->lora_cap = keep_cap;
    w->x = rein_malloc_aligned(sizeof(float) * (size_t)(per * n + 8 * 16), 64);
    w->pos = rein_malloc(sizeof(int32_t) * (size_t)n);
    w->kvr = rein_malloc(sizeof(rein_kv_rows) * (size_t)n);
    w->rows = rein_malloc(sizeof(int32_t) * (size_t)n);
    size_t half = (size_t)(c->rope_dim / 2 > 0 ? c->rope_dim / 2 : 1);
    w->rope_cs = rein_malloc(sizeof(float) * half * (size_t)n);
    w->rope_sn = rein_malloc(sizeof(float) * half * (size_t)n);
    if (!w->x || !w->pos || !w->kvr || !w->rows || !w->rope_cs ||
        !w->rope_sn) {
        workspace_free(w);
        return REIN_ERR_NOMEM;
    }
    float **slots[8] = {&w->x, &w->xb, &w->q, &w->k, &w->v, &w->att, &w->gate, &w->up};
    float *p = w->x;
    for (int i = 0; i < 8; i++) {
        *slots[i] = p;
        p += (sizes[i] * n + 15) & ~(int64_t)15;
    }
    w->cap = n;
    return REIN_OK;
}
