/* rl.h - reinforcement learning from a reward: PPO with a value head, and the critic-free group
 * methods GRPO and RLOO. One driver (rl.c) runs all three.
 *
 * An RL run is not a pass over a fixed dataset, so it has its own loop instead of trainer.c's item
 * loop; it reuses the same parts (optim, params, checkpoint, progress) and the same run folder:
 * metrics.jsonl, checkpoint.bin, settings.txt, and adapter/ at the end. Each iteration:
 *
 *   1. prompts   N prompts of the prompt set, in a seeded order (a fresh shuffle each pass over it);
 *                the prompts of iteration k depend on k and the seed only
 *   2. rollout   rein_generate_batch: G samples of each prompt, with the LoRA adapter on, seeded
 *                from (seed, k); each token's log-probability recorded
 *   3. score     the scorers (rewards.h), plus no_eos_penalty for a response that never ended
 *   4. ref       one forward with the adapter off: the reference log-probabilities (no second copy
 *                of the model); PPO also runs the policy (adapter on) for the old log-probs and
 *                the values
 *   5. update    epochs x minibatches of AdamW steps on the clipped losses (ppo.h, grpo.h)
 *
 * PPO's value head is a scalar head on the policy's own final hidden states (a shared trunk):
 * V(s_t) = w . xf_t + b, read at the row whose logits sample token t. See docs/rl.md for why.
 *
 * The reference is the base model with the adapter switched off, so RL needs a LoRA adapter.
 *
 * Exact resume: the checkpoint holds the adapter, the value head, AdamW's moments, the iteration
 * and the controller's state (the adaptive KL coefficient and the learning-rate scale the KL alarm
 * lowers, kept as a parameter span that no gradient touches); every random choice derives from
 * (seed, iteration), so a resumed run repeats a straight run's metrics to the last digit.
 */
#ifndef REIN_TRAIN_RL_H
#define REIN_TRAIN_RL_H

#include "train/grpo.h"
#include "train/optim.h"
#include "train/ppo.h"
#include "train/rewards.h"
#include "model/train.h"

typedef enum rein_rl_algo { REIN_RL_PPO, REIN_RL_GRPO, REIN_RL_RLOO } rein_rl_algo;

/* ---- prompts -------------------------------------------------------------------------------- */

typedef struct rein_rl_prompt {
    int32_t *ids;   /* (n) the prompt as the model sees it: template applied, generation prompt */
    size_t n;
    char *text;     /* the last user turn, for reports */
    char *answer;   /* the record's "answer" (a string or a number), or NULL */
    int line;       /* 1-based line in the file */
} rein_rl_prompt;

typedef struct rein_rl_prompts {
    rein_rl_prompt *p;
    size_t n;
    size_t n_skipped; /* too long (skip_long) */
} rein_rl_prompts;

/* Read a prompt file (JSONL): {"prompt": "..."} or {"messages": [...]} (a trailing assistant turn
 * is dropped: the model answers the conversation up to the last user turn), either with an
 * optional "answer"; or Anthropic HH records ({"chosen": "\n\nHuman: ..."}), whose turns before
 * the last assistant turn become the prompt. The model's chat template is applied with the
 * generation prompt. A prompt longer than max_tokens is an error (naming FILE:LINE) unless
 * skip_long. Every problem is listed in *problems (may be NULL). */
rein_status rein_rl_prompts_read(const char *path, const rein_model *m, int max_tokens,
                                 int skip_long, rein_rl_prompts **out, rein_buf *problems);
void rein_rl_prompts_free(rein_rl_prompts *ps);

/* ---- the run -------------------------------------------------------------------------------- */

