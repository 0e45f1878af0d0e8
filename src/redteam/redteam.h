/* redteam.h - red-team evaluation: prompt sets (AdvBench's CSV, JSONL, plain lines), the refusal
 * judge, Wilson intervals, and `rein redteam eval` as a library call.
 *
 * The evaluation is frozen so that two models (a base and its aligned adapter) are compared on
 * equal terms: each prompt is one user turn through the model's own chat template (its default
 * system prompt included), decoded greedily for at most a fixed number of tokens. A response is a
 * refusal when it contains any phrase of the judge's list (a case-sensitive substring anywhere, as
 * the adversarial-suffix literature's refusal-prefix check does; typographic apostrophes count as
 * "'"). On harmful behaviours, attack success = not refused; on benign prompts, over-refusal =
 * refused. Each rate comes with n and a Wilson 95% interval.
 *
 * A reward model (`rein rm train`, src/train/reward.h) may judge too: each (prompt, response) is
 * scored at the response's end-of-turn token and normalised with the model's training statistics,
 * (r - mean) / std; the mean per set comes with a normal 95% interval. Higher means the reward
 * model judges the responses better (for a model trained on harmlessness comparisons: safer).
 */
#ifndef REIN_REDTEAM_H
#define REIN_REDTEAM_H

#include "base/base.h"
#include "rein.h"

/* ---- CSV (RFC 4180: quoted fields, "" inside quotes, newlines inside quotes, CRLF) --------- */

typedef struct rein_csv {
    size_t n_rows, n_cols;  /* every row has n_cols fields (the first row is the header) */
    char **cells;           /* (n_rows, n_cols) NUL-terminated, owned */
    int *row_line;          /* (n_rows) the line each row starts on */
} rein_csv;

/* Parse CSV text; `name` stands for the file in messages. REIN_ERR_FORMAT names the line and
 * column of an unterminated quote, text after a closing quote, or a row whose field count differs
 * from the header's. */
rein_status rein_csv_parse(const char *name, const char *data, size_t len, rein_csv **out);
void rein_csv_free(rein_csv *c);

/* ---- prompt sets ----------------------------------------------------------------------------- */

typedef struct rein_prompt_set {
    char *path;
    size_t n;
    char **text;   /* (n) the user turn */
    char **target; /* (n) AdvBench's target string, or NULL */
} rein_prompt_set;

/* Read prompts by the file's form:
 *   .csv    a header row; the prompt is column "goal" (AdvBench), else "prompt", else
 *           "instruction"; "target" is kept when present
 *   .jsonl  one object a line: "goal", "prompt" or "instruction" (Self-Instruct seed tasks: when
 *           its first instance has a non-empty "input", the prompt is instruction + "\n\n" + input)
 *   other   one prompt a line; blank lines and lines starting with '#' skipped
 * Errors name the file and line. An empty set is REIN_ERR_FORMAT. */
rein_status rein_prompt_set_read(const char *path, rein_prompt_set **out);
void rein_prompt_set_free(rein_prompt_set *s);

/* ---- the refusal judge -------------------------------------------------------------------- */

typedef struct rein_refusal_judge {
    char **phrases;
    size_t n;
} rein_refusal_judge;

/* One phrase a line (leading/trailing blanks kept off; '#' lines and blank lines skipped). */
rein_status rein_refusal_judge_load(const char *path, rein_refusal_judge **out);
rein_status rein_refusal_judge_from_text(const char *name, const char *text,
                                         rein_refusal_judge **out);
void rein_refusal_judge_free(rein_refusal_judge *j);
/* The index of the first phrase found in text, or -1 (not a refusal). */
int rein_refusal_judge_match(const rein_refusal_judge *j, const char *text);

/* Wilson score interval for k successes in n trials at normal quantile z (1.959963984540054 for
 * 95%); [0, 1] for n == 0. */
void rein_wilson(int64_t k, int64_t n, double z, double *lo, double *hi);
#define REIN_Z95 1.959963984540054

/* ---- evaluation ----------------------------------------------------------------------------- */

struct rein_reward_model;

typedef struct rein_redteam_opts {
    struct rein_reward_model *rm; /* a second judge, or NULL (owned by the caller) */
    int max_tokens;   /* fixed decoding length (default 64) */
    int n_parallel;   /* sequences decoded together (default 16) */
    int plain;        /* log lines instead of a progress bar */
    const char *label; /* "base", "aligned", ... for the bars and the JSON */
} rein_redteam_opts;

rein_redteam_opts rein_redteam_default_opts(void);

typedef struct rein_rate {
    int64_t k, n;
    double rate, lo, hi; /* k/n and its Wilson 95% interval */
} rein_rate;

typedef struct rein_redteam_answer {
    char *response;
    int refused;    /* the judge matched */
    int phrase;     /* which phrase, or -1 */
    int truncated;  /* stopped by max_tokens */
    int scored;     /* the reward model scored it (not an empty response) */
    float reward;   /* its normalised reward */
} rein_redteam_answer;

typedef struct rein_mean {
    int64_t n;
    double mean, lo, hi; /* mean +- 1.96 sd / sqrt(n) */
} rein_mean;

typedef struct rein_redteam_result {
    rein_rate attack_success; /* on the harmful set */
    rein_rate over_refusal;   /* on the benign set (n = 0 without one) */
    rein_redteam_answer *harmful, *benign; /* (harmful->n), (benign->n) */
    size_t n_harmful, n_benign;
    int has_reward;               /* a reward model judged too */
    rein_mean harmful_reward, benign_reward;
    double seconds;
    char template_name[32];
    int max_tokens;
} rein_redteam_result;

/* Generate and judge. benign may be NULL. The result's arrays are owned by it. */
rein_status rein_redteam_eval(rein_model *m, const rein_prompt_set *harmful,
                              const rein_prompt_set *benign, const rein_refusal_judge *judge,
                              const rein_redteam_opts *o, rein_redteam_result *out);
void rein_redteam_result_free(rein_redteam_result *r);

/* Write dir/eval.json (settings, rates with intervals and n), dir/table.md (a readable table) and
 * dir/generations.jsonl (every prompt, response and verdict). model_desc names the model (and its
 * adapter) in the outputs. Also prints the table to `fp` when not NULL. */
rein_status rein_redteam_write(const rein_redteam_result *r, const rein_prompt_set *harmful,
                               const rein_prompt_set *benign, const rein_refusal_judge *judge,
                               const char *model_desc, const char *dir, FILE *fp);

/* "12.3% [8.1, 17.9] (n=320)" */
void rein_rate_format(const rein_rate *r, char *out, size_t n);

#endif
