/* checkpoint.h - everything a training run needs to continue exactly where it stopped.
 *
 * A checkpoint holds the trainable weights (base weights or LoRA matrices, in the parameter list's
 * order), AdamW's moments and step, the run's position (step, epoch, micro-batch within the epoch),
 * its RNG state and a description of the run (the configuration as text, and hashes of the
 * parameter layout and of the data) that resume checks against the run being resumed. It is written
 * to a temporary file, flushed and renamed, so the previous checkpoint survives a crash at any
 * moment; a 64-bit checksum over the whole file is verified on load.
 *
 * Layout (little-endian): "REINCKPT", u32 version, u32 header bytes, header, f32 params[n],
 * f32 m[n], f32 v[n], u64 FNV-1a of everything before it.
 */
#ifndef REIN_TRAIN_CHECKPOINT_H
#define REIN_TRAIN_CHECKPOINT_H

#include "base/base.h"
#include "train/optim.h"

typedef struct rein_ckpt_state {
    char kind[16];          /* "sft", "dpo", "rm", "ppo", ... */
    int64_t step;           /* optimizer steps done */
    int64_t epoch;          /* current epoch (0-based) */
    int64_t micro;          /* micro-batches of this epoch already consumed */
    int64_t bad_streak;     /* consecutive skipped (non-finite) steps */
    int64_t n_skipped;      /* skipped steps in all */
    rein_rng rng;
    uint64_t layout_hash;   /* of the parameter list's names and sizes */
    uint64_t data_hash;     /* of the training data as tokenized */
    char config[2048];      /* the settings that must match on resume, as text */
} rein_ckpt_state;

/* FNV-1a, 64 bits, continued from h (start with REIN_FNV_INIT). */
#define REIN_FNV_INIT 0xcbf29ce484222325ULL
uint64_t rein_fnv1a(uint64_t h, const void *data, size_t n);
uint64_t rein_param_layout_hash(const rein_param_list *pl);

rein_status rein_ckpt_save(const char *path, const rein_ckpt_state *s, const rein_param_list *pl,
                           const rein_adamw *opt);
/* Load into pl's weights and opt (initialised for pl->total); checks the checksum, the layout and
 * that s_expected's kind, config and data hash match, naming what differs. */
rein_status rein_ckpt_load(const char *path, const rein_ckpt_state *s_expected,
                           rein_ckpt_state *s, const rein_param_list *pl, rein_adamw *opt);

#endif
