/* prompt_stage.c - stage 1 of the SELF-ALIGN pipeline (pipeline.c drives it): Self-Instruct
 * (instructions from the seed tasks and the machine-written ones kept so far, each filtered and
 * compared by ROUGE-L against the pool) and topic-guided red-teaming (topics brainstormed per
 * red-teaming type, then questions per topic), recorded in the run database.
 *
 * Resuming: stage 1 works in rounds (one batch of generations); a round's rows and its counter
 * are committed in one transaction, and each round's randomness depends only on the run's seed and
 * the round number, so a resumed stage 1 redoes at most the round in flight and ends where an
 * unbroken one would.
 */
#include "align/align.h"

#include <ctype.h>
#include <string.h>

/* ---- generation helpers ----------------------------------------------------------------- */

/* Texts tokenised as plain text (no template), for the completion-style prompts of stage 1. */
typedef struct prompt_batch {
    rein_tokens *toks;
    const int32_t **ptr;
    size_t *len;
    uint64_t *seeds;
    rein_buf *out;  /* (n) generated text */
    int *how;       /* (n) REIN_GEN_* */
    size_t n;
} prompt_batch;

static rein_status batch_new(prompt_batch *b, size_t n) {
    memset(b, 0, sizeof *b);
    b->n = n;
    b->toks = rein_calloc(n ? n : 1, sizeof(rein_tokens));
    b->ptr = rein_calloc(n ? n : 1, sizeof(int32_t *));
    b->len = rein_calloc(n ? n : 1, sizeof(size_t));
    b->seeds = rein_calloc(n ? n : 1, sizeof(uint64_t));
    b->out = rein_calloc(n ? n : 1, sizeof(rein_buf));
    b->how = rein_calloc(n ? n : 1, sizeof(int));
    return (b->toks && b->ptr && b->len && b->seeds && b->out && b->how) ? REIN_OK : REIN_ERR_NOMEM;
}

static void batch_free(prompt_batch *b) {
    for (size_t i = 0; i < b->n; i++) {
        if (b->toks) rein_tokens_free(&b->toks[i]);
        if (b->out) rein_buf_free(&b->out[i]);
    }
    rein_free(b->toks);
    rein_free(b->ptr);
    rein_free(b->len);
    rein_free(b->seeds);
    rein_free(b->out);
    rein_free(b->how);
    memset(b, 0, sizeof *b);
}

static rein_status batch_set_text(prompt_batch *b, rein_model *m, size_t i, const char *text) {
    REIN_TRY(rein_tokenize(rein_model_tokenizer(m), text, strlen(text), REIN_TOKENIZE_ADD_BOS,
                           &b->toks[i]));
    b->ptr[i] = b->toks[i].ids;
    b->len[i] = b->toks[i].n;
    return REIN_OK;
}

static rein_status batch_collect(void *ud, size_t i, const rein_batchgen_out *o) {
    prompt_batch *b = ud;
    b->how[i] = o->how;
    REIN_TRY(rein_buf_append(&b->out[i], o->text, o->len));
    return rein_buf_append(&b->out[i], "", 0);
}

static rein_status batch_run(prompt_batch *b, rein_model *m, const rein_align_opts *o,
                             int max_tokens, const char *stop, rein_progress *prog, int64_t done) {
    rein_batchgen_params bp = rein_batchgen_default_params();
    bp.sampler.temperature = o->gen_temperature;
    bp.sampler.repeat_penalty = 1.1f;
    bp.max_tokens = max_tokens;
    bp.n_parallel = o->n_parallel;
    bp.stop = &stop;
    bp.n_stop = 1;
    bp.progress = prog;
    bp.progress_done = done;
    return rein_batchgen_run(m, &bp, b->n, b->ptr, b->len, b->seeds, batch_collect, b);
}

/* ---- stage 1: Self-Instruct ----------------------------------------------------------------- */

typedef struct str_list {
    char **s;
    size_t n, cap;
} str_list;

static rein_status list_push(str_list *l, const char *s) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **p = rein_realloc(l->s, nc * sizeof(char *));
        if (!p) return REIN_ERR_NOMEM;
        l->s = p;
        l->cap = nc;
    }
    if (!(l->s[l->n] = rein_strdup(s))) return REIN_ERR_NOMEM;
    l->n++;
    return REIN_OK;
}

