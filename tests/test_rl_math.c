/* test_rl_math.c - PPO's and GRPO's arithmetic against PyTorch (tools/gen_rl_fixture.py): GAE,
 * whitening, the clipped policy and value losses and their gradients, the KL estimators k1, k2,
 * k3 and their gradients, group advantages (GRPO, Dr. GRPO, RLOO), explained variance and the
 * adaptive KL controller, on fixed tensors. |a-b| <= 1e-5 + 1e-4 |b|; the worst is printed. Also
 * the rule-based rewards (regex with {answer}, length) and a plug-in.
 */
#include "testutil.h"
#include "train/grpo.h"
#include "train/ppo.h"
#include "train/rewards.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const rein_gguf *ref;

static float *tensor(const char *name, int64_t *n) {
    const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, name);
    CHECKF(t != NULL, "fixture lacks %s", name);
    if (!t) exit(1);
    float *x = rein_malloc(sizeof(float) * (size_t)t->n_elements);
    CHECK_OK(rein_gguf_tensor_f32(t, x));
    if (n) *n = t->n_elements;
    return x;
}

static float meta(const char *key) {
    float v = NAN;
    CHECK_OK(rein_gguf_get_f32(ref, key, &v));
    return v;
}

static int close_enough(double a, double b) {
    return fabs(a - b) <= 1e-5 + 1e-4 * fabs(b);
}

static void compare(const char *what, const float *a, const char *tname) {
    int64_t n;
    float *b = tensor(tname, &n);
    double worst = 0, wa = 0, wb = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (1e-5 + 1e-4 * fabs(b[i]));
        if (r > worst || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : r;
            wa = a[i];
            wb = b[i];
        }
    }
    printf("  %-28s worst %.3f of the bound (rein %.7g, torch %.7g)\n", what, worst, wa, wb);
    CHECKF(worst <= 1, "%s: %g vs %g", what, wa, wb);
    rein_free(b);
}

static void scalar(const char *what, double a, double b) {
    printf("  %-28s rein %.9g, torch %.9g\n", what, a, b);
    CHECKF(close_enough(a, b), "%s: %.9g vs %.9g", what, a, b);
}

static void test_gae(void) {
    rein_gguf_value_type t;
    int64_t nl;
    const void *d;
    CHECK_OK(rein_gguf_get_arr(ref, "gae.lens", &t, &nl, &d));
    int64_t n;
    float *r = tensor("gae.rewards", &n), *v = tensor("gae.values", NULL);
    float *adv = rein_malloc(sizeof(float) * (size_t)n), *ret = rein_malloc(sizeof(float) * (size_t)n);
    int64_t o = 0;
    for (int64_t s = 0; s < nl; s++) {
        int32_t len;
        memcpy(&len, (const char *)d + 4 * s, 4);
        rein_ppo_gae(r + o, v + o, len, meta("ref.gamma"), meta("ref.lam"), adv + o, ret + o);
        o += len;
    }
    CHECK(o == n);
    compare("GAE advantages", adv, "gae.adv");
    compare("GAE returns", ret, "gae.returns");
    rein_free(r);
    rein_free(v);
    rein_free(adv);
    rein_free(ret);
}

static void test_whiten(void) {
    int64_t n;
    float *x = tensor("whiten.x", &n), *y = tensor("whiten.x", NULL);
    rein_ppo_whiten(x, n, 1);
    compare("whiten (shift_mean)", x, "whiten.shift");
    rein_ppo_whiten(y, n, 0);
    compare("whiten (mean kept)", y, "whiten.noshift");
    rein_free(x);
    rein_free(y);
}

static void test_losses(void) {
    int64_t n;
    float *lp = tensor("pg.logp", &n), *old = tensor("pg.old", NULL), *adv = tensor("pg.adv", NULL);
    float *w = tensor("pg.w", NULL);
    float *g = rein_calloc((size_t)n, sizeof(float));
    rein_ppo_loss_stats st = {0};
    rein_ppo_policy_loss(lp, old, adv, w, n, meta("ref.clip_eps"), g, &st);
    scalar("policy loss", st.loss, meta("pg.loss"));
    scalar("policy clipped tokens", st.n_clipped, meta("pg.n_clipped"));
    CHECK(st.n_clipped > 3 && st.n_clipped < n - 3); /* both branches are exercised */
    compare("policy d loss / d logp", g, "pg.grad");

    float *v = tensor("vf.v", NULL), *ov = tensor("vf.old", NULL), *rt = tensor("vf.returns", NULL);
    float *dv = rein_calloc((size_t)n, sizeof(float));
    rein_ppo_loss_stats vs = {0};
    rein_ppo_value_loss(v, ov, rt, w, n, meta("ref.clip_v"), dv, &vs);
    scalar("value loss", vs.loss, meta("vf.loss"));
    scalar("value clipped tokens", vs.n_clipped, meta("vf.n_clipped"));
    CHECK(vs.n_clipped > 3 && vs.n_clipped < n - 3);
    compare("value d loss / d V", dv, "vf.grad");
    float *p[] = {lp, old, adv, w, g, v, ov, rt, dv};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) rein_free(p[i]);
}

