/* export.c - a loaded model written as GGUF (llama.cpp's names) or as an HF folder; see export.h.
 *
 * Both walk the same list of weights (weight_list): each with its GGUF name, its HF name, its
 * shape, whether it is a norm (always F32) and, for q and k, the heads whose rows GGUF permutes.
 * The HF tokenizer files are rebuilt from the GGUF metadata: every piece with its id as the BPE
 * vocabulary, tokenizer.ggml.merges as the merges, CONTROL and USER_DEFINED tokens as added
 * special tokens, and the pre-tokenizer HF's own tokenizer.json has for the same model family.
 */
#include "formats/export.h"
#include "base/base.h"
#include "formats/safetensors.h"
#include "model/lora_io.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

typedef struct weight {
    char gguf[64];
    char hf[96];
    int64_t shape[2]; /* (rows, cols), cols 0 for a vector */
    const float *data;
    int norm;         /* a 1-D tensor: always F32 in GGUF */
    int perm_heads;   /* q / k: heads whose rows GGUF permutes, else 0 */
} weight;

/* Every tensor of the model in llama.cpp's order; *n receives the count. The caller frees. */
static weight *weight_list(const rein_model *m, int *n) {
    const rein_model_config *c = &m->cfg;
    weight *ws = rein_calloc((size_t)c->n_layers * 9 + 4, sizeof *ws);
    if (!ws) return NULL;
    int k = 0;
#define ADD(g, h, r, cc, p, ph)                                                                \
    do {                                                                                       \
        snprintf(ws[k].gguf, sizeof ws[k].gguf, "%s", g);                                      \
        snprintf(ws[k].hf, sizeof ws[k].hf, "%s", h);                                          \
        ws[k].shape[0] = r, ws[k].shape[1] = cc, ws[k].data = p;                              \
        ws[k].norm = (cc) == 0, ws[k].perm_heads = ph;                                         \
        k++;                                                                                   \
    } while (0)
    ADD("token_embd.weight", "model.embed_tokens.weight", c->n_vocab, c->dim, m->tok_embd, 0);
    static const char *const GG[REIN_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < c->n_layers; l++) {
        char g[64], h[96];
        snprintf(g, sizeof g, "blk.%d.attn_norm.weight", l);
        snprintf(h, sizeof h, "model.layers.%d.input_layernorm.weight", l);
        ADD(g, h, c->dim, 0, m->layers[l].attn_norm, 0);
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            if (w == REIN_LIN_GATE) {
                snprintf(g, sizeof g, "blk.%d.ffn_norm.weight", l);
                snprintf(h, sizeof h, "model.layers.%d.post_attention_layernorm.weight", l);
                ADD(g, h, c->dim, 0, m->layers[l].ffn_norm, 0);
            }
            int o, i;
            const float *W = rein_model_linear_weight(m, l, w, &o, &i);
            snprintf(g, sizeof g, "blk.%d.%s.weight", l, GG[w]);
            snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, rein_hf_linear_name(w));
            int ph = w == REIN_LIN_Q ? c->n_heads : w == REIN_LIN_K ? c->n_kv_heads : 0;
            ADD(g, h, o, i, W, ph);
        }
    }
    ADD("output_norm.weight", "model.norm.weight", c->dim, 0, m->out_norm, 0);
    if (!c->tied_head) ADD("output.weight", "lm_head.weight", c->n_vocab, c->dim, m->output, 0);
    if (m->rope_freqs) ADD("rope_freqs.weight", "", c->rope_dim / 2, 0, m->rope_freqs, 0);
#undef ADD
    *n = k;
    return ws;
}

/* ---- GGUF -------------------------------------------------------------------------------------- */

