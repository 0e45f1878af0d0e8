/* rewards.h - what scores a response in RL: rule-based rewards, reward models, and the C interface
 * to plug in one of your own.
 *
 * A scorer set is a weighted sum of scorers; the score of a response is sum_k weight_k * r_k. Each
 * scorer sees the whole rollout batch at once (so a reward model scores it in packed batches) and
 * writes one reward per sample. The built-in ones:
 *
 *   regex:PATTERN     1 if the response text matches PATTERN (PCRE2, UTF-8, unanchored: use ^ $
 *                     to anchor), else 0. "{answer}" in PATTERN is replaced by the prompt's
 *                     "answer" field (escaped, \Q...\E), so a verifiable task is one pattern:
 *                     regex:^\D*{answer}\D*$ rewards a reply whose only number is the answer.
 *   length:TARGET     max(0, 1 - |n - TARGET| / TARGET), n the response's tokens (the
 *                     end-of-turn token not counted): 1 at TARGET tokens, 0 at 0 or 2 TARGET.
 *   rm:DIR            a reward model saved by `rein rm train` (train/reward.h), scored on prompt +
 *                     response ending with the end-of-turn token (appended when the response
 *                     never ended); normalised with its training statistics, (r - mean) / std,
 *                     unless added with normalise = 0.
 *   your own          rein_scorers_add_fn with a rein_reward_fn.
 */
#ifndef REIN_TRAIN_REWARDS_H
#define REIN_TRAIN_REWARDS_H

#include "rein.h"

/* One sampled response, as a scorer sees it. */
typedef struct rein_rl_sample {
    int prompt_index;             /* the prompt's index in the prompt file (0-based) */
    const char *answer;           /* the prompt's "answer" field, or NULL */
    const int32_t *prompt_ids;    /* (n_prompt) the prompt as the model saw it (template applied) */
    size_t n_prompt;
    const int32_t *ids;           /* (n_ids) the response's tokens, with a final end-of-generation
                                   * token when it ended */
    size_t n_ids;
    const char *text;             /* the response text (end token not rendered), NUL-terminated */
    size_t text_len;
    int ended;                    /* it ended with an end-of-generation token */
} rein_rl_sample;

/* A plug-in reward: write the reward of each of n samples to rewards[i]. Return REIN_OK, or an
 * error status with rein_error's message (the run stops). A non-finite reward skips the
 * iteration's update (counted as a bad step). */
typedef rein_status (*rein_reward_fn)(void *ud, const rein_rl_sample *samples, int n,
                                      float *rewards);

typedef struct rein_scorers rein_scorers;

rein_status rein_scorers_new(rein_scorers **out);
void rein_scorers_free(rein_scorers *s);
/* Add a scorer from its text form (regex:..., length:..., rm:DIR; see above) with a weight. The
 * policy model `policy` is needed by rm: to check the vocabularies agree. */
rein_status rein_scorers_add(rein_scorers *s, const char *spec, float weight,
                             const rein_model *policy);
/* Add a reward model directory (rm:DIR). */
rein_status rein_scorers_add_rm(rein_scorers *s, const char *dir, float weight, int normalise,
                                const rein_model *policy);
/* Add a plug-in; `name` appears in the metrics (reward_<name>). ud stays the caller's. */
rein_status rein_scorers_add_fn(rein_scorers *s, const char *name, rein_reward_fn fn, void *ud,
                                float weight);
int rein_scorers_count(const rein_scorers *s);
const char *rein_scorers_name(const rein_scorers *s, int k); /* "regex", "length", "rm", ... */
/* A line describing the scorers (for the settings a resume must match). */
void rein_scorers_describe(const rein_scorers *s, rein_buf *out);

/* Score n samples: total[i] = sum_k w_k r_k[i]; each scorer's raw mean over the batch to
 * means[k] (means may be NULL). */
rein_status rein_scorers_score(rein_scorers *s, const rein_rl_sample *samples, int n,
                               float *total, double *means);

#endif
