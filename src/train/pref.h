/* pref.h - comparisons for the preference trainers (reward model, DPO): which response beats which.
 *
 * The examples of a preference or ranking dataset (examples.h) come as runs of adjacent examples
 * of one record: chosen then rejected, or K ranked responses. A group is one such run (one
 * prompt); its pairs are every ordered (better, worse) pair of responses with different ranks, so
 * a ranking of K untied responses gives K(K-1)/2 pairs and a tie gives none (counted in n_tied).
 *
 * Each example is used up to and including its last learned token, i.e. the response's
 * end-of-turn token (ChatML's "<|im_end|>"): the template's text after it (a newline) is dropped.
 * That is the token where generation stops, so a reward read at the last token of a sequence
 * means the same for a dataset response and for a generated one (PPO), and DPO's log-probabilities
 * (which only cover learned tokens) do not change.
 *
 * Packing: the sequences of a micro-batch sit back to back (cu_seqlens); targets[t] is the next
 * token where that token is learned, else -1; the reward of sequence s is read at row cu[s+1]-1.
 */
#ifndef REIN_TRAIN_PREF_H
#define REIN_TRAIN_PREF_H

#include "train/examples.h"

typedef struct rein_pref_pair {
    uint32_t better, worse; /* example indices */
    float margin;           /* the record's margin (Bradley-Terry: r_better - r_worse - margin) */
} rein_pref_pair;

typedef struct rein_pref_set {
    const rein_example_set *ex;  /* not owned */
    size_t n_groups;
    size_t *group;       /* (n_groups + 1) first example of each group */
    size_t *group_pair;  /* (n_groups + 1) first pair of each group */
    rein_pref_pair *pairs; /* (n_pairs) */
    size_t n_pairs;
    size_t n_tied;       /* response pairs of equal rank: no pair */
    int32_t *len;        /* (ex->n) tokens used of each example (through its last learned token) */
    int32_t *n_learned;  /* (ex->n) learned tokens of each example (the response's length) */
    uint64_t hash;       /* of the tokens, masks, pairs and margins */
} rein_pref_set;

/* Group the examples of a preference or ranking dataset. margins (one per dataset record, indexed
 * by rein_example.record) may be NULL (all 0). REIN_ERR_FORMAT if a group has fewer than two
 * examples or no pair. */
rein_status rein_pref_set_build(const rein_example_set *ex, const float *margins,
                                rein_pref_set *out);
void rein_pref_set_free(rein_pref_set *ps);

/* The optional per-record "margin" field of a preference or ranking JSONL file (the dataset
 * reader keeps only what the trainers share): *out gets ds->n floats, 0 where a record has none;
 * *n_found counts the records that had one. REIN_ERR_FORMAT (file and line) for a margin that is
 * not a finite number. The caller frees *out with rein_free. */
rein_status rein_pref_read_margins(const rein_dataset *ds, float **out, size_t *n_found);

/* Tokens of e used: through its last learned token (all of it when none is learned). */
int32_t rein_example_used_len(const rein_example *e);

/* Pack examples ex_idx[0..n) of ps: tokens (T), targets (T), cu (n + 1). Returns T. The arrays
 * must hold the sum of ps->len over the examples. */
int rein_pref_pack(const rein_pref_set *ps, const uint32_t *ex_idx, int n, int32_t *tokens,
                   int32_t *targets, int32_t *cu);

/* Scratch for packing examples cap tokens at a time, and a cursor over a whole set. */
typedef struct rein_pref_batch {
    int32_t *tokens, *targets, *cu; /* (cap), (cap), (cap + 1) */
    uint32_t *idx;                  /* (cap) examples of the batch */
    int cap;
    size_t next;                    /* the first example not packed yet */
    size_t first;                   /* the batch: examples first .. first + n - 1 */
    int n, T;
} rein_pref_batch;

rein_status rein_pref_batch_init(rein_pref_batch *b, int cap);
void rein_pref_batch_free(rein_pref_batch *b);
/* Pack the next examples of ps in order (from b->next; set it to 0 to start) that fit b->cap
 * tokens. *done is set when none is left. REIN_ERR_RANGE (naming the line) if one is longer than
 * b->cap. */
rein_status rein_pref_batch_next(rein_pref_batch *b, const rein_pref_set *ps, int *done);

#endif
