/* test_rl_pg.c - the policy gradient through the model against PyTorch (tools/gen_rl_fixture.py).
 *
 * One fixed rollout of three sequences on a tiny random Llama (prompt and response token ids, old
 * and reference log-probabilities, advantages, old values, returns, a value head given): the PPO
 * loss (clipped policy + vf_coef x clipped value loss, a mean over the tokens) and the GRPO loss
 * (clipped policy with per-sample token means + beta k3) as rl.c's update computes them
 * (rein_rl_loss_grad: packing, the LM head's log-probs and their backward, the value head on the
 * shared trunk), and the gradient of each with respect to every weight and the value head.
 * |a-b| <= 1e-5 + 1e-4 |b| for gradients, 1e-5 relative for the losses; the worst is printed.
 */
#include "base/base.h"
#include "testutil.h"
#include "train/params.h"
#include "train/rl.h"

#include <math.h>
#include <string.h>

static const rein_gguf *ref;

static void i32_arr(const char *key, int32_t *out, int64_t *n) {
    rein_gguf_value_type t;
    const void *d;
    CHECK_OK(rein_gguf_get_arr(ref, key, &t, n, &d));
    memcpy(out, d, 4 * (size_t)*n);
}

static float *tensor(const char *name) {
    const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, name);
    CHECKF(t != NULL, "fixture lacks %s", name);
    if (!t) return rein_calloc(1, sizeof(float));
    float *x = rein_malloc(sizeof(float) * (size_t)t->n_elements);
    CHECK_OK(rein_gguf_tensor_f32(t, x));
    return x;
}

static float meta(const char *key) {
    float v = NAN;
    CHECK_OK(rein_gguf_get_f32(ref, key, &v));
    return v;
}

static double worst_of(const float *a, const float *b, int64_t n, double *wa, double *wb) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (1e-5 + 1e-4 * fabs(b[i]));
        if (r > worst || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : r;
            *wa = a[i];
            *wb = b[i];
        }
    }
    return worst;
}

static void run_case(const char *kind, rein_rl_algo algo) {
    rein_model *m;
    CHECK_OK(rein_model_load("tests/fixtures/rl/tiny_pg.gguf", &m));
    if (!m) return;
    int dim = rein_model_get_config(m)->dim;
    rein_train_state *ts;
    CHECK_OK(rein_train_state_new(m, 64, 1, &ts));
    rein_train_zero_grads(m, ts);

    int32_t pl[8], rl[8], pt[64], rt[64];
    int64_t ns, n2, np, nr;
    i32_arr("ref.prompt_lens", pl, &ns);
    i32_arr("ref.resp_lens", rl, &n2);
    i32_arr("ref.prompts", pt, &np);
    i32_arr("ref.resps", rt, &nr);
    const int32_t *prompt[8], *resp[8];
    size_t n_prompt[8];
    int n_resp[8];
    int po = 0, ro = 0;
    for (int i = 0; i < ns; i++) {
        prompt[i] = pt + po;
        n_prompt[i] = (size_t)pl[i];
        resp[i] = rt + ro;
        n_resp[i] = rl[i];
        po += pl[i];
        ro += rl[i];
    }
    float *old = tensor("old_logp"), *rf = tensor("ref_logp"), *oldv = tensor("old_values");
    float *ret = tensor("returns");
    float *adv = tensor(algo == REIN_RL_PPO ? "adv" : "grpo_adv");
    float *vh = rein_calloc((size_t)2 * (dim + 1), sizeof(float));
    float *hw = tensor("value_head.weight");
    memcpy(vh, hw, sizeof(float) * (size_t)dim);
    vh[dim] = meta("value_head.bias");

    rein_rl_opts o = rein_rl_default_opts(algo);
    o.clip_eps = meta("ref.clip_eps");
    o.clip_v = meta("ref.clip_v");
    o.vf_coef = meta("ref.vf_coef");
    o.kl_coef = algo == REIN_RL_PPO ? 0.05f : meta("ref.beta"); /* PPO's KL is in its rewards */
    o.kl_est = REIN_KL_K3;
    o.epochs = 2; /* the old log-probs are the given ones, not the current policy's */
    double loss = 0;
    CHECK_OK(rein_rl_loss_grad(m, ts, &o, (int)ns, prompt, n_prompt, resp, n_resp, old, rf, oldv,
                               adv, ret, vh, &loss));
    char key[128];
    snprintf(key, sizeof key, "%s.loss", kind);
    double want = meta(key);
    printf("%s: loss rein %.8f, torch %.8f\n", kind, loss, want);
    CHECKF(fabs(loss - want) <= 1e-5 * (1 + fabs(want)), "%s loss %.8f vs %.8f", kind, loss, want);

    rein_param_list plist = {0};
    CHECK_OK(rein_train_param_list(m, ts, &plist));
    double overall = 0;
    for (int s = 0; s < plist.n; s++) {
        snprintf(key, sizeof key, "%s.grad.%s", kind, plist.spans[s].name);
        float *b = tensor(key);
        double wa = 0, wb = 0, w = worst_of(plist.spans[s].g, b, plist.spans[s].n, &wa, &wb);
        overall = fmax(overall, w);
        CHECKF(w <= 1, "%s: %s: rein %g vs torch %g", kind, plist.spans[s].name, wa, wb);
        rein_free(b);
    }
    printf("  every weight's gradient (%d tensors): worst %.3f of the bound\n", plist.n, overall);
    if (algo == REIN_RL_PPO) {
        snprintf(key, sizeof key, "%s.grad.value_head.weight", kind);
        float *b = tensor(key);
        double wa = 0, wb = 0, w = worst_of(vh + dim + 1, b, dim, &wa, &wb);
        float db = meta("ppo.grad.value_head.bias");
        printf("  value head: weight worst %.3f of the bound; bias rein %.8g, torch %.8g\n", w,
               vh[2 * dim + 1], db);
        CHECKF(w <= 1, "value head weight gradient: %g vs %g", wa, wb);
        CHECK(fabs(vh[2 * dim + 1] - db) <= 1e-5 + 1e-4 * fabs(db));
        rein_free(b);
    }
    rein_params_free(&plist);
    float *p[] = {old, rf, oldv, ret, adv, vh, hw};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) rein_free(p[i]);
    rein_train_state_free(ts);
    rein_model_free(m);
}

int main(void) {
    rein_gguf *g;
    if (rein_gguf_open("tests/fixtures/rl/rl_pg.ref.gguf", &g))
        test_skip("tests/fixtures/rl/rl_pg.ref.gguf is missing (python3 tools/gen_rl_fixture.py)");
    ref = g;
    run_case("ppo", REIN_RL_PPO);
    run_case("grpo", REIN_RL_GRPO);
    rein_gguf_free(g);
    return test_finish();
}
