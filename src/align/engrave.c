/* engrave.c - stage 3, principle engraving: LoRA fine-tuning of the base model on the kept
 * principle-driven answers, each as a plain prompt -> answer turn. The principles, the exemplars
 * and the internal thoughts are gone from the training text, so the behaviour they produced has to
 * move into the weights. Training is the shared loop of src/train (checkpoints in the stage's
 * folder; an interrupted stage resumes from its last one). */
#include "align/align.h"
#include "formats/export.h"
#include "train/sft.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

uint64_t rein_align_item_seed(uint64_t seed, const char *stage, uint64_t i) {
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
    for (const char *p = stage; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    h ^= i + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    /* splitmix64 finaliser */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

void rein_align_test_kill(const char *var, int64_t count) {
    const char *v = getenv(var);
    if (v && *v && strtoll(v, NULL, 10) == count) {
        fprintf(stderr, "rein align: test hook %s=%s: killing this process\n", var, v);
        raise(SIGKILL);
    }
}

rein_status rein_align_load_model(const char *model_path, const char *adapter_dir, rein_model **out) {
    rein_model *m;
    REIN_TRY(rein_model_load(model_path, &m));
    rein_status st = REIN_OK;
    if (!rein_model_tokenizer(m))
        st = rein_error(REIN_ERR_UNSUPPORTED, "%s has no tokenizer", model_path);
    if (!st && adapter_dir) {
        st = rein_lora_load(m, adapter_dir);
        /* merged: decoding then runs at the base model's speed */
        if (!st) st = rein_lora_merge(m);
    }
    if (st) {
        rein_model_free(m);
        return st;
    }
    *out = m;
    return REIN_OK;
}

rein_status rein_align_train_pairs(const rein_align_opts *o, const rein_align_pair *pairs, size_t n,
                                   const char *name) {
    if (n == 0)
        return rein_error(REIN_ERR_INVALID, "stage %s: no kept answers to train on (see the "
                          "reasons in %s/run.db, or try a larger --prompts)", name, o->out_dir);
    rein_model *m;
    REIN_TRY(rein_align_load_model(o->model_path, NULL, &m));
    rein_example_params ep = rein_example_default_params();
    ep.tok = rein_model_tokenizer(m);
    ep.tmpl = rein_model_chat_template(m);
    ep.max_len = (size_t)o->max_len;
    rein_example_set set = {0};
    set.ex = rein_calloc(n, sizeof(rein_example));
    rein_status st = set.ex ? REIN_OK : REIN_ERR_NOMEM;
    size_t too_long = 0;
    for (size_t i = 0; i < n && !st; i++) {
        rein_msg um = {REIN_ROLE_USER, pairs[i].prompt}, am = {REIN_ROLE_ASSISTANT, pairs[i].answer};
        rein_msg_list pl = {&um, 1}, rl = {&am, 1};
        st = rein_example_response(&ep, 1, &pl, NULL, &rl, NULL, &set.ex[set.n]);
        if (st == REIN_ERR_RANGE) { /* longer than --max-len: left out, counted */
            too_long++;
            st = REIN_OK;
            continue;
        }
        if (!st) set.n++;
    }
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, name);
    rein_sft_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    rein_objective obj;
    if (!st && set.n == 0)
        st = rein_error(REIN_ERR_RANGE, "stage %s: every example is longer than %d tokens", name,
                        o->max_len);
    if (!st) st = rein_sft_objective(&ctx, &set, NULL, o->batch_tokens, &obj);
    if (!st) {
        rein_train_opts to = rein_train_default_opts();
        to.out_dir = dir;
        to.lora = rein_lora_default_params();
        to.lora.rank = o->lora_rank;
        to.lora.alpha = 2.0f * (float)o->lora_rank;
        to.lora.seed = o->seed;
        to.adam.lr = o->lr;
        to.epochs = o->epochs;
        to.batch_tokens = o->batch_tokens;
        to.seed = o->seed;
        to.plain_log = o->plain;
        to.save_every = 20;
        to.eval_every = 0;
        snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
        to.resume = access(path, F_OK) == 0;
        size_t n_tok = 0;
        for (size_t i = 0; i < set.n; i++) n_tok += set.ex[i].n;
        fprintf(stderr, "rein align: %s: LoRA r=%d on %zu examples (%zu tokens; %zu longer than %d "
                "left out), %d epochs, lr %g%s\n", name, o->lora_rank, set.n, n_tok, too_long,
                o->max_len, o->epochs, (double)o->lr, to.resume ? ", resuming" : "");
        char extra[128];
        snprintf(extra, sizeof extra, "align_stage=%s max_len=%d", name, o->max_len);
        st = rein_train_run(m, &to, &obj, extra);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s/adapter", dir);
        st = rein_lora_save(m, path, o->model_path);
    }
    rein_sft_ctx_free(&ctx);
    for (size_t i = 0; i < set.n; i++) rein_example_free(&set.ex[i]);
    rein_free(set.ex);
    rein_model_free(m);
    return st;
}

/* ---- the stage ----------------------------------------------------------------------------- */

typedef struct pairs_ctx {
    rein_align_pair *p;
    size_t n, cap;
} pairs_ctx;

static rein_status pair_add(void *ud, const rein_answer_row *r) {
    pairs_ctx *c = ud;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 128;
        rein_align_pair *p = rein_realloc(c->p, nc * sizeof *p);
        if (!p) return REIN_ERR_NOMEM;
        c->p = p;
        c->cap = nc;
    }
    c->p[c->n].prompt = rein_strdup(r->prompt_text);
    c->p[c->n].answer = rein_strdup(r->answer ? r->answer : "");
    c->n++;
    return (c->p[c->n - 1].prompt && c->p[c->n - 1].answer) ? REIN_OK : REIN_ERR_NOMEM;
}

