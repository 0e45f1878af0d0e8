/* test_tokenizer_model.c - the default model's tokenizer (SmolLM2, pre-tokenizer "smollm") against
 * llama.cpp's, on a hand-written corpus and on every text of ../shared/data.
 *
 * tests/fixtures/tokenizer/smollm2.json is written by tools/gen_tokenizer_fixture.py from
 * llama.cpp's tokenizer. For the hand-written strings it holds the full ids (plain, and with
 * special tokens parsed); for the shared texts (self-instruct seed tasks, HH dialogues) only a
 * count and an FNV-1a hash per text, and this test reads the texts from ../shared/data itself, in
 * the order the tool did. Every text must also decode back to itself.
 */
#include "base/base.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <string.h>

static const char *FIXTURE = "tests/fixtures/tokenizer/smollm2.json";

static uint64_t fnv1a64(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

static int ids_equal(const rein_tokens *got, const cJSON *want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != got->n) return 0;
    size_t i = 0;
    for (const cJSON *x = want->child; x; x = x->next, i++)
        if (!cJSON_IsNumber(x) || (int32_t)x->valuedouble != got->ids[i]) return 0;
    return 1;
}

static int round_trips(const rein_tokenizer *t, const rein_tokens *ids, const char *text,
                       size_t len, int render_special) {
    rein_buf b = {0};
    rein_status st = rein_detokenize(t, ids->ids, ids->n, render_special, &b);
    int ok = st == REIN_OK && b.len == len && (len == 0 || !memcmp(b.data, text, len));
    rein_buf_free(&b);
    return ok;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* The hand-written corpus: full ids, plain and with special tokens parsed. */
static void check_hand(const rein_tokenizer *t, const cJSON *hand) {
    int n = 0, pass = 0, pass_sp = 0, shown = 0;
    for (const cJSON *h = hand->child; h; h = h->next, n++) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(h, "text");
        const char *s = text->valuestring;
        size_t len = strlen(s);
        rein_tokens a = {0}, b = {0};
        CHECK_OK(rein_tokenize(t, s, len, 0, &a));
        CHECK_OK(rein_tokenize(t, s, len, REIN_TOKENIZE_PARSE_SPECIAL, &b));
        int ok = ids_equal(&a, cJSON_GetObjectItemCaseSensitive(h, "ids"));
        int ok_sp = ids_equal(&b, cJSON_GetObjectItemCaseSensitive(h, "ids_special"));
        pass += ok;
        pass_sp += ok_sp;
        if ((!ok || !ok_sp) && shown++ < 5) {
            fprintf(stderr, "hand string %d differs (%s): \"%s\"\n", n, ok ? "special" : "plain", s);
            print_ids("got", ok ? b.ids : a.ids, ok ? b.n : a.n);
        }
        CHECKF(round_trips(t, &a, s, len, 0), "hand string %d does not decode back", n);
        CHECKF(round_trips(t, &b, s, len, 1), "hand string %d (special) does not decode back", n);
        rein_tokens_free(&a);
        rein_tokens_free(&b);
    }
    printf("hand corpus: %d / %d exact, %d / %d exact with special tokens parsed\n", pass, n,
           pass_sp, n);
    CHECK(pass == n && pass_sp == n && n > 300);
}

/* Byte strings that are not valid UTF-8: the same ids as llama.cpp (invalid bytes read as
 * U+FFFD). */
static void check_bytes(const rein_tokenizer *t, const cJSON *cases) {
    int n = 0, pass = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n++) {
        const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "hex"));
        char raw[256];
        size_t len = 0;
        for (; hex && hex[0] && hex[1] && len < sizeof(raw); hex += 2) {
            unsigned v;
            sscanf(hex, "%2x", &v);
            raw[len++] = (char)v;
        }
        rein_tokens ids = {0};
        CHECK_OK(rein_tokenize(t, raw, len, 0, &ids));
        int ok = ids_equal(&ids, cJSON_GetObjectItemCaseSensitive(c, "ids"));
        if (!ok) {
            fprintf(stderr, "byte string %d differs\n", n);
            print_ids("got", ids.ids, ids.n);
        }
        pass += ok;
        rein_tokens_free(&ids);
    }
    printf("byte strings (invalid UTF-8): %d / %d exact\n", pass, n);
    CHECK(pass == n && n > 200);
}

/* Append a JSONL file's texts in the tool's order: self-instruct (instruction, then each
 * instance's input and output) or HH (chosen, rejected). */
