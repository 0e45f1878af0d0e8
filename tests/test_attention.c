/* test_attention.c - training attention over packed sequences, forward and backward.
 *
 * The forward (out and lse) is checked against a naive double-precision implementation that forms
 * each sequence's full (T x T) score matrix; the backward against central finite differences of
 * that double forward (small cases: every element of q, k and v), and against a naive double
 * backward (larger cases: many key tiles and query blocks). Both the AVX-512 and the portable
 * inner loops are run, on sequences of lengths 1, 5, 17 and longer, grouped-query (H=4, KVH=2) and
 * plain (H=KVH) heads, and head sizes that are and are not multiples of 16.
 */
#include "base/base.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

typedef struct shape {
    const int32_t *cu;
    int n_seqs, T, H, KVH, D;
    double scale;
} shape;

/* Row i of sequence s attends to rows [cu[s], i]; p (T) gets its softmax weights, returns lse. */
static double naive_probs(const shape *sh, const double *q, const double *k, int s, int i, int h,
                          double *p) {
    int g = h / (sh->H / sh->KVH), D = sh->D;
    double mx = -INFINITY, sum = 0;
    for (int t = sh->cu[s]; t <= i; t++) {
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += q[((int64_t)i * sh->H + h) * D + d] * k[((int64_t)t * sh->KVH + g) * D + d];
        p[t] = dot * sh->scale;
        mx = fmax(mx, p[t]);
    }
    for (int t = sh->cu[s]; t <= i; t++) sum += exp(p[t] - mx);
    for (int t = sh->cu[s]; t <= i; t++) p[t] = exp(p[t] - mx) / sum;
    return mx + log(sum);
}

/* out (T, H, D), lse (T, H) in double; lse may be NULL. */
static void naive_forward(const shape *sh, double *out, double *lse, const double *q,
                          const double *k, const double *v) {
    int D = sh->D, G = sh->H / sh->KVH;
    double *p = rein_malloc(sizeof(double) * (size_t)sh->T);
    for (int s = 0; s < sh->n_seqs; s++)
        for (int i = sh->cu[s]; i < sh->cu[s + 1]; i++)
            for (int h = 0; h < sh->H; h++) {
                double l = naive_probs(sh, q, k, s, i, h, p);
                if (lse) lse[(int64_t)i * sh->H + h] = l;
                double *o = out + ((int64_t)i * sh->H + h) * D;
                for (int d = 0; d < D; d++) o[d] = 0;
                for (int t = sh->cu[s]; t <= i; t++)
                    for (int d = 0; d < D; d++) o[d] += p[t] * v[((int64_t)t * sh->KVH + h / G) * D + d];
            }
    rein_free(p);
}

/* The gradients of sum(G * out) in double, by the chain rule on the full probabilities. */
static void naive_backward(const shape *sh, double *dq, double *dk, double *dv, const double *G,
                           const double *q, const double *k, const double *v) {
    int D = sh->D, grp = sh->H / sh->KVH;
    memset(dq, 0, sizeof(double) * (size_t)sh->T * sh->H * D);
    memset(dk, 0, sizeof(double) * (size_t)sh->T * sh->KVH * D);
    memset(dv, 0, sizeof(double) * (size_t)sh->T * sh->KVH * D);
    double *p = rein_malloc(sizeof(double) * (size_t)sh->T);
    double *dp = rein_malloc(sizeof(double) * (size_t)sh->T);
    for (int s = 0; s < sh->n_seqs; s++)
        for (int i = sh->cu[s]; i < sh->cu[s + 1]; i++)
            for (int h = 0; h < sh->H; h++) {
                int g = h / grp;
                naive_probs(sh, q, k, s, i, h, p);
                const double *gi = G + ((int64_t)i * sh->H + h) * D;
                double di = 0;
                for (int t = sh->cu[s]; t <= i; t++) {
                    const double *vt = v + ((int64_t)t * sh->KVH + g) * D;
                    dp[t] = 0;
                    for (int d = 0; d < D; d++) dp[t] += gi[d] * vt[d];
                    di += p[t] * dp[t];
                }
                for (int t = sh->cu[s]; t <= i; t++) {
                    double ds = p[t] * (dp[t] - di) * sh->scale;
                    int64_t kv = ((int64_t)t * sh->KVH + g) * D, qr = ((int64_t)i * sh->H + h) * D;
                    for (int d = 0; d < D; d++) {
                        dv[kv + d] += p[t] * gi[d];
                        dk[kv + d] += ds * q[qr + d];
                        dq[qr + d] += ds * k[kv + d];
                    }
                }
            }
    rein_free(p);
    rein_free(dp);
}

