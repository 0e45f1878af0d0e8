/* reward.h - reward models: a scalar head on the transformer, trained from comparisons with the
 * Bradley-Terry loss, saved beside its adapter (or full weights), loaded back to score sequences.
 *
 * The reward of a sequence is r = w . xf[last] + b: the head (a (dim) weight and a bias) applied to
 * the final normalised hidden state of its last token (pref.h: an example's last token is its
 * response's end-of-turn token). The loss of one group (prompt) with pairs P of (better, worse)
 * responses is, as InstructGPT weighs it (every prompt counts the same, however many responses):
 *
 *     L_g = 1/|P| sum_P [ -log sigmoid(r_better - r_worse - margin) + c (r_better + r_worse)^2 ]
 *
 * with c the reward-centring coefficient (TRL's center_rewards_coefficient; 0 = off) and margin the
 * record's (0 unless the data gives one). A step's loss is the mean of L_g over its groups.
 *
 * Saved folder (rein_rm_save; the run folder of `rein rm train`):
 *   adapter/                  the LoRA adapter, PEFT's layout (kind "lora"), or
 *   model.gguf                every weight, F32 (kind "full")
 *   reward_head.safetensors   score.weight (1, dim) and score.bias (1), F32 (the names of HF's
 *                             AutoModelForSequenceClassification head, plus its bias)
 *   reward_config.json        {"base_model", "kind", "dim", "reward_mean", "reward_std",
 *                              "n_stats", "center_coefficient"}: mean and std of the rewards of the
 *                             training responses, for PPO's reward normalisation
 */
#ifndef REIN_TRAIN_REWARD_H
#define REIN_TRAIN_REWARD_H

#include "train/pref.h"
#include "train/trainer.h"

typedef struct rein_reward_head {
    int dim;
    float *w, *b;   /* (dim), (1) */
    float *dw, *db; /* (dim), (1) gradients */
    float *arena;
} rein_reward_head;

/* w ~ N(0, 1/dim) seeded (r starts at the scale of one normalised feature), b = 0. */
rein_status rein_reward_head_init(rein_reward_head *h, int dim, uint64_t seed);
void rein_reward_head_free(rein_reward_head *h);
/* r (ts->n_seqs) of the batch in ts (after rein_train_forward). */
void rein_reward_head_forward(const rein_reward_head *h, const rein_train_state *ts, float *r);
/* Given dr (n_seqs) = d(loss)/d(r): the last row of each sequence in ts->dxf += dr w, and
 * dw += dr xf[last], db += dr. */
void rein_reward_head_backward(rein_reward_head *h, rein_train_state *ts, const float *dr);

/* Statistics of a set of scored comparisons. */
#define REIN_RM_LEN_BUCKETS 5
typedef struct rein_rm_stats {
    double loss;          /* mean group loss (as trained, with centring and margins) */
    double accuracy;      /* pairs with r_better > r_worse, equal rewards counting one half */
    double mean_margin;   /* mean of r_better - r_worse */
    size_t n_pairs, n_groups;
    size_t n_equal;       /* pairs whose rewards are exactly equal */
    size_t n_tied;        /* data ties: no pair */
    double longer_preferred; /* of pairs with responses of different length: the rate at which the
                                model rewards the longer one more */
    double data_longer_better; /* ... and the rate at which the data prefers the longer one */
    /* accuracy by learned-token length difference better - worse: <= -64, (-64,-8], (-8,8),
     * [8,64), >= 64 */
    size_t bucket_n[REIN_RM_LEN_BUCKETS];
    double bucket_acc[REIN_RM_LEN_BUCKETS];
} rein_rm_stats;

extern const char *const rein_rm_bucket_names[REIN_RM_LEN_BUCKETS];

/* Statistics of the comparisons of ps given the reward of every example (r, ps->ex->n). */
void rein_rm_pair_stats(const rein_pref_set *ps, const float *r, float center_coef,
                        rein_rm_stats *out);

/* Rewards of every example of ps (r, ps->ex->n), packed at most ts->cap tokens at a time; no
 * gradients. REIN_ERR_RANGE if an example is longer than ts->cap. */
rein_status rein_rm_score_set(rein_model *m, rein_train_state *ts, const rein_reward_head *h,
                              const rein_pref_set *ps, float *r);

/* ---- training: an objective of the shared loop ---------------------------------------------- */

typedef struct rein_rm_ctx {
    const rein_pref_set *train, *eval; /* eval may be NULL */
    rein_reward_head *head;
    float center_coef;
    rein_pref_batch b;              /* packing scratch */
    float *r, *dr;                  /* (cap) rewards and their gradients, by batch position */
    float *eval_r;                  /* (eval->ex->n) */
    /* this step's pairs, for the metrics line */
    double m_pairs, m_correct, m_margin;
    rein_rm_stats last_eval;
} rein_rm_ctx;

/* Set up ctx and obj: items are train's groups (weight 1 each). The head's weight (with decay)
 * and bias (without) join the optimizer through obj->extra_params. */
rein_status rein_rm_objective(rein_rm_ctx *ctx, const rein_pref_set *train,
                              const rein_pref_set *eval, rein_reward_head *head,
                              float center_coef, int batch_tokens, rein_objective *obj);
void rein_rm_ctx_free(rein_rm_ctx *ctx);

/* Write the reward model to dir (see above). base_model: the GGUF the run started from (recorded
 * as an absolute path). full: m's weights are written whole; else m's adapter. */
rein_status rein_rm_save(const char *dir, const rein_model *m, const rein_reward_head *h, int full,
                         const char *base_model, float reward_mean, float reward_std,
                         size_t n_stats, float center_coef);

/* ---- a saved reward model, for scoring (PPO, judges, `rein rm score|eval`) --------------------- */

typedef struct rein_reward_model rein_reward_model;

/* Load dir (written by rein_rm_save): the base model named in reward_config.json (or base_model
 * when not NULL) with the adapter, or dir/model.gguf; and the head. Errors name the file and
 * field. */
rein_status rein_rm_load(const char *dir, const char *base_model, rein_reward_model **out);
void rein_rm_free(rein_reward_model *rm);
/* The transformer (tokenizer, chat template) and the head, owned by rm. */
rein_model *rein_rm_model(rein_reward_model *rm);
const rein_reward_head *rein_rm_head(const rein_reward_model *rm);
/* Mean and std of the training rewards (for normalising: (r - mean) / std). */
void rein_rm_norm(const rein_reward_model *rm, float *mean, float *std);

/* Rewards of n_seqs token sequences packed back to back (cu_seqlens as in train.h; each sequence
 * should end where the response ends, at its end-of-turn token): rewards (n_seqs), raw (not
 * normalised). Any number of sequences; they are scored in batches of up to 2048 tokens (or the
 * longest sequence). */
rein_status rein_rm_score(rein_reward_model *rm, const int32_t *tokens, const int32_t *cu_seqlens,
                          int n_seqs, float *rewards);
/* Rewards of every example of ps (as rein_rm_score_set). */
rein_status rein_rm_score_examples(rein_reward_model *rm, const rein_pref_set *ps, float *rewards);

#endif
