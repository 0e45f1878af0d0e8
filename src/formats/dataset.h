/* dataset.h - training datasets: JSONL files of SFT, preference and ranking records.
 *
 * A dataset file is JSON Lines: one JSON object a line, blank lines skipped, a UTF-8 byte-order
 * mark at the start tolerated. Each record takes one of the forms TRL names, and the whole file is
 * read, checked and kept in memory as plain C structs owned by one rein_dataset:
 *
 *   SFT (REIN_DATA_SFT)
 *     {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 *     {"prompt": "...", "completion": "..."}               plain text
 *     {"prompt": [messages], "completion": [messages]}     conversational
 *     {"text": "..."}
 *   Preference (REIN_DATA_PREF)
 *     {"prompt": P, "chosen": C, "rejected": R}  all strings, or all message lists. In the list
 *        form chosen/rejected hold the response turns; a list that restates the prompt (its first
 *        turn is not an assistant turn) must start with the prompt's turns, which are then dropped.
 *     {"chosen": C, "rejected": R}  implicit prompt. Message lists: the prompt is their longest
 *        common prefix of whole turns. Strings: their longest common prefix cut back to just after
 *        the last "\n\nAssistant:" in it (a turn boundary); no such boundary is an error.
 *   Anthropic HH (REIN_DATA_HH, read into preference records)
 *     {"chosen": "\n\nHuman: ...\n\nAssistant: ...", "rejected": "..."}  each string is split on
 *        "\n\nHuman:" / "\n\nAssistant:" into user / assistant turns (one leading space of each
 *        content stripped); consecutive turns of one role are joined with "\n\n" (a few real
 *        dialogues repeat "Assistant:"); the prompt is the common turns and chosen / rejected must
 *        then each be exactly the final assistant turn. An empty final assistant turn is accepted
 *        in this form only: hh-rlhf prefers silence a few times, and the end-of-turn text still
 *        gives the response tokens.
 *   Ranking (REIN_DATA_RANKING)
 *     {"prompt": P, "responses": [R0, R1, ...], "ranking": [...]}  K >= 2 responses (strings, or
 *        message lists like chosen above). "ranking" lists response indices best first; a nested
 *        array is a tie: [0, [1, 2], 3] ranks 0 first, 1 and 2 equal second, 3 last. It must be a
 *        permutation of 0..K-1, and not one single tie.
 *
 * REIN_DATA_AUTO detects the format from the keys of the first line that holds a JSON object:
 * messages / text / prompt+completion -> SFT; responses+ranking -> ranking; chosen+rejected ->
 * HH when there is no prompt and chosen is a string starting "\n\nHuman:", else preference.
 *
 * Checks, each a problem "FILE:LINE: what" naming the field: malformed JSON (with its column), a
 * line that is not an object, a missing field, a field of the wrong type, invalid UTF-8, an
 * unknown role, an empty completion / text / response / assistant turn, a conversation or
 * completion with no assistant turn, a response that does not start with an assistant turn,
 * chosen identical to rejected, an explicit prompt a restated conversation does not start with,
 * a ranking that is not a permutation. rein_dataset_read lists every problem of the file at once.
 */
#ifndef REIN_FORMATS_DATASET_H
#define REIN_FORMATS_DATASET_H

#include "rein.h"

typedef enum rein_data_format {
    REIN_DATA_AUTO = 0, /* detect from the first record's keys (reading only) */
    REIN_DATA_SFT,
    REIN_DATA_PREF,
    REIN_DATA_HH, /* Anthropic HH dialogue strings; records are rein_pref_record */
    REIN_DATA_RANKING,
} rein_data_format;

/* "auto", "sft", "pref", "hh", "ranking" and back; REIN_ERR_INVALID names the choices. */
const char *rein_data_format_name(rein_data_format f);
rein_status rein_data_format_from_name(const char *name, rein_data_format *out);

typedef enum rein_role { REIN_ROLE_SYSTEM, REIN_ROLE_USER, REIN_ROLE_ASSISTANT } rein_role;

const char *rein_role_name(rein_role r); /* "system", "user", "assistant" */

typedef struct rein_msg {
    rein_role role;
    const char *content; /* NUL-terminated, valid UTF-8 */
} rein_msg;