/* Worst |a-b| and whether every |a-b| <= atol + rtol |b|. */
static int compare(const char *what, const float *a, const double *b, int64_t n, double atol,
                   double rtol) {
    double worst = 0, excess = -1;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]), e = d - (atol + rtol * fabs(b[i]));
        worst = fmax(worst, d);
        if (e > excess || isnan(a[i])) {
            excess = isnan(a[i]) ? INFINITY : e;
            at = i;
        }
    }
    printf("  %-12s worst |diff| = %.2e over %lld values\n", what, worst, (long long)n);
    if (excess > 0)
        fprintf(stderr, "%s: index %lld: %g vs %g\n", what, (long long)at, a[at], b[at]);
    return excess <= 0;
}

typedef struct fd_ctx {
    const shape *sh;
    double *q, *k, *v, *G, *out;
} fd_ctx;

static double fd_loss(fd_ctx *c) {
    naive_forward(c->sh, c->out, NULL, c->q, c->k, c->v);
    double L = 0;
    for (int64_t i = 0; i < (int64_t)c->sh->T * c->sh->H * c->sh->D; i++) L += c->G[i] * c->out[i];
    return L;
}

/* Central differences of sum(G * out) with respect to every element of x (n). */
static void finite_diff(fd_ctx *c, double *x, int64_t n, double *grad) {
    const double h = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = fd_loss(c);
        x[i] = keep - h;
        double lm = fd_loss(c);
        x[i] = keep;
        grad[i] = (lp - lm) / (2 * h);
    }
}

/* One case: the forward against the naive one, the backward against finite differences (if
 * `fd`) or the naive backward. Scores of unit-normal q, k with scale 1/sqrt(D) are O(1), so the
 * float kernels' error is a few float ulps of O(1) values summed over D and T terms; 2e-5
 * absolute + 1e-4 relative leaves room for that and flags any wrong mask, tile or head. */
static void run_case(const int32_t *cu, int n_seqs, int H, int KVH, int D, int fd) {
    shape sh = {cu, n_seqs, cu[n_seqs], H, KVH, D, 1.0 / sqrt((double)D)};
    int T = sh.T;
    int64_t nq = (int64_t)T * H * D, nkv = (int64_t)T * KVH * D;
    float *q = test_randn(&rng, nq, 1), *k = test_randn(&rng, nkv, 1), *v = test_randn(&rng, nkv, 1), *G = test_randn(&rng, nq, 1);
    double *qd = test_to_double(q, nq), *kd = test_to_double(k, nkv), *vd = test_to_double(v, nkv);
    double *Gd = test_to_double(G, nq);
    double *out_ref = rein_malloc(sizeof(double) * nq), *lse_ref = rein_malloc(sizeof(double) * T * H);
    double *dq_ref = rein_malloc(sizeof(double) * nq), *dk_ref = rein_malloc(sizeof(double) * nkv);
    double *dv_ref = rein_malloc(sizeof(double) * nkv);
    naive_forward(&sh, out_ref, lse_ref, qd, kd, vd);
    if (fd) {
        fd_ctx c = {&sh, qd, kd, vd, Gd, rein_malloc(sizeof(double) * nq)};
        finite_diff(&c, qd, nq, dq_ref);
        finite_diff(&c, kd, nkv, dk_ref);
        finite_diff(&c, vd, nkv, dv_ref);
        rein_free(c.out);
    } else {
        naive_backward(&sh, dq_ref, dk_ref, dv_ref, Gd, qd, kd, vd);
    }
    float *out = rein_malloc(sizeof(float) * nq), *lse = rein_malloc(sizeof(float) * T * H);
    float *dq = rein_malloc(sizeof(float) * nq), *dk = rein_malloc(sizeof(float) * nkv);
    float *dv = rein_malloc(sizeof(float) * nkv);
    for (int portable = 0; portable < 2; portable++) {
        rein_matmul_force_portable(portable);
        printf("attention seqs=[");
        for (int s = 0; s < n_seqs; s++) printf("%s%d", s ? "," : "", cu[s + 1] - cu[s]);
        printf("] H=%d KVH=%d D=%d (%s), backward vs %s:\n", H, KVH, D,
               rein_kernels_use_avx512() ? "avx512" : "portable",
               fd ? "finite differences" : "naive backward");
        memset(out, 0xff, sizeof(float) * nq); /* NaN: every value must be written */
        memset(dq, 0xff, sizeof(float) * nq);
        memset(dk, 0xff, sizeof(float) * nkv);
        memset(dv, 0xff, sizeof(float) * nkv);
        rein_attention_train_forward(out, lse, q, k, v, cu, n_seqs, T, H, KVH, D, (float)sh.scale);
        rein_attention_train_backward(dq, dk, dv, G, out, lse, q, k, v, cu, n_seqs, T, H, KVH, D,
                                      (float)sh.scale);
        CHECK(compare("out", out, out_ref, nq, 2e-5, 1e-4));
        CHECK(compare("lse", lse, lse_ref, (int64_t)T * H, 2e-5, 1e-5));
        CHECK(compare("dq", dq, dq_ref, nq, 2e-5, 1e-4));
        CHECK(compare("dk", dk, dk_ref, nkv, 2e-5, 1e-4));
        CHECK(compare("dv", dv, dv_ref, nkv, 2e-5, 1e-4));
    }
    rein_matmul_force_portable(0);
    rein_free(q), rein_free(k), rein_free(v), rein_free(G), rein_free(qd), rein_free(kd);
    rein_free(vd), rein_free(Gd), rein_free(out_ref), rein_free(lse_ref), rein_free(dq_ref);
    rein_free(dk_ref), rein_free(dv_ref), rein_free(out), rein_free(lse), rein_free(dq);
    rein_free(dk), rein_free(dv);
}

