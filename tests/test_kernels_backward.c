/* test_kernels_backward.c - the backward of RMSNorm, RoPE, SwiGLU and the embedding lookup,
 * each against central finite differences of a double-precision forward written here.
 *
 * For a kernel f, the test draws a random upstream gradient G and differentiates the scalar
 * L = sum(G * f(inputs)) numerically in double: with step h = 1e-6 and smooth f of unit-sized
 * inputs, the truncation error (h^2 f''') and the rounding error (1e-16 |L| / h) are both below
 * 1e-8, far under the float kernel's own rounding, so the tolerance below (|a-b| <= 1e-5 + 1e-4|b|)
 * measures only the float backward.
 */
#include "base/base.h"
#include "kernels/ops.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

/* The scalar L(params) of a test; params point into double copies of the kernel's inputs. */
typedef double (*loss_fn)(void *ctx);

/* Compare the analytic gradient `got` (n) of one input `p` (n, double, read by `loss`) against
 * central differences; prints the worst difference. */
static void check_grad(const char *what, const float *got, double *p, int64_t n, loss_fn loss,
                       void *ctx) {
    const double h = 1e-6, atol = 1e-5, rtol = 1e-4;
    double worst = 0, worst_excess = -1;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = loss(ctx);
        p[i] = keep - h;
        double lm = loss(ctx);
        p[i] = keep;
        double fd = (lp - lm) / (2 * h), d = fabs(got[i] - fd);
        double excess = d - (atol + rtol * fabs(fd));
        if (d > worst) worst = d;
        if (excess > worst_excess || isnan(got[i])) {
            worst_excess = isnan(got[i]) ? INFINITY : excess;
            at = i;
        }
    }
    printf("%-40s worst |analytic - finite difference| = %.2e over %lld values\n", what, worst,
           (long long)n);
    CHECKF(worst_excess <= 0, "%s: index %lld off by %g beyond tolerance", what, (long long)at,
           worst_excess);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

typedef struct norm_ctx {
    double *x, *w, *G;
    int N, C;
    double eps;
} norm_ctx;

static double norm_loss(void *ctx) {
    norm_ctx *c = ctx;
    double L = 0;
    for (int i = 0; i < c->N; i++) {
        double ss = 0;
        for (int j = 0; j < c->C; j++) ss += c->x[i * c->C + j] * c->x[i * c->C + j];
        double r = 1 / sqrt(ss / c->C + c->eps);
        for (int j = 0; j < c->C; j++)
            L += c->G[i * c->C + j] * c->x[i * c->C + j] * r * c->w[j];
    }
    return L;
}

