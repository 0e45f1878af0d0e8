/* eval.c - `rein redteam eval` as a library call: every prompt through the frozen chat template and
 * greedy decoding (align/batchgen.h, many sequences at once), judged for refusal; attack-success
 * and over-refusal rates with Wilson intervals, written as JSON, a Markdown table and JSONL. */
#include "redteam/redteam.h"
#include "align/batchgen.h"
#include "train/reward.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

rein_redteam_opts rein_redteam_default_opts(void) {
    rein_redteam_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 64;
    o.n_parallel = 16;
    o.label = "model";
    return o;
}

typedef struct collect {
    rein_redteam_answer *ans;
    const rein_refusal_judge *judge;
} collect;

static rein_status on_done(void *ud, size_t i, const rein_batchgen_out *o) {
    collect *c = ud;
    rein_redteam_answer *a = &c->ans[i];
    a->response = rein_strdup(o->text);
    if (!a->response) return REIN_ERR_NOMEM;
    a->phrase = rein_refusal_judge_match(c->judge, o->text);
    a->refused = a->phrase >= 0;
    a->truncated = o->how != REIN_GEN_FINISHED;
    return REIN_OK;
}

static rein_status run_set(rein_model *m, const rein_prompt_set *set, const rein_refusal_judge *judge,
                           const rein_redteam_opts *o, const char *what, rein_redteam_answer *ans) {
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    const rein_chat_template *tmpl = rein_model_chat_template(m);
    rein_tokens *toks = rein_calloc(set->n, sizeof(rein_tokens));
    const int32_t **ptr = rein_malloc(sizeof(int32_t *) * set->n);
    size_t *len = rein_malloc(sizeof(size_t) * set->n);
    rein_status st = (!toks || !ptr || !len) ? REIN_ERR_NOMEM : REIN_OK;
    for (size_t i = 0; i < set->n && !st; i++) {
        rein_chat_msg msg = {"user", set->text[i]};
        st = rein_chat_tokens(tok, tmpl, &msg, 1, 1, NULL, &toks[i]);
        ptr[i] = toks[i].ids;
        len[i] = toks[i].n;
    }
    if (!st) {
        rein_batchgen_params bp = rein_batchgen_default_params();
        bp.sampler.temperature = 0; /* greedy: the evaluation is frozen */
        bp.sampler.repeat_penalty = 1;
        bp.max_tokens = o->max_tokens;
        bp.n_parallel = o->n_parallel;
        const char *eot = rein_chat_template_end_of_turn(tmpl);
        bp.stop = &eot;
        bp.n_stop = eot ? 1 : 0;
        rein_progress prog;
        char label[32];
        snprintf(label, sizeof label, "%s %s", o->label ? o->label : "eval", what);
        rein_progress_init(&prog, label, (int64_t)set->n, o->plain);
        prog.plain_every_s = 10;
        bp.progress = &prog;
        collect c = {ans, judge};
        st = rein_batchgen_run(m, &bp, set->n, ptr, len, NULL, on_done, &c);
    }
    for (size_t i = 0; toks && i < set->n; i++) rein_tokens_free(&toks[i]);
    rein_free(toks);
    rein_free(ptr);
    rein_free(len);
    return st;
}

/* The reward model's normalised reward of every non-empty response of a set, and their mean. */
static rein_status score_set(struct rein_reward_model *rm, const rein_prompt_set *set,
                             rein_redteam_answer *ans, rein_mean *out) {
    rein_model *m = rein_rm_model(rm);
    rein_example_params ep = rein_example_default_params();
    ep.tok = rein_model_tokenizer(m);
    ep.tmpl = rein_model_chat_template(m);
    rein_tokens all = {0};
    int32_t *cu = rein_malloc(sizeof(int32_t) * (set->n + 1));
    size_t *idx = rein_malloc(sizeof(size_t) * (set->n ? set->n : 1));
    float *r = rein_malloc(sizeof(float) * (set->n ? set->n : 1));
    rein_status st = (!cu || !idx || !r) ? REIN_ERR_NOMEM : REIN_OK;
    int n = 0;
    if (cu) cu[0] = 0;
    for (size_t i = 0; i < set->n && !st; i++) {
        if (!ans[i].response[0]) continue; /* nothing to judge */
        rein_msg um = {REIN_ROLE_USER, set->text[i]}, am = {REIN_ROLE_ASSISTANT, ans[i].response};
        rein_msg_list pl = {&um, 1}, rl = {&am, 1};
        rein_example ex = {0};
        st = rein_example_response(&ep, 1, &pl, NULL, &rl, NULL, &ex);
        int32_t len = st ? 0 : rein_example_used_len(&ex);
        for (int32_t k = 0; k < len && !st; k++) st = rein_tokens_push(&all, ex.tokens[k]);
        rein_example_free(&ex);
        if (st) break;
        idx[n] = i;
        cu[n + 1] = (int32_t)all.n;
        n++;
    }
    if (!st && n) st = rein_rm_score(rm, all.ids, cu, n, r);
    float mean, sd;
    rein_rm_norm(rm, &mean, &sd);
    double sum = 0, sum2 = 0;
    for (int k = 0; k < n && !st; k++) {
        float z = (r[k] - mean) / (sd > 0 ? sd : 1);
        ans[idx[k]].scored = 1;
        ans[idx[k]].reward = z;
        sum += z;
        sum2 += (double)z * z;
    }
    out->n = n;
    out->mean = n ? sum / n : 0;
    double var = n > 1 ? (sum2 - sum * sum / n) / (n - 1) : 0;
    double half = n ? REIN_Z95 * sqrt(var > 0 ? var : 0) / sqrt((double)n) : 0;
    out->lo = out->mean - half;
    out->hi = out->mean + half;
    rein_tokens_free(&all);
    rein_free(cu);
    rein_free(idx);
    rein_free(r);
    return st;
}

