/* rouge.h - ROUGE-L F-measure, exactly as Google's rouge_score package computes it, and a pool of
 * instructions to check new candidates against (Self-Instruct's near-duplicate filter).
 *
 * Tokens are rouge_score's: the text lowercased (Python's str.lower), every run of characters
 * other than [a-z0-9] a separator (non-ASCII characters included; U+212A KELVIN SIGN lowercases
 * to "k" and U+0130 to "i" + a combining dot, as in Python), no stemming. The score of a
 * prediction against a target is precision = lcs / len(prediction), recall = lcs / len(target),
 * F = 2pr / (p + r), in double, in that order, so values equal Python's to the last bit; 0 when
 * either side has no token. F is symmetric.
 *
 * The pool interns tokens into integer ids and keeps each entry as an id array. A query computes
 * the longest common subsequence against every entry with a bit-parallel algorithm (Hyyrö 2004:
 * one word operation per 64 query tokens per entry token), spread over rein's threads.
 */
#ifndef REIN_ALIGN_ROUGE_H
#define REIN_ALIGN_ROUGE_H

#include "rein.h"

/* rouge_score's tokens of text, appended to *out as NUL-separated strings; returns the count. */
rein_status rein_rouge_tokens(const char *text, rein_buf *out, size_t *n_tokens);

/* ROUGE-L F-measure of two texts (a plain dynamic program; the reference the pool is tested
 * against). */
rein_status rein_rouge_l(const char *prediction, const char *target, double *f);

typedef struct rein_rouge_pool rein_rouge_pool;

rein_status rein_rouge_pool_new(rein_rouge_pool **out);
void rein_rouge_pool_free(rein_rouge_pool *p);
size_t rein_rouge_pool_size(const rein_rouge_pool *p);
/* Add text as entry number rein_rouge_pool_size() (before the call). */
rein_status rein_rouge_pool_add(rein_rouge_pool *p, const char *text);
/* The highest ROUGE-L F of text against any entry (0 for an empty pool) and the first entry that
 * has it (-1 for an empty pool). Threaded over the entries; the result does not depend on the
 * thread count. */
rein_status rein_rouge_pool_max(const rein_rouge_pool *p, const char *text, double *best,
                                int64_t *best_entry);

#endif
