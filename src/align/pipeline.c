/* pipeline.c - the SELF-ALIGN pipeline over a run folder: the driver that runs the stages in
 * order and skips what the run database says is done, stage 2 (principle-driven answers) and the
 * export to TRL's JSONL forms. Stage 1 lives in prompt_stage.c, stages 3 and 4 in engrave.c and
 * clone.c, the evaluation and report in report.c.
 *
 * Resuming: every stage reads its state back from the database. Stage 2 commits each answer as it
 * ends and, on resume, answers only the prompts without one; an answer depends only on its prompt
 * and its own seed.
 */
#include "align/align.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

rein_align_opts rein_align_default_opts(void) {
    rein_align_opts o;
    memset(&o, 0, sizeof o);
    o.n_prompts = 200;
    o.first_stage = 1;
    o.last_stage = 4;
    o.seed = 42;
    o.n_parallel = 16;
    o.si_examples_human = 6;
    o.si_examples_machine = 2;
    o.si_max_tokens = 160;
    o.rt_questions_per_topic = 2;
    o.gen_temperature = 0.8f;
    o.answer_max_tokens = 192;
    o.answer_temperature = 0.7f;
    o.lora_rank = 16;
    o.lr = 2e-4f;
    o.epochs = 3;
    o.batch_tokens = 2048;
    o.max_len = 1024;
    o.clone_max_tokens = 320;
    o.eval = 1;
    o.eval_max_tokens = 64;
    return o;
}

/* ---- the driver's bookkeeping ---------------------------------------------------------- */

/* Open the run database; a new run records its settings, a resumed one must match them. */
rein_status rein_align_open_run(const rein_align_opts *o, rein_rundb **out) {
    rein_rundb *db;
    REIN_TRY(rein_rundb_open(o->out_dir, &db));
    char settings[512];
    snprintf(settings, sizeof settings, "prompts=%d seed=%llu keep_all=%d", o->n_prompts,
             (unsigned long long)o->seed, o->keep_all);
    rein_buf have = {0};
    int found = 0;
    rein_status st = rein_rundb_meta_get(db, "settings", &have, &found);
    if (!st && !found) {
        st = rein_rundb_meta_set(db, "settings", settings);
        if (!st) st = rein_rundb_meta_set(db, "model", o->model_path);
    } else if (!st && strcmp(have.data, settings)) {
        st = rein_error(REIN_ERR_INVALID, "%s: the run was started with settings '%s'; now '%s' "
                        "(use the same options to resume, or another --out)", rein_rundb_path(db),
                        have.data, settings);
    }
    rein_buf_free(&have);
    if (st) {
        rein_rundb_close(db);
        return st;
    }
    *out = db;
    return REIN_OK;
}

/* Whether stage `name` is done; prints a line when it is skipped for that reason. */
rein_status rein_align_skip_done(rein_rundb *db, const char *name, int *skip) {
    REIN_TRY(rein_rundb_stage_done(db, name, skip));
    if (*skip) fprintf(stderr, "rein align: stage %s is done (see run.db); skipping it\n", name);
    return REIN_OK;
}

/* ---- stage 2: principle-driven answers ------------------------------------------------------ */

typedef struct pending {
    int64_t *id;
    char **text;
    size_t n, cap;
} pending;

static rein_status pending_add(void *ud, const rein_prompt_row *r) {
    pending *p = ud;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 128;
        int64_t *id = rein_realloc(p->id, nc * sizeof(int64_t));
        if (!id) return REIN_ERR_NOMEM;
        p->id = id;
        char **t = rein_realloc(p->text, nc * sizeof(char *));
        if (!t) return REIN_ERR_NOMEM;
        p->text = t;
        p->cap = nc;
    }
    p->id[p->n] = r->id;
    if (!(p->text[p->n] = rein_strdup(r->text))) return REIN_ERR_NOMEM;
    p->n++;
    return REIN_OK;
}

static void pending_free(pending *p) {
    for (size_t i = 0; i < p->n; i++) rein_free(p->text[i]);
    rein_free(p->id);
    rein_free(p->text);
    memset(p, 0, sizeof *p);
}

typedef struct answer_ctx {
    rein_rundb *db;
    const rein_align_opts *o;
    const rein_align_inputs *in;
    const pending *pend;
    const char *stage; /* "answer" or "clone" */
    int parse_thoughts;
    int64_t n_done, n_kept;
} answer_ctx;

