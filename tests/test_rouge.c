/* test_rouge.c - ROUGE-L against Google's rouge_score package (tests/fixtures/align/rouge.jsonl,
 * written by tools/gen_rouge_fixture.py): the tokens of every text, every pair's F-measure to the
 * last bit, and the pool's threaded maximum (Self-Instruct's filter) over 400 texts, each against
 * all before it, at 1 and at 2 threads; allocation failures in the pool. */
#include "align/rouge.h"
#include "base/base.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <string.h>

static void check_pair(cJSON *o, int line, int *n_pairs) {
    const char *pred = cJSON_GetObjectItem(o, "pred")->valuestring;
    const char *target = cJSON_GetObjectItem(o, "target")->valuestring;
    double want = cJSON_GetObjectItem(o, "f")->valuedouble;
    double got = -1;
    CHECK_OK(rein_rouge_l(pred, target, &got));
    CHECKF(got == want, "line %d: F %.17g, rouge_score %.17g (pred '%.60s')", line, got, want, pred);
    /* F is symmetric */
    double back = -1;
    CHECK_OK(rein_rouge_l(target, pred, &back));
    CHECKF(back == want, "line %d: reversed F %.17g != %.17g", line, back, want);
    /* tokens */
    rein_buf tb = {0};
    size_t n = 0;
    CHECK_OK(rein_rouge_tokens(pred, &tb, &n));
    cJSON *toks = cJSON_GetObjectItem(o, "tokens");
    CHECKF((int)n == cJSON_GetArraySize(toks), "line %d: %zu tokens, rouge_score %d", line, n,
           cJSON_GetArraySize(toks));
    const char *p = tb.data;
    for (int i = 0; i < cJSON_GetArraySize(toks) && i < (int)n; i++) {
        CHECKF(!strcmp(p, cJSON_GetArrayItem(toks, i)->valuestring), "line %d token %d: '%s' vs '%s'",
               line, i, p, cJSON_GetArrayItem(toks, i)->valuestring);
        p += strlen(p) + 1;
    }
    rein_buf_free(&tb);
    /* a one-entry pool gives the same value */
    rein_rouge_pool *pool;
    CHECK_OK(rein_rouge_pool_new(&pool));
    CHECK_OK(rein_rouge_pool_add(pool, target));
    double best;
    int64_t entry;
    CHECK_OK(rein_rouge_pool_max(pool, pred, &best, &entry));
    CHECKF(best == want && entry == 0, "line %d: pool %.17g (entry %lld), rouge_score %.17g", line,
           best, (long long)entry, want);
    rein_rouge_pool_free(pool);
    (*n_pairs)++;
}

static void check_pool(cJSON *o, int threads) {
    rein_set_threads(threads);
    cJSON *texts = cJSON_GetObjectItem(o, "texts"), *mx = cJSON_GetObjectItem(o, "max"),
          *am = cJSON_GetObjectItem(o, "argmax");
    int n = cJSON_GetArraySize(texts), bad = 0;
    rein_rouge_pool *pool;
    CHECK_OK(rein_rouge_pool_new(&pool));
    double t0 = rein_time_now();
    for (int i = 0; i < n; i++) {
        const char *t = cJSON_GetArrayItem(texts, i)->valuestring;
        double best;
        int64_t entry;
        CHECK_OK(rein_rouge_pool_max(pool, t, &best, &entry));
        if (i > 0) {
            double want = cJSON_GetArrayItem(mx, i)->valuedouble;
            int want_e = cJSON_GetArrayItem(am, i)->valueint;
            if (best != want || entry != want_e) {
                if (bad++ < 5)
                    fprintf(stderr, "pool text %d: %.17g at %lld, rouge_score %.17g at %d\n", i, best,
                            (long long)entry, want, want_e);
            }
        } else {
            CHECK(entry == -1 && best == 0);
        }
        CHECK_OK(rein_rouge_pool_add(pool, t));
    }
    CHECKF(bad == 0, "%d of %d pool maxima differ from rouge_score (%d threads)", bad, n - 1, threads);
    CHECK(rein_rouge_pool_size(pool) == (size_t)n);
    printf("pool of %d texts, each against all before it: every maximum and argmax equals "
           "rouge_score's (%d threads, %.3f s)\n", n, threads, rein_time_now() - t0);
    rein_rouge_pool_free(pool);
}

