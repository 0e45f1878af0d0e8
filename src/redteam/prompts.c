/* prompts.c - prompt sets for evaluation and red-teaming: AdvBench's CSV (a real RFC 4180 parser),
 * JSONL records (AdvBench-like goals, prompts, Self-Instruct seed tasks) and plain lines. */
#include "redteam/redteam.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>

/* ---- CSV ------------------------------------------------------------------------------------ */

typedef struct csv_builder {
    rein_buf field;
    char **cells;
    size_t n_cells, cap_cells;
    int *row_line;
    size_t n_rows, cap_rows;
    size_t row_start_cell;
} csv_builder;

static rein_status end_field(csv_builder *b) {
    if (b->n_cells == b->cap_cells) {
        size_t nc = b->cap_cells ? b->cap_cells * 2 : 64;
        char **c = rein_realloc(b->cells, nc * sizeof(char *));
        if (!c) return REIN_ERR_NOMEM;
        b->cells = c;
        b->cap_cells = nc;
    }
    char *s = rein_malloc(b->field.len + 1);
    if (!s) return REIN_ERR_NOMEM;
    if (b->field.len) memcpy(s, b->field.data, b->field.len);
    s[b->field.len] = 0;
    b->cells[b->n_cells++] = s;
    rein_buf_clear(&b->field);
    return REIN_OK;
}

static rein_status end_row(csv_builder *b, const char *name, int line, size_t *n_cols) {
    size_t got = b->n_cells - b->row_start_cell;
    if (b->n_rows == 0) *n_cols = got;
    else if (got != *n_cols)
        return rein_error(REIN_ERR_FORMAT, "%s:%d: %zu fields, the header has %zu", name, line, got,
                          *n_cols);
    if (b->n_rows == b->cap_rows) {
        size_t nc = b->cap_rows ? b->cap_rows * 2 : 64;
        int *r = rein_realloc(b->row_line, nc * sizeof(int));
        if (!r) return REIN_ERR_NOMEM;
        b->row_line = r;
        b->cap_rows = nc;
    }
    b->row_line[b->n_rows++] = line;
    b->row_start_cell = b->n_cells;
    return REIN_OK;
}

