/* test_loss.c - cross-entropy and token log-probabilities against a direct double computation.
 *
 * Both paths (AVX-512 and portable) are run. Covers ignored rows (target -1), the gradient's scale, dlogits written over the logits, a large
 * vocabulary with logits far from 0 (the maximum must be subtracted), and sums that do not depend
 * on the number of threads.
 */
#include "base/base.h"
#include "kernels/loss.h"
#include "kernels/matmul.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

/* Direct double log-softmax of row x (V) at t, and its softmax into p (V). */
static double ref_row(const float *x, int V, int t, double *p) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < V; j++) mx = fmax(mx, x[j]);
    for (int j = 0; j < V; j++) sum += exp((double)x[j] - mx);
    for (int j = 0; j < V; j++) p[j] = exp((double)x[j] - mx) / sum;
    return (double)x[t] - mx - log(sum);
}

static void run_case(int N, int V, float std, float offset, float scale) {
    int64_t n = (int64_t)N * V;
    float *x = rein_malloc(sizeof(float) * n), *g = rein_malloc(sizeof(float) * n);
    float *logp = rein_malloc(sizeof(float) * N);
    int32_t *tg = rein_malloc(sizeof(int32_t) * N);
    double *p = rein_malloc(sizeof(double) * V);
    for (int64_t i = 0; i < n; i++) x[i] = rein_rng_normal(&rng) * std + offset;
    for (int i = 0; i < N; i++) tg[i] = i % 3 == 1 ? -1 : (int32_t)(rein_rng_u64(&rng) % V);
    tg[0] = V - 1;

    memset(g, 0xff, sizeof(float) * n); /* NaN: every value must be written */
    double loss = rein_cross_entropy(g, x, tg, N, V, scale);
    double lp_sum = rein_token_logprobs(logp, x, tg, N, V);
    double ref_loss = 0, worst_g = 0, worst_lp = 0;
    int ok_g = 1, ok_lp = 1;
    for (int i = 0; i < N; i++) {
        const float *xi = x + (int64_t)i * V, *gi = g + (int64_t)i * V;
        if (tg[i] < 0) {
            for (int j = 0; j < V; j++) ok_g &= gi[j] == 0;
            ok_lp &= logp[i] == 0;
            continue;
        }
        double lp = ref_row(xi, V, tg[i], p);
        ref_loss -= lp;
        /* logp is a difference of O(offset) floats: a few ulps of the offset */
        double d = fabs(logp[i] - lp);
        worst_lp = fmax(worst_lp, d);
        ok_lp &= d <= 1e-5 * (1 + fabs(offset) + fabs(lp));
        for (int j = 0; j < V; j++) {
            double want = (p[j] - (j == tg[i])) * scale, e = fabs(gi[j] - want);
            worst_g = fmax(worst_g, e);
            ok_g &= e <= 1e-6 * fabs(scale) + 1e-5 * fabs(want);
        }
    }
    printf("%s N=%d V=%d logits ~ N(%g, %g^2) scale=%g: loss %.6f (ref %.6f); worst |diff| dlogits "
           "%.2e, logp %.2e\n",
           rein_matmul_kernel_name(), N, V, offset, std, scale, loss, ref_loss, worst_g, worst_lp);
    CHECKF(fabs(loss - ref_loss) <= 1e-5 * N * (1 + fabs(offset)), "loss %.9g vs %.9g", loss,
           ref_loss);
    CHECKF(fabs(lp_sum + ref_loss) <= 1e-5 * N * (1 + fabs(offset)), "logp sum %.9g vs %.9g",
           lp_sum, -ref_loss);
    CHECK(ok_g);
    CHECK(ok_lp);

    /* in place over the logits: the same bits; without dlogits: the same loss */
    float *y = rein_malloc(sizeof(float) * n);
    memcpy(y, x, sizeof(float) * n);
    CHECK(rein_cross_entropy(y, y, tg, N, V, scale) == loss);
    CHECK(!memcmp(y, g, sizeof(float) * n));
    CHECK(rein_cross_entropy(NULL, x, tg, N, V, scale) == loss);
    /* any number of threads: the same sum */
    rein_set_threads(1);
    CHECK(rein_cross_entropy(NULL, x, tg, N, V, scale) == loss);
    CHECK(rein_token_logprobs(logp, x, tg, N, V) == lp_sum);
    rein_set_threads(2);
    rein_free(x), rein_free(g), rein_free(logp), rein_free(tg), rein_free(p), rein_free(y);
}

static void test_by_hand(void) {
    /* two equal logits: -log(1/2); all rows ignored: 0 and a zero gradient */
    float x[4] = {3, 3, 0, 0}, g[4];
    int32_t t[2] = {1, -1};
    CHECK(fabs(rein_cross_entropy(g, x, t, 1, 2, 1) - log(2.0)) < 1e-7);
    CHECK(g[0] == 0.5f && g[1] == -0.5f);
    int32_t none[2] = {-1, -1};
    CHECK(rein_cross_entropy(g, x, none, 2, 2, 1) == 0);
    CHECK(g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0);
    CHECK(rein_cross_entropy(NULL, x, t, 0, 2, 1) == 0);
}

int main(void) {
    rein_rng_seed(&rng, 99);
    rein_set_threads(2);
    for (int portable = 0; portable < 2; portable++) { /* AVX-512 (if the CPU has it), portable */
        rein_matmul_force_portable(portable);
        test_by_hand();
        run_case(7, 37, 3, 0, 1);
        run_case(130, 101, 1, -4, 1.0f / 130);
        run_case(5, 50000, 2, 1000, 0.25f); /* large vocabulary, logits far from 0 */
    }
    rein_matmul_force_portable(0);
    return test_finish();
}
