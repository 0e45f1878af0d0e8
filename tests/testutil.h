/* testutil.h - the tiny harness every test program uses.
 *
 * A test program is a main() that calls CHECK/CHECK_OK and ends with `return test_finish();`.
 * It exits 0 when every check held, 1 when any failed, and 77 (SKIP) through test_skip() when
 * something it needs is absent (the real model, ../shared/data), printing why.
 */
#ifndef REIN_TESTUTIL_H
#define REIN_TESTUTIL_H

#include "base/base.h"
#include "rein.h"

#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        test_checks++;                                                                         \
        if (!(cond)) {                                                                         \
            test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                                      \
    do {                                                                                       \
        test_checks++;                                                                         \
        if (!(cond)) {                                                                         \
            test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* Expect REIN_OK; on failure print the status and rein_last_error(). */
#define CHECK_OK(expr)                                                                         \
    do {                                                                                       \
        test_checks++;                                                                         \
        rein_status chk_st_ = (expr);                                                          \
        if (chk_st_ != REIN_OK) {                                                              \
            test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,                \
                    rein_status_str(chk_st_), rein_last_error());                              \
        }                                                                                      \
    } while (0)

/* Expect a specific failure status, and an error message containing `needle`. */
#define CHECK_ERR(expr, status, needle) test_check_err((expr), (status), (needle), #expr, __FILE__, __LINE__)

void test_check_err(rein_status got, rein_status want, const char *needle, const char *expr,
                    const char *file, int line);
int test_finish(void);
void test_skip(const char *why) __attribute__((noreturn));

/* A failing allocator for tests of out-of-memory paths: installed with rein_set_allocator, it
 * counts allocations and live blocks and fails the fail_at-th allocation (1-based; 0 = never). */
void test_alloc_install(long fail_at);
void test_alloc_uninstall(void); /* back to the C library's */
long test_alloc_count(void);     /* allocations since install */
long test_alloc_live(void);      /* blocks allocated and not yet freed since install */

/* Run a shell command; capture its stdout (and stderr when merge_stderr) into *out (NUL-terminated).
 * Returns its exit status, or 128 + the signal that killed it, or -1 if it could not start. */
int test_run(const char *cmd, int merge_stderr, rein_buf *out);

/* Whether two training runs logged the same loss at every step 1..steps of their metrics.jsonl,
 * to the last printed digit (the last line of a step wins: a resumed run repeats the steps after
 * its checkpoint). Prints the steps that differ. */
int test_same_losses(const char *dir_a, const char *dir_b, int steps);

/* n normal random floats times std from rng (owned by the caller: rein_free), and a double copy
 * of n floats (likewise), for kernel tests against double-precision references. */
float *test_randn(rein_rng *rng, int64_t n, float std);
double *test_to_double(const float *x, int64_t n);

/* Path of the shared data folder (../shared/data, or $REIN_SHARED_DATA); NULL if absent. */
const char *test_shared_data(void);
/* Path of the default model if downloaded (models/..., or $REIN_MODEL); NULL if absent. */
const char *test_default_model(void);
/* A fresh temporary directory for this test program, removed by test_finish when every check held. */
const char *test_tmpdir(void);

#endif