static void list_free(str_list *l) {
    for (size_t i = 0; i < l->n; i++) rein_free(l->s[i]);
    rein_free(l->s);
    memset(l, 0, sizeof *l);
}

typedef struct pool_ctx {
    rein_rouge_pool *pool;
    str_list texts;      /* the kept machine instructions */
    int64_t *ids;        /* (pool entries) prompt id of each entry; -1 - k for seed k */
    size_t n_ids, cap_ids;
} pool_ctx;

static rein_status pool_add(pool_ctx *c, const char *text, int64_t id) {
    REIN_TRY(rein_rouge_pool_add(c->pool, text));
    if (c->n_ids == c->cap_ids) {
        size_t nc = c->cap_ids ? c->cap_ids * 2 : 256;
        int64_t *p = rein_realloc(c->ids, nc * sizeof(int64_t));
        if (!p) return REIN_ERR_NOMEM;
        c->ids = p;
        c->cap_ids = nc;
    }
    c->ids[c->n_ids++] = id;
    return REIN_OK;
}

static rein_status pool_from_db(void *ud, const rein_prompt_row *r) {
    pool_ctx *c = ud;
    REIN_TRY(pool_add(c, r->text, r->id));
    return list_push(&c->texts, r->text);
}

/* A detail naming the entry an instruction is too close to. */
static void similar_detail(const pool_ctx *c, int64_t entry, const char *why, char *out, size_t n) {
    int64_t id = c->ids[entry];
    if (id < 0) snprintf(out, n, "%s (seed %lld)", why, (long long)(-1 - id));
    else snprintf(out, n, "%s (prompt #%lld)", why, (long long)id);
}

void rein_align_reason_class(const char *why, char *out, size_t n) {
    size_t k = strcspn(why, ":");
    snprintf(out, n, "%.*s", (int)k, why);
}

/* Pick k distinct indices of [0, n) with rng (partial Fisher-Yates). */
static void sample_k(rein_rng *rng, size_t n, size_t k, size_t *out, size_t *scratch) {
    for (size_t i = 0; i < n; i++) scratch[i] = i;
    for (size_t i = 0; i < k && i < n; i++) {
        size_t j = i + (size_t)(rein_rng_u64(rng) % (n - i));
        size_t t = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = t;
        out[i] = scratch[i];
    }
}

/* Record one candidate of a generated list: filter, insert, grow the pool when kept. Past
 * `target` kept ones (< 0: no target) candidates are recorded as dropped. */
static rein_status record_candidate(rein_rundb *db, pool_ctx *pc, const rein_align_opts *o,
                                    const rein_instruction_filter *f, const char *kind,
                                    const char *source, const char *topic, int64_t round,
                                    const char *text, int cut, int64_t target,
                                    int64_t *kept_count) {
    char why[256] = "", cls[64] = "", detail[320] = "";
    int keep = 0;
    int64_t entry = -1;
    if (cut) snprintf(why, sizeof why, "truncated: the generation ended inside it");
    else REIN_TRY(rein_instruction_check(f, pc->pool, text, why, sizeof why, &keep, &entry));
    if (!keep && o->keep_all && text[0]) keep = 1; /* toy models: verdicts kept as detail */
    if (keep && target >= 0 && *kept_count >= target) {
        keep = 0; /* the stage has what it asked for: the rest of the round is recorded, not used */
        snprintf(why, sizeof why, "target reached: %lld kept", (long long)target);
        entry = -1;
    }
    if (why[0]) {
        rein_align_reason_class(why, cls, sizeof cls);
        if (entry >= 0) similar_detail(pc, entry, why, detail, sizeof detail);
        else snprintf(detail, sizeof detail, "%s", why);
    }
    rein_prompt_row r = {0};
    r.kind = kind;
    r.source = source;
    r.topic = topic;
    r.round = round;
    r.text = text;
    r.kept = keep;
    r.reason = keep ? NULL : cls;
    r.detail = detail[0] ? detail : NULL;
    int64_t id;
    REIN_TRY(rein_rundb_add_prompt(db, &r, &id));
    if (keep) {
        REIN_TRY(pool_add(pc, text, id));
        REIN_TRY(list_push(&pc->texts, text));
        (*kept_count)++;
    }
    return REIN_OK;
}

