/* benchutil.c - see benchutil.h. */
#include "benchutil.h"
#include "rein.h"
#include "base/base.h"

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

#if defined(__x86_64__)
#include <immintrin.h>

/* One thread's share of the peak measurement: 12 independent chains of 256-bit FMAs (more than
 * the FMA pipes times their latency), 2 x 8 x 12 flops an iteration. */
enum { PEAK_ITERS = 20000000 };
__attribute__((target("avx2,fma"))) static void fma_loop(void *ctx, int t, int n_tasks) {
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (int it = 0; it < PEAK_ITERS; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm256_cvtss_f32(a[i]);
    ((float *)ctx)[t] = s; /* keeps the loop */
}

/* The same with 512-bit FMAs: 2 x 16 x 12 flops an iteration. */
__attribute__((target("avx512f"))) static void fma_loop512(void *ctx, int t, int n_tasks) {
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (int it = 0; it < PEAK_ITERS / 2; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_cvtss_f32(a[i]);
    ((float *)ctx)[t] = s;
}

double bench_fma_peak(int threads, int wide) {
    float sink[64];
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t = rein_time_now();
        rein_parallel_for(threads, wide ? fma_loop512 : fma_loop, sink);
        best = REIN_MIN(best, rein_time_now() - t);
    }
    return 2.0 * 8 * 12 * PEAK_ITERS * threads / best / 1e9; /* the same flops either way */
}
#else
double bench_fma_peak(int threads, int wide) {
    return 0;
}
#endif
