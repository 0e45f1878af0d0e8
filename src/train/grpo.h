/* grpo.h - critic-free advantages from groups of samples of the same prompt: GRPO and RLOO.
 *
 * A rollout batch holds G samples of each of N prompts (rein_generate_batch's order: the G samples
 * of prompt 0, then of prompt 1, ...). Instead of a learned value, each sample's advantage is its
 * score against the others of its group, and every token of the sample gets that advantage:
 *
 *   GRPO (Shao et al. 2024, TRL's GRPOTrainer)   A_i = (r_i - mean_g) / (std_g + 1e-4), std_g the
 *        unbiased standard deviation of the group (torch.std); with scale_std = 0 only the mean
 *        is subtracted (Dr. GRPO)
 *   RLOO (Ahmadian et al. 2024, TRL's RLOOTrainer)  A_i = r_i - (sum_g r - r_i) / (G - 1), the
 *        leave-one-out baseline
 *
 * The loss (rl.c) is ppo.h's clipped policy loss with weights 1 / (samples * |o_i|) (a mean of the
 * samples' token means), plus, when beta > 0, beta times the k3 estimate of KL(pi || ref) per token
 * with the same weights.
 */
#ifndef REIN_TRAIN_GRPO_H
#define REIN_TRAIN_GRPO_H

#include "rein.h"

typedef enum rein_group_adv { REIN_ADV_GRPO, REIN_ADV_RLOO } rein_group_adv;

/* Advantages of n_groups groups of g samples each (scores and adv: n_groups * g). g >= 2. */
void rein_group_advantages(rein_group_adv kind, const float *scores, int n_groups, int g,
                           int scale_std, float *adv);

#endif