static rein_status selfinstruct(rein_rundb *db, rein_model *m, const rein_align_opts *o,
                                const rein_align_inputs *in, int64_t target) {
    pool_ctx pc = {0};
    rein_status st = rein_rouge_pool_new(&pc.pool);
    for (size_t i = 0; i < in->n_seed_tasks && !st; i++)
        st = pool_add(&pc, in->seed_tasks[i], -1 - (int64_t)i);
    if (!st) st = rein_rundb_prompts(db, "instruction", 1, pool_from_db, &pc);
    int64_t kept = (int64_t)pc.texts.n, round = 0;
    if (!st) st = rein_rundb_meta_get_int(db, "selfinstruct.rounds", 0, &round);
    const int64_t calls_per_round = o->n_parallel;
    const int64_t max_rounds = 8 + target / 8; /* a model that never writes a usable list stops */
    rein_instruction_filter f = rein_instruction_filter_default();
    size_t n_h = REIN_MIN((size_t)o->si_examples_human, in->n_seed_tasks);
    size_t *scratch = NULL;
    const char **ex = rein_malloc(sizeof(char *) * (n_h + (size_t)o->si_examples_machine + 1));
    if (!st && !ex) st = REIN_ERR_NOMEM;
    rein_progress prog;
    rein_progress_init(&prog, "1 self-instruct", target, o->plain);
    prog.plain_every_s = 10;
    char info[64];
    snprintf(info, sizeof info, "round %lld", (long long)round);
    if (!st && kept < target) rein_progress_update(&prog, kept, info);
    rein_buf text = {0}, items = {0};
    while (!st && kept < target && round < max_rounds) {
        /* a call keeps a few instructions: no more calls than the rest of the target needs */
        prompt_batch b;
        st = batch_new(&b, (size_t)REIN_MIN(calls_per_round, (target - kept + 2) / 3 + 1));
        size_t n_machine_max = pc.texts.n;
        for (size_t j = 0; j < b.n && !st; j++) {
            rein_rng rng;
            rein_rng_seed(&rng, rein_align_item_seed(o->seed, "selfinstruct", (uint64_t)round * 4096 + j));
            size_t cap = REIN_MAX(in->n_seed_tasks, n_machine_max) + 1;
            rein_free(scratch);
            scratch = rein_malloc(sizeof(size_t) * cap);
            size_t *pk = rein_malloc(sizeof(size_t) * cap);
            if (!scratch || !pk) {
                rein_free(pk);
                st = REIN_ERR_NOMEM;
                break;
            }
            size_t k = 0;
            sample_k(&rng, in->n_seed_tasks, n_h, pk, scratch);
            for (size_t i = 0; i < n_h; i++) ex[k++] = in->seed_tasks[pk[i]];
            size_t n_m = REIN_MIN((size_t)o->si_examples_machine, n_machine_max);
            sample_k(&rng, n_machine_max, n_m, pk, scratch);
            for (size_t i = 0; i < n_m; i++) ex[k++] = pc.texts.s[pk[i]];
            rein_free(pk);
            for (size_t i = k; i > 1; i--) { /* shuffle: machine ones not always last */
                size_t r = (size_t)(rein_rng_u64(&rng) % i);
                const char *t = ex[i - 1];
                ex[i - 1] = ex[r];
                ex[r] = t;
            }
            rein_buf_clear(&text);
            st = rein_selfinstruct_prompt(ex, k, &text);
            if (!st) st = batch_set_text(&b, m, j, text.data);
            b.seeds[j] = rein_align_item_seed(o->seed, "selfinstruct-gen", (uint64_t)round * 4096 + j);
        }
        if (!st) st = batch_run(&b, m, o, o->si_max_tokens, "\n\n", NULL, 0);
        if (!st) st = rein_rundb_begin(db);
        for (size_t j = 0; j < b.n && !st; j++) {
            size_t n_items = 0, n_cut = 0;
            size_t first = n_h + REIN_MIN((size_t)o->si_examples_machine, n_machine_max) + 1;
            rein_buf_clear(&items);
            st = rein_numbered_list_parse(b.out[j].data, first, b.how[j] != REIN_GEN_FINISHED,
                                          &items, &n_items, &n_cut);
            const char *p = items.data;
            for (size_t i = 0; i < n_items && !st; i++) {
                st = record_candidate(db, &pc, o, &f, "instruction", "self-instruct", NULL, round,
                                      p, n_cut && i + 1 == n_items, target, &kept);
                p += strlen(p) + 1;
            }
        }
        round++;
        if (!st) st = rein_rundb_meta_set_int(db, "selfinstruct.rounds", round);
        if (!st) st = rein_rundb_commit(db);
        batch_free(&b);
        snprintf(info, sizeof info, "round %lld, pool %zu", (long long)round,
                 rein_rouge_pool_size(pc.pool));
        if (!st) rein_progress_update(&prog, REIN_MIN(kept, target), info);
    }
    if (!st && kept < target)
        fprintf(stderr, "rein align: self-instruct kept %lld of %lld after %lld rounds (the round "
                "limit); going on with what there is\n", (long long)kept, (long long)target,
                (long long)round);
    rein_buf_free(&text);
    rein_buf_free(&items);
    rein_free(scratch);
    rein_free(ex);
    list_free(&pc.texts);
    rein_free(pc.ids);
    rein_rouge_pool_free(pc.pool);
    return st;
}

