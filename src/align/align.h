/* align.h - principle-driven self-alignment from scratch (after Sun et al. 2023, SELF-ALIGN):
 * the inputs (principles, exemplars, red-teaming types, seed tasks), the prompt builders, parsers
 * and filters of each stage, and the pipeline that runs them into a run folder.
 *
 * The four stages:
 *   1 prompts   Self-Instruct (selfinstruct.c) and topic-guided red-teaming (topics.c) make new
 *               prompts from a few seeds; every candidate gets a verdict and a reason.
 *   2 answer    the base model answers each prompt after the principles and exemplars
 *               (principles.c): internal thoughts, then the answer, which is parsed and filtered.
 *   3 engrave   LoRA fine-tuning of the base on prompt -> answer alone (engrave.c).
 *   4 clone     the engraved model answers at length; those answers, filtered, train the final
 *               adapter (clone.c).
 * Everything generated lives in the run folder's SQLite database (rundb.h), item by item, so a run
 * can be inspected, resumed after a crash and exported; report.c compares base and aligned model.
 */
#ifndef REIN_ALIGN_H
#define REIN_ALIGN_H

#include "align/batchgen.h"
#include "align/rouge.h"
#include "align/rundb.h"
#include "base/base.h"
#include "rein.h"

/* ---- inputs ------------------------------------------------------------------------------- */

typedef struct rein_principle {
    char *name, *text;
} rein_principle;

typedef struct rein_exemplar {
    char *user, *thoughts, *answer;
} rein_exemplar;

typedef struct rein_rt_type {
    char *name;        /* "real-time information" */
    char *description; /* "questions whose answer depends on ..." */
    char **topics;     /* (n_topics) seed topics */
    size_t n_topics;
    char **q_topic, **q_text; /* (n_questions) seed questions and their topics */
    size_t n_questions;
} rein_rt_type;

typedef struct rein_align_inputs {
    rein_principle *principles;
    size_t n_principles;
    rein_exemplar *exemplars;
    size_t n_exemplars;
    rein_rt_type *types;
    size_t n_types;
    char **seed_tasks;
    size_t n_seed_tasks;
    char *verbose_system; /* the system prompt of verbose cloning */
} rein_align_inputs;

/* Principles: one "name: text" a line ('#' lines and blank lines skipped). */
rein_status rein_principles_parse(const char *name, const char *text, rein_align_inputs *in);
/* Exemplars: fields "User:", "Thoughts:", "Answer:" each starting a line, running to the next
 * field or to a "===" line, which ends the exemplar. */
rein_status rein_exemplars_parse(const char *name, const char *text, rein_align_inputs *in);
/* Red-teaming types: blocks ended by "===": "type: NAME", "description: TEXT",
 * "topics: A; B; C", and seed questions "Q: TOPIC | QUESTION". */
rein_status rein_rt_types_parse(const char *name, const char *text, rein_align_inputs *in);
/* Seed tasks: Self-Instruct JSONL ("instruction") when name ends in .jsonl, else one a line. */
rein_status rein_seed_tasks_parse(const char *name, const char *text, rein_align_inputs *in);
void rein_align_inputs_free(rein_align_inputs *in);

/* ---- stage 1: Self-Instruct ---------------------------------------------------------------- */

/* Self-Instruct's prompt: "Come up with a series of tasks:" and the examples as a numbered list,
 * ending with the next number for the model to continue. */
rein_status rein_selfinstruct_prompt(const char *const *examples, size_t n, rein_buf *out);

/* The numbered list the model wrote after a prompt ending in "<first_number>.": each item's text
 * (trimmed, appended NUL-separated to *out); *n_items gets the count. The list ends at the first
 * line that does not continue the numbering. *n_cut is 1 when the generation was truncated in
 * the middle of the last item (it may be cut short: the caller drops it). */
rein_status rein_numbered_list_parse(const char *generated, size_t first_number, int truncated,
                                     rein_buf *out, size_t *n_items, size_t *n_cut);

