/* rl_prompts.c - the prompts of an RL run: a JSONL file read into token ids with the model's chat
 * template applied (rl.h). HH dialogues are read through the dataset reader (formats/dataset.h),
 * which already knows how to split them into turns. */
#include "train/rl.h"
#include "base/base.h"
#include "formats/dataset.h"

#include <cjson/cJSON.h>
#include <string.h>

void rein_rl_prompts_free(rein_rl_prompts *ps) {
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) {
        rein_free(ps->p[i].ids);
        rein_free(ps->p[i].text);
        rein_free(ps->p[i].answer);
    }
    rein_free(ps->p);
    rein_free(ps);
}

/* Render msgs with the generation prompt and tokenize; fills p (ids, text = last user turn). */
static rein_status render(const rein_model *m, const rein_chat_msg *msgs, size_t n,
                          rein_rl_prompt *p) {
    rein_buf text = {0};
    rein_tokens ids = {0};
    rein_status st = rein_chat_apply(rein_model_chat_template(m), msgs, n, 1, &text);
    if (!st)
        st = rein_tokenize(rein_model_tokenizer(m), text.data, text.len,
                           REIN_TOKENIZE_ADD_BOS | REIN_TOKENIZE_PARSE_SPECIAL, &ids);
    const char *last = "";
    for (size_t i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "user")) last = msgs[i].content;
    if (!st && !(p->text = rein_strdup(last))) st = REIN_ERR_NOMEM;
    rein_buf_free(&text);
    if (st) {
        rein_tokens_free(&ids);
        return st;
    }
    p->ids = ids.ids;
    p->n = ids.n;
    return REIN_OK;
}

static rein_status push_prompt(rein_rl_prompts *ps, size_t *cap, rein_rl_prompt *p) {
    if (ps->n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        rein_rl_prompt *q = rein_realloc(ps->p, sizeof *q * c);
        if (!q) return REIN_ERR_NOMEM;
        ps->p = q;
        *cap = c;
    }
    ps->p[ps->n++] = *p;
    return REIN_OK;
}

/* Keep p if it fits, else count it (skip_long) or report it. */
static rein_status keep(rein_rl_prompts *ps, size_t *cap, rein_rl_prompt *p, const char *path,
                        int max_tokens, int skip_long, rein_buf *problems, int *n_bad) {
    if ((int64_t)p->n > max_tokens) {
        if (!skip_long) {
            if (problems)
                rein_buf_appendf(problems, "%s:%d: the prompt has %zu tokens, more than "
                                 "--max-prompt-tokens %d\n", path, p->line, p->n, max_tokens);
            (*n_bad)++;
        } else {
            ps->n_skipped++;
        }
        rein_free(p->ids);
        rein_free(p->text);
        rein_free(p->answer);
        return REIN_OK;
    }
    rein_status st = push_prompt(ps, cap, p);
    if (st) {
        rein_free(p->ids);
        rein_free(p->text);
        rein_free(p->answer);
    }
    return st;
}

static rein_status read_hh(const char *path, const rein_model *m, int max_tokens, int skip_long,
                           rein_rl_prompts *ps, rein_buf *problems, int *n_bad) {
    rein_dataset_params dp = rein_dataset_default_params();
    dp.format = REIN_DATA_HH;
    rein_dataset *ds = NULL;
    REIN_TRY(rein_dataset_read(path, &dp, &ds, problems));
    size_t cap = 0;
    rein_status st = REIN_OK;
    rein_chat_msg *cm = NULL;
    for (size_t i = 0; !st && i < ds->n; i++) {
        const rein_pref_record *r = &ds->pref[i];
        rein_rl_prompt p = {0};
        p.line = r->line;
        size_t n = r->conversational ? r->prompt.n : 1;
        rein_free(cm);
        cm = rein_malloc(sizeof *cm * (n ? n : 1));
        if (!cm) {
            st = REIN_ERR_NOMEM;
            break;
        }
        if (r->conversational)
            for (size_t k = 0; k < n; k++)
                cm[k] = (rein_chat_msg){rein_role_name(r->prompt.msgs[k].role),
                                        r->prompt.msgs[k].content};
        else
            cm[0] = (rein_chat_msg){"user", r->prompt_text};
        st = render(m, cm, n, &p);
        if (!st) st = keep(ps, &cap, &p, path, max_tokens, skip_long, problems, n_bad);
    }
    rein_free(cm);
    rein_dataset_free(ds);
    return st;
}

