/* dpo.h - direct preference optimisation as an objective of the shared training loop.
 *
 * Each item is one (chosen, rejected) pair of a preference set (pref.h; a ranking gives every
 * ordered pair of different rank). A sequence's log-probability pi is the sum of log p(token) over
 * its response's tokens (the learned tokens); ref is the same under the reference model, computed
 * once before training (rein_dpo_reference) and kept in memory. With
 *     z = (pi_c - pi_r) - (ref_c - ref_r)
 * the losses are TRL's:
 *     sigmoid  -(1 - eps) log sigmoid(beta z) - eps log sigmoid(-beta z)   (eps: label smoothing,
 *              "conservative DPO")
 *     hinge    max(0, 1 - beta z)
 *     ipo      (z - 1 / (2 beta))^2, where z uses log-probabilities divided by the number of
 *              response tokens (TRL's IPO normalises by length)
 * and the step's loss is the mean over its pairs. Implicit rewards: beta (pi - ref) of chosen and
 * of rejected (length-normalised under IPO, as TRL); accuracy is the rate of chosen > rejected;
 * margin is their mean difference; kl is the mean over chosen and rejected of pi - ref (summed
 * log-probabilities), an estimate of how far the policy moved from the reference.
 */
#ifndef REIN_TRAIN_DPO_H
#define REIN_TRAIN_DPO_H

#include "train/pref.h"
#include "train/trainer.h"

typedef enum rein_dpo_loss { REIN_DPO_SIGMOID, REIN_DPO_IPO, REIN_DPO_HINGE } rein_dpo_loss;

typedef struct rein_dpo_params {
    float beta;            /* default 0.1 */
    rein_dpo_loss loss;    /* default sigmoid */
    float label_smoothing; /* sigmoid only, in [0, 0.5); default 0 */
} rein_dpo_params;

rein_dpo_params rein_dpo_default_params(void);
/* "sigmoid", "ipo", "hinge" -> *out; REIN_ERR_INVALID names the choices. */
rein_status rein_dpo_loss_from_name(const char *name, rein_dpo_loss *out);
const char *rein_dpo_loss_name(rein_dpo_loss l);

/* Sums of a metrics window (a step, or an evaluation). */
typedef struct rein_dpo_metrics {
    double pairs, loss, correct, chosen, rejected, kl;
} rein_dpo_metrics;

typedef struct rein_dpo_ctx {
    rein_dpo_params p;
    const rein_pref_set *train, *eval;
    float *ref_train, *ref_eval;   /* (ex->n) reference log-probabilities per example */
    rein_pref_batch b;             /* packing scratch */
    float *logp, *dlogp;           /* (cap) */
    rein_dpo_metrics step, last_eval;
} rein_dpo_ctx;

/* Set up ctx and obj: items are train's pairs (weight 1 each). The reference log-probabilities
 * must be filled (rein_dpo_reference) before the run. */
rein_status rein_dpo_objective(rein_dpo_ctx *ctx, const rein_dpo_params *p,
                               const rein_pref_set *train, const rein_pref_set *eval,
                               int batch_tokens, rein_objective *obj);
void rein_dpo_ctx_free(rein_dpo_ctx *ctx);

/* Summed response log-probabilities of every example of ps under m as it is now (out, ex->n),
 * packed ts->cap tokens at a time. A LoRA adapter attached and enabled is switched off for the
 * pass (the reference of a LoRA run is the base) and on again. */
rein_status rein_dpo_logps(rein_model *m, rein_train_state *ts, const rein_pref_set *ps,
                           float *out);
/* Fill ctx's reference log-probabilities (train and eval) with rein_dpo_logps. Call it before
 * training starts (for a full run the reference is the initial weights): a fresh run and a
 * resumed one get the same cache. */
rein_status rein_dpo_reference(rein_dpo_ctx *ctx, rein_model *m, int batch_tokens);

/* The loss of one pair and its derivative with respect to z, given z (as defined above). */
double rein_dpo_pair_loss(const rein_dpo_params *p, double z, double *dz);

/* Metrics of a whole set under the current model: loss, accuracy, rewards, kl (means). */
rein_status rein_dpo_evaluate(rein_dpo_ctx *ctx, rein_model *m, rein_train_state *ts,
                              const rein_pref_set *ps, const float *ref, rein_dpo_metrics *out);

#endif