rein_status rein_export_gguf(const rein_model *m, const char *path, rein_type type) {
    uint32_t file_type;
    switch (type) {
    case REIN_TYPE_F32: file_type = 0; break;
    case REIN_TYPE_F16: file_type = 1; break;
    case REIN_TYPE_Q8_0: file_type = 7; break;
    default:
        return rein_error(REIN_ERR_UNSUPPORTED, "GGUF export writes f32, f16 or q8_0, not %s",
                          rein_type_name(type) ? rein_type_name(type) : "?");
    }
    if (!m->gguf) return rein_error(REIN_ERR_INVALID, "GGUF export needs the model's source file");
    int n;
    weight *ws = weight_list(m, &n);
    if (!ws) return REIN_ERR_NOMEM;
    rein_gguf_writer *w = NULL;
    rein_status st = rein_gguf_writer_new(&w);
    if (!st) st = rein_gguf_copy_kv(w, m->gguf);
    if (!st) st = rein_gguf_set_u32(w, "general.file_type", file_type);
    if (!st && type == REIN_TYPE_Q8_0) st = rein_gguf_set_u32(w, "general.quantization_version", 2);
    for (int k = 0; k < n && !st; k++) {
        const weight *t = &ws[k];
        rein_type tt = t->norm ? REIN_TYPE_F32 : type;
        if (tt == REIN_TYPE_Q8_0 && t->shape[1] % rein_type_block_size(REIN_TYPE_Q8_0)) {
            rein_log(REIN_LOG_INFO, "%s: rows of %lld are not a multiple of 32: written as F16",
                     t->gguf, (long long)t->shape[1]);
            tt = REIN_TYPE_F16;
        }
        st = rein_gguf_add_tensor(w, t->gguf, tt, t->norm ? 1 : 2, t->shape, t->data);
    }
    if (!st) st = rein_gguf_writer_write(w, path);
    rein_gguf_writer_free(w);
    rein_free(ws);
    return st;
}

/* ---- HF: weights and configs ------------------------------------------------------------------ */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = rein_malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static rein_status write_json_in(const char *dir, const char *name, const cJSON *root) {
    char *path = join(dir, name);
    if (!path) return REIN_ERR_NOMEM;
    rein_status st = rein_hf_write_json(root, path);
    rein_free(path);
    return st;
}

static rein_status write_weights(const rein_model *m, const char *dir, rein_type type) {
    int n;
    weight *ws = weight_list(m, &n);
    if (!ws) return REIN_ERR_NOMEM;
    const rein_model_config *c = &m->cfg;
    float *tmp = rein_malloc(sizeof(float) * (size_t)c->n_heads * c->head_dim * c->dim);
    rein_safetensors_writer *w = NULL;
    rein_status st = tmp ? rein_safetensors_writer_new(&w) : REIN_ERR_NOMEM;
    if (!st) st = rein_safetensors_set_meta(w, "format", "pt");
    for (int k = 0; k < n && !st; k++) {
        const weight *t = &ws[k];
        const float *data = t->data;
        if (t->perm_heads) {
            rein_hf_rows_from_gguf(tmp, data, t->perm_heads, c->head_dim, t->shape[1]);
            data = tmp;
        }
        st = rein_safetensors_add(w, t->hf, type, t->norm ? 1 : 2, t->shape, data);
    }
    char *path = st ? NULL : join(dir, "model.safetensors");
    if (!st && !path) st = REIN_ERR_NOMEM;
    if (!st) st = rein_safetensors_write(w, path);
    rein_free(path);
    rein_safetensors_writer_free(w);
    rein_free(tmp);
    rein_free(ws);
    return st;
}

/* An optional token id from the GGUF metadata, or -1. */
static int32_t meta_id(const rein_model *m, const char *key) {
    uint32_t v;
    if (rein_gguf_find_kv(m->gguf, key) < 0 || rein_gguf_get_u32(m->gguf, key, &v) != REIN_OK ||
        (int64_t)v >= m->cfg.n_vocab)
        return -1;
    return (int32_t)v;
}

static cJSON *id_or_null(int32_t id) {
    return id >= 0 ? cJSON_CreateNumber(id) : cJSON_CreateNull();
}

static const char *dtype_name(rein_type type) {
    return type == REIN_TYPE_F32 ? "float32" : type == REIN_TYPE_F16 ? "float16" : "bfloat16";
}

