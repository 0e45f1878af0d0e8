/* test_tokenizer.c - the tokenizer's parts on small vocabularies written here.
 *
 * The byte map; BPE merge order (rank, then leftmost); special tokens (user-defined always,
 * control only when asked, longest first); BOS; llama3's whole-word lookup; the errors for
 * unsupported or malformed tokenizer metadata; and out-of-memory at every allocation. Exactness
 * against real vocabularies is in test_tokenizer_vectors.c and test_tokenizer_model.c.
 */
#include "base/base.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* The 256 byte tokens first (id = byte), then extra pieces. */
typedef struct vocab_spec {
    const char *model, *pre;
    const char *extra[8];
    int extra_type[8];
    const char *merges[8];
    int bos; /* -1: none */
    int add_bos;
} vocab_spec;

static const char *write_vocab(const vocab_spec *v, const char *file) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), file);
    char bytes[256][3];
    const char *toks[264];
    int32_t types[264];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int l = rein_tok_byte_encode((uint8_t)b, bytes[b]);
        bytes[b][l] = 0;
        toks[n] = bytes[b];
        types[n++] = REIN_TOKEN_NORMAL;
    }
    for (int i = 0; i < 8 && v->extra[i]; i++) {
        toks[n] = v->extra[i];
        types[n++] = v->extra_type[i] ? v->extra_type[i] : REIN_TOKEN_NORMAL;
    }
    int nm = 0;
    while (nm < 8 && v->merges[nm]) nm++;
    rein_gguf_writer *w = NULL;
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_set_str(w, "general.architecture", "llama"));
    if (v->model) CHECK_OK(rein_gguf_set_str(w, "tokenizer.ggml.model", v->model));
    if (v->pre) CHECK_OK(rein_gguf_set_str(w, "tokenizer.ggml.pre", v->pre));
    CHECK_OK(rein_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, n));
    CHECK_OK(rein_gguf_set_arr(w, "tokenizer.ggml.token_type", REIN_GGUF_INT32, types, n));
    if (nm) CHECK_OK(rein_gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, NULL, nm));
    if (v->bos >= 0) CHECK_OK(rein_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos));
    CHECK_OK(rein_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos));
    CHECK_OK(rein_gguf_writer_write(w, path));
    rein_gguf_writer_free(w);
    return path;
}

static rein_status load(const vocab_spec *v, const char *file, rein_gguf **g, rein_tokenizer **t) {
    *t = NULL;
    CHECK_OK(rein_gguf_open(write_vocab(v, file), g));
    if (!*g) return REIN_ERR_IO;
    return rein_tokenizer_from_gguf(*g, t);
}

static int ids_are(const rein_tokenizer *t, const char *text, int flags, const int32_t *want,
                   size_t n) {
    rein_tokens ids = {0};
    rein_status st = rein_tokenize(t, text, strlen(text), flags, &ids);
    int ok = st == REIN_OK && ids.n == n && (n == 0 || !memcmp(ids.ids, want, n * 4));
    if (!ok) {
        fprintf(stderr, "\"%s\" (flags %d):", text, flags);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, "\n");
    }
    rein_tokens_free(&ids);
    return ok;
}
#define IDS(t, text, flags, ...)                                                               \
    ids_are(t, text, flags, (const int32_t[]){__VA_ARGS__},                                    \
            sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void test_byte_map(void) {
    int seen[0x200] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = rein_tok_byte_to_cp((uint8_t)b);
        CHECK(cp < 0x144 && rein_tok_cp_to_byte(cp) == b);
        CHECK(!seen[cp]++);
    }
    CHECK(rein_tok_byte_to_cp(' ') == 0x120);  /* 'Ġ' */
    CHECK(rein_tok_byte_to_cp('\n') == 0x10a); /* 'Ċ' */
    CHECK(rein_tok_byte_to_cp('a') == 'a' && rein_tok_byte_to_cp(0xad) == 0x143);
    CHECK(rein_tok_cp_to_byte(0x144) == -1 && rein_tok_cp_to_byte(0x20) == -1);
    rein_buf b = {0};
    CHECK_OK(rein_tok_piece_decode("\xc4\xa0hi\xc4\x8a", 6, &b)); /* "Ġhi Ċ" */
    CHECK(b.len == 4 && !memcmp(b.data, " hi\n", 4));
    rein_buf_free(&b);
    int len;
    CHECK(rein_tok_utf8_next("\xe2\x82\xac", 3, &len) == 0x20ac && len == 3);
    CHECK(rein_tok_utf8_next("\xe2\x82", 2, &len) == 0xfffd && len == 1);
    CHECK(rein_tok_utf8_next("\xc0\x80", 2, &len) == 0xfffd && len == 1);
}