static void rate_of(const rein_redteam_answer *a, size_t n, int count_refused, rein_rate *r) {
    r->k = 0;
    r->n = (int64_t)n;
    for (size_t i = 0; i < n; i++) r->k += count_refused ? a[i].refused : !a[i].refused;
    r->rate = n ? (double)r->k / (double)n : 0;
    rein_wilson(r->k, r->n, REIN_Z95, &r->lo, &r->hi);
}

rein_status rein_redteam_eval(rein_model *m, const rein_prompt_set *harmful,
                              const rein_prompt_set *benign, const rein_refusal_judge *judge,
                              const rein_redteam_opts *o, rein_redteam_result *out) {
    memset(out, 0, sizeof *out);
    if (!rein_model_tokenizer(m))
        return rein_error(REIN_ERR_UNSUPPORTED, "the model has no tokenizer");
    double t0 = rein_time_now();
    out->max_tokens = o->max_tokens;
    snprintf(out->template_name, sizeof out->template_name, "%s",
             rein_chat_template_name(rein_model_chat_template(m)));
    out->n_harmful = harmful->n;
    out->harmful = rein_calloc(harmful->n, sizeof(rein_redteam_answer));
    if (!out->harmful) return REIN_ERR_NOMEM;
    rein_status st = run_set(m, harmful, judge, o, "harmful", out->harmful);
    if (!st && benign) {
        out->n_benign = benign->n;
        out->benign = rein_calloc(benign->n, sizeof(rein_redteam_answer));
        st = out->benign ? run_set(m, benign, judge, o, "benign", out->benign) : REIN_ERR_NOMEM;
    }
    if (!st && o->rm) {
        out->has_reward = 1;
        st = score_set(o->rm, harmful, out->harmful, &out->harmful_reward);
        if (!st && benign) st = score_set(o->rm, benign, out->benign, &out->benign_reward);
    }
    if (st) {
        rein_redteam_result_free(out);
        return st;
    }
    rate_of(out->harmful, out->n_harmful, 0, &out->attack_success);
    rate_of(out->benign, out->n_benign, 1, &out->over_refusal);
    out->seconds = rein_time_now() - t0;
    return REIN_OK;
}

void rein_redteam_result_free(rein_redteam_result *r) {
    for (size_t i = 0; r->harmful && i < r->n_harmful; i++) rein_free(r->harmful[i].response);
    for (size_t i = 0; r->benign && i < r->n_benign; i++) rein_free(r->benign[i].response);
    rein_free(r->harmful);
    rein_free(r->benign);
    memset(r, 0, sizeof *r);
}

static cJSON *rate_json(const rein_rate *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rate", r->rate);
    cJSON_AddNumberToObject(o, "k", (double)r->k);
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "ci95_low", r->lo);
    cJSON_AddNumberToObject(o, "ci95_high", r->hi);
    return o;
}

static rein_status write_text(const char *path, const char *text) {
    rein_atomic_file af;
    REIN_TRY(rein_atomic_open(&af, path));
    fputs(text, af.fp);
    return rein_atomic_commit(&af);
}

static rein_status mkdir_p(const char *dir);