static rein_status write_configs(const rein_model *m, const char *dir, rein_type type) {
    const rein_model_config *c = &m->cfg;
    int32_t bos = m->tok ? rein_token_bos(m->tok) : -1, eos = m->tok ? rein_token_eos(m->tok) : -1;
    int32_t pad = m->gguf ? meta_id(m, "tokenizer.ggml.padding_token_id") : -1;
    cJSON *cf = cJSON_CreateObject(), *arch = cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1);
    int ok = cf && arch && cJSON_AddItemToObject(cf, "architectures", arch);
    if (!ok) cJSON_Delete(arch);
    ok = ok && cJSON_AddFalseToObject(cf, "attention_bias");
    ok = ok && cJSON_AddNumberToObject(cf, "attention_dropout", 0.0);
    ok = ok && cJSON_AddItemToObject(cf, "bos_token_id", id_or_null(bos));
    ok = ok && cJSON_AddItemToObject(cf, "eos_token_id", id_or_null(eos));
    ok = ok && cJSON_AddNumberToObject(cf, "head_dim", c->head_dim);
    ok = ok && cJSON_AddStringToObject(cf, "hidden_act", "silu");
    ok = ok && cJSON_AddNumberToObject(cf, "hidden_size", c->dim);
    ok = ok && cJSON_AddNumberToObject(cf, "initializer_range", 0.02);
    ok = ok && cJSON_AddNumberToObject(cf, "intermediate_size", c->ffn_dim);
    ok = ok && cJSON_AddNumberToObject(cf, "max_position_embeddings", c->ctx_len);
    ok = ok && cJSON_AddFalseToObject(cf, "mlp_bias");
    ok = ok && cJSON_AddStringToObject(cf, "model_type", "llama");
    ok = ok && cJSON_AddNumberToObject(cf, "num_attention_heads", c->n_heads);
    ok = ok && cJSON_AddNumberToObject(cf, "num_hidden_layers", c->n_layers);
    ok = ok && cJSON_AddNumberToObject(cf, "num_key_value_heads", c->n_kv_heads);
    if (pad >= 0) ok = ok && cJSON_AddNumberToObject(cf, "pad_token_id", pad);
    ok = ok && cJSON_AddNumberToObject(cf, "pretraining_tp", 1);
    ok = ok && cJSON_AddItemToObject(cf, "rms_norm_eps", rein_hf_json_float(c->rms_eps));
    ok = ok && cJSON_AddNullToObject(cf, "rope_scaling");
    ok = ok && cJSON_AddItemToObject(cf, "rope_theta", rein_hf_json_float(c->rope_base));
    ok = ok && cJSON_AddBoolToObject(cf, "tie_word_embeddings", c->tied_head);
    ok = ok && cJSON_AddStringToObject(cf, "torch_dtype", dtype_name(type));
    ok = ok && cJSON_AddTrueToObject(cf, "use_cache");
    ok = ok && cJSON_AddNumberToObject(cf, "vocab_size", c->n_vocab);
    rein_status st = ok ? write_json_in(dir, "config.json", cf) : REIN_ERR_NOMEM;
    cJSON_Delete(cf);
    if (st) return st;

    cJSON *gc = cJSON_CreateObject();
    ok = gc && cJSON_AddTrueToObject(gc, "_from_model_config");
    ok = ok && cJSON_AddItemToObject(gc, "bos_token_id", id_or_null(bos));
    ok = ok && cJSON_AddItemToObject(gc, "eos_token_id", id_or_null(eos));
    if (pad >= 0) ok = ok && cJSON_AddNumberToObject(gc, "pad_token_id", pad);
    st = ok ? write_json_in(dir, "generation_config.json", gc) : REIN_ERR_NOMEM;
    cJSON_Delete(gc);
    return st;
}

/* ---- HF: tokenizer ---------------------------------------------------------------------------- */

/* The pre-tokenizer families HF writes, by the tokenizer.ggml.pre names llama.cpp gives them. */
enum { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_UNKNOWN };

static int pre_family(const char *name) {
    static const char *const lists[3] = {
        "|gpt-2|default|",
        "|smollm|starcoder|refact|codeshell|",
        "|llama3|llama-bpe|llama-v3|falcon3|",
    };
    char key[80];
    snprintf(key, sizeof key, "|%s|", name);
    for (int i = 0; i < 3; i++)
        if (strstr(lists[i], key)) return i;
    return PRE_UNKNOWN;
}

#define LLAMA3_REGEX                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                 \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *b = cJSON_CreateObject();
    if (!b) return NULL;
    cJSON_AddStringToObject(b, "type", "ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(b, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(b, "use_regex", use_regex);
    return b;
}

static cJSON *pre_tokenizer(int family) {
    if (family == PRE_GPT2) return byte_level(0, 1, 1);
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *first = cJSON_CreateObject();
    cJSON_AddItemToArray(list, first);
    if (family == PRE_SMOLLM) {
        cJSON_AddStringToObject(first, "type", "Digits");
        cJSON_AddTrueToObject(first, "individual_digits");
        cJSON_AddItemToArray(list, byte_level(0, 1, 1));
    } else {
        cJSON_AddStringToObject(first, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(first, "pattern"), "Regex", LLAMA3_REGEX);
        cJSON_AddStringToObject(first, "behavior", "Isolated");
        cJSON_AddFalseToObject(first, "invert");
        cJSON_AddItemToArray(list, byte_level(0, 1, 0));
    }
    return seq;
}

