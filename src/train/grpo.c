/* grpo.c - group-normalised (GRPO) and leave-one-out (RLOO) advantages. See grpo.h. */
#include "train/grpo.h"

#include <math.h>

void rein_group_advantages(rein_group_adv kind, const float *scores, int n_groups, int g,
                           int scale_std, float *adv) {
    for (int k = 0; k < n_groups; k++) {
        const float *r = scores + (size_t)k * g;
        float *a = adv + (size_t)k * g;
        double sum = 0;
        for (int i = 0; i < g; i++) sum += r[i];
        if (kind == REIN_ADV_RLOO) {
            for (int i = 0; i < g; i++)
                a[i] = (float)(r[i] - (g > 1 ? (sum - r[i]) / (g - 1) : 0.0));
            continue;
        }
        double mean = sum / g, var = 0;
        for (int i = 0; i < g; i++) var += (r[i] - mean) * (r[i] - mean);
        double sd = g > 1 ? sqrt(var / (g - 1)) : 0.0;
        for (int i = 0; i < g; i++)
            a[i] = (float)(scale_std ? (r[i] - mean) / (sd + 1e-4) : r[i] - mean);
    }
}
