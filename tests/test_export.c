/* test_export.c - `rein export`'s library half: a GGUF export reloads with the same logits (exactly
 * in f32, within the type's rounding in f16 / q8_0, with a merged adapter too) and the same
 * metadata; an HF export has HF's names and shapes, q/k rows un-permuted, and configs that say
 * what the model is; bad requests are refused.
 *
 * `test_export --logits MODEL OUT ID...` is the half of tools/check_export.py that runs rein: it
 * writes the logits of MODEL for the ids to OUT (u32 n_tok, u32 n_vocab, f32 logits[n_tok][n_vocab]).
 */
#include "base/base.h"
#include "formats/export.h"
#include "formats/safetensors.h"
#include "model/lora_io.h"
#include "model/model.h"
#include "kernels/quant.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int32_t TOKENS[] = {317, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111,
                                 119, 110, 318, 260, 290, 12, 7, 300, 319};
enum { N_TOK = sizeof TOKENS / sizeof TOKENS[0] };

static char *tmp(const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

static float *logits_for(rein_model *m, const int32_t *ids, int n) {
    float *out = malloc(sizeof(float) * (size_t)n * m->cfg.n_vocab);
    int32_t *seq = calloc((size_t)n, sizeof *seq);
    rein_kv_cache *kv = NULL;
    CHECK_OK(rein_kv_cache_new(m, 1, n, &kv));
    CHECK_OK(rein_model_forward(m, kv, ids, seq, (size_t)n, NULL, out));
    rein_kv_cache_free(kv);
    free(seq);
    return out;
}

static double max_diff(const float *a, const float *b, int64_t n, double *scale) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale) *scale = s;
    return d;
}

static int dump_logits(int argc, char **argv) {
    rein_model *m;
    CHECK_OK(rein_model_load(argv[2], &m));
    if (!m) return test_finish();
    int n = argc - 4;
    int32_t *ids = malloc(sizeof *ids * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)atoi(argv[4 + i]);
    float *lg = logits_for(m, ids, n);
    FILE *f = fopen(argv[3], "wb");
    uint32_t hdr[2] = {(uint32_t)n, (uint32_t)m->cfg.n_vocab};
    fwrite(hdr, 4, 2, f);
    fwrite(lg, 4, (size_t)n * m->cfg.n_vocab, f);
    fclose(f);
    free(lg);
    free(ids);
    rein_model_free(m);
    return test_finish();
}

/* Export src as GGUF of `type`, reload, compare logits with `want` (of the source). */
static void check_gguf(rein_model *src, const float *want, rein_type type, double tol,
                       const char *label) {
    const char *path = tmp("export.gguf");
    CHECK_OK(rein_export_gguf(src, path, type));
    rein_model *m = NULL;
    CHECK_OK(rein_model_load(path, &m));
    if (!m) return;
    CHECK(m->cfg.tied_head == src->cfg.tied_head && m->cfg.n_layers == src->cfg.n_layers);
    uint32_t ft = 99;
    CHECK_OK(rein_gguf_get_u32(m->gguf, "general.file_type", &ft));
    CHECK(ft == (type == REIN_TYPE_F32 ? 0u : type == REIN_TYPE_F16 ? 1u : 7u));
    /* every source key is there, with the same type */
    for (int64_t i = 0; i < rein_gguf_n_kv(src->gguf); i++) {
        const char *key = rein_gguf_kv_key(src->gguf, i);
        int64_t j = rein_gguf_find_kv(m->gguf, key);
        CHECKF(j >= 0 && rein_gguf_kv_type(m->gguf, j) == rein_gguf_kv_type(src->gguf, i),
               "%s: key %s", label, key);
    }
    const rein_gguf_tensor *t = rein_gguf_find_tensor(m->gguf, "blk.1.ffn_down.weight");
    CHECK(t && t->type == type);
    t = rein_gguf_find_tensor(m->gguf, "blk.0.attn_norm.weight");
    CHECK(t && t->type == REIN_TYPE_F32);
    CHECK(m->tok && rein_tokenizer_n_vocab(m->tok) == rein_tokenizer_n_vocab(src->tok));
    float *got = logits_for(m, TOKENS, N_TOK);
    double scale, d = max_diff(got, want, (int64_t)N_TOK * m->cfg.n_vocab, &scale);
    printf("%-28s max |logit diff| %.3g (logits up to %.3g)\n", label, d, scale);
    CHECKF(d <= tol * scale, "%s: logits differ by %g (tolerance %g)", label, d, tol * scale);
    if (type == REIN_TYPE_Q8_0) {
        /* each weight within half a quantization step (plus the f16 scale's rounding) */
        const rein_layer *a = &m->layers[1], *b = &src->layers[1];
        int64_t n = (int64_t)src->cfg.dim * src->cfg.ffn_dim, bad = 0;
        for (int64_t i0 = 0; i0 < n; i0 += 32) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(b->w_down[i0 + i]));
            for (int i = 0; i < 32; i++)
                bad += fabsf(a->w_down[i0 + i] - b->w_down[i0 + i]) > amax / 254 + amax / 1024;
        }
        CHECKF(bad == 0, "%s: %lld weights off by more than half a Q8_0 step", label, (long long)bad);
    }
    free(got);
    rein_model_free(m);
}

