/* test_model.c - the model's forward pass and KV cache on tiny random models built in the test.
 *
 * No download needed: the test writes small Llama GGUF files with rein's own writer. What is
 * checked here is consistency (a mixed batch equals each sequence alone, prefill equals
 * token-by-token decoding, cache copy/truncate), bad input, and bad model files. Agreement with an
 * independent implementation is test_model_ref*.c's job.
 */
#include "base/base.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

enum { V = 64, DIM = 32, NL = 2, NH = 4, NKV = 2, HD = 8, FF = 48 };

static rein_rng rng;

static void add_rand(rein_gguf_writer *w, const char *name, int64_t r, int64_t c, float std,
                     float mean) {
    int64_t n = c ? r * c : r;
    float *x = rein_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * rein_rng_normal(&rng);
    int64_t shape[2] = {r, c};
    CHECK_OK(rein_gguf_add_tensor(w, name, REIN_TYPE_F32, c ? 2 : 1, shape, x));
    rein_free(x);
}

/* Write a tiny model. `breakage` selects one defect: 0 none, 1 a missing tensor, 2 a wrong
 * shape, 3 another architecture, 4 head_count_kv not dividing head_count; 5 is no defect but
 * another head layout with the same tensors (twice the heads, of half the size). */
static void write_model(const char *path, int tied, int breakage) {
    rein_gguf_writer *w;
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_set_str(w, "general.architecture", breakage == 3 ? "gpt2" : "llama"));
    CHECK_OK(rein_gguf_set_u32(w, "llama.context_length", 64));
    CHECK_OK(rein_gguf_set_u32(w, "llama.embedding_length", DIM));
    CHECK_OK(rein_gguf_set_u32(w, "llama.block_count", NL));
    CHECK_OK(rein_gguf_set_u32(w, "llama.feed_forward_length", FF));
    CHECK_OK(rein_gguf_set_u32(w, "llama.attention.head_count", breakage == 5 ? 2 * NH : NH));
    CHECK_OK(rein_gguf_set_u32(w, "llama.attention.head_count_kv",
                               breakage == 4 ? 3 : breakage == 5 ? 2 * NKV : NKV));
    CHECK_OK(rein_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f));
    CHECK_OK(rein_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    add_rand(w, "token_embd.weight", V, DIM, 1.0f, 0);
    add_rand(w, "output_norm.weight", DIM, 0, 0.1f, 1);
    if (!tied) add_rand(w, "output.weight", V, DIM, 0.3f, 0);
    for (int l = 0; l < NL; l++) {
        char nm[64];
#define T(suffix, r, c, std, mean)                                                             \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix);                                    \
    if (!(breakage == 1 && l == 1 && !strcmp(suffix, "ffn_up"))) add_rand(w, nm, r, c, std, mean);
        T("attn_norm", DIM, 0, 0.1f, 1)
        T("attn_q", NH * HD, DIM, 0.3f, 0)
        T("attn_k", NKV * HD, DIM, 0.3f, 0)
        T("attn_v", NKV * HD, (breakage == 2 && l == 0) ? DIM + 1 : DIM, 0.3f, 0)
        T("attn_output", DIM, NH * HD, 0.3f, 0)
        T("ffn_norm", DIM, 0, 0.1f, 1)
        T("ffn_gate", FF, DIM, 0.3f, 0)
        T("ffn_up", FF, DIM, 0.3f, 0)
        T("ffn_down", DIM, FF, 0.3f, 0)
#undef T
    }
    CHECK_OK(rein_gguf_writer_write(w, path));
    rein_gguf_writer_free(w);
}

/* Worst |a-b| / (1 + |b|): the fast matrix product sums in a different order for one row than
 * for many, so agreement is to float rounding relative to the logits' size, not bit for bit. */
static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]) / (1 + fabs(b[i])));
    return m;
}