static const char *ending_name(int how) {
    switch (how) {
    case REIN_GEN_FINISHED: return "end";
    case REIN_GEN_MAX_TOKENS: return "max_tokens";
    case REIN_GEN_CONTEXT: return "context";
    default: return "prompt_too_long";
    }
}

static rein_status on_answer(void *ud, size_t i, const rein_batchgen_out *out) {
    answer_ctx *c = ud;
    rein_parsed_answer pa = {0};
    if (c->parse_thoughts) REIN_TRY(rein_answer_parse(out->text, &pa));
    const char *answer = c->parse_thoughts ? pa.answer : out->text;
    char why[256] = "", cls[64] = "";
    int keep = 0;
    rein_status st = rein_answer_check(c->in, answer, out->how, why, sizeof why, &keep);
    if (!st && !keep && c->o->keep_all) {
        /* toy models: keep anything with text, the verdict as detail */
        if (!answer || !answer[0]) answer = out->text;
        size_t k = 0;
        while (answer[k] && isspace((unsigned char)answer[k])) k++;
        keep = answer[k] != 0;
    }
    if (why[0]) rein_align_reason_class(why, cls, sizeof cls);
    rein_answer_row r = {0};
    r.prompt = c->pend->id[i];
    r.stage = c->stage;
    r.raw = out->text;
    r.thoughts = c->parse_thoughts ? pa.thoughts : NULL;
    r.answer = answer;
    r.n_tokens = out->n_tokens;
    r.ending = ending_name(out->how);
    r.kept = keep;
    r.reason = keep ? NULL : cls;
    r.detail = why[0] ? why : NULL;
    if (!st) st = rein_rundb_add_answer(c->db, &r);
    rein_parsed_answer_free(&pa);
    c->n_done++;
    c->n_kept += keep;
    if (!st) rein_align_test_kill("REIN_TEST_ALIGN_KILL_AFTER", c->n_done);
    return st;
}