typedef struct rein_msg_list {
    const rein_msg *msgs; /* (n) */
    size_t n;
} rein_msg_list;

typedef enum rein_sft_kind {
    REIN_SFT_MESSAGES,          /* messages: every assistant turn is learned */
    REIN_SFT_PROMPT_COMPLETION, /* prompt / completion strings: the completion is learned */
    REIN_SFT_CONV_COMPLETION,   /* prompt / completion message lists: the completion's assistant
                                   turns are learned */
    REIN_SFT_TEXT,              /* text: every token after the first is learned */
} rein_sft_kind;

typedef struct rein_sft_record {
    rein_sft_kind kind;
    rein_msg_list messages;        /* MESSAGES: the conversation (>= 1 assistant turn) */
    rein_msg_list prompt_msgs;     /* CONV_COMPLETION (may be empty) */
    rein_msg_list completion_msgs; /* CONV_COMPLETION (>= 1 assistant turn) */
    const char *prompt;            /* PROMPT_COMPLETION (may be "") */
    const char *completion;        /* PROMPT_COMPLETION (not "") */
    const char *text;              /* TEXT (not "") */
    int line;                      /* 1-based line in the file */
} rein_sft_record;

/* A preference pair. conversational: the three message lists are used (chosen and rejected hold
 * the response turns only, each starting with an assistant turn); else the three strings, and the
 * texts to score are prompt + chosen and prompt + rejected. */
typedef struct rein_pref_record {
    int conversational;
    rein_msg_list prompt, chosen, rejected;
    const char *prompt_text, *chosen_text, *rejected_text;
    int line;
} rein_pref_record;

/* K ranked responses to one prompt; rank[i] is the place of response i (0 best, equal = tie). */
typedef struct rein_rank_record {
    int conversational;
    rein_msg_list prompt;
    const char *prompt_text;
    size_t n_responses;                /* K >= 2 */
    const rein_msg_list *responses;    /* (K) when conversational */
    const char *const *response_texts; /* (K) otherwise */
    const int32_t *rank;               /* (K) */
    int line;
} rein_rank_record;

/* A whole file, read and checked. Everything it points to is owned by it and freed with
 * rein_dataset_free. Exactly one of the record arrays is used, as `format` says (HH -> pref). */
typedef struct rein_dataset {
    char *path;
    rein_data_format format;       /* SFT, PREF, HH or RANKING: what was read */
    size_t n;                      /* records */
    rein_sft_record *sft;          /* (n) format SFT */
    rein_pref_record *pref;        /* (n) formats PREF, HH */
    rein_rank_record *rank;        /* (n) format RANKING */
    size_t n_lines;                /* lines in the file, blank ones included */
    size_t n_skipped;              /* bad lines skipped (skip_bad) */
    struct rein_data_arena *arena; /* private: where the strings and lists live */
} rein_dataset;

typedef struct rein_dataset_params {
    rein_data_format format; /* REIN_DATA_AUTO (the default) or the format to read */
    int skip_bad;            /* skip bad lines and count them instead of failing */
} rein_dataset_params;

rein_dataset_params rein_dataset_default_params(void);

/* Read a JSONL dataset. On success *out holds every good record (in file order). When any line is
 * bad and skip_bad is off, returns REIN_ERR_FORMAT, *out stays NULL and rein_last_error() says how
 * many lines are bad and quotes the first. In both cases, when `problems` is not NULL, every bad
 * line is appended to it as "FILE:LINE: what\n" (with skip_bad these are the skipped lines), for
 * the caller to print. A file with no record at all is REIN_ERR_FORMAT. REIN_ERR_IO if the file
 * cannot be read, REIN_ERR_NOMEM on allocation failure (nothing is returned then). */
rein_status rein_dataset_read(const char *path, const rein_dataset_params *p, rein_dataset **out,
                              rein_buf *problems);
/* The same from bytes in memory; `name` stands for the file in messages. */
rein_status rein_dataset_parse(const char *name, const char *data, size_t len,
                               const rein_dataset_params *p, rein_dataset **out,
                               rein_buf *problems);
void rein_dataset_free(rein_dataset *ds);

#endif /* REIN_FORMATS_DATASET_H */
