/* threads.c - a small persistent thread pool for rein's kernels.
 *
 * rein_parallel_for hands out task indices from an atomic counter; the calling thread works too.
 * Idle workers spin only briefly (SPIN_ROUNDS pauses: about 50 us on the Zen 5 here, where a pause
 * takes 25 ns; the gaps between the kernels of a forward pass are shorter, so dispatch stays
 * cheap) and then sleep on a condition variable, so an idle rein never steals a core from another
 * process. (20000 rounds, half a millisecond, decoded no faster.)
 */
#include "base/base.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define SPIN_ROUNDS 2000

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    int n_workers;          /* threads besides the caller */
    pthread_t tid[MAX_THREADS];
    /* the current job: fn and ctx are written before the ticket that publishes them */
    rein_task_fn fn;
    void *ctx;
    /* n_tasks << 32 | next index to claim. One fetch_add claims an index together with the limit
     * of the job it belongs to, so a worker still looping on a finished job can never claim an
     * index of the next job against the old limit (or the reverse). */
    _Atomic uint64_t ticket;
    atomic_int remaining;   /* tasks not yet finished */
    atomic_uint generation; /* bumped for each job */
    int quit;
} pool;

static pool P = {.mu = PTHREAD_MUTEX_INITIALIZER,
                 .wake = PTHREAD_COND_INITIALIZER,
                 .done = PTHREAD_COND_INITIALIZER};
static int n_threads_wanted; /* 0 = not decided yet */
static _Thread_local int in_task;

static void run_tasks(void) {
    for (;;) {
        uint64_t t = atomic_fetch_add(&P.ticket, 1);
        int i = (int)(t & 0xffffffffu), n = (int)(t >> 32);
        if (i >= n) break;
        in_task = 1;
        P.fn(P.ctx, i, n);
        in_task = 0;
        if (atomic_fetch_sub(&P.remaining, 1) == 1) {
            pthread_mutex_lock(&P.mu);
            pthread_cond_broadcast(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned seen = atomic_load(&P.generation);
    for (;;) {
        int spins = 0;
        while (atomic_load(&P.generation) == seen && spins < SPIN_ROUNDS) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
            spins++;
        }
        if (atomic_load(&P.generation) == seen) {
            pthread_mutex_lock(&P.mu);
            while (atomic_load(&P.generation) == seen && !P.quit) pthread_cond_wait(&P.wake, &P.mu);
            int quit = P.quit;
            pthread_mutex_unlock(&P.mu);
            if (quit) return NULL;
        }
        seen = atomic_load(&P.generation);
        run_tasks();
    }
}

static void pool_stop(void) {
    pthread_mutex_lock(&P.mu);
    P.quit = 1;
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.n_workers; i++) pthread_join(P.tid[i], NULL);
    P.n_workers = 0;
    P.quit = 0;
}

static int default_threads(void) {
    const char *env = getenv("REIN_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void pool_start(int n) {
    static int registered;
    if (!registered) {
        atexit(pool_stop);
        registered = 1;
    }
    for (int i = 0; i < n - 1 && i < MAX_THREADS; i++) {
        if (pthread_create(&P.tid[i], NULL, worker, NULL) != 0) break; /* run with fewer */
        P.n_workers++;
    }
}

void rein_set_threads(int n) {
    if (n < 1) n = default_threads();
    if (n > MAX_THREADS) n = MAX_THREADS;
    if (n == n_threads_wanted && (P.n_workers == n - 1)) return;
    pool_stop();
    n_threads_wanted = n;
    pool_start(n);
}

int rein_get_threads(void) {
    if (!n_threads_wanted) rein_set_threads(0);
    return n_threads_wanted;
}

void rein_parallel_for(int n_tasks, rein_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!n_threads_wanted) rein_set_threads(0);
    if (in_task || P.n_workers == 0 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    atomic_store(&P.remaining, n_tasks);
    atomic_store(&P.ticket, (uint64_t)n_tasks << 32);
    pthread_mutex_lock(&P.mu);
    atomic_fetch_add(&P.generation, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    run_tasks();
    if (atomic_load(&P.remaining) > 0) {
        int spins = 0;
        while (atomic_load(&P.remaining) > 0 && spins < SPIN_ROUNDS) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
            spins++;
        }
        pthread_mutex_lock(&P.mu);
        while (atomic_load(&P.remaining) > 0) pthread_cond_wait(&P.done, &P.mu);
        pthread_mutex_unlock(&P.mu);
    }
}

double rein_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
