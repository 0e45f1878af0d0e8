/* loss.c - cross-entropy and token log-probabilities over rows of logits.
 *
 * Each row is three passes over its V logits: the maximum, the sum of exp(x - max) (in double),
 * then either the gradient or nothing. The first two take an AVX-512 path when
 * rein_kernels_use_avx512() says so. When a gradient is wanted, the second pass stores
 * exp(x - max) in dlogits and the third scales it, so each exp is computed once; reading x[j]
 * before writing dlogits[j] is what allows dlogits == logits.
 *
 * The rows are split into at most MAX_TASKS chunks whose sizes depend only on N; each chunk sums
 * its rows in order and the chunks' sums are added in order, so the result is the same for any
 * number of threads.
 */
#include "kernels/loss.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/vexp.h"

#include <math.h>

#define MAX_TASKS 64

typedef struct loss_job {
    float *dlogits, *logp;
    const float *logits;
    const int32_t *targets;
    int N, V, rows_per_task, avx;
    float scale;
    double part[MAX_TASKS];
} loss_job;

/* The maximum of x (V), and sum_j exp(x[j] - mx) (stored into g (V) too if not NULL). */
static float row_max_portable(const float *x, int V) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = fmaxf(mx, x[j]);
    return mx;
}

static double exp_sum_portable(float *g, const float *x, int V, float mx) {
    double sum = 0;
    for (int j = 0; j < V; j++) {
        float e = expf(x[j] - mx);
        if (g) g[j] = e;
        sum += e;
    }
    return sum;
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))

AVX512 static float row_max_avx512(const float *x, int V) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < V; j += 16) {
        __mmask16 m = (__mmask16)(V - j >= 16 ? 0xffff : (1u << (V - j)) - 1);
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + j));
    }
    return _mm512_reduce_max_ps(mx);
}

AVX512 static double exp_sum_avx512(float *g, const float *x, int V, float mx) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    __m512 mv = _mm512_set1_ps(mx);
    for (int j = 0; j < V; j += 16) {
        __mmask16 m = (__mmask16)(V - j >= 16 ? 0xffff : (1u << (V - j)) - 1);
        __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mv)));
        if (g) _mm512_mask_storeu_ps(g + j, m, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
#endif

/* log softmax(x)[t] of one row x (V); if g is not NULL, g = (softmax(x) - onehot(t)) * scale. */
static double row_logprob(float *g, const float *x, int V, int t, float scale, int avx) {
    float xt = x[t], mx;
    double sum;
#if defined(__x86_64__)
    if (avx) {
        mx = row_max_avx512(x, V);
        sum = exp_sum_avx512(g, x, V, mx);
    } else
#endif
    {
        mx = row_max_portable(x, V);
        sum = exp_sum_portable(g, x, V, mx);
    }
    if (g) {
        float c = (float)(scale / sum);
        for (int j = 0; j < V; j++) g[j] *= c;
        g[t] -= scale;
    }
    return (double)xt - mx - log(sum);
}

static void loss_task(void *ctx, int task, int n_tasks) {
    loss_job *j = ctx;
    int i0 = task * j->rows_per_task, i1 = REIN_MIN(j->N, i0 + j->rows_per_task);
    double sum = 0;
    for (int i = i0; i < i1; i++) {
        int t = j->targets[i];
        REIN_ASSERT(t >= -1 && t < j->V);
        float *g = j->dlogits ? j->dlogits + (int64_t)i * j->V : NULL;
        double lp = 0;
        if (t >= 0) {
            lp = row_logprob(g, j->logits + (int64_t)i * j->V, j->V, t, j->scale, j->avx);
        } else if (g) {
            for (int c = 0; c < j->V; c++) g[c] = 0;
        }
        if (j->logp) j->logp[i] = (float)lp;
        sum += lp;
    }
    j->part[task] = sum;
}

/* Run loss_task over the rows; returns the sum of the rows' log-probabilities. */
static double run_rows(loss_job *j) {
    if (j->N <= 0) return 0;
    REIN_ASSERT(j->V > 0);
    j->avx = rein_kernels_use_avx512();
    j->rows_per_task = (j->N + MAX_TASKS - 1) / MAX_TASKS;
    int n_tasks = (j->N + j->rows_per_task - 1) / j->rows_per_task;
    rein_parallel_for(n_tasks, loss_task, j);
    double sum = 0;
    for (int t = 0; t < n_tasks; t++) sum += j->part[t];
    return sum;
}

double rein_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                          float scale) {
    loss_job j = {.dlogits = dlogits, .logits = logits, .targets = targets, .N = N, .V = V,
                  .scale = scale};
    return -run_rows(&j);
}

double rein_token_logprobs(float *logp, const float *logits, const int32_t *targets, int N, int V) {
    loss_job j = {.logp = logp, .logits = logits, .targets = targets, .N = N, .V = V};
    return run_rows(&j);
}
