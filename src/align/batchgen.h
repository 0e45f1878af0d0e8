/* batchgen.h - many prompts decoded together behind one shared prefix: the generation engine of
 * the alignment pipeline (Self-Instruct, red-teaming, principle-driven answers, verbose cloning)
 * and of `rein redteam eval`.
 *
 * A fixed number of slots (sequences of one KV cache) decode side by side; each forward pass runs
 * every active slot's next token, plus the whole prompt of any slot that just took a new item.
 * Items are taken in index order; when a slot's item ends, `done` gets its text at once (so the
 * caller can commit it: a crash loses only the items in flight) and the slot takes the next item.
 * The shared prefix (the principle-driven prompt: principles and exemplars) is run through the
 * model ONCE into its own sequence and copied into a slot's cache for each item
 * (rein_kv_cache_copy), so each item pays only for its own tokens.
 *
 * Why not rein_generate_batch: that API decodes a fixed set of sequences to the end (and shares a
 * prompt only between samples of that prompt); this one streams items through slots and shares a
 * prefix between different prompts. Each item is sampled with its own sampler seeded by its own
 * seed, and the forward pass computes a row the same way whatever else is in the batch, so an
 * item's text does not depend on which items run beside it: a resumed run equals an unbroken one.
 */
#ifndef REIN_ALIGN_BATCHGEN_H
#define REIN_ALIGN_BATCHGEN_H

#include "base/base.h"
#include "rein.h"

/* How an item ended. */
enum {
    REIN_GEN_FINISHED = 0, /* an end-of-generation token or a stop string */
    REIN_GEN_MAX_TOKENS,   /* max_tokens sampled without an end: the text is truncated */
    REIN_GEN_CONTEXT,      /* the slot's context filled up: truncated */
    REIN_GEN_TOO_LONG,     /* prefix + prompt do not fit the context: not run, text "" */
};

typedef struct rein_batchgen_params {
    rein_sampler_params sampler; /* the seed is replaced by each item's own */
    int32_t max_tokens;
    const char *const *stop;     /* stop strings (cut from the text), or NULL */
    size_t n_stop;
    int n_parallel;              /* slots decoded together (default 16) */
    const int32_t *prefix;       /* shared by every item, run once; may be NULL */
    size_t n_prefix;
    int n_ctx;                   /* per slot; 0 = prefix + longest prompt + max_tokens, at most
                                    the model's context */
    rein_progress *progress;     /* updated as items end, when not NULL */
    int64_t progress_done;       /* items already done before this call (for the bar) */
    const char *progress_info;   /* shown beside the bar */
} rein_batchgen_params;

rein_batchgen_params rein_batchgen_default_params(void);

typedef struct rein_batchgen_out {
    const char *text; /* NUL-terminated, valid until done returns */
    size_t len;
    int32_t n_tokens; /* tokens sampled (an ending end-of-generation token included) */
    int how;          /* REIN_GEN_* */
} rein_batchgen_out;

/* Called once per item as it ends; a non-OK status stops the run and is returned. */
typedef rein_status (*rein_batchgen_done_fn)(void *ud, size_t item, const rein_batchgen_out *o);

/* Generate a continuation of prefix + prompts[i] for every i < n, sampled with seeds[i]. */
rein_status rein_batchgen_run(rein_model *m, const rein_batchgen_params *p, size_t n,
                              const int32_t *const *prompts, const size_t *n_prompt,
                              const uint64_t *seeds, rein_batchgen_done_fn done, void *ud);

/* Tokens of a chat turn as a model sees it: system (NULL: the template's default) and user
 * rendered by tmpl with the generation prompt, then `assistant_start` (may be NULL: text the
 * assistant's answer is made to begin with). The template's own text is tokenised with control
 * tokens recognised; the contents without, so text that looks like a control token stays text.
 * BOS is prepended when the vocabulary asks for it and the template did not write it. */
rein_status rein_chat_tokens(const rein_tokenizer *tok, const rein_chat_template *tmpl,
                             const rein_chat_msg *msgs, size_t n_msgs, int add_generation_prompt,
                             const char *assistant_start, rein_tokens *out);

#endif
