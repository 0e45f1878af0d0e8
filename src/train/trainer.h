/* trainer.h - the one training loop every trainer shares (SFT, reward model, DPO, ...).
 *
 * A trainer is an objective: a set of items (examples, or preference pairs) and a function that
 * runs the forward and backward of a packed micro-batch of them. The loop does the rest, the same
 * way for all: a seeded shuffle per epoch, packing items into micro-batches of at most
 * batch_tokens, gradient accumulation, NaN guards, clipping, the schedule, AdamW, metrics, the
 * progress bar, evaluation, checkpoints and exact resume.
 *
 * Run folder: metrics.jsonl (one JSON object a line: training steps and evaluations),
 * checkpoint.bin (the latest), settings.txt (what the run was asked to do).
 */
#ifndef REIN_TRAIN_TRAINER_H
#define REIN_TRAIN_TRAINER_H

#include "model/train.h"
#include "train/optim.h"

typedef struct rein_train_opts {
    const char *out_dir;
    int full;                /* train every base weight; else a LoRA adapter */
    rein_lora_params lora;
    rein_adamw_params adam;
    rein_schedule schedule;
    float warmup_ratio;      /* of the total steps, used when warmup_steps < 0 */
    int64_t warmup_steps;
    float clip;              /* global gradient norm bound; 0 = off */
    int epochs;
    int64_t max_steps;       /* stop after this many steps; 0 = all epochs */
    int batch_tokens;        /* tokens in one micro-batch (items are packed whole) */
    int grad_accum;          /* micro-batches per optimizer step */
    uint64_t seed;
    int64_t save_every;      /* steps between checkpoints (also at the end of each epoch) */
    int64_t eval_every;      /* steps between evaluations (also at the start and the end) */
    int max_bad_steps;       /* consecutive non-finite steps tolerated before the run stops */
    int resume;
    int plain_log;           /* no progress bar even on a terminal */
    int bf16;                /* BF16 matrix products (f32 weights and accumulation); see matmul.h */
    int quiet;
} rein_train_opts;

rein_train_opts rein_train_default_opts(void);

typedef struct rein_objective {
    const char *kind;    /* "sft", "dpo", ... (checkpoints of one kind resume only that kind) */
    void *ctx;
    size_t n_items;
    uint64_t data_hash;  /* of the items as tokenized (resume refuses other data) */
    /* Tokens an item takes in a micro-batch, and its weight in the step's mean loss. */
    int (*item_tokens)(void *ctx, size_t i);
    double (*item_weight)(void *ctx, size_t i);
    /* Forward and backward of items[0..n) packed together; gradients scaled by `scale` (1 / the
     * step's total weight); adds the unscaled loss sum to *loss. */
    rein_status (*micro_step)(void *ctx, rein_model *m, rein_train_state *ts, const size_t *items,
                              int n, float scale, double *loss);
    /* Optional: an evaluation loss (lower is better) and its name for the metrics. */
    rein_status (*evaluate)(void *ctx, rein_model *m, rein_train_state *ts, double *loss);
    const char *eval_name;
    /* Optional: extra fields for the step's metrics line (",\"acc\":0.7"), reset each step. */
    void (*step_metrics)(void *ctx, rein_buf *out);
    /* Optional: extra fields for an evaluation's metrics line, called after each evaluate. */
    void (*eval_metrics)(void *ctx, rein_buf *out);
    /* Optional: trainable tensors of the objective's own (a reward head), appended to the
     * optimizer's list after the model's, so they are clipped, stepped, checkpointed and resumed
     * with it. The loop zeroes their gradients at the start of every step. */
    rein_status (*extra_params)(void *ctx, rein_param_list *pl);
} rein_objective;

/* Append one line to dir/metrics.jsonl (shared by every training driver). */
rein_status rein_metrics_append(const char *dir, const char *line);

/* Test hooks, unset in normal use: whether the comma-separated list of numbers in environment
 * variable `var` holds `value` (e.g. REIN_TEST_KILL_AFTER_STEP=12, REIN_TEST_NAN_STEPS=3,4). */
int rein_test_hook(const char *var, int64_t value);

/* The line of the settings that must match for --resume, written into checkpoints. */
void rein_train_settings(const rein_train_opts *o, const rein_model *m, const char *extra,
                         char *out, size_t n);

/* Train m (attaching a LoRA adapter first unless o->full). `extra_settings` joins the settings a
 * resume must match (the objective's own, e.g. "beta=0.1"). Returns REIN_OK when the run finished;
 * the trained weights are in m (and its adapter). */
rein_status rein_train_run(rein_model *m, const rein_train_opts *o, const rein_objective *obj,
                           const char *extra_settings);

#endif