static void test_kl(void) {
    int64_t n;
    float *lp = tensor("kl.logp", &n), *rf = tensor("kl.ref", NULL);
    float *k = rein_malloc(sizeof(float) * (size_t)n), *kg = rein_malloc(sizeof(float) * (size_t)n);
    const char *names[] = {"k1", "k2", "k3"};
    for (int e = 1; e <= 3; e++) {
        rein_kl_estimator est;
        CHECK_OK(rein_kl_estimator_from_name(names[e - 1], &est));
        for (int64_t i = 0; i < n; i++) {
            k[i] = rein_kl_estimate(est, lp[i], rf[i]);
            kg[i] = rein_kl_estimate_grad(est, lp[i], rf[i]);
        }
        char a[64], b[64], c[64], d[64];
        snprintf(a, sizeof a, "KL %s", names[e - 1]);
        snprintf(b, sizeof b, "kl.%s", names[e - 1]);
        snprintf(c, sizeof c, "KL %s gradient", names[e - 1]);
        snprintf(d, sizeof d, "kl.%s_grad", names[e - 1]);
        compare(a, k, b);
        compare(c, kg, d);
    }
    rein_kl_estimator est;
    CHECK_ERR(rein_kl_estimator_from_name("k4", &est), REIN_ERR_INVALID, "k1, k2 or k3");
    rein_free(lp);
    rein_free(rf);
    rein_free(k);
    rein_free(kg);
}

static void test_groups(void) {
    int64_t n;
    float *s = tensor("group.scores", &n);
    uint32_t g;
    CHECK_OK(rein_gguf_get_u32(ref, "group.g", &g));
    float *a = rein_malloc(sizeof(float) * (size_t)n);
    rein_group_advantages(REIN_ADV_GRPO, s, (int)(n / g), (int)g, 1, a);
    compare("GRPO advantages", a, "group.grpo");
    rein_group_advantages(REIN_ADV_GRPO, s, (int)(n / g), (int)g, 0, a);
    compare("Dr. GRPO advantages", a, "group.drgrpo");
    rein_group_advantages(REIN_ADV_RLOO, s, (int)(n / g), (int)g, 1, a);
    compare("RLOO advantages", a, "group.rloo");
    rein_free(s);
    rein_free(a);

    float *v = tensor("ev.values", &n), *r = tensor("ev.returns", NULL);
    scalar("explained variance", rein_explained_variance(v, r, n), meta("ev.value"));
    rein_free(v);
    rein_free(r);
}

static void test_controller(void) {
    rein_gguf_value_type t;
    int64_t n, n2;
    const void *kl, *coef;
    CHECK_OK(rein_gguf_get_arr(ref, "klctl.kl", &t, &n, &kl));
    CHECK_OK(rein_gguf_get_arr(ref, "klctl.coef", &t, &n2, &coef));
    uint32_t ns;
    CHECK_OK(rein_gguf_get_u32(ref, "klctl.n", &ns));
    float c = meta("klctl.init"), worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float k, want;
        memcpy(&k, (const char *)kl + 4 * i, 4);
        memcpy(&want, (const char *)coef + 4 * i, 4);
        c = rein_kl_coef_update(c, k, meta("klctl.target"), meta("klctl.horizon"), (int)ns);
        CHECKF(close_enough(c, want), "controller step %lld: %g vs %g", (long long)i, c, want);
        worst = fmaxf(worst, fabsf(c - want));
    }
    printf("  %-28s %lld updates, worst |diff| %.3g\n", "adaptive KL controller", (long long)n,
           worst);
    CHECK(rein_kl_coef_update(0.3f, 100.0, 0, 10000, 64) == 0.3f); /* fixed coefficient */
}