static void read_texts(const char *path, int hh, char ***texts, size_t *n, size_t *cap) {
    rein_buf file = {0};
    CHECK_OK(rein_read_file(path, &file));
    for (char *line = file.data; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *row = l ? cJSON_ParseWithLength(line, l) : NULL;
        CHECKF(!l || row, "%s: a line is not JSON", path);
        const char *add[64];
        size_t n_add = 0;
        if (row && hh) {
            add[n_add++] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "chosen"));
            add[n_add++] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "rejected"));
        } else if (row) {
            add[n_add++] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "instruction"));
            const cJSON *inst = cJSON_GetObjectItemCaseSensitive(row, "instances");
            for (const cJSON *x = inst ? inst->child : NULL; x && n_add + 2 <= 64; x = x->next) {
                add[n_add++] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "input"));
                add[n_add++] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "output"));
            }
        }
        for (size_t i = 0; i < n_add; i++) {
            CHECKF(add[i] != NULL, "%s: a field is missing", path);
            if (*n == *cap) {
                *cap = *cap ? 2 * *cap : 1024;
                *texts = realloc(*texts, *cap * sizeof(**texts));
            }
            (*texts)[(*n)++] = strdup(add[i] ? add[i] : "");
        }
        cJSON_Delete(row);
        line = nl ? nl + 1 : NULL;
    }
    rein_buf_free(&file);
}

typedef struct thread_job {
    const rein_tokenizer *t;
    char **texts;
    size_t n;
    uint64_t hash; /* of every id list, chained */
    int ok;
} thread_job;

static void *tokenize_all(void *arg) {
    thread_job *j = arg;
    j->ok = 1;
    j->hash = 0;
    for (size_t i = 0; i < j->n; i++) {
        rein_tokens ids = {0};
        if (rein_tokenize(j->t, j->texts[i], strlen(j->texts[i]), 0, &ids) != REIN_OK) j->ok = 0;
        j->hash = j->hash * 31 + fnv1a64(ids.ids, ids.n);
        rein_tokens_free(&ids);
    }
    return NULL;
}

/* The shared corpus: counts and hashes, and decoding back. */
static void check_shared(const rein_tokenizer *t, const cJSON *shared, const char *data) {
    char path[1024];
    char **texts = NULL;
    size_t n = 0, cap = 0;
    snprintf(path, sizeof(path), "%s/self-instruct/seed_tasks.jsonl", data);
    read_texts(path, 0, &texts, &n, &cap);
    size_t n_si = n;
    snprintf(path, sizeof(path), "%s/hh-rlhf-harmless/train.jsonl", data);
    read_texts(path, 1, &texts, &n, &cap);
    size_t n_train_end = n;
    snprintf(path, sizeof(path), "%s/hh-rlhf-harmless/dev.jsonl", data);
    read_texts(path, 1, &texts, &n, &cap);

    const cJSON *want = cJSON_GetObjectItemCaseSensitive(shared, "ids");
    CHECKF((size_t)cJSON_GetArraySize(want) == n, "fixture has %d shared texts, the data %zu",
           cJSON_GetArraySize(want), n);
    CHECK((double)n_si == cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(shared, "n_self_instruct")));
    size_t pass_si = 0, pass_hh = 0, n_tokens = 0, shown = 0;
    const cJSON *w = want ? want->child : NULL;
    for (size_t i = 0; i < n && w; i++, w = w->next) {
        rein_tokens ids = {0};
        size_t len = strlen(texts[i]);
        CHECK_OK(rein_tokenize(t, texts[i], len, 0, &ids));
        char got[64];
        snprintf(got, sizeof(got), "%zu:%016llx", ids.n,
                 (unsigned long long)fnv1a64(ids.ids, ids.n));
        int ok = cJSON_IsString(w) && !strcmp(got, w->valuestring);
        if (ok) {
            if (i < n_si) pass_si++;
            else pass_hh++;
        } else if (shown++ < 3) {
            fprintf(stderr, "shared text %zu differs (got %s, want %s): \"%.200s\"\n", i, got,
                    cJSON_IsString(w) ? w->valuestring : "?", texts[i]);
        }
        CHECKF(round_trips(t, &ids, texts[i], len, 0), "shared text %zu does not decode back", i);
        n_tokens += ids.n;
        rein_tokens_free(&ids);
    }
    printf("self-instruct: %zu / %zu texts exact; HH: %zu / %zu texts exact (%zu tokens in all)\n",
           pass_si, n_si, pass_hh, n - n_si, n_tokens);
    CHECK(pass_si == n_si && pass_hh == n - n_si);

    /* Speed (a figure, not a check): the HH train set, once on one thread. */
    size_t bytes = 0;
    for (size_t i = n_si; i < n_train_end; i++) bytes += strlen(texts[i]);
    thread_job one = {t, texts + n_si, n_train_end - n_si, 0, 0};
    double t0 = rein_time_now();
    tokenize_all(&one);
    double dt = rein_time_now() - t0;
    printf("HH train: %zu dialogues, %.2f MB tokenized in %.3f s (%.1f MB/s)\n", one.n, bytes / 1e6,
           dt, bytes / 1e6 / (dt > 0 ? dt : 1e-9));

    /* Thread safety: two threads on one tokenizer agree with the single-threaded run. */
    thread_job a = one, b = one;
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, tokenize_all, &a) == 0);
    CHECK(pthread_create(&tb, NULL, tokenize_all, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && b.ok && a.hash == one.hash && b.hash == one.hash);

    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
}