static void test_gguf(void) {
    const char *files[2] = {"tests/fixtures/model/tiny_f32.gguf", "tests/fixtures/model/tiny_f16.gguf"};
    for (int f = 0; f < 2; f++) {
        rein_model *src;
        CHECK_OK(rein_model_load(files[f], &src));
        if (!src) continue;
        float *want = logits_for(src, TOKENS, N_TOK);
        char label[96];
        const rein_type types[3] = {REIN_TYPE_F32, REIN_TYPE_F16, REIN_TYPE_Q8_0};
        /* tolerances relative to the largest logit: these random tiny models amplify rounding */
        const double tols[3] = {0, 0.005, 0.04};
        for (int k = 0; k < 3; k++) {
            snprintf(label, sizeof label, "%s -> %s", strrchr(files[f], '/') + 1,
                     rein_type_name(types[k]));
            check_gguf(src, want, types[k], tols[k], label);
        }
        free(want);
        rein_model_free(src);
    }
    /* a merged adapter: the export computes what the model with the adapter computed */
    rein_model *m;
    CHECK_OK(rein_model_load(files[0], &m));
    if (!m) return;
    rein_lora_params p = rein_lora_default_params();
    p.rank = 4;
    CHECK_OK(rein_lora_attach(m, &p));
    rein_rng rng;
    rein_rng_seed(&rng, 11);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            rein_lora_linear *ll = &m->lora->lin[l * REIN_LIN_COUNT + w];
            int o, i;
            rein_model_linear_weight(m, l, w, &o, &i);
            for (int64_t k = 0; k < (int64_t)o * p.rank; k++) ll->B[k] = 0.1f * rein_rng_normal(&rng);
        }
    float *want = logits_for(m, TOKENS, N_TOK);
    float *base = NULL;
    rein_lora_set_enabled(m, 0);
    base = logits_for(m, TOKENS, N_TOK);
    rein_lora_set_enabled(m, 1);
    double moved = max_diff(want, base, (int64_t)N_TOK * m->cfg.n_vocab, NULL);
    CHECKF(moved > 0.05, "the adapter changes the logits by only %g", moved);
    CHECK_OK(rein_lora_merge(m));
    check_gguf(m, want, REIN_TYPE_F32, 1e-5, "tiny_f32 + adapter -> F32");
    free(want);
    free(base);
    rein_model_free(m);
}