rein_status rein_csv_parse(const char *name, const char *data, size_t len, rein_csv **out) {
    *out = NULL;
    csv_builder b = {0};
    size_t n_cols = 0, i = 0;
    int line = 1, row_line = 1, col = 1;
    rein_status st = REIN_OK;
    if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) i = 3; /* byte-order mark */
    int at_row_start = 1;
    while (i < len && !st) {
        if (at_row_start) {
            /* a blank line between rows is skipped */
            if (data[i] == '\n' || (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')) {
                i += data[i] == '\r' ? 2 : 1;
                line++;
                continue;
            }
            row_line = line;
            at_row_start = 0;
        }
        /* one field */
        if (data[i] == '"') {
            int qline = line, qcol = col;
            i++;
            for (;;) {
                if (i >= len) {
                    st = rein_error(REIN_ERR_FORMAT, "%s:%d:%d: unterminated quoted field", name,
                                    qline, qcol);
                    break;
                }
                if (data[i] == '"') {
                    if (i + 1 < len && data[i + 1] == '"') {
                        st = rein_buf_append(&b.field, "\"", 1);
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (data[i] == '\n') line++, col = 0;
                st = rein_buf_append(&b.field, data + i, 1);
                i++, col++;
                if (st) break;
            }
            if (st) break;
            if (i < len && data[i] != ',' && data[i] != '\n' && data[i] != '\r') {
                st = rein_error(REIN_ERR_FORMAT, "%s:%d: text after the closing quote of a field "
                                "(a quote inside a quoted field is written \"\")", name, line);
                break;
            }
        } else {
            while (i < len && data[i] != ',' && data[i] != '\n' && data[i] != '\r' && !st) {
                st = rein_buf_append(&b.field, data + i, 1);
                i++, col++;
            }
            if (st) break;
        }
        if ((st = end_field(&b))) break;
        if (i < len && data[i] == ',') {
            i++, col++;
            if (i == len) st = end_field(&b); /* "a," at the very end: an empty last field */
            continue;
        }
        /* end of row: \n, \r\n, lone \r, or end of data */
        if (i < len && data[i] == '\r') i++;
        if (i < len && data[i] == '\n') i++;
        st = end_row(&b, name, row_line, &n_cols);
        line++, col = 1;
        at_row_start = 1;
    }
    if (!st && !at_row_start) st = end_row(&b, name, row_line, &n_cols);
    if (!st && b.n_rows == 0) st = rein_error(REIN_ERR_FORMAT, "%s: no rows", name);
    rein_buf_free(&b.field);
    rein_csv *c = st ? NULL : rein_calloc(1, sizeof *c);
    if (!st && !c) st = REIN_ERR_NOMEM;
    if (st) {
        for (size_t k = 0; k < b.n_cells; k++) rein_free(b.cells[k]);
        rein_free(b.cells);
        rein_free(b.row_line);
        return st;
    }
    c->n_rows = b.n_rows;
    c->n_cols = n_cols;
    c->cells = b.cells;
    c->row_line = b.row_line;
    *out = c;
    return REIN_OK;
}

void rein_csv_free(rein_csv *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_rows * c->n_cols; i++) rein_free(c->cells[i]);
    rein_free(c->cells);
    rein_free(c->row_line);
    rein_free(c);
}

/* ---- prompt sets ----------------------------------------------------------------------------- */

static rein_status set_push(rein_prompt_set *s, size_t *cap, const char *text, size_t len,
                            const char *target) {
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **t = rein_realloc(s->text, nc * sizeof(char *));
        if (!t) return REIN_ERR_NOMEM;
        s->text = t;
        char **g = rein_realloc(s->target, nc * sizeof(char *));
        if (!g) return REIN_ERR_NOMEM;
        s->target = g;
        *cap = nc;
    }
    char *copy = rein_malloc(len + 1);
    if (!copy) return REIN_ERR_NOMEM;
    memcpy(copy, text, len);
    copy[len] = 0;
    s->text[s->n] = copy;
    s->target[s->n] = target ? rein_strdup(target) : NULL;
    if (target && !s->target[s->n]) {
        rein_free(copy);
        return REIN_ERR_NOMEM;
    }
    s->n++;
    return REIN_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

static rein_status read_csv(rein_prompt_set *s, size_t *cap, const char *path, const rein_buf *b) {
    rein_csv *c;
    REIN_TRY(rein_csv_parse(path, b->data ? b->data : "", b->len, &c));
    int col = -1, tcol = -1;
    const char *names[] = {"goal", "prompt", "instruction"};
    for (int k = 0; k < 3 && col < 0; k++)
        for (size_t j = 0; j < c->n_cols; j++)
            if (!strcmp(c->cells[j], names[k])) col = (int)j;
    for (size_t j = 0; j < c->n_cols; j++)
        if (!strcmp(c->cells[j], "target")) tcol = (int)j;
    rein_status st = REIN_OK;
    if (col < 0)
        st = rein_error(REIN_ERR_FORMAT, "%s:1: no column named goal, prompt or instruction in "
                        "the header", path);
    for (size_t r = 1; r < c->n_rows && !st; r++) {
        const char *t = c->cells[r * c->n_cols + (size_t)col];
        if (!*t) {
            st = rein_error(REIN_ERR_FORMAT, "%s:%d: empty %s", path, c->row_line[r],
                            c->cells[col]);
            break;
        }
        st = set_push(s, cap, t, strlen(t), tcol >= 0 ? c->cells[r * c->n_cols + (size_t)tcol] : NULL);
    }
    rein_csv_free(c);
    return st;
}

static rein_status read_jsonl(rein_prompt_set *s, size_t *cap, const char *path, const rein_buf *b) {
    int line = 0;
    rein_status st = REIN_OK;
    rein_buf text = {0};
    for (const char *p = b->data ? b->data : ""; *p && !st;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        line++;
        const char *q = p;
        p = e ? e + 1 : p + n;
        while (n && (*q == ' ' || *q == '\t' || *q == '\r')) q++, n--;
        if (!n) continue;
        cJSON *o = cJSON_ParseWithLength(q, n);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            st = rein_error(REIN_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
            break;
        }
        const char *keys[] = {"goal", "prompt", "instruction"};
        cJSON *v = NULL;
        for (int k = 0; k < 3 && !v; k++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
            if (x) v = x;
        }
        if (!v || !cJSON_IsString(v) || !v->valuestring[0]) {
            st = rein_error(REIN_ERR_FORMAT, "%s:%d: expected a non-empty string field \"goal\", "
                            "\"prompt\" or \"instruction\"", path, line);
            cJSON_Delete(o);
            break;
        }
        rein_buf_clear(&text);
        st = rein_buf_append(&text, v->valuestring, strlen(v->valuestring));
        cJSON *inst = cJSON_GetObjectItemCaseSensitive(o, "instances");
        cJSON *first = cJSON_IsArray(inst) ? cJSON_GetArrayItem(inst, 0) : NULL;
        cJSON *input = first ? cJSON_GetObjectItemCaseSensitive(first, "input") : NULL;
        if (!st && cJSON_IsString(input) && input->valuestring[0])
            st = rein_buf_appendf(&text, "\n\n%s", input->valuestring);
        cJSON *target = cJSON_GetObjectItemCaseSensitive(o, "target");
        if (!st)
            st = set_push(s, cap, text.data, text.len,
                          cJSON_IsString(target) ? target->valuestring : NULL);
        cJSON_Delete(o);
    }
    rein_buf_free(&text);
    return st;
}

static rein_status read_lines(rein_prompt_set *s, size_t *cap, const rein_buf *b) {
    rein_status st = REIN_OK;
    for (const char *p = b->data ? b->data : ""; *p && !st;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *q = p;
        p = e ? e + 1 : p + n;
        while (n && (*q == ' ' || *q == '\t')) q++, n--;
        while (n && (q[n - 1] == ' ' || q[n - 1] == '\t' || q[n - 1] == '\r')) n--;
        if (!n || *q == '#') continue;
        st = set_push(s, cap, q, n, NULL);
    }
    return st;
}

rein_status rein_prompt_set_read(const char *path, rein_prompt_set **out) {
    *out = NULL;
    rein_buf b = {0};
    REIN_TRY(rein_read_file(path, &b));
    rein_prompt_set *s = rein_calloc(1, sizeof *s);
    rein_status st = s ? REIN_OK : REIN_ERR_NOMEM;
    size_t cap = 0;
    if (!st) st = (s->path = rein_strdup(path)) ? REIN_OK : REIN_ERR_NOMEM;
    if (!st) {
        if (ends_with(path, ".csv")) st = read_csv(s, &cap, path, &b);
        else if (ends_with(path, ".jsonl") || ends_with(path, ".json")) st = read_jsonl(s, &cap, path, &b);
        else st = read_lines(s, &cap, &b);
    }
    if (!st && s->n == 0) st = rein_error(REIN_ERR_FORMAT, "%s: no prompts", path);
    rein_buf_free(&b);
    if (st) {
        rein_prompt_set_free(s);
        return st;
    }
    *out = s;
    return REIN_OK;
}

void rein_prompt_set_free(rein_prompt_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        rein_free(s->text[i]);
        rein_free(s->target[i]);
    }
    rein_free(s->text);
    rein_free(s->target);
    rein_free(s->path);
    rein_free(s);
}
