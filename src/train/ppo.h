/* ppo.h - the arithmetic of PPO for language models, each piece a plain function over float arrays.
 *
 * The RL driver (rl.c) gathers a rollout batch into flat per-token arrays (the response tokens of
 * every sequence, back to back) and calls these; tests/test_rl_math.c checks every one against
 * PyTorch (tools/gen_rl_fixture.py). The formulas are TRL's (PPOTrainer, and the loop of
 * Ziegler et al. 2019 it descends from):
 *
 *   KL estimators of KL(pi || ref) from one sample, with d = logp - ref_logp (Schulman's k1..k3):
 *     k1 = d          k2 = d^2 / 2          k3 = exp(-d) - 1 + d
 *   per-token rewards  r_t = -kl_coef * k(t), plus the sequence's score at its last token
 *   GAE over one sequence of n tokens (the value after the last token is 0):
 *     delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lambda A_{t+1},  R_t = A_t + V_t
 *   whitening over all tokens of a batch: (x - mean) / sqrt(var + 1e-8) with the unbiased variance,
 *     the mean added back unless shift_mean
 *   clipped policy loss, ratio = exp(logp - old_logp):
 *     L = sum_t w_t max(-A_t ratio_t, -A_t clamp(ratio_t, 1 - eps, 1 + eps))
 *   clipped value loss, V' = clamp(V, V_old - eps_v, V_old + eps_v):
 *     L = 1/2 sum_t w_t max((V_t - R_t)^2, (V'_t - R_t)^2)
 *   w_t is a per-token weight chosen by the caller: 1/(tokens in the minibatch) for PPO (TRL's
 *   masked mean), 1/(G |o_i|) per sequence for GRPO (the paper's mean of sequence means).
 *   adaptive KL coefficient (Ziegler et al.; TRL's AdaptiveKLController):
 *     e = clip(kl / target - 1, -0.2, 0.2);  coef *= 1 + e * n_samples / horizon
 */
#ifndef REIN_TRAIN_PPO_H
#define REIN_TRAIN_PPO_H

#include "rein.h"

typedef enum rein_kl_estimator { REIN_KL_K1 = 1, REIN_KL_K2 = 2, REIN_KL_K3 = 3 } rein_kl_estimator;

/* "k1", "k2", "k3" -> *out; REIN_ERR_INVALID names the choices. */
rein_status rein_kl_estimator_from_name(const char *name, rein_kl_estimator *out);
/* The estimate for one token, and its derivative with respect to logp. */
float rein_kl_estimate(rein_kl_estimator e, float logp, float ref_logp);
float rein_kl_estimate_grad(rein_kl_estimator e, float logp, float ref_logp);

/* GAE over one sequence: rewards, values (n) -> adv, returns (n). */
void rein_ppo_gae(const float *rewards, const float *values, int n, float gamma, float lam,
                  float *adv, float *returns);

/* Whiten x (n >= 2) in place, as above. */
void rein_ppo_whiten(float *x, int64_t n, int shift_mean);

/* What a loss saw, summed (the caller divides by its counts). */
typedef struct rein_ppo_loss_stats {
    double loss;         /* sum_t w_t loss_t */
    double n_clipped;    /* tokens whose clipped term was the larger (TRL's clipfrac numerator) */
    double approx_kl;    /* sum_t (logp - old)^2 / 2 */
    double ratio_sum;    /* sum_t ratio_t */
} rein_ppo_loss_stats;

/* The clipped policy loss over n tokens: adds w_t * dL_t/dlogp_t to dlogp and the sums to *st. */
void rein_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv,
                          const float *w, int64_t n, float clip_eps, float *dlogp,
                          rein_ppo_loss_stats *st);

/* The clipped value loss over n tokens: adds w_t * dL_t/dV_t to dv and the sums to *st (approx_kl
 * and ratio_sum stay 0). */
void rein_ppo_value_loss(const float *v, const float *old_v, const float *returns, const float *w,
                         int64_t n, float clip_v, float *dv, rein_ppo_loss_stats *st);

/* 1 - Var(returns - values) / Var(returns), the share of the returns' variance the values explain
 * (1 perfect, 0 no better than the mean, negative worse); 0 when Var(returns) == 0. */
double rein_explained_variance(const float *values, const float *returns, int64_t n);

/* Ziegler's adaptive controller: the coefficient after one batch of n_samples sequences whose
 * mean KL was kl. A fixed coefficient is target <= 0 (returned unchanged). */
float rein_kl_coef_update(float coef, double kl, float target, float horizon, int n_samples);

#endif
