/* params.h - the list of what an optimizer updates: every base weight (full fine-tuning) or every
 * LoRA matrix, each with its gradient, named as GGUF names them. */
#ifndef REIN_TRAIN_PARAMS_H
#define REIN_TRAIN_PARAMS_H

#include "model/train.h"
#include "train/optim.h"

/* Fill pl (empty) with the trainable tensors: the base weights when ts keeps their gradients
 * (norm weights without weight decay, matrices with it; a tied head appears once, as the
 * embedding), otherwise the A and B of every active adapter (with decay). */
rein_status rein_train_param_list(const rein_model *m, const rein_train_state *ts,
                                  rein_param_list *pl);

#endif