/* BOS prepended when the vocabulary asks for it (TemplateProcessing), else HF's ByteLevel. */
static cJSON *post_processor(const rein_tokenizer *t, int add_bos) {
    if (!add_bos) return byte_level(1, 0, 1);
    const char *bos = rein_token_piece(t, rein_token_bos(t));
    cJSON *pp = cJSON_CreateObject();
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    /* single: BOS A; pair: BOS A BOS B, the second half with type id 1 (as Llama 3's file has) */
    for (int k = 0; k < 6; k++) {
        int special = k % 2 == 0, second = k >= 4;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddItemToArray(k < 2 ? single : pair, item);
        cJSON *x = cJSON_AddObjectToObject(item, special ? "SpecialToken" : "Sequence");
        cJSON_AddStringToObject(x, "id", special ? bos : second ? "B" : "A");
        cJSON_AddNumberToObject(x, "type_id", second);
    }
    cJSON *sp = cJSON_AddObjectToObject(cJSON_AddObjectToObject(pp, "special_tokens"), bos);
    cJSON_AddStringToObject(sp, "id", bos);
    cJSON_AddItemToObject(sp, "ids", cJSON_CreateIntArray((const int[]){rein_token_bos(t)}, 1));
    cJSON_AddItemToObject(sp, "tokens", cJSON_CreateStringArray(&bos, 1));
    return pp;
}

static int is_special(const rein_tokenizer *t, int32_t id) {
    int ty = rein_token_type(t, id);
    return ty == REIN_TOKEN_CONTROL || ty == REIN_TOKEN_USER_DEFINED;
}

static cJSON *added_token(const rein_tokenizer *t, int32_t id, int with_id) {
    cJSON *a = cJSON_CreateObject();
    if (with_id) cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", rein_token_piece(t, id));
    cJSON_AddFalseToObject(a, "single_word");
    cJSON_AddFalseToObject(a, "lstrip");
    cJSON_AddFalseToObject(a, "rstrip");
    cJSON_AddFalseToObject(a, "normalized");
    cJSON_AddTrueToObject(a, "special");
    return a;
}

static rein_status tokenizer_json(const rein_model *m, int family, int add_bos, cJSON **out) {
    const rein_tokenizer *t = m->tok;
    int32_t nv = rein_tokenizer_n_vocab(t);
    rein_gguf_value_type mt;
    int64_t n_merges = 0;
    const void *unused;
    if (rein_gguf_find_kv(m->gguf, "tokenizer.ggml.merges") >= 0)
        REIN_TRY(rein_gguf_get_arr(m->gguf, "tokenizer.ggml.merges", &mt, &n_merges, &unused));
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int32_t id = 0; id < nv; id++)
        if (is_special(t, id)) cJSON_AddItemToArray(added, added_token(t, id, 1));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_tokenizer(family));
    cJSON_AddItemToObject(root, "post_processor", post_processor(t, add_bos));
    cJSON_AddItemToObject(root, "decoder", byte_level(1, 1, 1));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddBoolToObject(model, "ignore_merges", family == PRE_LLAMA3);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int32_t id = 0; id < nv; id++)
        cJSON_AddItemToObject(vocab, rein_token_piece(t, id), cJSON_CreateNumber(id));
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    rein_status st = REIN_OK;
    for (int64_t i = 0; i < n_merges && !st; i++) {
        const char *s;
        size_t len;
        st = rein_gguf_get_arr_str(m->gguf, "tokenizer.ggml.merges", i, &s, &len);
        char *copy = st ? NULL : rein_malloc(len + 1);
        if (!st && !copy) st = REIN_ERR_NOMEM;
        if (!st) {
            memcpy(copy, s, len);
            copy[len] = 0;
            cJSON_AddItemToArray(merges, cJSON_CreateString(copy));
            rein_free(copy);
        }
    }
    /* cJSON reports a failed allocation only by a missing item: count what must be there */
    if (!st && (!merges || cJSON_GetArraySize(merges) != n_merges || !vocab ||
                cJSON_GetArraySize(vocab) != nv))
        st = rein_error(REIN_ERR_NOMEM, "out of memory building tokenizer.json");
    if (st) {
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return REIN_OK;
}

