/* loss.c - cross-entropy and token log-probabilities over rows of logits.
 *
 * Each row is three passes over its V logits: the maximum, the sum of exp(x - max) (in double),
 * then either the gradient or nothing. When a gradient is wanted, the second pass stores
 * exp(x - max) in dlogits and the third scales it, so each exp is computed once; reading x[j]
 * before writing dlogits[j] is what allows dlogits == logits.
 *
 * The rows are split into at most MAX_TASKS chunks whose sizes depend only on N; each chunk sums
 * its rows in order and the chunks' sums are added in order, so the result is the same for any
 * number of threads.
 */
#include "kernels/loss.h"
#include "base/base.h"

#include <math.h>

#define MAX_TASKS 64

typedef struct loss_job {
    float *dlogits, *logp;
    const float *logits;
    const int32_t *targets;
    int N, V, rows_per_task;
    float scale;
    double part[MAX_TASKS];
} loss_job;

/* log softmax(x)[t] of one row x (V); if g is not NULL, g = (softmax(x) - onehot(t)) * scale. */
static double row_logprob(float *g, const float *x, int V, int t, float scale) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = fmaxf(mx, x[j]);
    float xt = x[t];
    double sum = 0;
    if (g) {
        for (int j = 0; j < V; j++) {
            float e = expf(x[j] - mx);
            g[j] = e;
            sum += e;
        }
        float c = (float)(scale / sum);
        for (int j = 0; j < V; j++) g[j] *= c;
        g[t] -= scale;
    } else {
        for (int j = 0; j < V; j++) sum += expf(x[j] - mx);
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
            lp = row_logprob(g, j->logits + (int64_t)i * j->V, j->V, t, j->scale);
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