static void test_rmsnorm(int N, int C) {
    float eps = 1e-5f;
    float *x = test_randn(&rng, N * C, 2), *w = test_randn(&rng, C, 1), *G = test_randn(&rng, N * C, 1);
    float *dx = rein_malloc(sizeof(float) * N * C), *dw = rein_malloc(sizeof(float) * C);
    float *dw0 = test_randn(&rng, C, 1); /* dw accumulates: start from something */
    memcpy(dw, dw0, sizeof(float) * C);
    rein_rmsnorm_backward(dx, dw, G, x, w, N, C, eps);
    for (int j = 0; j < C; j++) dw[j] -= dw0[j];
    norm_ctx c = {test_to_double(x, N * C), test_to_double(w, C), test_to_double(G, N * C), N, C, eps};
    char what[64];
    snprintf(what, sizeof what, "rmsnorm dx N=%d C=%d", N, C);
    check_grad(what, dx, c.x, N * C, norm_loss, &c);
    snprintf(what, sizeof what, "rmsnorm dw N=%d C=%d", N, C);
    check_grad(what, dw, c.w, C, norm_loss, &c);
    /* in place: dx == dy gives the same dx bit for bit, and the same dw */
    float *g2 = rein_malloc(sizeof(float) * N * C), *dw2 = rein_calloc(C, sizeof(float));
    float *dw1 = rein_calloc(C, sizeof(float));
    memcpy(g2, G, sizeof(float) * N * C);
    rein_rmsnorm_backward(dx, dw1, G, x, w, N, C, eps);
    rein_rmsnorm_backward(g2, dw2, g2, x, w, N, C, eps);
    CHECK(!memcmp(g2, dx, sizeof(float) * N * C) && !memcmp(dw1, dw2, sizeof(float) * C));
    rein_free(x), rein_free(w), rein_free(G), rein_free(dx), rein_free(dw), rein_free(dw0);
    rein_free(g2), rein_free(dw1), rein_free(dw2);
    rein_free(c.x), rein_free(c.w), rein_free(c.G);
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

typedef struct rope_ctx {
    double *x, *G;
    const int32_t *pos;
    int N, H, D, R;
    double base;
    const float *ff;
} rope_ctx;

static double rope_loss(void *ctx) {
    rope_ctx *c = ctx;
    double L = 0;
    for (int i = 0; i < c->N; i++)
        for (int h = 0; h < c->H; h++) {
            const double *xh = c->x + (i * c->H + h) * c->D, *gh = c->G + (i * c->H + h) * c->D;
            for (int d = c->R; d < c->D; d++) L += gh[d] * xh[d]; /* past rope_dim: identity */
            for (int p = 0; p < c->R / 2; p++) {
                double th = c->pos[i] * pow(c->base, -2.0 * p / c->R) / (c->ff ? c->ff[p] : 1);
                L += gh[2 * p] * (xh[2 * p] * cos(th) - xh[2 * p + 1] * sin(th));
                L += gh[2 * p + 1] * (xh[2 * p] * sin(th) + xh[2 * p + 1] * cos(th));
            }
        }
    return L;
}

static void test_rope(void) {
    int N = 5, H = 3, D = 10, R = 8;
    int32_t pos[5] = {0, 7, 7, 300, 1}; /* rows 1 and 2 share a position */
    float ff[4] = {1, 1.5f, 4, 8};
    for (int variant = 0; variant < 2; variant++) {
        const float *factors = variant ? ff : NULL;
        float *G = test_randn(&rng, N * H * D, 1), *x = test_randn(&rng, N * H * D, 1);
        float *dx = rein_malloc(sizeof(float) * N * H * D);
        memcpy(dx, G, sizeof(float) * N * H * D);
        rein_rope_backward(dx, pos, N, H, D, R, 10000.0f, factors);
        rope_ctx c = {test_to_double(x, N * H * D), test_to_double(G, N * H * D), pos, N, H, D, R, 10000.0,
                      factors};
        check_grad(variant ? "rope dx (freq factors)" : "rope dx", dx, c.x, N * H * D, rope_loss,
                   &c);
        /* backward undoes the forward: a rotation's transpose is its inverse */
        float *y = rein_malloc(sizeof(float) * N * H * D);
        memcpy(y, x, sizeof(float) * N * H * D);
        rein_rope_forward(y, pos, N, H, D, R, 10000.0f, factors);
        rein_rope_backward(y, pos, N, H, D, R, 10000.0f, factors);
        double worst = 0;
        for (int i = 0; i < N * H * D; i++) worst = fmax(worst, fabs(y[i] - x[i]));
        CHECKF(worst < 1e-5, "rope backward(forward(x)) = x: off by %g", worst);
        rein_free(G), rein_free(x), rein_free(dx), rein_free(y), rein_free(c.x), rein_free(c.G);
    }
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

typedef struct swiglu_ctx {
    double *g, *u, *G;
    int n;
} swiglu_ctx;

static double swiglu_loss(void *ctx) {
    swiglu_ctx *c = ctx;
    double L = 0;
    for (int i = 0; i < c->n; i++) L += c->G[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
    return L;
}

static void test_swiglu(void) {
    int n = 203;
    float *g = test_randn(&rng, n, 3), *u = test_randn(&rng, n, 1), *G = test_randn(&rng, n, 1);
    g[0] = -30, g[1] = 30, g[2] = 0; /* saturated ends and the middle */
    float *dg = rein_malloc(sizeof(float) * n), *du = rein_malloc(sizeof(float) * n);
    rein_swiglu_backward(dg, du, G, g, u, n);
    swiglu_ctx c = {test_to_double(g, n), test_to_double(u, n), test_to_double(G, n), n};
    check_grad("swiglu dgate", dg, c.g, n, swiglu_loss, &c);
    check_grad("swiglu dup", du, c.u, n, swiglu_loss, &c);
    /* outputs may alias dout */
    float *d2 = rein_malloc(sizeof(float) * n);
    memcpy(d2, G, sizeof(float) * n);
    rein_swiglu_backward(d2, du, d2, g, u, n);
    CHECK(!memcmp(d2, dg, sizeof(float) * n));
    rein_free(g), rein_free(u), rein_free(G), rein_free(dg), rein_free(du), rein_free(d2);
    rein_free(c.g), rein_free(c.u), rein_free(c.G);
}

/* ---- embedding ----------------------------------------------------------------------------- */

typedef struct emb_ctx {
    double *table, *G;
    const int32_t *tok;
    int N, C;
} emb_ctx;

static double emb_loss(void *ctx) {
    emb_ctx *c = ctx;
    double L = 0;
    for (int i = 0; i < c->N; i++)
        for (int j = 0; j < c->C; j++) L += c->G[i * c->C + j] * c->table[c->tok[i] * c->C + j];
    return L;
}

static void test_embedding(void) {
    int V = 11, C = 7, N = 6;
    int32_t tok[6] = {3, 0, 3, 10, 5, 3}; /* token 3 three times; most rows of the table unused */
    float *table = test_randn(&rng, V * C, 1), *G = test_randn(&rng, N * C, 1), *d0 = test_randn(&rng, V * C, 1);
    float *d = rein_malloc(sizeof(float) * V * C);
    memcpy(d, d0, sizeof(float) * V * C);
    rein_embedding_backward(d, G, tok, N, C);
    for (int i = 0; i < V * C; i++) d[i] -= d0[i];
    emb_ctx c = {test_to_double(table, V * C), test_to_double(G, N * C), tok, N, C};
    check_grad("embedding dtable (repeated tokens)", d, c.table, V * C, emb_loss, &c);
    rein_free(table), rein_free(G), rein_free(d0), rein_free(d), rein_free(c.table), rein_free(c.G);
}

int main(void) {
    rein_rng_seed(&rng, 4321);
    test_rmsnorm(1, 1);
    test_rmsnorm(3, 17);
    test_rmsnorm(7, 64);
    test_rope();
    test_swiglu();
    test_embedding();
    return test_finish();
}