/* Why an instruction is dropped, or NULL when it is kept. `why` receives the reason ("too short:
 * 2 words", "blacklisted word 'image'", "ROUGE-L 0.82 >= 0.7 against #17"); *similar_entry the
 * pool entry that was too close (or -1). The pool is not changed. */
typedef struct rein_instruction_filter {
    int min_words, max_words;   /* 3, 150 */
    double max_rouge;           /* 0.7: dropped when >= */
    const char *const *blacklist;
    size_t n_blacklist;
} rein_instruction_filter;

rein_instruction_filter rein_instruction_filter_default(void);
rein_status rein_instruction_check(const rein_instruction_filter *f, const rein_rouge_pool *pool,
                                   const char *text, char *why, size_t why_len, int *keep,
                                   int64_t *similar_entry);

/* ---- stage 1: topic-guided red-teaming ------------------------------------------------------ */

/* Brainstorm: "Here are topics for <description>:" and the type's seed topics as a numbered list. */
rein_status rein_topics_prompt(const rein_rt_type *t, rein_buf *out);
/* A question for (type, topic): the type's description, then "Topic: ...\nQuestion: ..." for the
 * seed questions (rotated by k so that each call sees them in another order), then the new topic
 * and "Question:" to continue. */
rein_status rein_rt_question_prompt(const rein_rt_type *t, const char *topic, size_t k,
                                    rein_buf *out);
/* A topic's normal form for deduplication: lowercase, words joined by one space, no punctuation
 * at the ends. */
void rein_topic_normalize(const char *topic, char *out, size_t n);

/* ---- stage 2: principle-driven answers ---------------------------------------------------- */

/* The conversation the base model answers in: a system turn with the principles (numbered) and
 * the format, then each exemplar as a user turn and an assistant turn "Thoughts: ...\nAnswer: ...",
 * then (when user != NULL) the prompt as the last user turn. The caller frees msgs[i].content for
 * i < *n via rein_align_msgs_free. */
rein_status rein_principle_msgs(const rein_align_inputs *in, const char *user, rein_chat_msg **msgs,
                                size_t *n);
void rein_align_msgs_free(rein_chat_msg *msgs, size_t n);
/* The text the assistant's turn is made to start with, so the model writes its thoughts first. */
#define REIN_THOUGHTS_START "Thoughts:"

typedef struct rein_parsed_answer {
    char *thoughts, *answer; /* owned; NULL when absent */
} rein_parsed_answer;

/* Split the generated text (what follows REIN_THOUGHTS_START) at the first "Answer:". */
rein_status rein_answer_parse(const char *generated, rein_parsed_answer *out);
void rein_parsed_answer_free(rein_parsed_answer *a);

/* Why an answer is dropped ("no answer", "empty answer", "truncated", "leaks exemplar text: ...",
 * "leaks the prompt format", "repetitive"), or keep = 1. `how` is the REIN_GEN_* ending. */
rein_status rein_answer_check(const rein_align_inputs *in, const char *answer, int how, char *why,
                              size_t why_len, int *keep);

/* ---- the pipeline ------------------------------------------------------------------------- */

typedef struct rein_align_opts {
    const char *model_path;   /* the base model */
    const char *out_dir;      /* the run folder */
    int n_prompts;            /* stage 1's target: half Self-Instruct, half red-teaming */
    int first_stage, last_stage; /* 1..4 */
    int resume;
    uint64_t seed;
    int n_parallel;           /* sequences decoded together */
    int keep_all;             /* record verdicts but keep every non-empty item (toy models) */
    /* stage 1 */
    int si_examples_human, si_examples_machine; /* 6 and 2, as Self-Instruct */
    int si_max_tokens;
    int rt_topics_per_type, rt_questions_per_topic;
    float gen_temperature;
    /* stage 2 */
    int answer_max_tokens;
    float answer_temperature;
    /* stages 3 and 4: training */
    int lora_rank;
    float lr;
    int epochs;
    int batch_tokens;
    int max_len;
    /* stage 4 */
    int clone_max_tokens;
    /* evaluation and report */
    int eval;                 /* evaluate base and aligned model on the held-out sets */
    const char *eval_harmful, *eval_benign, *refusals;
    int eval_max_tokens;
    int plain;
} rein_align_opts;

