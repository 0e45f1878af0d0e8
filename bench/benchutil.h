/* benchutil.h - what the benchmark programs share: memory figures, running a configuration in a
 * child process (so that its peak RSS is its own) that prints one JSON object, and the FMA peak. */
#ifndef REIN_BENCHUTIL_H
#define REIN_BENCHUTIL_H

#include <cjson/cJSON.h>

double bench_peak_rss_mb(void); /* this process's peak resident memory */
double bench_rss_now_mb(void);  /* its resident memory now */
/* Run a shell command and parse the last JSON object it printed; NULL if none. Caller frees. */
cJSON *bench_run_json(const char *cmd);
/* A number field of a JSON object (NaN if absent). */
double bench_num(const cJSON *j, const char *key);
/* GFLOP/s of 256-bit (wide = 0) or 512-bit FMAs (the CPU must have AVX-512) on `threads` threads
 * at once, best of 3 runs of a fraction of a second; 0 off x86-64. The peak a ratio is taken
 * against, measured at the same moment: this machine's clock moves by several percent an hour. */
double bench_fma_peak(int threads, int wide);

#endif
