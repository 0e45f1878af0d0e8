/* test_lora_io.c - LoRA adapters in PEFT's files: save + load is bit-exact (weights and logits),
 * q/k lora_B rows are stored in HF's order, and bad adapters are refused with clear errors.
 *
 * `test_lora_io --dump DIR` is the half of tools/check_peft_adapter.py that runs rein: it saves an
 * adapter with random A and B on the tiny model to DIR/adapter and writes rein's logits with it to
 * DIR/rein_logits.bin (u32 n_tok, u32 n_vocab, i32 tokens[n_tok], f32 logits[n_tok][n_vocab]).
 */
#include "base/base.h"
#include "model/lora_io.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TINY "tests/fixtures/model/tiny_f32.gguf"

static const int32_t TOKENS[] = {317, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33,
                                 318, 5, 260, 300, 12, 250};
enum { N_TOK = sizeof TOKENS / sizeof TOKENS[0] };

static char *path_in(const char *dir, const char *name) {
    static char buf[4][2048];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 2048, "%s/%s", dir, name);
    return p;
}

/* An adapter on every linear layer with random A and B (B is zero in a fresh one). */
static void attach_random(rein_model *m, int rank, float alpha, uint32_t targets, uint64_t seed) {
    rein_lora_params p = rein_lora_default_params();
    p.rank = rank;
    p.alpha = alpha;
    p.targets = targets;
    p.seed = seed;
    CHECK_OK(rein_lora_attach(m, &p));
    rein_rng rng;
    rein_rng_seed(&rng, seed + 1);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++) {
            rein_lora_linear *ll = &m->lora->lin[l * REIN_LIN_COUNT + w];
            if (!ll->A) continue;
            int o, i;
            rein_model_linear_weight(m, l, w, &o, &i);
            for (int64_t k = 0; k < (int64_t)o * rank; k++) ll->B[k] = 0.2f * rein_rng_normal(&rng);
        }
}

static float *logits_of(rein_model *m) {
    rein_kv_cache *kv = NULL;
    float *out = malloc(sizeof(float) * N_TOK * (size_t)m->cfg.n_vocab);
    int32_t seq[N_TOK] = {0};
    CHECK_OK(rein_kv_cache_new(m, 1, 64, &kv));
    CHECK_OK(rein_model_forward(m, kv, TOKENS, seq, N_TOK, NULL, out));
    rein_kv_cache_free(kv);
    return out;
}

static int dump(const char *dir) {
    rein_model *m;
    CHECK_OK(rein_model_load(TINY, &m));
    if (!m) return test_finish();
    attach_random(m, 4, 8.0f, REIN_LORA_ALL, 7);
    CHECK_OK(rein_hf_make_dir(dir));
    CHECK_OK(rein_lora_save(m, path_in(dir, "adapter"), TINY));
    float *lg = logits_of(m);
    FILE *f = fopen(path_in(dir, "rein_logits.bin"), "wb");
    uint32_t hdr[2] = {N_TOK, (uint32_t)m->cfg.n_vocab};
    fwrite(hdr, 4, 2, f);
    fwrite(TOKENS, 4, N_TOK, f);
    fwrite(lg, 4, (size_t)N_TOK * m->cfg.n_vocab, f);
    fclose(f);
    free(lg);
    rein_model_free(m);
    printf("wrote %s/adapter and %s/rein_logits.bin\n", dir, dir);
    return test_finish();
}