static void test_pretok(void) {
    rein_pretok *p = NULL;
    rein_span *sp = NULL;
    size_t n = 0, cap = 0;
    CHECK_OK(rein_pretok_new("smollm", &p));
    const char *text = "Hello world's 2024!!  \n\tx";
    CHECK_OK(rein_pretok_split(p, text, strlen(text), &sp, &n, &cap));
    /* Digits are cut out first, so the space before them is a word of its own; a whitespace run
     * before a letter leaves its last character apart (\s+(?!\S)), and "\t" has no letter. */
    const char *want[] = {"Hello", " world", "'s", " ", "2", "0", "2", "4", "!!", "  \n", "\t", "x"};
    size_t nw = sizeof(want) / sizeof(want[0]);
    int same = n == nw;
    for (size_t i = 0; same && i < n; i++)
        same = sp[i].len == strlen(want[i]) && !memcmp(text + sp[i].start, want[i], sp[i].len);
    if (!same)
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "[%.*s]", (int)sp[i].len, text + sp[i].start);
    CHECK(same);
    /* The words always cover the text exactly, in order. */
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(sp[i].start == at && sp[i].len > 0);
        at += sp[i].len;
    }
    CHECK(at == strlen(text));
    rein_pretok_free(p);
    CHECK_OK(rein_pretok_new("llama-bpe", &p));
    CHECK(!strcmp(rein_pretok_name(p), "llama-bpe") && rein_pretok_ignore_merges(p) &&
          rein_pretok_default_add_bos(p));
    const char *t2 = "12345 abc";
    CHECK_OK(rein_pretok_split(p, t2, strlen(t2), &sp, &n, &cap));
    CHECK(n == 3 && sp[0].len == 3 && sp[1].len == 2 && sp[2].len == 4); /* 123|45| abc */
    rein_pretok_free(p);
    CHECK_ERR(rein_pretok_new("nonsense", &p), REIN_ERR_UNSUPPORTED, "smollm");
    CHECK(p == NULL);
    rein_free(sp);
}