/* ---- stage 1: topic-guided red-teaming ------------------------------------------------------ */

typedef struct topic_ctx {
    str_list topic, type; /* kept topics and their types, in id order */
} topic_ctx;

static rein_status topics_from_db(void *ud, const rein_prompt_row *r) {
    topic_ctx *c = ud;
    REIN_TRY(list_push(&c->topic, r->text));
    return list_push(&c->type, r->source);
}

static rein_status brainstorm_topics(rein_rundb *db, rein_model *m, const rein_align_opts *o,
                                     const rein_align_inputs *in, int per_type) {
    /* two calls per type, as many as the type needs */
    const size_t calls = 2;
    prompt_batch b;
    REIN_TRY(batch_new(&b, in->n_types * calls));
    rein_buf text = {0}, items = {0};
    rein_status st = REIN_OK;
    for (size_t t = 0; t < in->n_types && !st; t++)
        for (size_t c = 0; c < calls && !st; c++) {
            size_t j = t * calls + c;
            rein_buf_clear(&text);
            st = rein_topics_prompt(&in->types[t], &text);
            if (!st) st = batch_set_text(&b, m, j, text.data);
            b.seeds[j] = rein_align_item_seed(o->seed, "topics", j);
        }
    rein_progress prog;
    rein_progress_init(&prog, "1 red-team topics", (int64_t)b.n, o->plain);
    prog.plain_every_s = 10;
    if (!st) st = batch_run(&b, m, o, 96, "\n\n", &prog, 0);
    if (!st) st = rein_rundb_begin(db);
    char norm[256], seen_norm[256];
    for (size_t t = 0; t < in->n_types && !st; t++) {
        str_list kept = {0};
        const rein_rt_type *ty = &in->types[t];
        for (size_t c = 0; c < calls && !st; c++) {
            size_t j = t * calls + c, n_items = 0, n_cut = 0;
            rein_buf_clear(&items);
            st = rein_numbered_list_parse(b.out[j].data, ty->n_topics + 1,
                                          b.how[j] != REIN_GEN_FINISHED, &items, &n_items, &n_cut);
            const char *p = items.data;
            for (size_t i = 0; i < n_items && !st; i++, p += strlen(p) + 1) {
                const char *why = NULL;
                rein_topic_normalize(p, norm, sizeof norm);
                size_t words = 0;
                for (const char *q = norm; *q; q++) words += *q == ' ';
                words += norm[0] != 0;
                if (n_cut && i + 1 == n_items) why = "truncated";
                else if (!norm[0]) why = "empty";
                else if (words > 8) why = "too long";
                else if (!isalpha((unsigned char)norm[0])) why = "does not start with a letter";
                for (size_t k = 0; k < ty->n_topics && !why; k++) {
                    rein_topic_normalize(ty->topics[k], seen_norm, sizeof seen_norm);
                    if (!strcmp(norm, seen_norm)) why = "duplicate";
                }
                for (size_t k = 0; k < kept.n && !why; k++) {
                    rein_topic_normalize(kept.s[k], seen_norm, sizeof seen_norm);
                    if (!strcmp(norm, seen_norm)) why = "duplicate";
                }
                if (!why && (int)kept.n >= per_type) why = "enough topics";
                if (why && o->keep_all && norm[0] && strcmp(why, "enough topics")) why = NULL;
                rein_prompt_row r = {0};
                r.kind = "topic";
                r.source = ty->name;
                r.round = (int64_t)c;
                r.text = p;
                r.kept = !why;
                r.reason = why;
                st = rein_rundb_add_prompt(db, &r, NULL);
                if (!st && !why) st = list_push(&kept, p);
            }
        }
        list_free(&kept);
    }
    if (!st) st = rein_rundb_meta_set_int(db, "redteam.topics_done", 1);
    if (!st) st = rein_rundb_commit(db);
    rein_buf_free(&text);
    rein_buf_free(&items);
    batch_free(&b);
    return st;
}