typedef struct rein_rl_opts {
    rein_rl_algo algo;
    const char *out_dir;
    rein_lora_params lora;
    rein_adamw_params adam;
    rein_schedule schedule;   /* over all optimizer steps (default constant) */
    float clip;               /* gradient-norm clip (default 1) */
    int64_t iterations;       /* rollout + update rounds */
    int n_prompts;            /* N prompts per iteration */
    int n_samples;            /* G samples per prompt (PPO: 1 by default; GRPO/RLOO: >= 2) */
    int max_tokens;           /* longest response */
    int max_prompt_tokens;    /* longest prompt (for the KV cache) */
    rein_sampler_params sampler; /* temperature 1, no top-k/p, by default */
    float no_eos_penalty;     /* added to the score of a response without an end token */
    int epochs;               /* passes over each rollout batch (PPO 4, GRPO/RLOO 1) */
    int minibatches;          /* optimizer steps per pass (default 1) */
    int batch_tokens;         /* tokens per forward chunk (a minibatch is accumulated in chunks) */
    float clip_eps;           /* policy ratio clip (0.2) */
    float clip_v;             /* value clip (0.2) */
    float vf_coef;            /* value-loss weight (0.1) */
    float gamma, lam;         /* GAE (1, 0.95) */
    int whiten_adv;           /* PPO: whiten advantages over the batch (1) */
    int scale_std;            /* GRPO: divide by the group's std (1) */
    float kl_coef;            /* PPO: initial KL penalty coefficient (0.05); GRPO/RLOO: beta (0) */
    float kl_target;          /* PPO adaptive controller: target KL per sequence (0 = fixed) */
    float kl_horizon;         /* its horizon in samples (10000) */
    rein_kl_estimator kl_est; /* the penalty's estimator (PPO k1, GRPO k3) */
    float kl_max;             /* the KL alarm: mean KL per sequence above this (0 = off) ... */
    int kl_alarm_lower;       /* ... halves the learning rate (1) or stops the run (0) */
    uint64_t seed;
    int64_t save_every;       /* iterations between checkpoints (and at the end) */
    int max_bad_steps;        /* consecutive non-finite updates that stop the run */
    const rein_rl_prompts *eval; /* held-out prompts, answered greedily (or NULL) */
    int eval_n;               /* how many of them (0 = all) */
    int64_t eval_every;       /* iterations between evaluations (also at the start and the end) */
    int resume, plain_log, quiet;
} rein_rl_opts;

rein_rl_opts rein_rl_default_opts(rein_rl_algo algo);
const char *rein_rl_algo_name(rein_rl_algo a); /* "ppo", "grpo", "rloo" */

/* Where the time of a run went, for `make bench`. */
typedef struct rein_rl_report {
    int64_t iterations;                      /* done in this process */
    double t_rollout, t_score, t_ref, t_update; /* seconds */
    double t_values;                         /* PPO: the policy's forward for old log-probs and
                                              * values (t_ref is the reference's only) */
    int64_t rollout_tokens;                  /* sampled tokens */
    double first_reward, last_reward;        /* mean score of the first and last iteration */
} rein_rl_report;

/* Train m (attaching a fresh LoRA adapter) on prompts with the scorers. The run folder holds
 * metrics, checkpoints and, at the end, adapter/ and value_head.safetensors (PPO). report (may be
 * NULL) gets the time split. */
rein_status rein_rl_run(rein_model *m, const rein_rl_opts *o, const rein_rl_prompts *prompts,
                        rein_scorers *sc, rein_rl_report *report);

/* The loss of one fixed rollout of n sequences and its gradient, exactly as an update computes
 * them (for tests against an independent implementation): prompt i and response i (n_resp[i] >= 1
 * tokens), and per response token (all sequences back to back) the old and reference
 * log-probabilities, the old values, advantages and returns (PPO; may be NULL for GRPO/RLOO). The
 * token weights are the minibatch's (rl.h above); o gives the algorithm, clips, vf_coef and the
 * KL term. Gradients accumulate into ts (and the adapter) and, for PPO, into vh: w (dim), b (1),
 * dw (dim), db (1). *loss = policy loss + vf_coef * value loss + KL term. */
rein_status rein_rl_loss_grad(rein_model *m, rein_train_state *ts, const rein_rl_opts *o, int n,
                              const int32_t *const *prompt, const size_t *n_prompt,
                              const int32_t *const *resp, const int *n_resp, const float *old_logp,
                              const float *ref_logp, const float *old_values, const float *adv,
                              const float *ret, float *vh, double *loss);

#endif