int main(void) {
    test_alloc_install(0);
    test_byte_map();
    test_pretok();

    /* a=0x61, b=0x62, c=0x63: merges a+b (rank 0), b+c (1), ab+c (2), a+a (3). */
    vocab_spec v = {"gpt2", "gpt-2",
                    {"ab", "bc", "abc", "aa", "<|ctl|>", "<|ctl|>x", "<u>", "zzzz"},
                    {0, 0, 0, 0, REIN_TOKEN_CONTROL, REIN_TOKEN_CONTROL, REIN_TOKEN_USER_DEFINED, 0},
                    {"a b", "b c", "ab c", "a a"},
                    260, 1};
    enum { AB = 256, BC, ABC, AA, CTL, CTLX, U, ZZZZ };
    rein_gguf *g = NULL;
    rein_tokenizer *t = NULL;
    CHECK_OK(load(&v, "v.gguf", &g, &t));
    if (t) {
        CHECK(rein_tokenizer_n_vocab(t) == 264 && !strcmp(rein_tokenizer_pre(t), "gpt-2"));
        CHECK(IDS(t, "abc", 0, ABC));        /* a+b first (rank 0), then ab+c */
        CHECK(IDS(t, "bc", 0, BC));
        CHECK(IDS(t, "aaa", 0, AA, 'a'));    /* equal ranks: the leftmost pair merges first */
        CHECK(IDS(t, "aaaa", 0, AA, AA));
        CHECK(IDS(t, "cab", 0, 'c', AB));
        CHECK(IDS(t, "zzzz", 0, 'z', 'z', 'z', 'z')); /* no merges lead there */
        rein_tokens ids = {0};
        CHECK_OK(rein_tokenize(t, "", 0, 0, &ids));
        CHECK(ids.n == 0);
        CHECK_OK(rein_tokenize(t, "", 0, REIN_TOKENIZE_ADD_BOS, &ids));
        CHECK(ids.n == 1 && ids.ids[0] == CTL); /* add_bos_token is set */
        rein_tokens_free(&ids);
        CHECK(rein_token_bos(t) == CTL && rein_token_eos(t) == -1 && rein_token_eot(t) == -1);
        /* User-defined tokens always; control tokens only when parsing specials, longest first. */
        CHECK(IDS(t, "a<u>b", 0, 'a', U, 'b'));
        CHECK(IDS(t, "<|ctl|>x<u>", REIN_TOKENIZE_PARSE_SPECIAL, CTLX, U));
        CHECK(IDS(t, "ab<|ctl|>ab", REIN_TOKENIZE_PARSE_SPECIAL, AB, CTL, AB));
        CHECK(IDS(t, "<|ctl|>", 0, '<', '|', 'c', 't', 'l', '|', '>'));
        /* Decoding: control tokens only when rendered; user-defined tokens as their text. */
        rein_buf b = {0};
        int32_t seq[] = {AB, CTL, U, 'c'};
        CHECK_OK(rein_detokenize(t, seq, 4, 0, &b));
        CHECK(!strcmp(b.data, "ab<u>c"));
        rein_buf_clear(&b);
        CHECK_OK(rein_detokenize(t, seq, 4, 1, &b));
        CHECK(!strcmp(b.data, "ab<|ctl|><u>c"));
        CHECK_ERR(rein_detokenize(t, (int32_t[]){-1}, 1, 0, &b), REIN_ERR_RANGE, "-1");
        rein_buf_free(&b);
    }
    rein_tokenizer_free(t);
    rein_gguf_free(g);

    /* llama3 takes a word that is a whole token as is, merges or not; and adds BOS by default. */
    v.pre = "llama-bpe";
    CHECK_OK(load(&v, "l3.gguf", &g, &t));
    if (t) CHECK(IDS(t, "zzzz", 0, ZZZZ));
    rein_tokenizer_free(t);
    rein_gguf_free(g);

    /* Errors name what is wrong. */
    vocab_spec bad = v;
    bad.model = "llama";
    CHECK_ERR(load(&bad, "spm.gguf", &g, &t), REIN_ERR_UNSUPPORTED, "\"llama\"");
    CHECK(t == NULL);
    rein_gguf_free(g);
    bad = v;
    bad.pre = "klingon";
    CHECK_ERR(load(&bad, "pre.gguf", &g, &t), REIN_ERR_UNSUPPORTED, "\"klingon\" is not supported");
    CHECK(strstr(rein_last_error(), "smollm") && strstr(rein_last_error(), "deepseek-llm"));
    rein_gguf_free(g);
    bad = v;
    bad.model = NULL;
    CHECK_ERR(load(&bad, "nomodel.gguf", &g, &t), REIN_ERR_FORMAT, "tokenizer.ggml.model");
    rein_gguf_free(g);
    bad = v;
    bad.merges[0] = NULL;
    CHECK_ERR(load(&bad, "nomerges.gguf", &g, &t), REIN_ERR_FORMAT, "tokenizer.ggml.merges");
    rein_gguf_free(g);
    bad = v;
    bad.bos = 5000; /* out of range: ignored with a warning, as llama.cpp does */
    CHECK_OK(load(&bad, "badbos.gguf", &g, &t));
    CHECK(t && rein_token_bos(t) == -1);
    rein_tokenizer_free(t);
    rein_gguf_free(g);

    /* Out of memory at every allocation: a clean REIN_ERR_NOMEM, never a crash or a leak. (A
     * failure inside PCRE2's optional JIT compilation is no error: the interpreter takes over, and
     * the ids must be the same.) */
    v.pre = "smollm";
    CHECK_OK(rein_gguf_open(write_vocab(&v, "oom.gguf"), &g));
    const char *text = "abc 123 <u> x";
    rein_tokens want = {0};
    CHECK_OK(rein_tokenizer_from_gguf(g, &t));
    if (t) CHECK_OK(rein_tokenize(t, text, strlen(text), 0, &want));
    rein_tokenizer_free(t);
    int failures = 0, k;
    for (k = 1; k < 10000; k++) {
        test_alloc_install(k);
        rein_tokenizer *tt = NULL;
        rein_status st = rein_tokenizer_from_gguf(g, &tt);
        rein_tokens ids = {0};
        if (st == REIN_OK) st = rein_tokenize(tt, text, strlen(text), 0, &ids);
        int reached = test_alloc_count() >= k;
        int same = st == REIN_OK && ids.n == want.n && !memcmp(ids.ids, want.ids, 4 * want.n);
        rein_tokens_free(&ids);
        rein_tokenizer_free(tt);
        if (!reached) break; /* nothing failed: every point was tried */
        CHECKF(st == REIN_ERR_NOMEM || same, "allocation %d: %s: %s", k, rein_status_str(st),
               rein_last_error());
        failures += st == REIN_ERR_NOMEM;
    }
    test_alloc_install(0);
    printf("out of memory: %d of %d allocation points fail cleanly, the others are recovered\n",
           failures, k - 1);
    CHECK(failures > 10 && k < 10000);
    rein_tokens_free(&want);
    rein_gguf_free(g);
    return test_finish();
}