/* Put the topics in round-robin order over their types (each type's first topic, then each
 * type's second, ...), so that a target smaller than all (type, topic) pairs still covers every
 * type. Stable: the order depends only on the database's. */
static rein_status interleave_topics(topic_ctx *tc) {
    size_t n = tc->topic.n;
    if (n < 2) return REIN_OK;
    size_t *rank = rein_malloc(n * sizeof(size_t)), *order = rein_malloc(n * sizeof(size_t));
    char **t2 = rein_malloc(n * sizeof(char *)), **y2 = rein_malloc(n * sizeof(char *));
    rein_status st = (!rank || !order || !t2 || !y2) ? REIN_ERR_NOMEM : REIN_OK;
    for (size_t i = 0; i < n && !st; i++) {
        rank[i] = 0;
        for (size_t j = 0; j < i; j++) rank[i] += !strcmp(tc->type.s[j], tc->type.s[i]);
    }
    size_t k = 0;
    for (size_t r = 0; k < n && !st; r++)
        for (size_t i = 0; i < n; i++)
            if (rank[i] == r) order[k++] = i;
    for (size_t i = 0; i < n && !st; i++) t2[i] = tc->topic.s[order[i]], y2[i] = tc->type.s[order[i]];
    if (!st) {
        memcpy(tc->topic.s, t2, n * sizeof(char *));
        memcpy(tc->type.s, y2, n * sizeof(char *));
    }
    rein_free(rank);
    rein_free(order);
    rein_free(t2);
    rein_free(y2);
    return st;
}

static rein_status redteam_questions(rein_rundb *db, rein_model *m, const rein_align_opts *o,
                                     const rein_align_inputs *in, int64_t target) {
    topic_ctx tc = {0};
    pool_ctx pc = {0};
    rein_status st = rein_rundb_prompts(db, "topic", 1, topics_from_db, &tc);
    if (!st) st = interleave_topics(&tc);
    if (!st) st = rein_rouge_pool_new(&pc.pool);
    int64_t seed_k = 0;
    for (size_t t = 0; t < in->n_types && !st; t++)
        for (size_t q = 0; q < in->types[t].n_questions && !st; q++)
            st = pool_add(&pc, in->types[t].q_text[q], -1 - seed_k++);
    if (!st) st = rein_rundb_prompts(db, "redteam", 1, pool_from_db, &pc);
    const int64_t qpt = o->rt_questions_per_topic;
    const int64_t n_jobs = REIN_MIN((int64_t)tc.topic.n * qpt, target); /* one question a job */
    int64_t done = 0, kept = (int64_t)pc.texts.n;
    if (!st) st = rein_rundb_meta_get_int(db, "redteam.jobs_done", 0, &done);
    rein_instruction_filter f = rein_instruction_filter_default();
    rein_progress prog;
    rein_progress_init(&prog, "1 red-team questions", n_jobs, o->plain);
    prog.plain_every_s = 10;
    rein_buf text = {0};
    while (!st && done < n_jobs) {
        size_t nb = (size_t)REIN_MIN(n_jobs - done, (int64_t)o->n_parallel * 2);
        prompt_batch b;
        st = batch_new(&b, nb);
        const rein_rt_type **types = rein_calloc(nb, sizeof(rein_rt_type *));
        if (!st && !types) st = REIN_ERR_NOMEM;
        for (size_t j = 0; j < nb && !st; j++) {
            int64_t job = done + (int64_t)j;
            size_t ti = (size_t)(job / qpt), k = (size_t)(job % qpt);
            for (size_t t = 0; t < in->n_types; t++)
                if (!strcmp(in->types[t].name, tc.type.s[ti])) types[j] = &in->types[t];
            if (!types[j]) {
                st = rein_error(REIN_ERR_INVALID, "%s: topic #%zu is of type '%s', which the "
                                "red-teaming types given now do not have (use the same --seeds "
                                "file to resume)", rein_rundb_path(db), ti, tc.type.s[ti]);
                break;
            }
            rein_buf_clear(&text);
            st = rein_rt_question_prompt(types[j], tc.topic.s[ti], k, &text);
            if (!st) st = batch_set_text(&b, m, j, text.data);
            b.seeds[j] = rein_align_item_seed(o->seed, "redteam", (uint64_t)job);
        }
        if (!st) st = batch_run(&b, m, o, 64, "\n", &prog, done);
        if (!st) st = rein_rundb_begin(db);
        for (size_t j = 0; j < nb && !st; j++) {
            int64_t job = done + (int64_t)j;
            size_t ti = (size_t)(job / qpt);
            char *q = b.out[j].data;
            while (*q == ' ') q++;
            size_t ql = strlen(q);
            while (ql && isspace((unsigned char)q[ql - 1])) q[--ql] = 0;
            st = record_candidate(db, &pc, o, &f, "redteam", types[j]->name, tc.topic.s[ti], job, q,
                                  b.how[j] != REIN_GEN_FINISHED && ql > 0, -1, &kept);
        }
        done += (int64_t)nb;
        if (!st) st = rein_rundb_meta_set_int(db, "redteam.jobs_done", done);
        if (!st) st = rein_rundb_commit(db);
        rein_free(types);
        batch_free(&b);
    }
    rein_buf_free(&text);
    list_free(&tc.topic);
    list_free(&tc.type);
    list_free(&pc.texts);
    rein_free(pc.ids);
    rein_rouge_pool_free(pc.pool);
    return st;
}