/* The longest common prefix of two token arrays. */
static size_t lcp(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

rein_status rein_align_answer_pending(rein_rundb *db, rein_model *m, const rein_align_opts *o,
                                      const rein_align_inputs *in, const char *stage) {
    int principle = !strcmp(stage, "answer");
    pending pend = {0};
    rein_status st = rein_rundb_pending(db, stage, pending_add, &pend);
    int64_t n_inst = 0, n_rt = 0, already = 0;
    if (!st) st = rein_rundb_count_prompts(db, "instruction", 1, &n_inst);
    if (!st) st = rein_rundb_count_prompts(db, "redteam", 1, &n_rt);
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    const rein_chat_template *tmpl = rein_model_chat_template(m);
    rein_tokens prefix = {0};
    rein_tokens *full = rein_calloc(pend.n ? pend.n : 1, sizeof(rein_tokens));
    const int32_t **ptr = rein_calloc(pend.n ? pend.n : 1, sizeof(int32_t *));
    size_t *len = rein_calloc(pend.n ? pend.n : 1, sizeof(size_t));
    uint64_t *seeds = rein_calloc(pend.n ? pend.n : 1, sizeof(uint64_t));
    if (!st && (!full || !ptr || !len || !seeds)) st = REIN_ERR_NOMEM;
    rein_chat_msg *msgs = NULL;
    size_t n_msgs = 0;
    if (!st && principle) {
        st = rein_principle_msgs(in, NULL, &msgs, &n_msgs);
        if (!st) st = rein_chat_tokens(tok, tmpl, msgs, n_msgs, 0, NULL, &prefix);
        rein_align_msgs_free(msgs, n_msgs);
        msgs = NULL;
    }
    size_t shared = prefix.n;
    for (size_t i = 0; i < pend.n && !st; i++) {
        if (principle) {
            st = rein_principle_msgs(in, pend.text[i], &msgs, &n_msgs);
            if (!st) st = rein_chat_tokens(tok, tmpl, msgs, n_msgs, 1, REIN_THOUGHTS_START, &full[i]);
            rein_align_msgs_free(msgs, n_msgs);
            msgs = NULL;
        } else {
            rein_chat_msg mm[2] = {{"system", in->verbose_system}, {"user", pend.text[i]}};
            st = rein_chat_tokens(tok, tmpl, mm, 2, 1, NULL, &full[i]);
        }
        if (!st && principle) shared = REIN_MIN(shared, lcp(prefix.ids, prefix.n, full[i].ids, full[i].n));
        seeds[i] = rein_align_item_seed(o->seed, stage, (uint64_t)pend.id[i]);
    }
    for (size_t i = 0; i < pend.n && !st; i++) {
        ptr[i] = full[i].ids + (principle ? shared : 0);
        len[i] = full[i].n - (principle ? shared : 0);
    }
    if (principle) already = n_inst + n_rt - (int64_t)pend.n;
    if (!st && principle && pend.n)
        fprintf(stderr, "rein align: the principle-driven prompt is %zu tokens (%zu principles, %zu "
                "exemplars), run once and shared by %zu prompts\n", shared, in->n_principles,
                in->n_exemplars, pend.n);
    if (!st && pend.n) {
        rein_batchgen_params bp = rein_batchgen_default_params();
        bp.sampler.temperature = o->answer_temperature;
        bp.sampler.top_p = 0.9f;
        bp.sampler.repeat_penalty = 1.1f;
        bp.max_tokens = principle ? o->answer_max_tokens : o->clone_max_tokens;
        bp.n_parallel = o->n_parallel;
        const char *eot = rein_chat_template_end_of_turn(tmpl);
        bp.stop = &eot;
        bp.n_stop = eot ? 1 : 0;
        bp.prefix = principle ? prefix.ids : NULL;
        bp.n_prefix = principle ? shared : 0;
        rein_progress prog;
        rein_progress_init(&prog, principle ? "2 answer" : "4 clone answers",
                           (int64_t)pend.n + (principle ? already : 0), o->plain);
        prog.plain_every_s = 10;
        bp.progress = &prog;
        bp.progress_done = principle ? already : 0;
        answer_ctx c = {db, o, in, &pend, stage, principle, 0, 0};
        st = rein_batchgen_run(m, &bp, pend.n, ptr, len, seeds, on_answer, &c);
    }
    for (size_t i = 0; full && i < pend.n; i++) rein_tokens_free(&full[i]);
    rein_free(full);
    rein_free(ptr);
    rein_free(len);
    rein_free(seeds);
    rein_tokens_free(&prefix);
    pending_free(&pend);
    return st;
}

rein_status rein_align_stage_answer(const rein_align_opts *o, const rein_align_inputs *in) {
    rein_rundb *db;
    REIN_TRY(rein_align_open_run(o, &db));
    int skip = 0, done1 = 0, done_si = 0;
    rein_status st = rein_align_skip_done(db, "answer", &skip);
    if (!st && !skip) st = rein_rundb_stage_done(db, "prompts", &done1);
    if (!st && !skip) st = rein_rundb_stage_done(db, "selfinstruct", &done_si);
    if (!st && !skip && !done1 && !done_si)
        st = rein_error(REIN_ERR_INVALID, "%s: stage 1 (prompts) is not done: run 'rein align "
                        "--stages 1' first", rein_rundb_path(db));
    if (st || skip) {
        rein_rundb_close(db);
        return st;
    }
    double t0 = rein_time_now();
    rein_model *m = NULL;
    st = rein_align_load_model(o->model_path, NULL, &m);
    if (!st) st = rein_rundb_stage_set(db, "answer", "running", 0, NULL);
    if (!st) st = rein_align_answer_pending(db, m, o, in, "answer");
    rein_model_free(m);
    double secs = rein_time_now() - t0;
    if (!st) {
        char info[64];
        snprintf(info, sizeof info, "principle-driven answers");
        if (!st) st = rein_rundb_stage_set(db, "answer", "done", secs, info);
        fprintf(stderr, "rein align: stage 2 (answer) done in %.0f s\n", secs);
    } else {
        rein_rundb_stage_set(db, "answer", "running", secs, NULL);
    }
    rein_rundb_close(db);
    return st;
}

/* ---- the driver ------------------------------------------------------------------------- */

rein_status rein_align_run(const rein_align_opts *o, const rein_align_inputs *in) {
    if (o->first_stage < 1 || o->last_stage > 4 || o->first_stage > o->last_stage)
        return rein_error(REIN_ERR_INVALID, "stages %d-%d: expected a range within 1-4",
                          o->first_stage, o->last_stage);
    double t0 = rein_time_now();
    for (int s = o->first_stage; s <= o->last_stage; s++) {
        switch (s) {
        case 1: REIN_TRY(rein_align_stage_prompts(o, in, 0)); break;
        case 2: REIN_TRY(rein_align_stage_answer(o, in)); break;
        case 3: REIN_TRY(rein_align_stage_engrave(o, in)); break;
        case 4: REIN_TRY(rein_align_stage_clone(o, in)); break;
        }
        REIN_TRY(rein_align_export(o->out_dir));
    }
    if (o->last_stage >= 3) REIN_TRY(rein_align_evaluate_and_report(o, in));
    fprintf(stderr, "rein align: stages %d-%d finished in %.0f s; run folder %s\n", o->first_stage,
            o->last_stage, rein_time_now() - t0, o->out_dir);
    return REIN_OK;
}

/* ---- export -------------------------------------------------------------------------------- */

typedef struct export_ctx {
    rein_buf *out;
    int form; /* 0 prompts, 1 principle answers (prompt/completion), 2 messages */
} export_ctx;

static rein_status line_out(rein_buf *out, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return REIN_ERR_NOMEM;
    rein_status st = rein_buf_appendf(out, "%s\n", s);
    cJSON_free(s);
    return st;
}

static cJSON *msg(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content ? content : "");
    return m;
}