static cJSON *read_json(const char *dir, const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    rein_buf b = {0};
    CHECK_OK(rein_read_file(path, &b));
    cJSON *j = b.data ? cJSON_Parse(b.data) : NULL;
    CHECKF(j != NULL, "%s is not JSON", path);
    rein_buf_free(&b);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static void test_hf(void) {
    rein_model *m;
    CHECK_OK(rein_model_load("tests/fixtures/model/tiny_f16.gguf", &m)); /* untied head */
    if (!m) return;
    const rein_model_config *c = &m->cfg;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/hf", test_tmpdir());
    CHECK_OK(rein_export_hf(m, dir, REIN_TYPE_F32));
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rein_safetensors *st;
    CHECK_OK(rein_safetensors_open(path, &st));
    if (st) {
        CHECK(rein_safetensors_n_tensors(st) == 3 + 9 * c->n_layers);
        const char *fmt = rein_safetensors_get_meta(st, "format");
        CHECK(fmt && !strcmp(fmt, "pt"));
        struct {
            const char *name;
            int64_t r, cc;
            const float *data;
            int heads; /* q / k: compare after permuting back */
        } want[] = {
            {"model.embed_tokens.weight", c->n_vocab, c->dim, m->tok_embd, 0},
            {"lm_head.weight", c->n_vocab, c->dim, m->output, 0},
            {"model.norm.weight", c->dim, 0, m->out_norm, 0},
            {"model.layers.1.input_layernorm.weight", c->dim, 0, m->layers[1].attn_norm, 0},
            {"model.layers.1.post_attention_layernorm.weight", c->dim, 0, m->layers[1].ffn_norm, 0},
            {"model.layers.0.self_attn.q_proj.weight", c->n_heads * c->head_dim, c->dim,
             m->layers[0].wq, c->n_heads},
            {"model.layers.1.self_attn.k_proj.weight", c->n_kv_heads * c->head_dim, c->dim,
             m->layers[1].wk, c->n_kv_heads},
            {"model.layers.1.self_attn.v_proj.weight", c->n_kv_heads * c->head_dim, c->dim,
             m->layers[1].wv, 0},
            {"model.layers.0.self_attn.o_proj.weight", c->dim, c->n_heads * c->head_dim,
             m->layers[0].wo, 0},
            {"model.layers.0.mlp.gate_proj.weight", c->ffn_dim, c->dim, m->layers[0].w_gate, 0},
            {"model.layers.1.mlp.up_proj.weight", c->ffn_dim, c->dim, m->layers[1].w_up, 0},
            {"model.layers.1.mlp.down_proj.weight", c->dim, c->ffn_dim, m->layers[1].w_down, 0},
        };
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            const rein_safetensors_tensor *t = rein_safetensors_find(st, want[k].name);
            int nd = want[k].cc ? 2 : 1;
            CHECKF(t && !strcmp(t->dtype, "F32") && t->n_dims == nd && t->shape[0] == want[k].r &&
                   (nd == 1 || t->shape[1] == want[k].cc), "%s: missing or misshapen", want[k].name);
            if (!t) continue;
            float *v = malloc(sizeof(float) * (size_t)t->n_elements);
            float *back = malloc(sizeof(float) * (size_t)t->n_elements);
            CHECK_OK(rein_safetensors_tensor_f32(t, v));
            if (want[k].heads) {
                /* HF's order is not GGUF's, and permuting back gives rein's rows exactly */
                CHECKF(memcmp(v, want[k].data, sizeof(float) * (size_t)t->n_elements) != 0,
                       "%s: rows not un-permuted", want[k].name);
                rein_hf_rows_to_gguf(back, v, want[k].heads, c->head_dim, want[k].cc);
                memcpy(v, back, sizeof(float) * (size_t)t->n_elements);
            }
            CHECKF(!memcmp(v, want[k].data, sizeof(float) * (size_t)t->n_elements),
                   "%s: values differ", want[k].name);
            free(v);
            free(back);
        }
        rein_safetensors_free(st);
    }
    cJSON *cf = read_json(dir, "config.json");
    if (cf) {
        CHECK(num(cf, "hidden_size") == c->dim && num(cf, "intermediate_size") == c->ffn_dim &&
              num(cf, "num_attention_heads") == c->n_heads &&
              num(cf, "num_key_value_heads") == c->n_kv_heads &&
              num(cf, "num_hidden_layers") == c->n_layers && num(cf, "head_dim") == c->head_dim &&
              num(cf, "vocab_size") == c->n_vocab && num(cf, "rope_theta") == c->rope_base &&
              (float)num(cf, "rms_norm_eps") == c->rms_eps &&
              num(cf, "max_position_embeddings") == c->ctx_len &&
              num(cf, "bos_token_id") == rein_token_bos(m->tok) &&
              num(cf, "eos_token_id") == rein_token_eos(m->tok));
        CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cf, "tie_word_embeddings")));
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(cf, "torch_dtype");
        CHECK(cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32"));
        cJSON_Delete(cf);
    }
    cJSON *tj = read_json(dir, "tokenizer.json");
    if (tj) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
        const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        rein_gguf_value_type ty;
        int64_t n_merges = -1;
        const void *unused;
        CHECK_OK(rein_gguf_get_arr(m->gguf, "tokenizer.ggml.merges", &ty, &n_merges, &unused));
        CHECK(cJSON_GetArraySize(vocab) == c->n_vocab && cJSON_GetArraySize(merges) == n_merges);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, rein_token_piece(m->tok, 260));
        CHECK(cJSON_IsNumber(id) && id->valuedouble == 260);
        const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
        CHECK(cJSON_GetArraySize(added) == 3); /* <|endoftext|> <|im_start|> <|im_end|> */
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer");
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
        CHECK(cJSON_IsString(pt) && !strcmp(pt->valuestring, "ByteLevel")); /* gpt-2 */
        cJSON_Delete(tj);
    }
    cJSON *tc = read_json(dir, "tokenizer_config.json");
    if (tc) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        const cJSON *eos = cJSON_GetObjectItemCaseSensitive(tc, "eos_token");
        CHECK(cJSON_IsString(ct) && strstr(ct->valuestring, "<|im_start|>"));
        CHECK(cJSON_IsString(eos) && !strcmp(eos->valuestring, "<|endoftext|>"));
        cJSON_Delete(tc);
    }
    /* f16 weights are the f32 ones rounded */
    snprintf(dir, sizeof dir, "%s/hf16", test_tmpdir());
    CHECK_OK(rein_export_hf(m, dir, REIN_TYPE_F16));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(rein_safetensors_open(path, &st));
    if (st) {
        const rein_safetensors_tensor *t = rein_safetensors_find(st, "model.layers.0.mlp.up_proj.weight");
        CHECK(t && !strcmp(t->dtype, "F16"));
        if (t) {
            float *v = malloc(sizeof(float) * (size_t)t->n_elements);
            CHECK_OK(rein_safetensors_tensor_f32(t, v));
            int bad = 0;
            for (int64_t i = 0; i < t->n_elements; i++)
                bad += v[i] != rein_fp16_to_fp32(rein_fp32_to_fp16(m->layers[0].w_up[i]));
            CHECK(bad == 0);
            free(v);
        }
        rein_safetensors_free(st);
    }
    rein_model_free(m);
}