/* One JSON line: {"prompt": ...} or {"messages": [...]}, optional "answer". */
static rein_status parse_line(const char *path, int line, const cJSON *o, const rein_model *m,
                              rein_rl_prompt *p, rein_buf *problems, int *bad) {
    *bad = 0;
    p->line = line;
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *an = cJSON_GetObjectItemCaseSensitive(o, "answer");
    rein_chat_msg cm[64];
    size_t n = 0;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        if (problems) rein_buf_appendf(problems, __VA_ARGS__);                                     \
        *bad = 1;                                                                                  \
        return REIN_OK;                                                                            \
    } while (0)
    if (cJSON_IsString(pr)) {
        if (!*pr->valuestring) BAD("%s:%d: prompt: empty\n", path, line);
        cm[n++] = (rein_chat_msg){"user", pr->valuestring};
    } else if (cJSON_IsArray(ms)) {
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ms) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content))
                BAD("%s:%d: messages[%d]: expected {\"role\": string, \"content\": string}\n", path,
                    line, k);
            if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
                strcmp(role->valuestring, "assistant"))
                BAD("%s:%d: messages[%d].role: '%s' is not system, user or assistant\n", path, line,
                    k, role->valuestring);
            if (n == 64) BAD("%s:%d: messages: more than 64 turns\n", path, line);
            cm[n++] = (rein_chat_msg){role->valuestring, content->valuestring};
            k++;
        }
        while (n > 0 && !strcmp(cm[n - 1].role, "assistant")) n--;
        int has_user = 0;
        for (size_t i = 0; i < n; i++) has_user |= !strcmp(cm[i].role, "user");
        if (!has_user) BAD("%s:%d: messages: no user turn to answer\n", path, line);
    } else {
        BAD("%s:%d: expected a \"prompt\" string or a \"messages\" list\n", path, line);
    }
    if (an && !cJSON_IsNull(an)) {
        char num[64];
        const char *s = NULL;
        if (cJSON_IsString(an)) s = an->valuestring;
        else if (cJSON_IsNumber(an)) {
            if (an->valuedouble == (double)(long long)an->valuedouble)
                snprintf(num, sizeof num, "%lld", (long long)an->valuedouble);
            else
                snprintf(num, sizeof num, "%.17g", an->valuedouble);
            s = num;
        } else {
            BAD("%s:%d: answer: expected a string or a number\n", path, line);
        }
        if (!(p->answer = rein_strdup(s))) return REIN_ERR_NOMEM;
    }
#undef BAD
    rein_status st = render(m, cm, n, p);
    if (st) {
        rein_free(p->answer);
        p->answer = NULL;
        return rein_error_wrap(st, "%s:%d: ", path, line);
    }
    return REIN_OK;
}

rein_status rein_rl_prompts_read(const char *path, const rein_model *m, int max_tokens,
                                 int skip_long, rein_rl_prompts **out, rein_buf *problems) {
    *out = NULL;
    if (!rein_model_tokenizer(m) || !rein_model_chat_template(m))
        return rein_error(REIN_ERR_UNSUPPORTED, "the model has no tokenizer or chat template");
    rein_buf data = {0};
    REIN_TRY(rein_read_file(path, &data));
    rein_rl_prompts *ps = rein_calloc(1, sizeof *ps);
    if (!ps) {
        rein_buf_free(&data);
        return REIN_ERR_NOMEM;
    }
    rein_status st = REIN_OK;
    size_t cap = 0;
    int n_bad = 0, line = 0, first = 1;
    char *s = data.data ? data.data : "";
    if (!strncmp(s, "\xEF\xBB\xBF", 3)) s += 3;
    while (!st && *s) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        line++;
        char *t = s;
        while (*t == ' ' || *t == '\t' || *t == '\r') t++;
        if (*t) {
            cJSON *o = cJSON_Parse(t);
            if (!cJSON_IsObject(o)) {
                if (problems)
                    rein_buf_appendf(problems, "%s:%d: not a JSON object\n", path, line);
                n_bad++;
            } else if (first && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "chosen"))) {
                cJSON_Delete(o);
                rein_buf_free(&data);
                st = read_hh(path, m, max_tokens, skip_long, ps, problems, &n_bad);
                goto done;
            } else {
                rein_rl_prompt p = {0};
                int bad;
                st = parse_line(path, line, o, m, &p, problems, &bad);
                if (!st && bad) n_bad++;
                else if (!st) st = keep(ps, &cap, &p, path, max_tokens, skip_long, problems, &n_bad);
            }
            first = 0;
            cJSON_Delete(o);
        }
        if (!e) break;
        s = e + 1;
    }
    rein_buf_free(&data);
done:
    if (!st && n_bad)
        st = rein_error(REIN_ERR_FORMAT, "%s: %d bad prompt line%s (listed above)", path, n_bad,
                        n_bad == 1 ? "" : "s");
    if (!st && ps->n == 0) st = rein_error(REIN_ERR_FORMAT, "%s: no prompts", path);
    if (st) {
        rein_rl_prompts_free(ps);
        return st;
    }
    *out = ps;
    return REIN_OK;
}