static void pairs_free(pairs_ctx *c) {
    for (size_t i = 0; i < c->n; i++) rein_free(c->p[i].prompt), rein_free(c->p[i].answer);
    rein_free(c->p);
    memset(c, 0, sizeof *c);
}

rein_status rein_align_train_stage(const rein_align_opts *o, const char *answers_stage,
                                   const char *name) {
    rein_rundb *db;
    REIN_TRY(rein_rundb_open(o->out_dir, &db));
    int done = 0;
    char adapter[4200];
    snprintf(adapter, sizeof adapter, "%s/%s/adapter/adapter_config.json", o->out_dir, name);
    rein_status st = rein_rundb_stage_done(db, name, &done);
    if (!st && done && access(adapter, F_OK) == 0) {
        fprintf(stderr, "rein align: stage %s is done (see run.db); skipping it\n", name);
        rein_rundb_close(db);
        return REIN_OK;
    }
    double t0 = rein_time_now();
    pairs_ctx pc = {0};
    if (!st) st = rein_rundb_answers(db, answers_stage, 1, pair_add, &pc);
    if (!st) st = rein_rundb_stage_set(db, name, "running", 0, NULL);
    /* the database stays open (and unlocked) while training: a long stage keeps its row */
    if (!st) st = rein_align_train_pairs(o, pc.p, pc.n, name);
    double secs = rein_time_now() - t0;
    char info[128];
    snprintf(info, sizeof info, "LoRA r=%d on %zu answers, %d epochs", o->lora_rank, pc.n, o->epochs);
    if (!st) st = rein_rundb_stage_set(db, name, "done", secs, info);
    else rein_rundb_stage_set(db, name, "running", secs, NULL);
    if (!st) fprintf(stderr, "rein align: stage %s done in %.0f s: %s/%s/adapter\n", name, secs,
                     o->out_dir, name);
    pairs_free(&pc);
    rein_rundb_close(db);
    return st;
}

rein_status rein_align_stage_engrave(const rein_align_opts *o, const rein_align_inputs *in) {
    (void)in;
    return rein_align_train_stage(o, "answer", "engrave");
}
