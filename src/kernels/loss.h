/* loss.h - cross-entropy and per-token log-probabilities over rows of logits.
 *
 * The losses of every trainer start here: SFT sums the cross-entropy of target tokens, DPO and
 * PPO/GRPO need the log-probability of each chosen token. Rows are independent and threaded on
 * rein's pool; the sums are formed in double in a fixed order, so they do not depend on the
 * number of threads.
 */
#ifndef REIN_KERNELS_LOSS_H
#define REIN_KERNELS_LOSS_H

#include <stdint.h>

/* Cross-entropy over rows of logits (N, V) with targets (N) (-1 = ignore the row; otherwise
 * 0 <= target < V). Returns the SUM over non-ignored rows of -log softmax(logits[i])[targets[i]]
 * (in double). If dlogits (N, V) is not NULL it gets (softmax - onehot) * scale for non-ignored
 * rows and 0 for ignored ones (dlogits may equal logits). Threaded over rows. */
double rein_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                          float scale);

/* log softmax(logits[i])[targets[i]] for each row (0 for ignored rows, target -1) into logp (N);
 * returns their sum (in double). */
double rein_token_logprobs(float *logp, const float *logits, const int32_t *targets, int N, int V);

#endif