static void test_consistency(rein_model *m) {
    const int lens[3] = {5, 1, 9};
    int32_t toks[3][9];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < lens[s]; i++) toks[s][i] = (int32_t)(rein_rng_u64(&rng) % V);
    /* each sequence alone, all positions */
    float alone[3][9 * V];
    for (int s = 0; s < 3; s++) {
        rein_kv_cache *kv;
        CHECK_OK(rein_kv_cache_new(m, 1, 16, &kv));
        int32_t seq[9] = {0};
        CHECK_OK(rein_model_forward(m, kv, toks[s], seq, (size_t)lens[s], NULL, alone[s]));
        CHECK(rein_kv_cache_len(kv, 0) == lens[s]);
        rein_kv_cache_free(kv);
    }
    /* one batch, sequences interleaved token by token */
    rein_kv_cache *kv;
    CHECK_OK(rein_kv_cache_new(m, 3, 16, &kv));
    int32_t bt[15], bs[15], idx[15][2];
    int n = 0;
    for (int i = 0; i < 9; i++)
        for (int s = 0; s < 3; s++)
            if (i < lens[s]) {
                bt[n] = toks[s][i];
                bs[n] = s;
                idx[n][0] = s;
                idx[n][1] = i;
                n++;
            }
    float *batch = rein_malloc(sizeof(float) * (size_t)n * V);
    CHECK_OK(rein_model_forward(m, kv, bt, bs, (size_t)n, NULL, batch));
    double worst = 0;
    for (int r = 0; r < n; r++)
        worst = fmax(worst, max_diff(batch + r * V, alone[idx[r][0]] + idx[r][1] * V, V));
    printf("mixed batch vs alone: worst relative diff %.3g\n", worst);
    CHECK(worst <= 1e-5);

    /* only some rows wanted: they come back packed, in order */
    rein_kv_cache_clear(kv, -1);
    uint8_t want[15] = {0};
    want[2] = want[14] = 1;
    float two[2 * V];
    CHECK_OK(rein_model_forward(m, kv, bt, bs, (size_t)n, want, two));
    CHECK(max_diff(two, batch + 2 * V, V) <= 1e-5 && max_diff(two + V, batch + 14 * V, V) <= 1e-5);

    /* prefill then token-by-token decoding of sequence 2 equals its prefill logits */
    rein_kv_cache_clear(kv, -1);
    int32_t s0 = 0;
    float row[V];
    worst = 0;
    for (int i = 0; i < lens[2]; i++) {
        CHECK_OK(rein_model_forward(m, kv, &toks[2][i], &s0, 1, NULL, row));
        worst = fmax(worst, max_diff(row, alone[2] + i * V, V));
    }
    printf("token-by-token vs prefill: worst relative diff %.3g\n", worst);
    CHECK(worst <= 1e-5);

    /* a copied prefix continues exactly like the original; truncation forgets */
    CHECK_OK(rein_kv_cache_copy(kv, 0, 1, 4));
    CHECK(rein_kv_cache_len(kv, 1) == 4);
    int32_t s1 = 1;
    CHECK_OK(rein_model_forward(m, kv, &toks[2][4], &s1, 1, NULL, row));
    CHECK(max_diff(row, alone[2] + 4 * V, V) <= 1e-5);
    CHECK_OK(rein_kv_cache_truncate(kv, 0, 2));
    CHECK_OK(rein_model_forward(m, kv, &toks[2][2], &s0, 1, NULL, row));
    CHECK(max_diff(row, alone[2] + 2 * V, V) <= 1e-5);
    CHECK_ERR(rein_kv_cache_truncate(kv, 0, 10), REIN_ERR_RANGE, "truncate");
    CHECK_ERR(rein_kv_cache_copy(kv, 0, 7, 1), REIN_ERR_RANGE, "out of range");

    /* bad input: nothing is written to the cache */
    int before = rein_kv_cache_len(kv, 0);
    int32_t bad_tok[2] = {1, V};
    int32_t seqs[2] = {0, 0};
    CHECK_ERR(rein_model_forward(m, kv, bad_tok, seqs, 2, NULL, batch), REIN_ERR_RANGE, "vocabulary");
    int32_t ok_tok[2] = {1, 2}, bad_seq[2] = {0, 3};
    CHECK_ERR(rein_model_forward(m, kv, ok_tok, bad_seq, 2, NULL, batch), REIN_ERR_RANGE, "sequence id 3");
    CHECK(rein_kv_cache_len(kv, 0) == before);
    int32_t many[16] = {0}, zeros[16] = {0};
    CHECK_ERR(rein_model_forward(m, kv, many, zeros, 16, NULL, batch), REIN_ERR_RANGE, "full");
    CHECK(rein_kv_cache_len(kv, 0) == before);
    rein_free(batch);
    rein_kv_cache_free(kv);
    CHECK_ERR(rein_kv_cache_new(m, 0, 16, &kv), REIN_ERR_INVALID, "n_seq");
    CHECK(kv == NULL);
}