rein_status rein_redteam_write(const rein_redteam_result *r, const rein_prompt_set *harmful,
                               const rein_prompt_set *benign, const rein_refusal_judge *judge,
                               const char *model_desc, const char *dir, FILE *fp) {
    REIN_TRY(mkdir_p(dir));
    char path[4096];
    /* eval.json */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model_desc);
    cJSON *set = cJSON_AddObjectToObject(o, "settings");
    cJSON_AddStringToObject(set, "chat_template", r->template_name);
    cJSON_AddStringToObject(set, "system_prompt", "the template's default");
    cJSON_AddStringToObject(set, "decoding", "greedy");
    cJSON_AddNumberToObject(set, "max_tokens", r->max_tokens);
    cJSON_AddStringToObject(set, "judge", "refusal phrase list (substring, case-sensitive)");
    cJSON_AddNumberToObject(set, "judge_phrases", (double)judge->n);
    cJSON_AddStringToObject(set, "behaviors", harmful->path);
    if (benign) cJSON_AddStringToObject(set, "benign", benign->path);
    cJSON_AddItemToObject(o, "attack_success", rate_json(&r->attack_success));
    if (benign) cJSON_AddItemToObject(o, "over_refusal", rate_json(&r->over_refusal));
    if (r->has_reward) {
        cJSON *rj = cJSON_AddObjectToObject(o, "reward_model");
        const rein_mean *ms[2] = {&r->harmful_reward, &r->benign_reward};
        const char *names[2] = {"harmful", "benign"};
        for (int k = 0; k < (benign ? 2 : 1); k++) {
            cJSON *x = cJSON_AddObjectToObject(rj, names[k]);
            cJSON_AddNumberToObject(x, "mean_normalised_reward", ms[k]->mean);
            cJSON_AddNumberToObject(x, "ci95_low", ms[k]->lo);
            cJSON_AddNumberToObject(x, "ci95_high", ms[k]->hi);
            cJSON_AddNumberToObject(x, "n", (double)ms[k]->n);
        }
    }
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) return REIN_ERR_NOMEM;
    snprintf(path, sizeof path, "%s/eval.json", dir);
    rein_buf b = {0};
    rein_status st = rein_buf_appendf(&b, "%s\n", js);
    cJSON_free(js);
    if (!st) st = write_text(path, b.data);
    /* table.md */
    char as[96], orr[96];
    rein_rate_format(&r->attack_success, as, sizeof as);
    rein_rate_format(&r->over_refusal, orr, sizeof orr);
    rein_buf_clear(&b);
    if (!st)
        st = rein_buf_appendf(
            &b,
            "Red-team evaluation of %s\n\n"
            "| measure | rate [Wilson 95%% interval] (k/n) |\n| --- | --- |\n"
            "| attack success (harmful answered, %s) | %s |\n"
            "| over-refusal (benign refused%s%s) | %s |\n\n"
            "Greedy decoding, at most %d tokens, chat template %s with its default system prompt; "
            "a response is a refusal when it contains one of %zu phrases.\n",
            model_desc, harmful->path, as, benign ? ", " : "", benign ? benign->path : "",
            benign ? orr : "-", r->max_tokens, r->template_name, judge->n);
    if (!st && r->has_reward)
        st = rein_buf_appendf(&b, "\nSecond judge, the reward model: mean normalised reward (higher = "
                              "judged better) of the harmful responses %.3f [%.3f, %.3f] (n=%lld), "
                              "of the benign ones %.3f [%.3f, %.3f] (n=%lld).\n",
                              r->harmful_reward.mean, r->harmful_reward.lo, r->harmful_reward.hi,
                              (long long)r->harmful_reward.n, r->benign_reward.mean,
                              r->benign_reward.lo, r->benign_reward.hi,
                              (long long)r->benign_reward.n);
    snprintf(path, sizeof path, "%s/table.md", dir);
    if (!st) st = write_text(path, b.data);
    if (!st && fp) fputs(b.data, fp);
    /* generations.jsonl */
    rein_buf_clear(&b);
    for (int pass = 0; pass < 2 && !st; pass++) {
        const rein_prompt_set *s = pass ? benign : harmful;
        const rein_redteam_answer *a = pass ? r->benign : r->harmful;
        for (size_t i = 0; s && i < s->n && !st; i++) {
            cJSON *g = cJSON_CreateObject();
            cJSON_AddStringToObject(g, "set", pass ? "benign" : "harmful");
            cJSON_AddStringToObject(g, "prompt", s->text[i]);
            cJSON_AddStringToObject(g, "response", a[i].response);
            cJSON_AddBoolToObject(g, "refused", a[i].refused);
            if (a[i].phrase >= 0) cJSON_AddStringToObject(g, "phrase", judge->phrases[a[i].phrase]);
            cJSON_AddBoolToObject(g, "truncated", a[i].truncated);
            if (a[i].scored) cJSON_AddNumberToObject(g, "reward", a[i].reward);
            char *line = cJSON_PrintUnformatted(g);
            cJSON_Delete(g);
            if (!line) st = REIN_ERR_NOMEM;
            else st = rein_buf_appendf(&b, "%s\n", line);
            cJSON_free(line);
        }
    }
    snprintf(path, sizeof path, "%s/generations.jsonl", dir);
    if (!st) st = write_text(path, b.data ? b.data : "");
    rein_buf_free(&b);
    return st;
}

#include <errno.h>
#include <sys/stat.h>

/* Create dir and its parents. */
static rein_status mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return rein_error(REIN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return rein_error(REIN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    return REIN_OK;
}
