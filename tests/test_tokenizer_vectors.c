/* test_tokenizer_vectors.c - rein's tokenizer against llama.cpp's tokenizer test vectors.
 *
 * ../shared/data/tokenizer-vectors holds vocabulary-only GGUF files with test strings (.inp,
 * separated by lines "__ggml_vocab_test__") and the ids HF tokenizers gives for each (.out, one
 * line per string). The strings are read exactly as llama.cpp's test-tokenizer-0 reads them: the
 * file is cut at every "\n__ggml_vocab_test__\n", and the text after the last separator (empty)
 * is no test. Tokenized without BOS and without parsing control tokens, every string must give
 * exactly its ids, and decoding the ids must give the string back. Every vocabulary must load:
 * each one's pre-tokenizer is one rein supports.
 */
#include "base/base.h"
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static const char SEP[] = "\n__ggml_vocab_test__\n";

typedef struct strs {
    char **s;
    size_t *len;
    size_t n, cap;
} strs;

static void strs_push(strs *v, const char *s, size_t len) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->s = realloc(v->s, v->cap * sizeof(*v->s));
        v->len = realloc(v->len, v->cap * sizeof(*v->len));
    }
    v->s[v->n] = malloc(len + 1);
    memcpy(v->s[v->n], s, len);
    v->s[v->n][len] = 0;
    v->len[v->n++] = len;
}

static void strs_free(strs *v) {
    for (size_t i = 0; i < v->n; i++) free(v->s[i]);
    free(v->s);
    free(v->len);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One vocabulary: returns 1 if every string passed. */
static int run_vocab(const char *dir, const char *name, int *n_pass, int *n_total) {
    char path[2048], pin[2100], pout[2100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(pin, sizeof(pin), "%s.inp", path);
    snprintf(pout, sizeof(pout), "%s.out", path);
    *n_pass = *n_total = 0;

    rein_gguf *g = NULL;
    rein_tokenizer *t = NULL;
    CHECK_OK(rein_gguf_open(path, &g));
    if (!g) return 0;
    rein_status st = rein_tokenizer_from_gguf(g, &t);
    CHECKF(st == REIN_OK, "%s: %s", name, rein_last_error());
    if (!t) {
        rein_gguf_free(g);
        return 0;
    }

    rein_buf inp = {0}, outp = {0};
    CHECK_OK(rein_read_file(pin, &inp));
    CHECK_OK(rein_read_file(pout, &outp));
    strs tests = {0}, lines = {0};
    for (size_t pos = 0; pos < inp.len;) {
        const char *next = strstr(inp.data + pos, SEP);
        if (!next) {
            strs_push(&tests, inp.data + pos, inp.len - pos);
            break;
        }
        strs_push(&tests, inp.data + pos, (size_t)(next - (inp.data + pos)));
        pos = (size_t)(next - inp.data) + sizeof(SEP) - 1;
    }
    for (char *p = outp.data; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        strs_push(&lines, p, l);
        p = nl ? nl + 1 : NULL;
    }
    CHECKF(tests.n == lines.n && tests.n > 0, "%s: %zu strings but %zu id lines", name, tests.n,
           lines.n);

    int fails_shown = 0;
    for (size_t i = 0; i < tests.n && i < lines.n; i++) {
        rein_tokens want = {0}, got = {0};
        for (char *p = lines.s[i]; *p;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            rein_tokens_push(&want, (int32_t)v);
            p = end;
        }
        CHECK_OK(rein_tokenize(t, tests.s[i], tests.len[i], 0, &got));
        int same = got.n == want.n && (got.n == 0 || !memcmp(got.ids, want.ids, got.n * 4));
        rein_buf dec = {0};
        CHECK_OK(rein_detokenize(t, got.ids, got.n, 0, &dec));
        int round = dec.len == tests.len[i] && (dec.len == 0 || !memcmp(dec.data, tests.s[i], dec.len));
        CHECKF(round, "%s: string %zu does not decode back", name, i);
        (*n_total)++;
        if (same) {
            (*n_pass)++;
        } else if (fails_shown++ < 4) {
            fprintf(stderr, "%s: string %zu \"%s\"\n  want:", name, i, tests.s[i]);
            for (size_t k = 0; k < want.n; k++) fprintf(stderr, " %d", want.ids[k]);
            fprintf(stderr, "\n  got: ");
            for (size_t k = 0; k < got.n; k++) fprintf(stderr, " %d", got.ids[k]);
            fprintf(stderr, "\n");
        }
        rein_buf_free(&dec);
        rein_tokens_free(&want);
        rein_tokens_free(&got);
    }
    printf("%-32s pre=%-15s %3d / %3d strings exact\n", name, rein_tokenizer_pre(t), *n_pass,
           *n_total);
    strs_free(&tests);
    strs_free(&lines);
    rein_buf_free(&inp);
    rein_buf_free(&outp);
    rein_tokenizer_free(t);
    rein_gguf_free(g);
    return *n_pass == *n_total && *n_total > 0;
}

int main(void) {
    const char *shared = test_shared_data();
    if (!shared) test_skip("../shared/data is absent (set REIN_SHARED_DATA)");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tokenizer-vectors", shared);
    DIR *d = opendir(dir);
    if (!d) test_skip("../shared/data/tokenizer-vectors is absent");
    char *names[64];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 64;) {
        size_t l = strlen(e->d_name);
        if (!strncmp(e->d_name, "ggml-vocab-", 11) && l > 5 && !strcmp(e->d_name + l - 5, ".gguf"))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    CHECKF(n >= 7, "expected the 7 vocabularies, found %zu", n);

    int all = 0, all_pass = 0, gpt2_seen = 0;
    for (size_t i = 0; i < n; i++) {
        int p, tot;
        int ok = run_vocab(dir, names[i], &p, &tot);
        CHECKF(ok, "%s: %d of %d strings exact", names[i], p, tot);
        if (!strcmp(names[i], "ggml-vocab-gpt-2.gguf")) gpt2_seen = 1;
        all += tot;
        all_pass += p;
        free(names[i]);
    }
    CHECK(gpt2_seen);
    printf("all vocabularies: %d / %d strings exact\n", all_pass, all);
    return test_finish();
}