static void test_bad(void) {
    rein_model *m;
    CHECK_OK(rein_model_load("tests/fixtures/model/tiny_f32.gguf", &m));
    if (!m) return;
    CHECK_ERR(rein_export_hf(m, tmp("hfq"), REIN_TYPE_Q8_0), REIN_ERR_UNSUPPORTED, "q8_0 is a GGUF type");
    CHECK_ERR(rein_export_gguf(m, tmp("x.gguf"), REIN_TYPE_Q4_K), REIN_ERR_UNSUPPORTED,
              "f32, f16 or q8_0");
    CHECK_ERR(rein_export_gguf(m, tmp("no/such/dir/x.gguf"), REIN_TYPE_F32), REIN_ERR_IO, "");
    /* a folder where a file is */
    FILE *f = fopen(tmp("a_file"), "w");
    fclose(f);
    CHECK_ERR(rein_export_hf(m, tmp("a_file"), REIN_TYPE_F32), REIN_ERR_IO, "cannot create the folder");
    /* an adapter for another model: refused before anything is merged */
    CHECK_ERR(rein_lora_load(m, tmp("no_adapter")), REIN_ERR_IO, "adapter_config.json");
    rein_model_free(m);
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "--logits")) return dump_logits(argc, argv);
    test_gguf();
    test_hf();
    test_bad();
    return test_finish();
}
