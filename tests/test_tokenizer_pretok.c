/* test_tokenizer_pretok.c - every pre-tokenizer against llama.cpp's, llama3 and qwen2 included.
 *
 * The shared vectors have no Llama 3 or Qwen2 vocabulary, so tools/gen_pretok_fixture.py took the
 * GPT-2 vocabulary of the vectors, renamed its tokenizer.ggml.pre to each pre-tokenizer in turn,
 * and recorded llama.cpp's ids (count and FNV-1a hash) for every hand-written string of the SmolLM2
 * fixture. Here rein's GGUF writer makes the same renamed copies, and every string must match.
 */
#include "base/base.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <string.h>

static uint64_t fnv1a64(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) {
            h ^= ((uint32_t)ids[i] >> (8 * k)) & 0xff;
            h *= 0x100000001b3ull;
        }
    return h;
}

static cJSON *read_json(const char *path) {
    rein_buf b = {0};
    CHECK_OK(rein_read_file(path, &b));
    cJSON *j = b.data ? cJSON_Parse(b.data) : NULL;
    CHECKF(j != NULL, "%s is not JSON", path);
    rein_buf_free(&b);
    return j;
}

int main(void) {
    const char *shared = test_shared_data();
    if (!shared) test_skip("../shared/data is absent (the GPT-2 vocabulary of the test vectors)");
    char src[1024], dst[1024];
    snprintf(src, sizeof(src), "%s/tokenizer-vectors/ggml-vocab-gpt-2.gguf", shared);
    cJSON *fx = read_json("tests/fixtures/tokenizer/pretok.json");
    cJSON *hand = read_json("tests/fixtures/tokenizer/smollm2.json");
    if (!fx || !hand) return test_finish();
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(hand, "hand");
    rein_gguf *base = NULL;
    CHECK_OK(rein_gguf_open(src, &base));
    if (!base) return test_finish();

    const cJSON *pres = cJSON_GetObjectItemCaseSensitive(fx, "pre");
    int n_pre = 0;
    for (const cJSON *p = pres ? pres->child : NULL; p; p = p->next, n_pre++) {
        const char *pre = p->string;
        snprintf(dst, sizeof(dst), "%s/vocab-%s.gguf", test_tmpdir(), pre);
        rein_gguf_writer *w = NULL;
        CHECK_OK(rein_gguf_writer_new(&w));
        CHECK_OK(rein_gguf_copy_kv(w, base));
        CHECK_OK(rein_gguf_set_str(w, "tokenizer.ggml.pre", pre));
        CHECK_OK(rein_gguf_writer_write(w, dst));
        rein_gguf_writer_free(w);
        rein_gguf *g = NULL;
        rein_tokenizer *t = NULL;
        CHECK_OK(rein_gguf_open(dst, &g));
        if (g) CHECK_OK(rein_tokenizer_from_gguf(g, &t));
        if (!t) {
            rein_gguf_free(g);
            continue;
        }
        int n = 0, pass = 0, shown = 0;
        const cJSON *want = p->child;
        for (const cJSON *h = texts ? texts->child : NULL; h && want; h = h->next, want = want->next) {
            const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "text"));
            rein_tokens ids = {0};
            CHECK_OK(rein_tokenize(t, s, strlen(s), 0, &ids));
            char got[64];
            snprintf(got, sizeof(got), "%zu:%016llx", ids.n,
                     (unsigned long long)fnv1a64(ids.ids, ids.n));
            int ok = cJSON_IsString(want) && !strcmp(got, want->valuestring);
            if (!ok && shown++ < 3) fprintf(stderr, "%s: string %d differs: \"%s\"\n", pre, n, s);
            pass += ok;
            n++;
            rein_tokens_free(&ids);
        }
        printf("pre=%-15s %3d / %3d strings exact (GPT-2 vocabulary)\n", pre, pass, n);
        CHECKF(pass == n && n > 300, "pre-tokenizer %s: %d of %d exact", pre, pass, n);
        rein_tokenizer_free(t);
        rein_gguf_free(g);
    }
    CHECK(n_pre >= 9);
    rein_gguf_free(base);
    cJSON_Delete(fx);
    cJSON_Delete(hand);
    return test_finish();
}