/* One decode step of `n` sequences, each fed the token `tok[i]`; logits (n, V). */
static void step(rein_model *m, rein_kv_cache *kv, const int32_t *seqs, const int32_t *tok, int n,
                 float *logits) {
    CHECK_OK(rein_model_forward(m, kv, tok, seqs, (size_t)n, NULL, logits));
}

/* Sequences that share a prefix (rein_kv_cache_share) decode to the bit what a copy of it
 * (rein_kv_cache_copy) decodes, while the source grows, is truncated below the shared part,
 * cleared and refilled, and when one shares from a sharer or copies from one. */
static void test_kv_share(rein_model *m) {
    rein_kv_cache *kv = NULL;
    CHECK_OK(rein_kv_cache_new(m, 7, 24, &kv));
    int32_t prompt[8];
    for (int i = 0; i < 8; i++) prompt[i] = 1 + (int32_t)(rein_rng_u64(&rng) % (V - 1));
    int32_t zeros[8] = {0};
    float *lg = rein_malloc(sizeof(float) * 7 * V);
    CHECK_OK(rein_model_forward(m, kv, prompt, zeros, 8, NULL, NULL));
    CHECK_OK(rein_kv_cache_copy(kv, 0, 1, 8));  /* the reference: a copy */
    CHECK_OK(rein_kv_cache_share(kv, 0, 2, 8));
    CHECK_OK(rein_kv_cache_share(kv, 0, 3, 8));
    CHECK(rein_kv_cache_len(kv, 3) == 8);
    /* seqs 1..3 decode the same tokens; seq 0 (the source) goes its own way */
    const int32_t seqs[4] = {0, 1, 2, 3};
    int bad = 0;
    for (int t = 0; t < 12; t++) {
        int32_t x = 1 + (int32_t)(rein_rng_u64(&rng) % (V - 1)), tok[4] = {(x * 7) % (V - 1) + 1, x, x, x};
        step(m, kv, seqs, tok, 4, lg);
        bad += memcmp(lg + V, lg + 2 * V, sizeof(float) * V) || memcmp(lg + V, lg + 3 * V, sizeof(float) * V);
        if (t == 2) { /* a sharer of a sharer, and a copy of a sharer, join in from here */
            CHECK_OK(rein_kv_cache_share(kv, 2, 4, 11));
            CHECK_OK(rein_kv_cache_copy(kv, 3, 5, 11));
        }
        if (t == 5) CHECK_OK(rein_kv_cache_truncate(kv, 0, 3)); /* below the shared 8 */
        if (t == 8) {
            rein_kv_cache_clear(kv, 0); /* and refilled with other tokens */
            CHECK_OK(rein_model_forward(m, kv, prompt + 1, zeros, 7, NULL, NULL));
        }
        if (t >= 3) { /* 4 and 5 are one step behind 1..3: compare them with each other */
            int32_t s45[2] = {4, 5}, tt[2] = {x, x};
            float two[2 * V];
            step(m, kv, s45, tt, 2, two);
            bad += memcmp(two, two + V, sizeof(float) * V) != 0;
        }
    }
    CHECKF(bad == 0, "%d steps where shared and copied prefixes decoded differently", bad);
    CHECK(rein_kv_cache_len(kv, 2) == 20 && rein_kv_cache_len(kv, 4) == 20);
    /* sharing into the source: its sharers keep what they read */
    CHECK_OK(rein_kv_cache_share(kv, 5, 0, 4));
    int32_t s123[3] = {1, 2, 3}, tok3[3] = {5, 5, 5};
    step(m, kv, s123, tok3, 3, lg);
    CHECK(!memcmp(lg, lg + V, sizeof(float) * V) && !memcmp(lg, lg + 2 * V, sizeof(float) * V));
    CHECK_ERR(rein_kv_cache_share(kv, 0, 7, 1), REIN_ERR_RANGE, "out of range");
    CHECK_ERR(rein_kv_cache_share(kv, 1, 6, 22), REIN_ERR_RANGE, "positions of sequence 1");
    rein_free(lg);
    rein_kv_cache_free(kv);
}