rein_align_opts rein_align_default_opts(void);

/* Run stages first_stage..last_stage (each skipped when the database says it is done), then the
 * evaluation and the report when last_stage is 4. Prints progress and a summary to stderr. */
rein_status rein_align_run(const rein_align_opts *o, const rein_align_inputs *in);

/* Parts of the pipeline, for the subcommands (each opens the run database itself). */
rein_status rein_align_stage_prompts(const rein_align_opts *o, const rein_align_inputs *in,
                                     int selfinstruct_only);
rein_status rein_align_stage_answer(const rein_align_opts *o, const rein_align_inputs *in);
rein_status rein_align_stage_engrave(const rein_align_opts *o, const rein_align_inputs *in);
rein_status rein_align_stage_clone(const rein_align_opts *o, const rein_align_inputs *in);
rein_status rein_align_evaluate_and_report(const rein_align_opts *o, const rein_align_inputs *in);
/* Write the run's data as JSONL in TRL's forms into out_dir/export/: prompts.jsonl
 * ({"prompt", "kind", "source"}), principle_answers.jsonl ({"prompt": [user], "completion":
 * [assistant "Thoughts: ...\nAnswer: ..."]}), engrave.jsonl and clone.jsonl ({"messages": [user,
 * assistant]}: what stages 3 and 4 train on). */
rein_status rein_align_export(const char *out_dir);

/* ---- internal: shared by the stage files ---------------------------------------------------- */

/* A prompt and its answer, for training. */
typedef struct rein_align_pair {
    char *prompt, *answer;
} rein_align_pair;

/* LoRA SFT of the base model on prompt -> answer turns (the template's default system prompt),
 * in the run folder's subfolder `name` (checkpoints there; resumed when one exists), the adapter
 * saved to out_dir/name/adapter. */
rein_status rein_align_train_pairs(const rein_align_opts *o, const rein_align_pair *pairs, size_t n,
                                   const char *name);
/* Stage `name` (3 "engrave", 4 "clone"): train on the kept answers of `answers_stage`; skipped
 * when the database says it is done and its adapter exists. */
rein_status rein_align_train_stage(const rein_align_opts *o, const char *answers_stage,
                                   const char *name);
/* Load the base model, with the adapter in adapter_dir merged when not NULL. */
rein_status rein_align_load_model(const char *model_path, const char *adapter_dir, rein_model **out);
/* Generate and record answers for every pending prompt of `stage`: "answer" in the
 * principle-driven frame (its shared prefix run once), "clone" with the verbose system prompt.
 * Each answer is committed as it ends. */
rein_status rein_align_answer_pending(rein_rundb *db, rein_model *m, const rein_align_opts *o,
                                      const rein_align_inputs *in, const char *stage);
/* Open the run database of o->out_dir: a new run records its settings, a resumed one must match
 * them. */
rein_status rein_align_open_run(const rein_align_opts *o, rein_rundb **out);
/* Whether stage `name` is done; prints a line when it is skipped for that reason. */
rein_status rein_align_skip_done(rein_rundb *db, const char *name, int *skip);
/* The reason class of a filter's message: its text before the first ':' ("too short: 2 words"). */
void rein_align_reason_class(const char *why, char *out, size_t n);
/* A seed for item `i` of a stage, from the run's seed. */
uint64_t rein_align_item_seed(uint64_t seed, const char *stage, uint64_t i);
/* A copy of s[0..n) with white space trimmed at both ends (NULL when out of memory). */
char *rein_align_trimmed_copy(const char *s, size_t n);
/* Write b to path atomically. */
rein_status rein_align_write_file(const char *path, const rein_buf *b);
/* Exit the process with SIGKILL after `count` items when the environment variable `var` says so
 * (a test hook for resuming after a crash; unset in normal use). */
void rein_align_test_kill(const char *var, int64_t count);

#endif