static rein_status export_prompt(void *ud, const rein_prompt_row *r) {
    export_ctx *c = ud;
    if (!strcmp(r->kind, "topic")) return REIN_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", r->text);
    cJSON_AddStringToObject(o, "kind", r->kind);
    if (r->source) cJSON_AddStringToObject(o, "source", r->source);
    if (r->topic) cJSON_AddStringToObject(o, "topic", r->topic);
    return line_out(c->out, o);
}

static rein_status export_answer(void *ud, const rein_answer_row *r) {
    export_ctx *c = ud;
    cJSON *o = cJSON_CreateObject();
    if (c->form == 1) {
        cJSON *p = cJSON_AddArrayToObject(o, "prompt");
        cJSON_AddItemToArray(p, msg("user", r->prompt_text));
        cJSON *cm = cJSON_AddArrayToObject(o, "completion");
        rein_buf b = {0};
        rein_status st = rein_buf_appendf(&b, REIN_THOUGHTS_START " %s\nAnswer: %s",
                                          r->thoughts ? r->thoughts : "", r->answer ? r->answer : "");
        if (st) {
            cJSON_Delete(o);
            return st;
        }
        cJSON_AddItemToArray(cm, msg("assistant", b.data));
        rein_buf_free(&b);
    } else {
        cJSON *ms = cJSON_AddArrayToObject(o, "messages");
        cJSON_AddItemToArray(ms, msg("user", r->prompt_text));
        cJSON_AddItemToArray(ms, msg("assistant", r->answer));
    }
    return line_out(c->out, o);
}

rein_status rein_align_write_file(const char *path, const rein_buf *b) {
    rein_atomic_file af;
    REIN_TRY(rein_atomic_open(&af, path));
    if (b->len) fwrite(b->data, 1, b->len, af.fp);
    return rein_atomic_commit(&af);
}

rein_status rein_align_export(const char *out_dir) {
    rein_rundb *db;
    REIN_TRY(rein_rundb_open(out_dir, &db));
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/export", out_dir);
    mkdir(dir, 0755);
    rein_buf b = {0};
    export_ctx c = {&b, 0};
    rein_status st = rein_rundb_prompts(db, NULL, 1, export_prompt, &c);
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    if (!st) st = rein_align_write_file(path, &b);
    rein_buf_clear(&b);
    c.form = 1;
    if (!st) st = rein_rundb_answers(db, "answer", 1, export_answer, &c);
    snprintf(path, sizeof path, "%s/principle_answers.jsonl", dir);
    if (!st) st = rein_align_write_file(path, &b);
    rein_buf_clear(&b);
    c.form = 2;
    if (!st) st = rein_rundb_answers(db, "answer", 1, export_answer, &c);
    snprintf(path, sizeof path, "%s/engrave.jsonl", dir);
    if (!st) st = rein_align_write_file(path, &b);
    rein_buf_clear(&b);
    if (!st) st = rein_rundb_answers(db, "clone", 1, export_answer, &c);
    snprintf(path, sizeof path, "%s/clone.jsonl", dir);
    if (!st) st = rein_align_write_file(path, &b);
    rein_buf_free(&b);
    rein_rundb_close(db);
    return st;
}