static cJSON *token_or_null(const rein_tokenizer *t, int32_t id) {
    return id >= 0 ? cJSON_CreateString(rein_token_piece(t, id)) : cJSON_CreateNull();
}

static rein_status tokenizer_config_json(const rein_model *m, cJSON **out) {
    const rein_tokenizer *t = m->tok;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddFalseToObject(c, "add_prefix_space");
    cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
    for (int32_t id = 0; id < rein_tokenizer_n_vocab(t); id++)
        if (is_special(t, id)) {
            char key[16];
            snprintf(key, sizeof key, "%d", id);
            cJSON_AddItemToObject(dec, key, added_token(t, id, 0));
        }
    cJSON_AddItemToObject(c, "bos_token", token_or_null(t, rein_token_bos(t)));
    const char *tmpl;
    size_t tlen;
    if (rein_gguf_find_kv(m->gguf, "tokenizer.chat_template") >= 0 &&
        rein_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, &tlen) == REIN_OK) {
        char *s = rein_malloc(tlen + 1);
        if (!s) {
            cJSON_Delete(c);
            return REIN_ERR_NOMEM;
        }
        memcpy(s, tmpl, tlen);
        s[tlen] = 0;
        cJSON_AddStringToObject(c, "chat_template", s);
        rein_free(s);
    }
    cJSON_AddFalseToObject(c, "clean_up_tokenization_spaces");
    cJSON_AddItemToObject(c, "eos_token", token_or_null(t, rein_token_eos(t)));
    cJSON_AddNumberToObject(c, "model_max_length", m->cfg.ctx_len);
    cJSON_AddItemToObject(c, "pad_token", token_or_null(t, meta_id(m, "tokenizer.ggml.padding_token_id")));
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddItemToObject(c, "unk_token", token_or_null(t, meta_id(m, "tokenizer.ggml.unknown_token_id")));
    if (!cJSON_GetObjectItemCaseSensitive(c, "unk_token")) {
        cJSON_Delete(c);
        return rein_error(REIN_ERR_NOMEM, "out of memory building tokenizer_config.json");
    }
    *out = c;
    return REIN_OK;
}

static rein_status write_tokenizer(const rein_model *m, const char *dir) {
    const char *pre = rein_tokenizer_pre(m->tok);
    int family = pre_family(pre);
    if (family == PRE_UNKNOWN)
        return rein_error(REIN_ERR_UNSUPPORTED, "tokenizer.json for pre-tokenizer '%s' is not "
                          "supported (gpt-2, smollm and llama3 families are)", pre);
    /* whether rein adds BOS: the same rule HF's post-processor must follow */
    rein_tokens probe = {0};
    REIN_TRY(rein_tokenize(m->tok, "", 0, REIN_TOKENIZE_ADD_BOS, &probe));
    int add_bos = probe.n > 0;
    rein_tokens_free(&probe);
    cJSON *tj = NULL, *tc = NULL;
    rein_status st = tokenizer_json(m, family, add_bos, &tj);
    if (!st) st = write_json_in(dir, "tokenizer.json", tj);
    if (!st) st = tokenizer_config_json(m, &tc);
    if (!st) st = write_json_in(dir, "tokenizer_config.json", tc);
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    return st;
}

rein_status rein_export_hf(const rein_model *m, const char *dir, rein_type type) {
    if (type != REIN_TYPE_F32 && type != REIN_TYPE_F16 && type != REIN_TYPE_BF16)
        return rein_error(REIN_ERR_UNSUPPORTED, "HF export writes f32, f16 or bf16 weights, not "
                          "%s (q8_0 is a GGUF type)", rein_type_name(type) ? rein_type_name(type) : "?");
    const rein_model_config *c = &m->cfg;
    if (m->rope_freqs || c->rope_dim != c->head_dim)
        return rein_error(REIN_ERR_UNSUPPORTED, "HF export: this model's rotary embedding (%s) "
                          "has no LlamaForCausalLM config", m->rope_freqs ? "rope_freqs scaling" :
                          "partial rotary dimensions");
    REIN_TRY(rein_hf_make_dir(dir));
    REIN_TRY(write_weights(m, dir, type));
    REIN_TRY(write_configs(m, dir, type));
    if (m->tok) REIN_TRY(write_tokenizer(m, dir));
    return REIN_OK;
}
