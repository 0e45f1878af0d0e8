/* ppo.c - PPO's arithmetic over flat float arrays: KL estimators, GAE, whitening, the clipped
 * policy and value losses with their gradients, the adaptive KL coefficient. See ppo.h; the sums
 * run in double, in index order, so that a resumed run reproduces them exactly. */
#include "train/ppo.h"

#include <math.h>
#include <string.h>

rein_status rein_kl_estimator_from_name(const char *name, rein_kl_estimator *out) {
    if (!strcmp(name, "k1")) *out = REIN_KL_K1;
    else if (!strcmp(name, "k2")) *out = REIN_KL_K2;
    else if (!strcmp(name, "k3")) *out = REIN_KL_K3;
    else return rein_error(REIN_ERR_INVALID, "unknown KL estimator '%s' (k1, k2 or k3)", name);
    return REIN_OK;
}

float rein_kl_estimate(rein_kl_estimator e, float logp, float ref_logp) {
    double d = (double)logp - (double)ref_logp;
    switch (e) {
    case REIN_KL_K1: return (float)d;
    case REIN_KL_K2: return (float)(0.5 * d * d);
    case REIN_KL_K3: return (float)(exp(-d) - 1.0 + d);
    }
    return 0;
}

float rein_kl_estimate_grad(rein_kl_estimator e, float logp, float ref_logp) {
    double d = (double)logp - (double)ref_logp;
    switch (e) {
    case REIN_KL_K1: return 1.0f;
    case REIN_KL_K2: return (float)d;
    case REIN_KL_K3: return (float)(1.0 - exp(-d));
    }
    return 0;
}

void rein_ppo_gae(const float *rewards, const float *values, int n, float gamma, float lam,
                  float *adv, float *returns) {
    double last = 0;
    for (int t = n - 1; t >= 0; t--) {
        double next = t + 1 < n ? values[t + 1] : 0.0;
        double delta = (double)rewards[t] + (double)gamma * next - values[t];
        last = delta + (double)gamma * lam * last;
        adv[t] = (float)last;
        returns[t] = (float)(last + values[t]);
    }
}

void rein_ppo_whiten(float *x, int64_t n, int shift_mean) {
    if (n < 2) return;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)(n - 1); /* unbiased, as TRL's masked_var */
    double inv = 1.0 / sqrt(var + 1e-8);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((x[i] - mean) * inv + (shift_mean ? 0.0 : mean));
}

void rein_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv,
                          const float *w, int64_t n, float clip_eps, float *dlogp,
                          rein_ppo_loss_stats *st) {
    for (int64_t t = 0; t < n; t++) {
        double d = (double)logp[t] - old_logp[t];
        double ratio = exp(d);
        double clipped = ratio < 1.0 - clip_eps ? 1.0 - clip_eps
                       : ratio > 1.0 + clip_eps ? 1.0 + clip_eps : ratio;
        double l1 = -adv[t] * ratio, l2 = -adv[t] * clipped;
        /* the clipped term is constant in logp where it clips; where it wins, no gradient */
        int clip_wins = l2 > l1;
        st->loss += w[t] * (clip_wins ? l2 : l1);
        st->n_clipped += clip_wins;
        st->approx_kl += 0.5 * d * d;
        st->ratio_sum += ratio;
        if (!clip_wins) dlogp[t] += (float)(w[t] * -adv[t] * ratio);
    }
}

void rein_ppo_value_loss(const float *v, const float *old_v, const float *returns, const float *w,
                         int64_t n, float clip_v, float *dv, rein_ppo_loss_stats *st) {
    for (int64_t t = 0; t < n; t++) {
        double lo = (double)old_v[t] - clip_v, hi = (double)old_v[t] + clip_v;
        double vc = v[t] < lo ? lo : v[t] > hi ? hi : v[t];
        double e1 = (double)v[t] - returns[t], e2 = vc - returns[t];
        int clip_wins = e2 * e2 > e1 * e1;
        st->loss += 0.5 * w[t] * (clip_wins ? e2 * e2 : e1 * e1);
        st->n_clipped += clip_wins;
        if (!clip_wins) dv[t] += (float)(w[t] * e1);
    }
}

double rein_explained_variance(const float *values, const float *returns, int64_t n) {
    if (n < 2) return 0;
    double mr = 0, md = 0;
    for (int64_t i = 0; i < n; i++) {
        mr += returns[i];
        md += (double)returns[i] - values[i];
    }
    mr /= (double)n;
    md /= (double)n;
    double vr = 0, vd = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)returns[i] - values[i];
        vr += (returns[i] - mr) * (returns[i] - mr);
        vd += (d - md) * (d - md);
    }
    return vr > 0 ? 1.0 - vd / vr : 0.0;
}

float rein_kl_coef_update(float coef, double kl, float target, float horizon, int n_samples) {
    if (target <= 0 || horizon <= 0) return coef;
    double e = kl / target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    return (float)(coef * (1.0 + e * n_samples / horizon));
}