int main(void) {
    const char *model = test_default_model();
    if (!model) test_skip("the default model is absent (make model)");
    rein_gguf *g = NULL;
    rein_tokenizer *t = NULL;
    CHECK_OK(rein_gguf_open(model, &g));
    CHECK_OK(rein_tokenizer_from_gguf(g, &t));
    if (!t) return test_finish();

    /* What the vocabulary says about itself. */
    CHECK(rein_tokenizer_n_vocab(t) == 49152);
    CHECK(!strcmp(rein_tokenizer_pre(t), "smollm"));
    CHECK(rein_token_bos(t) == 1 && rein_token_eos(t) == 2 && rein_token_eot(t) == 2);
    CHECK(rein_token_is_eog(t, 2) && rein_token_is_eog(t, 0) && !rein_token_is_eog(t, 1));
    CHECK(!rein_token_is_eog(t, 100) && !rein_token_is_eog(t, -1) && !rein_token_is_eog(t, 49152));
    CHECK(!strcmp(rein_token_piece(t, 2), "<|im_end|>"));
    CHECK(rein_token_piece(t, 49152) == NULL && rein_token_piece(t, -1) == NULL);
    CHECK(rein_token_lookup(t, "<|im_start|>") == 1 && rein_token_lookup(t, "no such piece") == -1);
    CHECK(rein_token_type(t, 1) == REIN_TOKEN_CONTROL && rein_token_type(t, 500) == REIN_TOKEN_NORMAL);
    CHECK(rein_token_type(t, 49152) == -1);
    int32_t hello = rein_token_lookup(t, "\xc4\xa0Hello"); /* "ĠHello" */
    CHECK(hello > 0);
    rein_buf b = {0};
    CHECK_OK(rein_token_to_bytes(t, hello, 0, &b));
    CHECK(b.len == 6 && !memcmp(b.data, " Hello", 6));
    rein_buf_clear(&b);
    CHECK_OK(rein_token_to_bytes(t, 2, 0, &b));
    CHECK(b.len == 0); /* control tokens are hidden ... */
    CHECK_OK(rein_token_to_bytes(t, 2, 1, &b));
    CHECK(b.len == 10 && !memcmp(b.data, "<|im_end|>", 10)); /* ... unless asked for */
    CHECK_ERR(rein_token_to_bytes(t, 49152, 0, &b), REIN_ERR_RANGE, "49152");
    rein_buf_free(&b);

    /* Digits one by one; BOS only where the vocabulary asks (SmolLM2 does not). */
    rein_tokens ids = {0};
    CHECK_OK(rein_tokenize(t, "2024", 4, REIN_TOKENIZE_ADD_BOS, &ids));
    CHECK(ids.n == 4);
    for (size_t i = 0; i < ids.n && i < 4; i++) {
        char piece[2] = {"2024"[i], 0};
        CHECK(ids.ids[i] == rein_token_lookup(t, piece));
    }
    rein_tokens_free(&ids);

    /* Random valid UTF-8 decodes back to itself: code points up to U+FFFF, but not the six ASCII
     * controls (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d) that SmolLM2's vocabulary has no token for. */
    rein_rng rng;
    rein_rng_seed(&rng, 7);
    for (int k = 0; k < 300; k++) {
        char raw[256];
        size_t len = 0;
        for (int c = 0, nc = 1 + (int)(rein_rng_u64(&rng) % 60); c < nc; c++) {
            uint32_t cp = (uint32_t)(rein_rng_u64(&rng) % (k % 3 ? 0x80 : 0x10000));
            if ((cp >= 0xd800 && cp <= 0xdfff) || (cp < 0x20 && cp != '\t' && cp != '\n')) cp = 'x';
            if (cp < 0x80) {
                raw[len++] = (char)cp;
            } else if (cp < 0x800) {
                raw[len++] = (char)(0xc0 | cp >> 6);
                raw[len++] = (char)(0x80 | (cp & 0x3f));
            } else {
                raw[len++] = (char)(0xe0 | cp >> 12);
                raw[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                raw[len++] = (char)(0x80 | (cp & 0x3f));
            }
        }
        CHECK_OK(rein_tokenize(t, raw, len, 0, &ids));
        CHECKF(round_trips(t, &ids, raw, len, 0), "random UTF-8 string %d does not decode back", k);
        rein_tokens_free(&ids);
    }

    rein_buf fx = {0};
    CHECK_OK(rein_read_file(FIXTURE, &fx));
    cJSON *root = fx.data ? cJSON_Parse(fx.data) : NULL;
    CHECKF(root != NULL, "%s is not JSON", FIXTURE);
    if (root) check_hand(t, cJSON_GetObjectItemCaseSensitive(root, "hand"));
    if (root) check_bytes(t, cJSON_GetObjectItemCaseSensitive(root, "bytes"));

    const char *data = test_shared_data();
    if (root && data) check_shared(t, cJSON_GetObjectItemCaseSensitive(root, "shared"), data);
    cJSON_Delete(root);
    rein_buf_free(&fx);
    rein_tokenizer_free(t);
    rein_gguf_free(g);
    if (!data && !test_failures)
        test_skip("../shared/data is absent: the shared corpus was not checked (hand corpus passed)");
    return test_finish();
}
