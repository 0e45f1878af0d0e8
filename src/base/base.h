/* base.h - internal groundwork shared by every module: assertions, threads, RNG, logging, files.
 *
 * Public parts (status, errors, allocation, buffers) live in include/rein.h; this header adds what
 * only the library itself uses. Nothing here knows about models or files of any format.
 */
#ifndef REIN_BASE_H
#define REIN_BASE_H

#include "rein.h"

#include <stdio.h>
#include <stdlib.h>

/* A broken invariant is a bug, not bad input: print where and abort. Never use on user input. */
#define REIN_ASSERT(cond)                                                                      \
    do {                                                                                       \
        if (!(cond)) rein_assert_fail(__FILE__, __LINE__, #cond);                              \
    } while (0)
void rein_assert_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#define REIN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define REIN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Return early with the callee's status (its message is already set). */
#define REIN_TRY(expr)                                                                         \
    do {                                                                                       \
        rein_status try_st_ = (expr);                                                          \
        if (try_st_ != REIN_OK) return try_st_;                                                \
    } while (0)

/* ---- threads ------------------------------------------------------------------------------ */

/* Run fn(ctx, i, n_tasks) for i in [0, n_tasks) across the pool's threads and the caller; returns
 * when all are done. Tasks must not call rein_parallel_for themselves (nested calls run inline). */
typedef void (*rein_task_fn)(void *ctx, int i, int n_tasks);
void rein_parallel_for(int n_tasks, rein_task_fn fn, void *ctx);

/* ---- random numbers: xoshiro256** with splitmix64 seeding; state is plain data so that a
 * checkpoint can save it ---------------------------------------------------------------------- */
typedef struct rein_rng {
    uint64_t s[4];
} rein_rng;
void rein_rng_seed(rein_rng *r, uint64_t seed);
uint64_t rein_rng_u64(rein_rng *r);
float rein_rng_uniform(rein_rng *r); /* [0, 1) */
float rein_rng_normal(rein_rng *r);  /* standard normal */

/* ---- logging to stderr ------------------------------------------------------------------- */
enum { REIN_LOG_ERROR = 0, REIN_LOG_WARN = 1, REIN_LOG_INFO = 2, REIN_LOG_DEBUG = 3 };
void rein_log_set_level(int level);
void rein_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- files -------------------------------------------------------------------------------- */

/* Read a whole file into *out (NUL-terminated). */
rein_status rein_read_file(const char *path, rein_buf *out);

/* Atomic write: open a temporary file beside `path`; the caller writes to *fp, then commit flushes,
 * fsyncs and renames it over `path`; abort removes it. A crash in between leaves `path` as it was. */
typedef struct rein_atomic_file {
    FILE *fp;
    char *path;
    char *tmp;
} rein_atomic_file;
rein_status rein_atomic_open(rein_atomic_file *af, const char *path);
rein_status rein_atomic_commit(rein_atomic_file *af);
void rein_atomic_abort(rein_atomic_file *af);

/* ---- progress: a bar on a terminal (stderr), plain lines otherwise ------------------------ */
typedef struct rein_progress {
    char label[32];
    int64_t total;
    int tty;
    double start, last_print;
    double plain_every_s; /* without a terminal, print at most this often (0: every update) */
} rein_progress;
void rein_progress_init(rein_progress *p, const char *label, int64_t total, int force_plain);
/* Show `done` of total with a short info text ("loss 2.31 | 812 tok/s"). */
void rein_progress_update(rein_progress *p, int64_t done, const char *info);

/* Monotonic wall-clock seconds. */
double rein_time_now(void);

#endif /* REIN_BASE_H */
