/* optim.c - AdamW (decoupled weight decay, bias correction), clipping and schedules.
 *
 * The update follows torch.optim.AdamW's arithmetic step for step, so that rein's losses over ten
 * steps match PyTorch's to float rounding: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
 * w *= 1 - lr wd; w -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
#include "train/optim.h"
#include "base/base.h"
#include "kernels/adamw.h"

#include <math.h>
#include <string.h>

rein_status rein_params_add(rein_param_list *pl, const char *name, float *w, float *g, int64_t n,
                            int decay) {
    if (pl->n == pl->cap) {
        int ncap = pl->cap ? pl->cap * 2 : 64;
        rein_param_span *p = rein_realloc(pl->spans, sizeof *p * (size_t)ncap);
        if (!p) return REIN_ERR_NOMEM;
        pl->spans = p;
        pl->cap = ncap;
    }
    rein_param_span *s = &pl->spans[pl->n++];
    s->w = w;
    s->g = g;
    s->n = n;
    s->decay = decay;
    snprintf(s->name, sizeof s->name, "%s", name);
    pl->total += n;
    return REIN_OK;
}

void rein_params_free(rein_param_list *pl) {
    rein_free(pl->spans);
    memset(pl, 0, sizeof *pl);
}

rein_adamw_params rein_adamw_default_params(void) {
    rein_adamw_params p = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                           .weight_decay = 0.0f};
    return p;
}

rein_status rein_adamw_init(rein_adamw *o, int64_t n) {
    memset(o, 0, sizeof *o);
    o->m = rein_calloc((size_t)n ? (size_t)n : 1, sizeof(float));
    o->v = rein_calloc((size_t)n ? (size_t)n : 1, sizeof(float));
    if (!o->m || !o->v) {
        rein_adamw_free(o);
        return REIN_ERR_NOMEM;
    }
    o->n = n;
    return REIN_OK;
}

void rein_adamw_free(rein_adamw *o) {
    rein_free(o->m);
    rein_free(o->v);
    o->m = o->v = NULL;
}

typedef struct adam_job {
    const rein_param_list *pl;
    const rein_adamw_params *p;
    rein_adamw *o;
    float lr, step_size, bc2_sqrt, gscale;
    int64_t *offsets;
} adam_job;

static void adam_task(void *ctx, int t, int n_tasks) {
    adam_job *j = ctx;
    const rein_param_span *s = &j->pl->spans[t];
    rein_adamw_coef c = {1.0f - j->p->beta1, j->p->beta2, 1.0f - j->p->beta2, j->bc2_sqrt,
                         j->p->eps, j->step_size,
                         s->decay ? 1.0f - j->lr * j->p->weight_decay : 1.0f, j->gscale};
    rein_adamw_update(s->w, s->g, j->o->m + j->offsets[t], j->o->v + j->offsets[t], s->n, &c);
}

void rein_adamw_step(rein_adamw *o, const rein_param_list *pl, const rein_adamw_params *p, float lr) {
    rein_adamw_step_scaled(o, pl, p, lr, 1.0f);
}

void rein_adamw_step_scaled(rein_adamw *o, const rein_param_list *pl, const rein_adamw_params *p,
                            float lr, float grad_scale) {
    REIN_ASSERT(o->n == pl->total);
    o->step++;
    int64_t offs[pl->n > 0 ? pl->n : 1];
    int64_t off = 0;
    for (int i = 0; i < pl->n; i++) {
        offs[i] = off;
        off += pl->spans[i].n;
    }
    double bc1 = 1.0 - pow(p->beta1, (double)o->step), bc2 = 1.0 - pow(p->beta2, (double)o->step);
    adam_job j = {pl, p, o, lr, (float)(lr / bc1), (float)sqrt(bc2), grad_scale, offs};
    rein_parallel_for(pl->n, adam_task, &j);
}

/* Sums of squares and scaling, a span a task; each span's sum is its own, added in span order,
 * so the norm does not depend on the thread count. */
typedef struct grad_job {
    const rein_param_list *pl;
    double *ss; /* (n spans) */
    float s;
} grad_job;

/* Eight running sums, element k into sum k % 8, then added pairwise: eight independent chains
 * instead of one (whose add latency, not memory, set the speed of a 540 MB pass), in one fixed
 * order whatever the machine. */
static void sumsq_task(void *ctx, int t, int n_tasks) {
    grad_job *j = ctx;
    const float *g = j->pl->spans[t].g;
    const int64_t n = j->pl->spans[t].n;
    double a[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) a[l] += (double)g[k + l] * g[k + l];
    for (int l = 0; k < n; k++, l++) a[l] += (double)g[k] * g[k];
    j->ss[t] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

static void scale_task(void *ctx, int t, int n_tasks) {
    grad_job *j = ctx;
    float *g = j->pl->spans[t].g;
    for (int64_t k = 0; k < j->pl->spans[t].n; k++) g[k] *= j->s;
}

double rein_grad_norm(const rein_param_list *pl) {
    double part[pl->n > 0 ? pl->n : 1], ss = 0;
    grad_job j = {pl, part, 0};
    rein_parallel_for(pl->n, sumsq_task, &j);
    for (int i = 0; i < pl->n; i++) ss += part[i];
    return sqrt(ss);
}

void rein_grad_scale(const rein_param_list *pl, float s) {
    grad_job j = {pl, NULL, s};
    rein_parallel_for(pl->n, scale_task, &j);
}

double rein_grad_clip_scale(const rein_param_list *pl, double max_norm, float *scale) {
    double norm = rein_grad_norm(pl);
    double coef = max_norm / (norm + 1e-6);
    *scale = max_norm > 0 && coef < 1.0 ? (float)coef : 1.0f;
    return norm;
}

double rein_grad_clip(const rein_param_list *pl, double max_norm) {
    float s;
    double norm = rein_grad_clip_scale(pl, max_norm, &s);
    if (s != 1.0f) rein_grad_scale(pl, s);
    return norm;
}

float rein_lr_at(rein_schedule s, float base_lr, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return base_lr * (float)(step + 1) / (float)warmup;
    if (s == REIN_SCHED_CONSTANT || total <= warmup) return base_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    if (s == REIN_SCHED_LINEAR) return (float)(base_lr * (1.0 - progress));
    return (float)(base_lr * 0.5 * (1.0 + cos(M_PI * progress)));
}

rein_status rein_schedule_from_name(const char *name, rein_schedule *out) {
    if (!strcmp(name, "constant")) *out = REIN_SCHED_CONSTANT;
    else if (!strcmp(name, "linear")) *out = REIN_SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) *out = REIN_SCHED_COSINE;
    else
        return rein_error(REIN_ERR_INVALID,
                          "unknown schedule '%s' (expected constant, linear or cosine)", name);
    return REIN_OK;
}