/* a plug-in: reward = number of 'a' in the reply */
static rein_status count_a(void *ud, const rein_rl_sample *s, int n, float *r) {
    (*(int *)ud)++;
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (size_t j = 0; j < s[i].text_len; j++) k += s[i].text[j] == 'a';
        r[i] = (float)k;
    }
    return REIN_OK;
}

static void test_rewards(void) {
    rein_scorers *sc;
    CHECK_OK(rein_scorers_new(&sc));
    CHECK_OK(rein_scorers_add(sc, "regex:(^|\\D){answer}\\D*$", 1.0f, NULL));
    CHECK_OK(rein_scorers_add(sc, "length:4", 0.5f, NULL));
    int calls = 0;
    CHECK_OK(rein_scorers_add_fn(sc, "count_a", count_a, &calls, 2.0f));
    CHECK(rein_scorers_count(sc) == 3 && !strcmp(rein_scorers_name(sc, 2), "count_a"));
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    rein_rl_sample s[4];
    memset(s, 0, sizeof s);
    const char *texts[] = {"3 + 4 = 7", "the answer is 17", "7, I think", "a banana"};
    const char *answers[] = {"7", "7", "7", "9"};
    size_t lens[] = {4, 5, 9, 2};
    int ended[] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        s[i].text = texts[i];
        s[i].text_len = strlen(texts[i]);
        s[i].answer = answers[i];
        s[i].ids = ids;
        s[i].n_ids = lens[i];
        s[i].ended = ended[i];
    }
    float total[4];
    double means[3];
    CHECK_OK(rein_scorers_score(sc, s, 4, total, means));
    /* regex: 1, 0 (17), 0 (7 is not the last number... "7, I think": last number 7 -> 1), 0 */
    float want_regex[] = {1, 0, 1, 0};
    /* length: tokens without the end token: 4, 4, 8, 2 -> 1, 1, 0, 0.5 */
    float want_len[] = {1, 1, 0, 0.5f};
    float want_a[] = {0, 1, 0, 4};
    for (int i = 0; i < 4; i++) {
        float want = want_regex[i] + 0.5f * want_len[i] + 2.0f * want_a[i];
        CHECKF(fabsf(total[i] - want) < 1e-6f, "sample %d: total %g, expected %g", i, total[i], want);
    }
    CHECK(calls == 1 && fabs(means[0] - 0.5) < 1e-12 && fabs(means[1] - 0.625) < 1e-12);
    s[3].answer = NULL; /* {answer} without an answer is an error naming the prompt */
    s[3].prompt_index = 11;
    CHECK_ERR(rein_scorers_score(sc, s, 4, total, means), REIN_ERR_INVALID, "prompt 12 has no");
    rein_buf d = {0};
    rein_scorers_describe(sc, &d);
    CHECK(d.data && strstr(d.data, "length:4*0.5"));
    rein_buf_free(&d);
    CHECK_ERR(rein_scorers_add(sc, "regex:(", 1, NULL), REIN_ERR_INVALID, "bad regular expression");
    CHECK_ERR(rein_scorers_add(sc, "regex:{answer}(", 1, NULL), REIN_ERR_INVALID,
              "bad regular expression");
    CHECK_ERR(rein_scorers_add(sc, "length:0", 1, NULL), REIN_ERR_INVALID, "TARGET");
    CHECK_ERR(rein_scorers_add(sc, "length:x", 1, NULL), REIN_ERR_INVALID, "TARGET");
    CHECK_ERR(rein_scorers_add(sc, "banana", 1, NULL), REIN_ERR_INVALID, "regex:PATTERN");
    CHECK_ERR(rein_scorers_add(sc, "rm:/nonexistent/rm", 1, NULL), REIN_ERR_IO, "nonexistent");
    rein_scorers_free(sc);
    printf("  rewards: regex with {answer}, length, a plug-in, weights, bad specs refused\n");
}

int main(void) {
    rein_gguf *g;
    rein_status st = rein_gguf_open("tests/fixtures/rl/rl_math.ref.gguf", &g);
    if (st) test_skip("tests/fixtures/rl/rl_math.ref.gguf is missing (python3 tools/gen_rl_fixture.py)");
    ref = g;
    test_gae();
    test_whiten();
    test_losses();
    test_kl();
    test_groups();
    test_controller();
    test_rewards();
    rein_gguf_free(g);
    return test_finish();
}