/* A single row attends only to itself: out = v, lse = the one score, and the result does not
 * depend on threads (two thread counts give the same bits). */
static void test_edges(void) {
    int32_t cu1[2] = {0, 1};
    float q[4] = {1, 2, 3, 4}, k[4] = {0.5f, -1, 2, 0}, v[4] = {9, 8, 7, 6}, out[4], lse[1];
    rein_attention_train_forward(out, lse, q, k, v, cu1, 1, 1, 1, 1, 4, 0.5f);
    CHECK(!memcmp(out, v, sizeof out) && fabsf(lse[0] - 0.5f * 4.5f) < 1e-6f);

    int32_t cu[4] = {0, 40, 41, 140};
    int T = 140, H = 4, KVH = 2, D = 16;
    float *qq = test_randn(&rng, T * H * D, 1), *kk = test_randn(&rng, T * KVH * D, 1), *vv = test_randn(&rng, T * KVH * D, 1);
    float *o[2], *dq[2], *l[2];
    for (int r = 0; r < 2; r++) {
        rein_set_threads(r + 1);
        o[r] = rein_malloc(sizeof(float) * T * H * D);
        dq[r] = rein_malloc(sizeof(float) * T * H * D);
        l[r] = rein_malloc(sizeof(float) * T * H);
        float *dk = rein_malloc(sizeof(float) * T * KVH * D), *dv = rein_malloc(sizeof(float) * T * KVH * D);
        rein_attention_train_forward(o[r], l[r], qq, kk, vv, cu, 3, T, H, KVH, D, 0.25f);
        rein_attention_train_backward(dq[r], dk, dv, qq, o[r], l[r], qq, kk, vv, cu, 3, T, H, KVH,
                                      D, 0.25f);
        rein_free(dk), rein_free(dv);
    }
    CHECK(!memcmp(o[0], o[1], sizeof(float) * T * H * D));
    CHECK(!memcmp(dq[0], dq[1], sizeof(float) * T * H * D));
    for (int r = 0; r < 2; r++) rein_free(o[r]), rein_free(dq[r]), rein_free(l[r]);
    rein_free(qq), rein_free(kk), rein_free(vv);
}

int main(void) {
    rein_rng_seed(&rng, 777);
    rein_set_threads(2);
    int32_t small[4] = {0, 1, 6, 23}; /* lengths 1, 5, 17 */
    run_case(small, 3, 4, 2, 8, 1);   /* grouped-query */
    run_case(small, 3, 3, 3, 5, 1);   /* plain heads, odd head size */
    int32_t one[2] = {0, 19};
    run_case(one, 1, 2, 1, 16, 1);
    int32_t big[5] = {0, 100, 101, 118, 300}; /* many key tiles and query blocks */
    run_case(big, 4, 4, 2, 64, 0);
    run_case(big, 4, 3, 3, 20, 0);
    int32_t wide[3] = {0, 33, 70};
    run_case(wide, 2, 24, 1, 80, 0); /* 24 heads in one group: head blocks, D past 64 */
    test_edges();
    return test_finish();
}