rein_status rein_align_stage_prompts(const rein_align_opts *o, const rein_align_inputs *in,
                                     int selfinstruct_only) {
    rein_rundb *db;
    REIN_TRY(rein_align_open_run(o, &db));
    const char *stage = selfinstruct_only ? "selfinstruct" : "prompts";
    int skip = 0;
    rein_status st = rein_align_skip_done(db, "prompts", &skip);
    if (!st && !skip && selfinstruct_only) st = rein_align_skip_done(db, "selfinstruct", &skip);
    if (st || skip) {
        rein_rundb_close(db);
        return st;
    }
    double t0 = rein_time_now();
    rein_model *m = NULL;
    st = rein_align_load_model(o->model_path, NULL, &m);
    int64_t target_rt = selfinstruct_only ? 0 : o->n_prompts / 2;
    int64_t target_si = o->n_prompts - target_rt;
    if (!st) st = rein_rundb_stage_set(db, stage, "running", 0, NULL);
    if (!st) st = selfinstruct(db, m, o, in, target_si);
    if (!st && target_rt > 0) {
        int64_t topics_done = 0;
        int qpt = REIN_MAX(1, o->rt_questions_per_topic);
        int per_type = o->rt_topics_per_type > 0
                           ? o->rt_topics_per_type
                           : (int)((target_rt + (int64_t)in->n_types * qpt - 1) /
                                   ((int64_t)in->n_types * qpt));
        st = rein_rundb_meta_get_int(db, "redteam.topics_done", 0, &topics_done);
        if (!st && !topics_done) st = brainstorm_topics(db, m, o, in, per_type);
        if (!st) st = redteam_questions(db, m, o, in, target_rt);
    }
    int64_t n_si = 0, n_rt = 0;
    if (!st) st = rein_rundb_count_prompts(db, "instruction", 1, &n_si);
    if (!st) st = rein_rundb_count_prompts(db, "redteam", 1, &n_rt);
    char info[128];
    snprintf(info, sizeof info, "%lld instructions, %lld red-team questions kept", (long long)n_si,
             (long long)n_rt);
    if (!st) st = rein_rundb_stage_set(db, stage, "done", rein_time_now() - t0, info);
    if (!st)
        fprintf(stderr, "rein align: stage 1 (%s): %s in %.0f s\n", stage, info,
                rein_time_now() - t0);
    rein_model_free(m);
    rein_rundb_close(db);
    return st;
}
