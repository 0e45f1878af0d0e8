/* test_sampler.c - the sampling chain: greedy, seeds, top-k, top-p, min-p, repetition penalty,
 * and that plain temperature sampling draws from the softmax it should. */
#include "testutil.h"

#include <math.h>
#include <string.h>

enum { V = 50 };

static void fill(float *l) {
    for (int i = 0; i < V; i++) l[i] = (float)sin(i * 1.7) * 3; /* a fixed, uneven landscape */
}

static int32_t draw(rein_sampler_params p, const int32_t *hist, size_t nh, int reps, int *counts) {
    rein_sampler *s;
    if (rein_sampler_new(&p, V, &s) != REIN_OK) return -1;
    int32_t last = -1;
    float l[V];
    for (int r = 0; r < reps; r++) {
        fill(l);
        last = rein_sampler_sample(s, l, hist, nh);
        if (counts) counts[last]++;
    }
    rein_sampler_free(s);
    return last;
}

int main(void) {
    float l[V];
    fill(l);
    int best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;

    rein_sampler_params p = rein_sampler_default_params();
    p.temperature = 0;
    CHECK(draw(p, NULL, 0, 1, NULL) == best);

    /* same seed, same sequence of choices; another seed, another sequence */
    p = rein_sampler_default_params();
    p.top_k = 0, p.top_p = 1, p.min_p = 0, p.temperature = 1;
    int a[V] = {0}, b[V] = {0}, c[V] = {0};
    draw(p, NULL, 0, 200, a);
    draw(p, NULL, 0, 200, b);
    p.seed = 7;
    draw(p, NULL, 0, 200, c);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* temperature 1, nothing cut: frequencies follow the softmax (chi-square, 49 dof) */
    int counts[V] = {0};
    int reps = 200000;
    draw(p, NULL, 0, reps, counts);
    double mx = l[best], z = 0, chi = 0;
    for (int i = 0; i < V; i++) z += exp(l[i] - mx);
    for (int i = 0; i < V; i++) {
        double e = reps * exp(l[i] - mx) / z;
        if (e > 5) chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    printf("softmax sampling: chi-square %.1f (49 dof; 99.9%% bound 85.4)\n", chi);
    CHECK(chi < 85.4);

    /* top-k: only the k best ever come out */
    int order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (l[order[j]] > l[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    memset(counts, 0, sizeof counts);
    p.top_k = 3;
    p.temperature = 5; /* flat, so the cut is what keeps the rest out */
    draw(p, NULL, 0, 5000, counts);
    int outside = 0;
    for (int i = 3; i < V; i++) outside += counts[order[i]];
    CHECK(outside == 0 && counts[order[0]] > 0 && counts[order[1]] > 0 && counts[order[2]] > 0);

    /* top-p: the smallest prefix (by probability) holding p, exactly */
    p.top_k = 0;
    p.temperature = 1;
    p.top_p = 0.5f;
    double cum = 0;
    int nucleus = 0;
    while (cum < 0.5) cum += exp(l[order[nucleus++]] - mx) / z;
    memset(counts, 0, sizeof counts);
    draw(p, NULL, 0, 20000, counts);
    int in = 0;
    outside = 0;
    for (int i = 0; i < V; i++) *(i < nucleus ? &in : &outside) += counts[order[i]];
    for (int i = 0; i < nucleus; i++) CHECK(counts[order[i]] > 0);
    CHECKF(outside == 0, "nucleus of %d tokens, %d draws outside", nucleus, outside);

    /* min-p: nothing below min_p * the top probability */
    p.top_p = 1;
    p.min_p = 0.3f;
    memset(counts, 0, sizeof counts);
    draw(p, NULL, 0, 20000, counts);
    for (int i = 0; i < V; i++)
        if (exp(l[i] - mx) < 0.3 - 1e-6) CHECK(counts[i] == 0);

    /* repetition penalty: a strong one pushes greedy off the token it has seen */
    p = rein_sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 100;
    int32_t hist[1] = {best};
    CHECK(draw(p, hist, 1, 1, NULL) != best);
    p.repeat_last_n = 0; /* looks at nothing */
    CHECK(draw(p, hist, 1, 1, NULL) == best);

    /* bad parameters are refused with the ranges named */
    rein_sampler *s = NULL;
    p = rein_sampler_default_params();
    p.top_p = 0;
    CHECK_ERR(rein_sampler_new(&p, V, &s), REIN_ERR_INVALID, "top-p");
    p = rein_sampler_default_params();
    p.temperature = NAN;
    CHECK_ERR(rein_sampler_new(&p, V, &s), REIN_ERR_INVALID, "temperature");
    CHECK(s == NULL);
    return test_finish();
}
