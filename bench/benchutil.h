/* benchutil.h - what the benchmark programs share: memory figures and running a configuration in a
 * child process (so that its peak RSS is its own) that prints one JSON object. */
#ifndef REIN_BENCHUTIL_H
#define REIN_BENCHUTIL_H

#include <cjson/cJSON.h>

double bench_peak_rss_mb(void); /* this process's peak resident memory */
double bench_rss_now_mb(void);  /* its resident memory now */
/* Run a shell command and parse the last JSON object it printed; NULL if none. Caller frees. */
cJSON *bench_run_json(const char *cmd);
/* A number field of a JSON object (NaN if absent). */
double bench_num(const cJSON *j, const char *key);

#endif
