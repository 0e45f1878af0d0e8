/* inputs.c - the human-written inputs of self-alignment, read from readable text files: principles,
 * exemplars with internal thoughts, red-teaming instruction types with seed topics and questions,
 * and Self-Instruct seed tasks. Errors name the file, the line and the field expected. */
#include "align/align.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <string.h>

char *rein_align_trimmed_copy(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *c = rein_malloc(n + 1);
    if (!c) return NULL;
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

/* Grow an array of `size`-byte elements to hold n + 1; new elements are zeroed. The capacity is
 * the smallest power of two >= n, so it grows exactly when n is 0 or a power of two. */
static rein_status grow(void **arr, size_t n, size_t size) {
    if (n & (n - 1)) return REIN_OK;
    size_t cap = n ? n * 2 : 1;
    char *p = rein_realloc(*arr, cap * size);
    if (!p) return REIN_ERR_NOMEM;
    memset(p + n * size, 0, (cap - n) * size);
    *arr = p;
    return REIN_OK;
}

/* Iterate lines: *line gets the 1-based number; returns 0 at the end. */
typedef struct lines {
    const char *p;
    int line;
} lines;
static int next_line(lines *l, const char **s, size_t *n) {
    if (!*l->p) return 0;
    const char *e = strchr(l->p, '\n');
    *s = l->p;
    *n = e ? (size_t)(e - l->p) : strlen(l->p);
    l->p = e ? e + 1 : l->p + *n;
    l->line++;
    if (*n && (*s)[*n - 1] == '\r') (*n)--;
    return 1;
}

static int blank_or_comment(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    return !n || *s == '#';
}

rein_status rein_principles_parse(const char *name, const char *text, rein_align_inputs *in) {
    lines l = {text, 0};
    const char *s;
    size_t n;
    while (next_line(&l, &s, &n)) {
        if (blank_or_comment(s, n)) continue;
        const char *colon = memchr(s, ':', n);
        if (!colon || colon == s)
            return rein_error(REIN_ERR_FORMAT, "%s:%d: expected \"name: text\" (a principle)", name,
                              l.line);
        REIN_TRY(grow((void **)&in->principles, in->n_principles, sizeof(rein_principle)));
        rein_principle *p = &in->principles[in->n_principles];
        p->name = rein_align_trimmed_copy(s, (size_t)(colon - s));
        p->text = rein_align_trimmed_copy(colon + 1, n - (size_t)(colon + 1 - s));
        if (!p->name || !p->text) {
            rein_free(p->name);
            rein_free(p->text);
            return REIN_ERR_NOMEM;
        }
        in->n_principles++;
        if (!p->text[0])
            return rein_error(REIN_ERR_FORMAT, "%s:%d: principle '%s' has no text", name, l.line,
                              p->name);
    }
    if (!in->n_principles) return rein_error(REIN_ERR_FORMAT, "%s: no principle", name);
    return REIN_OK;
}

/* Which field a line starts, by its label; -1 if none. */
static int field_of(const char *s, size_t n, const char *const *labels, int n_labels, size_t *skip) {
    for (int i = 0; i < n_labels; i++) {
        size_t ll = strlen(labels[i]);
        if (n >= ll && !memcmp(s, labels[i], ll)) {
            *skip = ll;
            return i;
        }
    }
    return -1;
}

rein_status rein_exemplars_parse(const char *name, const char *text, rein_align_inputs *in) {
    static const char *const labels[] = {"User:", "Thoughts:", "Answer:"};
    lines l = {text, 0};
    const char *s;
    size_t n;
    rein_buf f[3] = {{0}};
    int cur = -1, have[3] = {0}, start_line = 0;
    rein_status st = REIN_OK;
    for (;;) {
        int more = next_line(&l, &s, &n);
        int end = !more || (n >= 3 && !memcmp(s, "===", 3));
        if (end) {
            if (have[0] || have[1] || have[2]) {
                for (int k = 0; k < 3 && !st; k++)
                    if (!have[k])
                        st = rein_error(REIN_ERR_FORMAT, "%s:%d: the exemplar has no \"%s\" field",
                                        name, start_line, labels[k]);
                if (!st) st = grow((void **)&in->exemplars, in->n_exemplars, sizeof(rein_exemplar));
                if (!st) {
                    rein_exemplar *e = &in->exemplars[in->n_exemplars];
                    e->user = rein_align_trimmed_copy(f[0].data, f[0].len);
                    e->thoughts = rein_align_trimmed_copy(f[1].data, f[1].len);
                    e->answer = rein_align_trimmed_copy(f[2].data, f[2].len);
                    in->n_exemplars++;
                    if (!e->user || !e->thoughts || !e->answer) st = REIN_ERR_NOMEM;
                    else if (!e->user[0] || !e->thoughts[0] || !e->answer[0])
                        st = rein_error(REIN_ERR_FORMAT, "%s:%d: an exemplar field is empty", name,
                                        start_line);
                }
            }
            for (int k = 0; k < 3; k++) rein_buf_clear(&f[k]), have[k] = 0;
            cur = -1;
            if (!more || st) break;
            continue;
        }
        size_t skip = 0;
        int fi = field_of(s, n, labels, 3, &skip);
        if (fi >= 0) {
            if (have[fi]) {
                st = rein_error(REIN_ERR_FORMAT, "%s:%d: a second \"%s\" in one exemplar (end each "
                                "exemplar with a \"===\" line)", name, l.line, labels[fi]);
                break;
            }
            if (!have[0] && !have[1] && !have[2]) start_line = l.line;
            have[fi] = 1;
            cur = fi;
            st = rein_buf_append(&f[fi], s + skip, n - skip);
            if (!st) st = rein_buf_append(&f[fi], "", 0);
        } else if (cur >= 0) {
            st = rein_buf_append(&f[cur], "\n", 1);
            if (!st) st = rein_buf_append(&f[cur], s, n);
        } else if (!blank_or_comment(s, n)) {
            st = rein_error(REIN_ERR_FORMAT, "%s:%d: expected a line starting \"User:\"", name, l.line);
        }
        if (st) break;
    }
    for (int k = 0; k < 3; k++) rein_buf_free(&f[k]);
    if (!st && !in->n_exemplars) st = rein_error(REIN_ERR_FORMAT, "%s: no exemplar", name);
    return st;
}

static rein_status push_str(char ***arr, size_t *n, const char *s, size_t len) {
    REIN_TRY(grow((void **)arr, *n, sizeof(char *)));
    char *c = rein_align_trimmed_copy(s, len);
    if (!c) return REIN_ERR_NOMEM;
    (*arr)[(*n)++] = c;
    return REIN_OK;
}

rein_status rein_rt_types_parse(const char *name, const char *text, rein_align_inputs *in) {
    static const char *const labels[] = {"type:", "description:", "topics:", "Q:"};
    lines l = {text, 0};
    const char *s;
    size_t n;
    rein_rt_type *t = NULL;
    int t_line = 0;
    for (;;) {
        int more = next_line(&l, &s, &n);
        if (!more || (n >= 3 && !memcmp(s, "===", 3))) {
            if (t) {
                if (!t->description || !t->n_topics || !t->n_questions)
                    return rein_error(REIN_ERR_FORMAT, "%s:%d: type '%s' needs a description, "
                                      "topics and at least one \"Q: topic | question\"", name,
                                      t_line, t->name);
                t = NULL;
            }
            if (!more) break;
            continue;
        }
        if (blank_or_comment(s, n)) continue;
        size_t skip = 0;
        int fi = field_of(s, n, labels, 4, &skip);
        if (fi < 0)
            return rein_error(REIN_ERR_FORMAT, "%s:%d: expected type:, description:, topics: or Q:",
                              name, l.line);
        if (fi == 0) {
            if (t)
                return rein_error(REIN_ERR_FORMAT, "%s:%d: a new type before \"===\" ended '%s'",
                                  name, l.line, t->name);
            REIN_TRY(grow((void **)&in->types, in->n_types, sizeof(rein_rt_type)));
            t = &in->types[in->n_types++]; /* counted now: freed with the rest on an error */
            t_line = l.line;
            if (!(t->name = rein_align_trimmed_copy(s + skip, n - skip))) return REIN_ERR_NOMEM;
            continue;
        }
        if (!t)
            return rein_error(REIN_ERR_FORMAT, "%s:%d: \"%s\" before any \"type:\"", name, l.line,
                              labels[fi]);
        if (fi == 1) {
            rein_free(t->description);
            if (!(t->description = rein_align_trimmed_copy(s + skip, n - skip))) return REIN_ERR_NOMEM;
        } else if (fi == 2) {
            const char *p = s + skip, *end = s + n;
            while (p < end) {
                const char *semi = memchr(p, ';', (size_t)(end - p));
                const char *e = semi ? semi : end;
                REIN_TRY(push_str(&t->topics, &t->n_topics, p, (size_t)(e - p)));
                if (!t->topics[t->n_topics - 1][0]) rein_free(t->topics[--t->n_topics]);
                p = semi ? semi + 1 : end;
            }
        } else {
            const char *bar = memchr(s + skip, '|', n - skip);
            if (!bar)
                return rein_error(REIN_ERR_FORMAT, "%s:%d: expected \"Q: topic | question\"", name,
                                  l.line);
            REIN_TRY(push_str(&t->q_topic, &t->n_questions, s + skip, (size_t)(bar - s - skip)));
            size_t nq = t->n_questions - 1;
            REIN_TRY(push_str(&t->q_text, &nq, bar + 1, (size_t)(s + n - bar - 1)));
        }
    }
    if (!in->n_types) return rein_error(REIN_ERR_FORMAT, "%s: no red-teaming type", name);
    return REIN_OK;
}

rein_status rein_seed_tasks_parse(const char *name, const char *text, rein_align_inputs *in) {
    size_t nl = strlen(name);
    int jsonl = nl > 6 && !strcmp(name + nl - 6, ".jsonl");
    lines l = {text, 0};
    const char *s;
    size_t n;
    while (next_line(&l, &s, &n)) {
        if (blank_or_comment(s, n)) continue;
        if (!jsonl) {
            REIN_TRY(push_str(&in->seed_tasks, &in->n_seed_tasks, s, n));
            continue;
        }
        cJSON *o = cJSON_ParseWithLength(s, n);
        cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, "instruction") : NULL;
        if (!cJSON_IsString(v) || !v->valuestring[0]) {
            cJSON_Delete(o);
            return rein_error(REIN_ERR_FORMAT, "%s:%d: expected a JSON object with a non-empty "
                              "\"instruction\" (Self-Instruct's seed task format)", name, l.line);
        }
        rein_status st = push_str(&in->seed_tasks, &in->n_seed_tasks, v->valuestring,
                                  strlen(v->valuestring));
        cJSON_Delete(o);
        REIN_TRY(st);
    }
    if (!in->n_seed_tasks) return rein_error(REIN_ERR_FORMAT, "%s: no seed task", name);
    return REIN_OK;
}

void rein_align_inputs_free(rein_align_inputs *in) {
    for (size_t i = 0; i < in->n_principles; i++) {
        rein_free(in->principles[i].name);
        rein_free(in->principles[i].text);
    }
    for (size_t i = 0; i < in->n_exemplars; i++) {
        rein_free(in->exemplars[i].user);
        rein_free(in->exemplars[i].thoughts);
        rein_free(in->exemplars[i].answer);
    }
    for (size_t i = 0; i < in->n_types; i++) {
        rein_rt_type *t = &in->types[i];
        rein_free(t->name);
        rein_free(t->description);
        for (size_t k = 0; k < t->n_topics; k++) rein_free(t->topics[k]);
        for (size_t k = 0; k < t->n_questions; k++) rein_free(t->q_topic[k]), rein_free(t->q_text[k]);
        rein_free(t->topics);
        rein_free(t->q_topic);
        rein_free(t->q_text);
    }
    for (size_t i = 0; i < in->n_seed_tasks; i++) rein_free(in->seed_tasks[i]);
    rein_free(in->principles);
    rein_free(in->exemplars);
    rein_free(in->types);
    rein_free(in->seed_tasks);
    rein_free(in->verbose_system);
    memset(in, 0, sizeof *in);
}