/* An f16 cache: its type, the logits near the f32 cache's but not equal to them (the keys and
 * values were rounded), the same logits through rein_kv_cache_new while F16 is the default, and
 * types a cache cannot hold refused. */
static void test_kv_f16(rein_model *m) {
    rein_kv_cache *k32, *k16, *kdef;
    CHECK_OK(rein_kv_cache_new(m, 1, 16, &k32));
    CHECK_OK(rein_kv_cache_new_typed(m, 1, 16, REIN_TYPE_F16, &k16));
    CHECK(rein_kv_cache_type(k32) == REIN_TYPE_F32 && rein_kv_cache_type(k16) == REIN_TYPE_F16);
    CHECK_OK(rein_set_kv_cache_type(REIN_TYPE_F16));
    CHECK_OK(rein_kv_cache_new(m, 1, 16, &kdef));
    CHECK_OK(rein_set_kv_cache_type(REIN_TYPE_F32));
    CHECK(rein_kv_cache_type(kdef) == REIN_TYPE_F16);
    int32_t toks[12], seq[12] = {0};
    for (int i = 0; i < 12; i++) toks[i] = (int32_t)(rein_rng_u64(&rng) % V);
    float *a = rein_malloc(sizeof(float) * 12 * V), *b = rein_malloc(sizeof(float) * 12 * V);
    float *c = rein_malloc(sizeof(float) * 12 * V);
    CHECK_OK(rein_model_forward(m, k32, toks, seq, 12, NULL, a));
    CHECK_OK(rein_model_forward(m, k16, toks, seq, 12, NULL, b));
    CHECK_OK(rein_model_forward(m, kdef, toks, seq, 12, NULL, c));
    double d = max_diff(a, b, 12 * V);
    printf("f16 cache vs f32: worst relative diff %.3g\n", d);
    CHECK(d > 0 && d <= 3e-2);
    CHECK(!memcmp(b, c, sizeof(float) * 12 * V));
    rein_kv_cache *bad = NULL;
    CHECK_ERR(rein_kv_cache_new_typed(m, 1, 16, REIN_TYPE_Q8_0, &bad), REIN_ERR_INVALID, "Q8_0");
    CHECK(bad == NULL);
    CHECK_ERR(rein_set_kv_cache_type(REIN_TYPE_BF16), REIN_ERR_INVALID, "BF16");
    rein_free(a), rein_free(b), rein_free(c);
    rein_kv_cache_free(k32), rein_kv_cache_free(k16), rein_kv_cache_free(kdef);
}

/* A KV cache made for another model is refused before anything is written, even when its rows
 * are as long: here 4 KV heads of 4 where the model has 2 of 8. */
