/* test_base.c - errors, the allocator hook, buffers, the thread pool, the RNG, atomic writes. */
#include "base/base.h"
#include "testutil.h"

#include <string.h>

static void sum_task(void *ctx, int i, int n) {
    long *out = ctx;
    (void)n;
    out[i] = (long)i * i;
}

int main(void) {
    /* errors */
    CHECK(rein_error(REIN_ERR_FORMAT, "x.gguf: offset %d: bad", 12) == REIN_ERR_FORMAT);
    CHECK(!strcmp(rein_last_error(), "x.gguf: offset 12: bad"));
    rein_error_wrap(REIN_ERR_FORMAT, "loading %s: ", "m");
    CHECK(!strcmp(rein_last_error(), "loading m: x.gguf: offset 12: bad"));

    /* buffers */
    rein_buf b = {0};
    CHECK_OK(rein_buf_appendf(&b, "%d-%s", 42, "x"));
    CHECK_OK(rein_buf_append(&b, "yz", 2));
    CHECK(b.len == 6 && !strcmp(b.data, "42-xyz"));
    for (int i = 0; i < 10000; i++) CHECK_OK(rein_buf_append(&b, "a", 1));
    CHECK(b.len == 10006 && b.data[b.len] == 0);
    rein_buf_free(&b);
    rein_buf_free(&b); /* twice is harmless */

    /* aligned allocation */
    void *a = rein_malloc_aligned(1000, 64);
    CHECK(a && ((uintptr_t)a % 64) == 0);
    rein_free_aligned(a);
    rein_free_aligned(NULL);

    /* the allocator hook counts and fails */
    test_alloc_install(3);
    rein_tokens t = {0};
    rein_status st = REIN_OK;
    for (int i = 0; i < 1000 && st == REIN_OK; i++) st = rein_tokens_push(&t, i);
    CHECK(st == REIN_ERR_NOMEM);
    CHECK(t.n == 128); /* grew twice (64, 128), the third growth failed and kept the data */
    for (size_t i = 0; i < t.n; i++) CHECK(t.ids[i] == (int32_t)i);
    rein_tokens_free(&t);
    test_alloc_uninstall();

    /* thread pool: every task runs exactly once, many times over */
    rein_set_threads(2);
    CHECK(rein_get_threads() == 2);
    long out[97];
    for (int rep = 0; rep < 200; rep++) {
        memset(out, -1, sizeof out);
        rein_parallel_for(97, sum_task, out);
        int ok = 1;
        for (int i = 0; i < 97; i++) ok &= out[i] == (long)i * i;
        CHECK(ok);
    }

    /* RNG: same seed, same stream; uniform in [0,1) with mean near 1/2 */
    rein_rng r1, r2;
    rein_rng_seed(&r1, 7);
    rein_rng_seed(&r2, 7);
    double sum = 0;
    int same = 1;
    for (int i = 0; i < 100000; i++) {
        float u = rein_rng_uniform(&r1);
        same &= u == rein_rng_uniform(&r2);
        CHECK(u >= 0 && u < 1);
        sum += u;
    }
    CHECK(same);
    CHECKF(sum / 100000 > 0.49 && sum / 100000 < 0.51, "mean %f", sum / 100000);

    /* atomic writes: commit replaces, abort leaves the old file */
    char path[256];
    snprintf(path, sizeof path, "%s/f.txt", test_tmpdir());
    rein_atomic_file af;
    CHECK_OK(rein_atomic_open(&af, path));
    fputs("first", af.fp);
    CHECK_OK(rein_atomic_commit(&af));
    CHECK_OK(rein_atomic_open(&af, path));
    fputs("second", af.fp);
    rein_atomic_abort(&af);
    rein_buf fb = {0};
    CHECK_OK(rein_read_file(path, &fb));
    CHECK(fb.data && !strcmp(fb.data, "first"));
    rein_buf_free(&fb);
    CHECK_ERR(rein_read_file("/nonexistent/x", &fb), REIN_ERR_IO, "/nonexistent/x");
    return test_finish();
}
