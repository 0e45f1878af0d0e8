/* rundb.h - the run folder's SQLite database (DIR/run.db) of the alignment pipeline.
 *
 * Every generated prompt (Self-Instruct instructions, red-teaming topics and questions) and every
 * answer (principle-driven, verbose) is one row with its stage, its verdict and, when dropped, the
 * filter that dropped it (`reason`, a short class such as "similar" that counts group by) and what
 * it saw (`detail`). Rows are committed as they are made, so a crash loses only the work in flight
 * and a resumed run carries on item by item; `stages` records which stages are done and how long
 * they took; `meta` the run's settings and counters.
 *
 *   meta(key PRIMARY KEY, value)
 *   prompts(id, kind 'instruction'|'topic'|'redteam', source, topic, round, text, kept, reason, detail)
 *   answers(id, prompt -> prompts.id, stage 'answer'|'clone', raw, thoughts, answer, n_tokens,
 *           ending, kept, reason, detail; UNIQUE(prompt, stage))
 *   stages(name PRIMARY KEY, status 'running'|'done', seconds, info)
 *
 * Inspect a run with `sqlite3 DIR/run.db 'select reason, count(*) from prompts group by 1'`.
 */
#ifndef REIN_ALIGN_RUNDB_H
#define REIN_ALIGN_RUNDB_H

#include "rein.h"

typedef struct rein_rundb rein_rundb;

/* Open (creating the folder, the file and the tables as needed) dir/run.db. */
rein_status rein_rundb_open(const char *dir, rein_rundb **out);
void rein_rundb_close(rein_rundb *db);
const char *rein_rundb_path(const rein_rundb *db);

rein_status rein_rundb_begin(rein_rundb *db);
rein_status rein_rundb_commit(rein_rundb *db);

/* meta: *found = 0 (and out untouched) when absent. */
rein_status rein_rundb_meta_get(rein_rundb *db, const char *key, rein_buf *out, int *found);
rein_status rein_rundb_meta_set(rein_rundb *db, const char *key, const char *value);
rein_status rein_rundb_meta_get_int(rein_rundb *db, const char *key, int64_t dflt, int64_t *out);
rein_status rein_rundb_meta_set_int(rein_rundb *db, const char *key, int64_t v);

typedef struct rein_prompt_row {
    int64_t id;
    const char *kind, *source, *topic, *text;
    int64_t round;
    int kept;
    const char *reason, *detail; /* NULL when kept */
} rein_prompt_row;

/* Insert a prompt row; *id (when not NULL) gets its id. */
rein_status rein_rundb_add_prompt(rein_rundb *db, const rein_prompt_row *r, int64_t *id);
/* Rows of `kind` (NULL: all), only the kept ones when kept_only, in id order. */
typedef rein_status (*rein_prompt_fn)(void *ud, const rein_prompt_row *r);
rein_status rein_rundb_prompts(rein_rundb *db, const char *kind, int kept_only, rein_prompt_fn fn,
                               void *ud);
rein_status rein_rundb_count_prompts(rein_rundb *db, const char *kind, int kept_only,
                                     int64_t *n);

typedef struct rein_answer_row {
    int64_t id, prompt;
    const char *prompt_text; /* when read back */
    const char *stage, *raw, *thoughts, *answer, *ending;
    int n_tokens, kept;
    const char *reason, *detail;
} rein_answer_row;

rein_status rein_rundb_add_answer(rein_rundb *db, const rein_answer_row *r);
/* Answers of `stage`, in prompt order, with their prompt's text. */
typedef rein_status (*rein_answer_fn)(void *ud, const rein_answer_row *r);
rein_status rein_rundb_answers(rein_rundb *db, const char *stage, int kept_only, rein_answer_fn fn,
                               void *ud);
/* Kept prompts (kinds instruction and redteam) that have no answer of `stage` yet, in id order,
 * and for stage "clone" only those whose "answer" was kept. */
rein_status rein_rundb_pending(rein_rundb *db, const char *stage, rein_prompt_fn fn, void *ud);

rein_status rein_rundb_stage_done(rein_rundb *db, const char *name, int *done);
rein_status rein_rundb_stage_set(rein_rundb *db, const char *name, const char *status,
                                 double seconds, const char *info);

/* Counts for the report, as Markdown: per table and kind, kept and dropped, and the dropped ones
 * by reason; the stages with their times. */
rein_status rein_rundb_summary(rein_rundb *db, rein_buf *md);

#endif
