/* optim.h - AdamW, gradient clipping and learning-rate schedules over a list of parameter spans.
 *
 * A span is a run of weights with its gradient of the same length (one tensor, or one LoRA matrix),
 * flagged for weight decay or not. The optimizer's moments are two flat arrays over all spans in
 * order, so a checkpoint saves them as they are.
 */
#ifndef REIN_TRAIN_OPTIM_H
#define REIN_TRAIN_OPTIM_H

#include "rein.h"

typedef struct rein_param_span {
    float *w;       /* (n) weights */
    float *g;       /* (n) gradient */
    int64_t n;
    int decay;      /* apply weight decay */
    char name[96];  /* e.g. "blk.3.attn_q.weight" or "blk.3.attn_q.lora_A" */
} rein_param_span;

typedef struct rein_param_list {
    rein_param_span *spans;
    int n, cap;
    int64_t total;  /* elements over all spans */
} rein_param_list;

rein_status rein_params_add(rein_param_list *pl, const char *name, float *w, float *g, int64_t n,
                            int decay);
void rein_params_free(rein_param_list *pl);

typedef struct rein_adamw_params {
    float lr;
    float beta1, beta2, eps;
    float weight_decay;   /* decoupled: w -= lr * wd * w */
} rein_adamw_params;

rein_adamw_params rein_adamw_default_params(void); /* lr 1e-4, 0.9, 0.999, 1e-8, wd 0.0 */

typedef struct rein_adamw {
    int64_t n;
    int64_t step;   /* steps taken */
    float *m, *v;   /* (n) first and second moments */
} rein_adamw;

rein_status rein_adamw_init(rein_adamw *o, int64_t n);
void rein_adamw_free(rein_adamw *o);
/* One AdamW step at learning rate lr (the schedule's), as torch.optim.AdamW computes it. */
void rein_adamw_step(rein_adamw *o, const rein_param_list *pl, const rein_adamw_params *p, float lr);
/* The same step on the gradients times grad_scale, which stay unscaled in memory: the bits of
 * rein_grad_scale(pl, grad_scale) then rein_adamw_step, one pass over the gradients fewer. */
void rein_adamw_step_scaled(rein_adamw *o, const rein_param_list *pl, const rein_adamw_params *p,
                            float lr, float grad_scale);

/* The global L2 norm of every gradient (computed in double). */
double rein_grad_norm(const rein_param_list *pl);
/* Scale every gradient by s. */
void rein_grad_scale(const rein_param_list *pl, float s);
/* Clip to max_norm as torch.nn.utils.clip_grad_norm_ does; returns the norm before clipping,
 * which is NaN or infinite exactly when some gradient is (the squares are summed in double). */
double rein_grad_clip(const rein_param_list *pl, double max_norm);
/* rein_grad_clip's norm and scale (1 when it would not clip) without scaling: for
 * rein_adamw_step_scaled. */
double rein_grad_clip_scale(const rein_param_list *pl, double max_norm, float *scale);

typedef enum rein_schedule { REIN_SCHED_CONSTANT, REIN_SCHED_LINEAR, REIN_SCHED_COSINE } rein_schedule;

/* The learning rate at step (0-based) of total: linear warmup over `warmup` steps, then constant,
 * linear decay to 0, or cosine decay to 0 (as transformers' get_*_schedule_with_warmup). */
float rein_lr_at(rein_schedule s, float base_lr, int64_t step, int64_t warmup, int64_t total);
rein_status rein_schedule_from_name(const char *name, rein_schedule *out);

#endif