/* Speed on a pool of thousands, as Self-Instruct's grows (printed, not asserted). */
static void pool_speed(void) {
    rein_rouge_pool *pool;
    CHECK_OK(rein_rouge_pool_new(&pool));
    char text[256];
    rein_rng rng;
    rein_rng_seed(&rng, 3);
    static const char *words[] = {"write", "a", "story", "about", "the", "explain", "why", "list",
                                  "three", "tips", "for", "how", "to", "make", "healthy", "food"};
    for (int i = 0; i < 5000; i++) {
        size_t k = 0;
        int n = 5 + (int)(rein_rng_u64(&rng) % 20);
        for (int w = 0; w < n; w++)
            k += (size_t)snprintf(text + k, sizeof text - k, "%s ", words[rein_rng_u64(&rng) % 16]);
        CHECK_OK(rein_rouge_pool_add(pool, text));
    }
    double t0 = rein_time_now(), best;
    int64_t e;
    for (int q = 0; q < 20; q++) CHECK_OK(rein_rouge_pool_max(pool, "write three tips for a healthy story", &best, &e));
    printf("pool of 5000: %.2f ms per candidate (%d threads)\n", (rein_time_now() - t0) / 20 * 1e3,
           rein_get_threads());
    rein_rouge_pool_free(pool);
}

int main(void) {
    rein_buf b = {0};
    if (rein_read_file("tests/fixtures/align/rouge.jsonl", &b) != REIN_OK) {
        fprintf(stderr, "%s\n", rein_last_error());
        return 1;
    }
    int line = 0, n_pairs = 0;
    cJSON *pool_obj = NULL;
    for (char *p = strtok(b.data, "\n"); p; p = strtok(NULL, "\n")) {
        line++;
        cJSON *o = cJSON_Parse(p);
        CHECK(o != NULL);
        if (!o) continue;
        const char *kind = cJSON_GetObjectItem(o, "kind")->valuestring;
        if (!strcmp(kind, "pair")) {
            check_pair(o, line, &n_pairs);
            cJSON_Delete(o);
        } else {
            pool_obj = o;
        }
    }
    printf("%d pairs: tokens and F-measure equal rouge_score's to the last bit\n", n_pairs);
    CHECK(n_pairs > 250 && pool_obj);
    if (pool_obj) {
        check_pool(pool_obj, 1);
        check_pool(pool_obj, 2);
        cJSON_Delete(pool_obj);
    }
    pool_speed();

    /* allocation failures: every one reported, nothing leaked */
    for (long fail = 1; fail < 40; fail++) {
        test_alloc_install(fail);
        rein_rouge_pool *pool = NULL;
        rein_status st = rein_rouge_pool_new(&pool);
        if (!st) st = rein_rouge_pool_add(pool, "write a poem about the sea");
        if (!st) st = rein_rouge_pool_add(pool, "explain the sea to a child");
        double best;
        int64_t e;
        if (!st) st = rein_rouge_pool_max(pool, "a poem about a child", &best, &e);
        rein_rouge_pool_free(pool);
        CHECKF(st == REIN_OK || st == REIN_ERR_NOMEM, "fail at %ld: %s", fail, rein_status_str(st));
        CHECKF(test_alloc_live() == 0, "fail at %ld: %ld blocks leaked", fail, test_alloc_live());
        test_alloc_uninstall();
    }
    rein_buf_free(&b);
    return test_finish();
}