static void test_round_trip(void) {
    rein_model *a, *b;
    CHECK_OK(rein_model_load(TINY, &a));
    CHECK_OK(rein_model_load(TINY, &b));
    if (!a || !b) return;
    attach_random(a, 4, 6.0f, REIN_LORA_ALL, 3);
    float *want = logits_of(a);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/adapter", test_tmpdir());
    CHECK_OK(rein_lora_save(a, dir, "tiny"));
    CHECK_OK(rein_lora_load(b, dir));
    CHECK(b->lora && b->lora->p.rank == 4 && b->lora->p.alpha == 6.0f &&
          b->lora->p.targets == REIN_LORA_ALL);
    if (b->lora) {
        CHECK(b->lora->n_floats == a->lora->n_floats);
        int bad = 0;
        for (int l = 0; l < a->cfg.n_layers; l++)
            for (int w = 0; w < REIN_LIN_COUNT; w++) {
                const rein_lora_linear *x = &a->lora->lin[l * REIN_LIN_COUNT + w];
                const rein_lora_linear *y = &b->lora->lin[l * REIN_LIN_COUNT + w];
                int o, i;
                rein_model_linear_weight(a, l, w, &o, &i);
                bad += memcmp(x->A, y->A, sizeof(float) * 4 * (size_t)i) != 0;
                bad += memcmp(x->B, y->B, sizeof(float) * 4 * (size_t)o) != 0;
            }
        CHECKF(bad == 0, "%d adapter matrices differ after save + load", bad);
        float *got = logits_of(b);
        CHECK(!memcmp(got, want, sizeof(float) * N_TOK * (size_t)a->cfg.n_vocab));
        free(got);
    }

    /* the file: HF names and shapes; q and k lora_B un-permuted (permuting back gives rein's) */
    rein_safetensors *st;
    CHECK_OK(rein_safetensors_open(path_in(dir, "adapter_model.safetensors"), &st));
    if (st) {
        CHECK(rein_safetensors_n_tensors(st) == 2 * REIN_LIN_COUNT * a->cfg.n_layers);
        const rein_safetensors_tensor *t =
            rein_safetensors_find(st, "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
        int kv = a->cfg.n_kv_heads * a->cfg.head_dim;
        CHECK(t && t->n_dims == 2 && t->shape[0] == kv && t->shape[1] == 4);
        if (t) {
            float hf[64 * 4], back[64 * 4];
            CHECK(kv <= 64);
            CHECK_OK(rein_safetensors_tensor_f32(t, hf));
            const float *B = a->lora->lin[1 * REIN_LIN_COUNT + REIN_LIN_K].B;
            CHECK(memcmp(hf, B, sizeof(float) * 4 * (size_t)kv) != 0); /* really permuted */
            rein_hf_rows_to_gguf(back, hf, a->cfg.n_kv_heads, a->cfg.head_dim, 4);
            CHECK(!memcmp(back, B, sizeof(float) * 4 * (size_t)kv));
            /* row 1 of head 0 in HF order is GGUF's row 2 (the second element of pair 1) */
            CHECK(!memcmp(hf + 1 * 4, B + 2 * 4, sizeof(float) * 4));
        }
        t = rein_safetensors_find(st, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
        CHECK(t && t->shape[0] == 4 && t->shape[1] == a->cfg.ffn_dim);
        rein_safetensors_free(st);
    }
    rein_buf cfg = {0};
    CHECK_OK(rein_read_file(path_in(dir, "adapter_config.json"), &cfg));
    CHECK(cfg.data && strstr(cfg.data, "\"peft_type\":\t\"LORA\"") && strstr(cfg.data, "\"r\":\t4") &&
          strstr(cfg.data, "\"lora_alpha\":\t6,") && strstr(cfg.data, "\"gate_proj\"") &&
          strstr(cfg.data, "\"task_type\":\t\"CAUSAL_LM\""));
    rein_buf_free(&cfg);
    free(want);

    /* a partial target list round-trips too; an adapter loaded over another replaces it */
    attach_random(a, 2, 2.0f, REIN_LORA_Q | REIN_LORA_V | REIN_LORA_DOWN, 9);
    char dir2[1024];
    snprintf(dir2, sizeof dir2, "%s/adapter_qvd", test_tmpdir());
    CHECK_OK(rein_lora_save(a, dir2, NULL));
    want = logits_of(a);
    CHECK_OK(rein_lora_load(b, dir2));
    CHECK(b->lora && b->lora->p.targets == (REIN_LORA_Q | REIN_LORA_V | REIN_LORA_DOWN));
    float *got = logits_of(b);
    CHECK(!memcmp(got, want, sizeof(float) * N_TOK * (size_t)a->cfg.n_vocab));
    free(got);
    free(want);
    /* merged into the base weights: the same function up to rounding */
    CHECK_OK(rein_lora_merge(b));
    CHECK(b->lora == NULL);
    want = logits_of(a);
    got = logits_of(b);
    double worst = 0;
    for (int64_t k = 0; k < (int64_t)N_TOK * a->cfg.n_vocab; k++)
        worst = fmax(worst, fabs(got[k] - want[k]));
    CHECKF(worst < 1e-4, "merged adapter: logits differ by %g", worst);
    free(got);
    free(want);
    rein_model_free(a);
    rein_model_free(b);
}

/* Write an adapter_config.json into dir. */
static void write_config(const char *dir, const char *json) {
    FILE *f = fopen(path_in(dir, "adapter_config.json"), "w");
    fputs(json, f);
    fclose(f);
}

static void test_bad(void) {
    rein_model *m;
    CHECK_OK(rein_model_load(TINY, &m));
    if (!m) return;
    CHECK_ERR(rein_lora_save(m, path_in(test_tmpdir(), "none"), NULL), REIN_ERR_INVALID,
              "no LoRA adapter");
    CHECK_ERR(rein_lora_load(m, path_in(test_tmpdir(), "missing")), REIN_ERR_IO,
              "missing/adapter_config.json: cannot open");
    /* a good adapter, then spoil one file at a time */
    attach_random(m, 4, 8.0f, REIN_LORA_ALL, 5);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/spoilt", test_tmpdir());
    CHECK_OK(rein_lora_save(m, dir, NULL));
    rein_lora_detach(m);
    const char *base = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"bias\": \"none\", "
                       "\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", "
                       "\"gate_proj\", \"up_proj\", \"down_proj\"]";
    char json[1024];
    snprintf(json, sizeof json, "%s}", base);
    write_config(dir, json);
    CHECK_OK(rein_lora_load(m, dir));
    CHECK(rein_lora_is_enabled(m));
    rein_lora_detach(m);
    struct {
        const char *extra;
        rein_status st;
        const char *needle;
    } cases[] = {
        {", \"use_rslora\": true", REIN_ERR_UNSUPPORTED, "'use_rslora': rein supports only false"},
        {", \"use_dora\": true", REIN_ERR_UNSUPPORTED, "'use_dora'"},
        {", \"fan_in_fan_out\": true", REIN_ERR_UNSUPPORTED, "'fan_in_fan_out'"},
        {", \"rank_pattern\": {\"q_proj\": 8}", REIN_ERR_UNSUPPORTED, "'rank_pattern'"},
        {", \"modules_to_save\": [\"lm_head\"]", REIN_ERR_UNSUPPORTED, "'modules_to_save'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(json, sizeof json, "%s%s}", base, cases[i].extra);
        write_config(dir, json);
        CHECK_ERR(rein_lora_load(m, dir), cases[i].st, cases[i].needle);
        CHECK(m->lora == NULL);
    }
    struct {
        const char *json;
        rein_status st;
        const char *needle;
    } whole[] = {
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"bias\": \"all\", \"target_modules\": [\"q_proj\"]}",
         REIN_ERR_UNSUPPORTED, "field 'bias'"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", \"embed_tokens\"]}",
         REIN_ERR_UNSUPPORTED, "'embed_tokens' is not a module"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \".*proj\"}", REIN_ERR_UNSUPPORTED,
         "regex"},
        {"{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"]}", REIN_ERR_UNSUPPORTED,
         "peft_type"},
        {"{\"peft_type\": \"LORA\", \"r\": 0}", REIN_ERR_FORMAT, "field 'r'"},
        {"{\"peft_type\": ", REIN_ERR_FORMAT, "adapter_config.json: not a JSON object"},
        /* the file has tensors of modules the config does not target */
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"]}", REIN_ERR_FORMAT,
         "is not in the config's target_modules"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        write_config(dir, whole[i].json);
        CHECK_ERR(rein_lora_load(m, dir), whole[i].st, whole[i].needle);
    }
    /* another rank than the tensors': every shape is wrong */
    snprintf(json, sizeof json, "%s}", base);
    char *r8 = strstr(json, "\"r\": 4");
    r8[5] = '8';
    write_config(dir, json);
    CHECK_ERR(rein_lora_load(m, dir), REIN_ERR_FORMAT, "expected (8, 32) for r = 8 on this model");
    CHECK(m->lora == NULL);

    /* an adapter for another model shape: a wider hidden size */
    rein_safetensors_writer *w;
    float zero[4 * 64] = {0};
    CHECK_OK(rein_safetensors_writer_new(&w));
    CHECK_OK(rein_safetensors_add(w, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                  REIN_TYPE_F32, 2, (int64_t[]){4, 64}, zero));
    CHECK_OK(rein_safetensors_write(w, path_in(dir, "adapter_model.safetensors")));
    rein_safetensors_writer_free(w);
    write_config(dir, "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"]}");
    CHECK_ERR(rein_lora_load(m, dir), REIN_ERR_FORMAT,
              "q_proj.lora_A.weight': shape (4, 64), expected (4, 32)");
    /* a layer the model lacks, a tensor name rein does not know, a missing B */
    const char *names[3] = {"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight",
                            "base_model.model.lm_head.lora_A.weight",
                            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"};
    const char *needles[3] = {"layer 7, but the model has 2 layers", "is not a LoRA weight",
                              "missing tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B"};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(rein_safetensors_writer_new(&w));
        CHECK_OK(rein_safetensors_add(w, names[k], REIN_TYPE_F32, 2, (int64_t[]){4, 32}, zero));
        CHECK_OK(rein_safetensors_write(w, path_in(dir, "adapter_model.safetensors")));
        rein_safetensors_writer_free(w);
        CHECK_ERR(rein_lora_load(m, dir), REIN_ERR_FORMAT, needles[k]);
    }
    /* a failed load leaves an attached adapter as it was */
    attach_random(m, 2, 4.0f, REIN_LORA_V, 1);
    const rein_lora *before = m->lora;
    CHECK_ERR(rein_lora_load(m, dir), REIN_ERR_FORMAT, "missing tensor");
    CHECK(m->lora == before);
    rein_model_free(m);
}

static void test_permutation(void) {
    /* 2 heads of size 4, 3 columns: GGUF rows (h, 2j+s) hold HF rows (h, s*2+j) */
    float src[8 * 3], hf[8 * 3], back[8 * 3];
    for (int i = 0; i < 24; i++) src[i] = (float)i;
    rein_hf_rows_from_gguf(hf, src, 2, 4, 3);
    const int want_rows[8] = {0, 2, 1, 3, 4, 6, 5, 7}; /* HF row r = GGUF row want_rows[r] */
    for (int r = 0; r < 8; r++) CHECKF(hf[r * 3 + 1] == src[want_rows[r] * 3 + 1], "row %d", r);
    rein_hf_rows_to_gguf(back, hf, 2, 4, 3);
    CHECK(!memcmp(back, src, sizeof src));
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    test_permutation();
    test_round_trip();
    test_bad();
    return test_finish();
}
