/* examples.h - training examples: dataset records turned into token sequences with loss masks.
 *
 * An example is `tokens` (n) and `mask` (n): mask[i] = 1 when token i is a training target, i.e.
 * the loss at position i-1 predicts it. mask[0] is always 0 (nothing predicts the first token).
 *
 * What is learned, by record form (dataset.h):
 *   messages           every assistant turn: its content and the end-of-turn text that closes it
 *                      (ChatML "<|im_end|>", Llama 3 "<|eot_id|>"), so that the model learns to
 *                      stop. The template's text after the end-of-turn (ChatML's "\n") is in the
 *                      tokens but not in the loss: at inference generation stops at the
 *                      end-of-turn token, so that newline is never sampled. For a template with no
 *                      end-of-turn token ("generic") the whole rendered turn is learned.
 *   prompt/completion  messages: the assistant turns of the completion, as above.
 *                      strings: prompt + completion, no template; the completion's tokens (and the
 *                      EOS appended after it when add_eos is set) are learned.
 *   text               every token after the first (plus the appended EOS when add_eos).
 *   preference, ranking  one example per response: prompt + response, the response's tokens
 *                      learned. Messages: the prompt is rendered with add_generation_prompt=1, the
 *                      response is the rest of the rendered prompt + response; it is learned up to
 *                      and including its last end-of-turn text. Strings: prompt + response as for
 *                      prompt/completion strings.
 *
 * How assistant spans are found: for each learned assistant turn j the conversation is rendered
 * up to it with add_generation_prompt=1 (the prefix) and through it (the full); each rendering
 * must be a prefix of the next (else REIN_ERR_FORMAT: the template does not render turn by turn).
 * The rendered text is then tokenised segment by segment, prompt segments and assistant segments
 * each with REIN_TOKENIZE_PARSE_SPECIAL, so span boundaries are token boundaries by construction.
 * BOS is prepended when the vocabulary asks for it (add_bos_token) and the rendered text does not
 * already start with the BOS token's text (Llama 3's template writes <|begin_of_text|> itself).
 * Plain strings are tokenised without PARSE_SPECIAL: text that merely looks like a control token
 * stays text.
 *
 * Length: an example longer than max_len tokens is an error naming the file and line (with
 * skip_bad: skipped and counted). Nothing is ever truncated silently. An example with no learned
 * token (a one-token text) is an error too.
 */
#ifndef REIN_TRAIN_EXAMPLES_H
#define REIN_TRAIN_EXAMPLES_H

#include "formats/dataset.h"
#include "rein.h"

typedef struct rein_example {
    int32_t *tokens; /* (n) */
    uint8_t *mask;   /* (n) 1 = target; mask[0] == 0 */
    size_t n;
    size_t record; /* index of the record in its dataset */
    int32_t rank;  /* SFT: 0; preference: 0 chosen, 1 rejected; ranking: the response's rank */
    int line;      /* the record's line in its file */
} rein_example;

typedef struct rein_example_params {
    const rein_tokenizer *tok;      /* required */
    const rein_chat_template *tmpl; /* required for message records */
    int train_on_prompt;            /* SFT: every token after the first is learned */
    int add_eos;                    /* plain-string forms: append EOS, learned (default 1) */
    size_t max_len;                 /* 0 = no limit */
    int skip_bad;                   /* skip (and count) records that fail, instead of failing */
} rein_example_params;

/* tok and tmpl NULL, train_on_prompt 0, add_eos 1, max_len 0, skip_bad 0. */
rein_example_params rein_example_default_params(void);

/* One SFT record into *out (its arrays owned by the caller: rein_example_free). Errors name no
 * file or line (the batch function adds them); max_len is checked. */
rein_status rein_example_sft(const rein_example_params *p, const rein_sft_record *r,
                             rein_example *out);
/* A prompt and one response (both message lists when conversational, else both strings): the
 * response's tokens learned, as described above. */
rein_status rein_example_response(const rein_example_params *p, int conversational,
                                  const rein_msg_list *prompt, const char *prompt_text,
                                  const rein_msg_list *response, const char *response_text,
                                  rein_example *out);
/* A preference record into its chosen and rejected examples (ranks 0 and 1). */
rein_status rein_example_pref(const rein_example_params *p, const rein_pref_record *r,
                              rein_example *chosen, rein_example *rejected);
void rein_example_free(rein_example *e); /* frees the arrays; NULL is a no-op */

/* Every record of a dataset. SFT: one example per record. Preference: two per record, chosen then
 * rejected. Ranking: K per record, in response order, rank set. A record's examples are adjacent;
 * a record that fails is left out whole. */
typedef struct rein_example_set {
    rein_example *ex; /* (n) */
    size_t n;
    size_t n_skipped; /* records skipped (skip_bad) */
} rein_example_set;

/* Build the examples of a whole dataset. When records fail and skip_bad is off: REIN_ERR_FORMAT
 * (or REIN_ERR_RANGE when only lengths failed), *out NULL, rein_last_error() quoting the first;
 * every failure is appended to `problems` (if not NULL) as "FILE:LINE: what\n", skipped ones too.
 * REIN_ERR_NOMEM is returned at once. */
rein_status rein_examples_build(const rein_dataset *ds, const rein_example_params *p,
                                rein_example_set **out, rein_buf *problems);
void rein_example_set_free(rein_example_set *s);

#endif /* REIN_TRAIN_EXAMPLES_H */
