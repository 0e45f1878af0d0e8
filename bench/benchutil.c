/* benchutil.c - see benchutil.h. */
#include "benchutil.h"
#include "rein.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

double bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

double bench_rss_now_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

cJSON *bench_run_json(const char *cmd) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    rein_buf out = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) rein_buf_append(&out, chunk, n);
    pclose(f);
    cJSON *j = NULL;
    if (out.data) {
        char *brace = strrchr(out.data, '{');
        if (brace) j = cJSON_Parse(brace);
    }
    rein_buf_free(&out);
    return j;
}

double bench_num(const cJSON *j, const char *key) {
    return cJSON_GetNumberValue(cJSON_GetObjectItem(j, key));
}
