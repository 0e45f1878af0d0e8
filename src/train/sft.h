/* sft.h - supervised fine-tuning as an objective of the shared training loop: next-token
 * cross-entropy on the tokens an example's mask marks (assistant turns, completions), with an
 * evaluation loss on a held-out set. */
#ifndef REIN_TRAIN_SFT_H
#define REIN_TRAIN_SFT_H

#include "train/examples.h"
#include "train/trainer.h"

typedef struct rein_sft_ctx {
    const rein_example_set *train;
    const rein_example_set *eval;  /* may be NULL */
    int batch_tokens;              /* for packing the evaluation set */
    /* scratch for one packed micro-batch */
    int32_t *tokens, *targets, *cu;
    int cap;
} rein_sft_ctx;

/* Set up ctx and obj for training on `train` (and evaluating on `eval`, if not NULL). */
rein_status rein_sft_objective(rein_sft_ctx *ctx, const rein_example_set *train,
                               const rein_example_set *eval, int batch_tokens,
                               rein_objective *obj);
void rein_sft_ctx_free(rein_sft_ctx *ctx);

/* Mean cross-entropy per target token of a set of examples (no gradients). */
rein_status rein_sft_eval_loss(rein_sft_ctx *ctx, rein_model *m, rein_train_state *ts,
                               const rein_example_set *set, double *loss);

#endif