static void test_foreign_cache(void) {
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/tinyA.gguf", test_tmpdir());
    snprintf(pb, sizeof pb, "%s/tinyB.gguf", test_tmpdir());
    write_model(pa, 1, 0);
    write_model(pb, 1, 5);
    rein_model *a = NULL, *b = NULL;
    CHECK_OK(rein_model_load(pa, &a));
    CHECK_OK(rein_model_load(pb, &b));
    if (!a || !b) {
        rein_model_free(a);
        rein_model_free(b);
        return;
    }
    const rein_model_config *cb = rein_model_get_config(b);
    CHECK(cb->n_kv_heads == 2 * NKV && cb->head_dim == HD / 2);
    rein_kv_cache *kb;
    CHECK_OK(rein_kv_cache_new(b, 1, 8, &kb));
    const int32_t tok[2] = {3, 4}, seq[2] = {0, 0};
    float logits[2 * V];
    CHECK_ERR(rein_model_forward(a, kb, tok, seq, 2, NULL, logits), REIN_ERR_INVALID,
              "made for another model");
    CHECK(rein_kv_cache_len(kb, 0) == 0);
    CHECK_OK(rein_model_forward(b, kb, tok, seq, 2, NULL, logits)); /* its own model's */
    CHECK(rein_kv_cache_len(kb, 0) == 2);
    rein_kv_cache_free(kb);
    rein_model_free(a);
    rein_model_free(b);
}

int main(void) {
    rein_rng_seed(&rng, 99);
    char path[256];
    for (int tied = 0; tied < 2; tied++) {
        snprintf(path, sizeof path, "%s/tiny%d.gguf", test_tmpdir(), tied);
        write_model(path, tied, 0);
        rein_model *m;
        CHECK_OK(rein_model_load(path, &m));
        if (!m) return test_finish();
        const rein_model_config *c = rein_model_get_config(m);
        CHECK(c->n_vocab == V && c->dim == DIM && c->n_layers == NL && c->n_heads == NH &&
              c->n_kv_heads == NKV && c->head_dim == HD && c->ffn_dim == FF && c->tied_head == tied);
        int64_t expect = (int64_t)V * DIM * (tied ? 1 : 2) + DIM +
                         NL * (2 * DIM + 2 * NH * HD * DIM + 2 * NKV * HD * DIM + 3 * FF * DIM);
        CHECK(rein_model_n_params(m) == expect);
        CHECK(rein_model_tokenizer(m) == NULL); /* this file has no tokenizer metadata */
        test_consistency(m);
        test_kv_share(m);
        /* the same invariants with f16 keys and values (the CLI's --kv-f16), and how far they
         * move the logits */
        CHECK_OK(rein_set_kv_cache_type(REIN_TYPE_F16));
        test_consistency(m);
        test_kv_share(m);
        CHECK_OK(rein_set_kv_cache_type(REIN_TYPE_F32));
        test_kv_f16(m);
        rein_model_free(m);
    }
    /* bad model files are reported by name */
    static const struct {
        int breakage;
        rein_status st;
        const char *needle;
    } bad[] = {{1, REIN_ERR_FORMAT, "blk.1.ffn_up.weight"},
               {2, REIN_ERR_FORMAT, "blk.0.attn_v.weight': shape (16, 33), expected (16, 32)"},
               {3, REIN_ERR_UNSUPPORTED, "architecture 'gpt2'"},
               {4, REIN_ERR_FORMAT, "head_count_kv = 3"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/bad%d.gguf", test_tmpdir(), bad[i].breakage);
        write_model(path, 1, bad[i].breakage);
        rein_model *m = NULL;
        CHECK_ERR(rein_model_load(path, &m), bad[i].st, bad[i].needle);
        CHECK(m == NULL);
    }
    test_foreign_cache();
    rein_model *m = NULL;
    CHECK_ERR(rein_model_load("/nonexistent.gguf", &m), REIN_ERR_IO, "/nonexistent.gguf");
    return test_finish();
}
