/* adamw.h - the elementwise AdamW update (the optimizer's inner loop; train/optim.c drives it).
 *
 * torch.optim.AdamW's arithmetic, operation for operation and without contraction, so that the
 * vector path gives the same bits as the plain one: g = g gscale (gradient clipping's scaling, done
 * here instead of in a pass of its own: the bits that scaling the gradient first gives);
 * m = m + (g - m) c1; v = v b2 + (g g) c2; w = w decay - (step m) / (sqrt(v) / bc2_sqrt + eps).
 */
#ifndef REIN_KERNELS_ADAMW_H
#define REIN_KERNELS_ADAMW_H

#include <stdint.h>

typedef struct rein_adamw_coef {
    float c1;        /* 1 - beta1 */
    float b2, c2;    /* beta2, 1 - beta2 */
    float bc2_sqrt;  /* sqrt(1 - beta2^t) */
    float eps;
    float step;      /* lr / (1 - beta1^t) */
    float decay;     /* 1 - lr weight_decay, or 1 */
    float gscale;    /* the gradient's scale (clipping), 1 for none */
} rein_adamw_coef;

/* One update of w, m, v (n) from the gradient g (n). */
void rein_adamw_update(float *w, const float *g, float *m, float *v, int64_t n,
                       const rein_adamw_coef *c);
/* The plain loop, for the tests. */
void rein_adamw_update_ref(float *w, const float *g, float *m, float *v, int64_t n,
                           const rein_adamw_coef *c);

#endif
