/* dataset.c - reading and checking JSONL training datasets (the forms are listed in dataset.h).
 *
 * The file is cut into lines; each non-blank line is parsed with cJSON, then turned into one
 * record by the reader of the dataset's format, which checks every field as it goes. A bad line
 * becomes one problem "FILE:LINE: what" and reading goes on, so that one pass lists all of them.
 * Strings and message arrays of the kept records live in an arena owned by the dataset: a bad
 * line's partial allocations are rolled back to a mark taken before it, so there is nothing to
 * free record by record. cJSON is routed through rein's allocator (its global hooks are set once,
 * to rein_malloc / rein_free), so allocation failures are counted and reported as
 * REIN_ERR_NOMEM, never read as malformed JSON.
 */
#include "formats/dataset.h"

#include "base/base.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------- */

static const char *const FORMAT_NAMES[] = {"auto", "sft", "pref", "hh", "ranking"};
static const char *const ROLE_NAMES[] = {"system", "user", "assistant"};

const char *rein_data_format_name(rein_data_format f) {
    return (unsigned)f < 5 ? FORMAT_NAMES[f] : "?";
}

rein_status rein_data_format_from_name(const char *name, rein_data_format *out) {
    for (int i = 0; i < 5; i++)
        if (name && !strcmp(name, FORMAT_NAMES[i])) {
            *out = (rein_data_format)i;
            return REIN_OK;
        }
    return rein_error(REIN_ERR_INVALID,
                      "dataset format \"%s\" is not known; use auto, sft, pref, hh or ranking",
                      name ? name : "(null)");
}

const char *rein_role_name(rein_role r) {
    return (unsigned)r < 3 ? ROLE_NAMES[r] : "?";
}

rein_dataset_params rein_dataset_default_params(void) {
    rein_dataset_params p = {REIN_DATA_AUTO, 0};
    return p;
}

/* ---- the arena ----------------------------------------------------------------------------
 * Chunks linked newest first; allocation bumps inside the newest. A mark is (chunk, used); rolling
 * back frees the chunks made after it. Pointers into it never move. */

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) char data[];
} chunk;

struct rein_data_arena {
    chunk *head;
};

typedef struct mark {
    chunk *c;
    size_t used;
} mark;

static void *arena_alloc(struct rein_data_arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (!a->head || a->head->size - a->head->used < size) {
        size_t cs = size > 65536 ? size : 65536;
        chunk *c = rein_malloc(sizeof(chunk) + cs);
        if (!c) return NULL;
        c->next = a->head;
        c->size = cs;
        c->used = 0;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += size;
    return p;
}

static mark arena_mark(const struct rein_data_arena *a) {
    mark m = {a->head, a->head ? a->head->used : 0};
    return m;
}

static void arena_rollback(struct rein_data_arena *a, mark m) {
    while (a->head && a->head != m.c) {
        chunk *c = a->head;
        a->head = c->next;
        rein_free(c);
    }
    if (a->head) a->head->used = m.used;
}

static void arena_free(struct rein_data_arena *a) {
    if (!a) return;
    mark none = {NULL, 0};
    arena_rollback(a, none);
    rein_free(a);
}

/* ---- cJSON through rein's allocator ----------------------------------------------------- */

static _Thread_local int json_oom; /* an allocation inside cJSON failed on this thread */

static void *json_malloc(size_t size) {
    void *p = rein_malloc(size);
    if (!p) json_oom = 1;
    return p;
}

static void json_hooks_init(void) {
    cJSON_Hooks h = {json_malloc, rein_free};
    cJSON_InitHooks(&h);
}

static pthread_once_t json_once = PTHREAD_ONCE_INIT;

/* ---- the per-line reader -----------------------------------------------------------------
 * A line reader returns REIN_OK, REIN_ERR_FORMAT with the problem written to r->why, or
 * REIN_ERR_NOMEM (fatal for the whole read). */

typedef struct reader {
    struct rein_data_arena *arena;
    char why[768];
} reader;

static rein_status bad(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static rein_status bad(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    return REIN_ERR_FORMAT;
}

/* A short, printable quotation of s (at most ~40 characters) for a message. */
static const char *quote(const char *s, char *dst, size_t cap) {
    size_t o = 0;
    dst[o++] = '"';
    for (size_t i = 0; s[i] && o + 8 < cap; i++) {
        if (i >= 40) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            dst[o++] = '\\', dst[o++] = 'n';
        else if (c == '"' || c == '\\')
            dst[o++] = '\\', dst[o++] = (char)c;
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o++] = '"';
    dst[o] = 0;
    return dst;
}

static const char *json_kind(const cJSON *x) {
    if (cJSON_IsString(x)) return "a string";
    if (cJSON_IsNumber(x)) return "a number";
    if (cJSON_IsArray(x)) return "an array";
    if (cJSON_IsObject(x)) return "an object";
    if (cJSON_IsBool(x)) return "a boolean";
    if (cJSON_IsNull(x)) return "null";
    return "an invalid value";
}

/* Offset of the first byte of s that is not part of valid UTF-8 (no overlongs, surrogates or
 * code points past U+10FFFF), or -1. */
static long utf8_invalid_at(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i];) {
        unsigned c = p[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return (long)i;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return (long)i;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return (long)i;
        i += n + 1;
    }
    return -1;
}

static char *arena_strndup(reader *r, const char *s, size_t n) {
    char *d = arena_alloc(r->arena, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A string value (field names it in messages): checked for UTF-8, copied into the arena. */
static rein_status take_string(reader *r, const cJSON *x, const char *field, const char **out) {
    if (!cJSON_IsString(x) || !x->valuestring)
        return bad(r, "field \"%s\": expected a string, found %s", field, json_kind(x));
    long at = utf8_invalid_at(x->valuestring);
    if (at >= 0) return bad(r, "field \"%s\": invalid UTF-8 at byte %ld of the string", field, at);
    char *s = arena_strndup(r, x->valuestring, strlen(x->valuestring));
    if (!s) return REIN_ERR_NOMEM;
    *out = s;
    return REIN_OK;
}

static rein_status need_string(reader *r, const cJSON *obj, const char *key, const char **out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!x) return bad(r, "missing field \"%s\"", key);
    return take_string(r, x, key, out);
}

/* A message list: an array of {"role", "content"} objects (other keys ignored). */
static rein_status take_msgs(reader *r, const cJSON *x, const char *field, rein_msg_list *out) {
    if (!cJSON_IsArray(x))
        return bad(r, "field \"%s\": expected an array of messages, found %s", field, json_kind(x));
    size_t n = (size_t)cJSON_GetArraySize(x);
    rein_msg *m = arena_alloc(r->arena, (n ? n : 1) * sizeof(rein_msg));
    if (!m) return REIN_ERR_NOMEM;
    size_t i = 0;
    char name[96], q[64];
    for (const cJSON *e = x->child; e; e = e->next, i++) {
        if (!cJSON_IsObject(e))
            return bad(r, "field \"%s[%zu]\": expected a message object, found %s", field, i,
                       json_kind(e));
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!role) return bad(r, "field \"%s[%zu]\": missing \"role\"", field, i);
        if (!content) return bad(r, "field \"%s[%zu]\": missing \"content\"", field, i);
        snprintf(name, sizeof name, "%s[%zu].role", field, i);
        if (!cJSON_IsString(role))
            return bad(r, "field \"%s\": expected a string, found %s", name, json_kind(role));
        int k = -1;
        for (int j = 0; j < 3; j++)
            if (!strcmp(role->valuestring, ROLE_NAMES[j])) k = j;
        if (k < 0)
            return bad(r, "field \"%s\": unknown role %s (expected system, user or assistant)",
                       name, quote(role->valuestring, q, sizeof q));
        m[i].role = (rein_role)k;
        snprintf(name, sizeof name, "%s[%zu].content", field, i);
        REIN_TRY(take_string(r, content, name, &m[i].content));
    }
    out->msgs = m;
    out->n = n;
    return REIN_OK;
}

/* Every assistant turn non-empty, and at least one of them. */
static rein_status check_assistant(reader *r, const rein_msg_list *l, const char *field,
                                   size_t index_base) {
    size_t n_asst = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->msgs[i].role != REIN_ROLE_ASSISTANT) continue;
        n_asst++;
        if (!l->msgs[i].content[0])
            return bad(r, "field \"%s[%zu].content\": empty assistant turn", field, i + index_base);
    }
    if (!n_asst) return bad(r, "field \"%s\": no assistant turn to learn from", field);
    return REIN_OK;
}

static int msg_equal(const rein_msg *a, const rein_msg *b) {
    return a->role == b->role && !strcmp(a->content, b->content);
}

static int list_equal(const rein_msg_list *a, const rein_msg_list *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (!msg_equal(&a->msgs[i], &b->msgs[i])) return 0;
    return 1;
}

/* A response list of a preference or ranking record. When an explicit prompt is given and the list
 * restates the conversation (its first turn is not the assistant's), the prompt's turns must start
 * it and are dropped. What is left must start with a non-empty assistant turn. */
static rein_status take_response(reader *r, rein_msg_list *l, const rein_msg_list *prompt,
                                 const char *field) {
    size_t base = 0;
    if (prompt && l->n > 0 && l->msgs[0].role != REIN_ROLE_ASSISTANT) {
        for (size_t i = 0; i < prompt->n; i++)
            if (i >= l->n || !msg_equal(&l->msgs[i], &prompt->msgs[i]))
                return bad(r,
                           "field \"%s\": restates the conversation but does not start with the "
                           "prompt (turn %zu differs)",
                           field, i);
        base = prompt->n;
        l->msgs += base;
        l->n -= base;
    }
    if (l->n == 0)
        return bad(r, "field \"%s\": no response turns%s", field, base ? " after the prompt" : "");
    if (l->msgs[0].role != REIN_ROLE_ASSISTANT)
        return bad(r, "field \"%s[%zu]\": the response must start with an assistant turn, found %s",
                   field, base, ROLE_NAMES[l->msgs[0].role]);
    return check_assistant(r, l, field, base);
}

/* ---- SFT ---------------------------------------------------------------------------------- */

static rein_status read_sft(reader *r, const cJSON *obj, rein_sft_record *rec) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(obj, "completion");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text");
    if (messages) {
        rec->kind = REIN_SFT_MESSAGES;
        REIN_TRY(take_msgs(r, messages, "messages", &rec->messages));
        if (rec->messages.n == 0) return bad(r, "field \"messages\": empty conversation");
        return check_assistant(r, &rec->messages, "messages", 0);
    }
    if (prompt || completion) {
        if (!prompt) return bad(r, "missing field \"prompt\" (beside \"completion\")");
        if (!completion) return bad(r, "missing field \"completion\" (beside \"prompt\")");
        if (cJSON_IsArray(prompt) && cJSON_IsArray(completion)) {
            rec->kind = REIN_SFT_CONV_COMPLETION;
            REIN_TRY(take_msgs(r, prompt, "prompt", &rec->prompt_msgs));
            REIN_TRY(take_msgs(r, completion, "completion", &rec->completion_msgs));
            if (rec->completion_msgs.n == 0) return bad(r, "field \"completion\": empty");
            return check_assistant(r, &rec->completion_msgs, "completion", 0);
        }
        if (cJSON_IsString(prompt) && cJSON_IsString(completion)) {
            rec->kind = REIN_SFT_PROMPT_COMPLETION;
            REIN_TRY(take_string(r, prompt, "prompt", &rec->prompt));
            REIN_TRY(take_string(r, completion, "completion", &rec->completion));
            if (!rec->completion[0]) return bad(r, "field \"completion\": empty completion");
            return REIN_OK;
        }
        return bad(r,
                   "fields \"prompt\" and \"completion\": expected two strings or two message "
                   "arrays, found %s and %s",
                   json_kind(prompt), json_kind(completion));
    }
    if (text) {
        rec->kind = REIN_SFT_TEXT;
        REIN_TRY(take_string(r, text, "text", &rec->text));
        if (!rec->text[0]) return bad(r, "field \"text\": empty text");
        return REIN_OK;
    }
    return bad(r, "missing field: an SFT record has \"messages\", \"prompt\" + \"completion\" or "
                  "\"text\"");
}

/* ---- preference ----------------------------------------------------------------------------- */

static int same_kind(const cJSON *a, const cJSON *b) {
    return (cJSON_IsString(a) && cJSON_IsString(b)) || (cJSON_IsArray(a) && cJSON_IsArray(b));
}

/* Find the end of the last "\n\nAssistant:" that ends within s[0..len), or 0. */
static size_t last_assistant_boundary(const char *s, size_t len) {
    static const char mark_[] = "\n\nAssistant:";
    size_t m = sizeof mark_ - 1, best = 0;
    for (const char *p = strstr(s, mark_); p && (size_t)(p - s) + m <= len;
         p = strstr(p + 1, mark_))
        best = (size_t)(p - s) + m;
    return best;
}

static rein_status read_pref(reader *r, const cJSON *obj, rein_pref_record *rec) {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *chosen = cJSON_GetObjectItemCaseSensitive(obj, "chosen");
    const cJSON *rejected = cJSON_GetObjectItemCaseSensitive(obj, "rejected");
    if (!chosen) return bad(r, "missing field \"chosen\"");
    if (!rejected) return bad(r, "missing field \"rejected\"");
    if (!cJSON_IsString(chosen) && !cJSON_IsArray(chosen))
        return bad(r, "field \"chosen\": expected a string or an array of messages, found %s",
                   json_kind(chosen));
    if (!same_kind(chosen, rejected))
        return bad(r, "field \"rejected\": expected %s like \"chosen\", found %s",
                   json_kind(chosen), json_kind(rejected));
    if (prompt && !same_kind(chosen, prompt))
        return bad(r, "field \"prompt\": expected %s like \"chosen\", found %s", json_kind(chosen),
                   json_kind(prompt));
    if (cJSON_IsString(chosen)) {
        rec->conversational = 0;
        REIN_TRY(take_string(r, chosen, "chosen", &rec->chosen_text));
        REIN_TRY(take_string(r, rejected, "rejected", &rec->rejected_text));
        if (!strcmp(rec->chosen_text, rec->rejected_text))
            return bad(r, "fields \"chosen\" and \"rejected\": identical");
        if (prompt) {
            REIN_TRY(take_string(r, prompt, "prompt", &rec->prompt_text));
        } else {
            const char *c = rec->chosen_text, *j = rec->rejected_text;
            size_t l = 0;
            while (c[l] && c[l] == j[l])
                l++;
            size_t cut = last_assistant_boundary(c, l);
            if (!cut)
                return bad(r, "fields \"chosen\" and \"rejected\": no \"prompt\", and their common "
                              "start does not end at a turn boundary (\"\\n\\nAssistant:\"); give "
                              "a prompt, or read Anthropic HH data with the hh format");
            char *p = arena_strndup(r, c, cut);
            if (!p) return REIN_ERR_NOMEM;
            rec->prompt_text = p;
            rec->chosen_text += cut;
            rec->rejected_text += cut;
        }
        if (!rec->chosen_text[0]) return bad(r, "field \"chosen\": empty response");
        if (!rec->rejected_text[0]) return bad(r, "field \"rejected\": empty response");
        return REIN_OK;
    }
    rec->conversational = 1;
    REIN_TRY(take_msgs(r, chosen, "chosen", &rec->chosen));
    REIN_TRY(take_msgs(r, rejected, "rejected", &rec->rejected));
    if (list_equal(&rec->chosen, &rec->rejected))
        return bad(r, "fields \"chosen\" and \"rejected\": identical");
    if (prompt) {
        REIN_TRY(take_msgs(r, prompt, "prompt", &rec->prompt));
        REIN_TRY(take_response(r, &rec->chosen, &rec->prompt, "chosen"));
        REIN_TRY(take_response(r, &rec->rejected, &rec->prompt, "rejected"));
        if (list_equal(&rec->chosen, &rec->rejected))
            return bad(r, "fields \"chosen\" and \"rejected\": identical responses");
        return REIN_OK;
    }
    size_t k = 0;
    while (k < rec->chosen.n && k < rec->rejected.n &&
           msg_equal(&rec->chosen.msgs[k], &rec->rejected.msgs[k]))
        k++;
    rec->prompt.msgs = rec->chosen.msgs;
    rec->prompt.n = k;
    rec->chosen.msgs += k, rec->chosen.n -= k;
    rec->rejected.msgs += k, rec->rejected.n -= k;
    REIN_TRY(take_response(r, &rec->chosen, NULL, "chosen"));
    REIN_TRY(take_response(r, &rec->rejected, NULL, "rejected"));
    return REIN_OK;
}

/* ---- Anthropic HH ------------------------------------------------------------------------- */

/* Split one "\n\nHuman: ...\n\nAssistant: ..." dialogue into turns in the arena, joining
 * consecutive turns of one role with "\n\n". */
static rein_status split_hh(reader *r, const char *s, const char *field, rein_msg_list *out) {
    static const char H[] = "\n\nHuman:", A[] = "\n\nAssistant:";
    const size_t hl = sizeof H - 1, al = sizeof A - 1;
    size_t cap = 0;
    for (const char *p = strstr(s, "\n\n"); p; p = strstr(p + 1, "\n\n"))
        cap++;
    if (strncmp(s, H, hl) != 0)
        return bad(r, "field \"%s\": the dialogue does not start with \"\\n\\nHuman:\"", field);
    rein_msg *m = arena_alloc(r->arena, cap * sizeof(rein_msg));
    if (!m) return REIN_ERR_NOMEM;
    size_t n = 0;
    const char *p = s;
    while (*p) {
        /* p is at a marker */
        rein_role role = !strncmp(p, H, hl) ? REIN_ROLE_USER : REIN_ROLE_ASSISTANT;
        const char *c = p + (role == REIN_ROLE_USER ? hl : al);
        if (*c == ' ') c++;
        const char *end = c;
        for (;;) {
            end = strstr(end, "\n\n");
            if (!end || !strncmp(end, H, hl) || !strncmp(end, A, al)) break;
            end += 1;
        }
        if (!end) end = c + strlen(c);
        size_t len = (size_t)(end - c);
        if (n > 0 && m[n - 1].role == role) {
            size_t pl = strlen(m[n - 1].content);
            char *j = arena_alloc(r->arena, pl + 2 + len + 1);
            if (!j) return REIN_ERR_NOMEM;
            memcpy(j, m[n - 1].content, pl);
            memcpy(j + pl, "\n\n", 2);
            memcpy(j + pl + 2, c, len);
            j[pl + 2 + len] = 0;
            m[n - 1].content = j;
        } else {
            REIN_ASSERT(n < cap);
            char *t = arena_strndup(r, c, len);
            if (!t) return REIN_ERR_NOMEM;
            m[n].role = role;
            m[n].content = t;
            n++;
        }
        p = end;
    }
    if (m[n - 1].role != REIN_ROLE_ASSISTANT)
        return bad(r, "field \"%s\": the dialogue ends with a Human turn, not an Assistant one",
                   field);
    out->msgs = m;
    out->n = n;
    return REIN_OK;
}

static rein_status read_hh(reader *r, const cJSON *obj, rein_pref_record *rec) {
    const char *c, *j;
    REIN_TRY(need_string(r, obj, "chosen", &c));
    REIN_TRY(need_string(r, obj, "rejected", &j));
    if (!strcmp(c, j)) return bad(r, "fields \"chosen\" and \"rejected\": identical");
    rec->conversational = 1;
    REIN_TRY(split_hh(r, c, "chosen", &rec->chosen));
    REIN_TRY(split_hh(r, j, "rejected", &rec->rejected));
    if (list_equal(&rec->chosen, &rec->rejected))
        return bad(r, "fields \"chosen\" and \"rejected\": identical turns");
    size_t k = 0;
    while (k < rec->chosen.n && k < rec->rejected.n &&
           msg_equal(&rec->chosen.msgs[k], &rec->rejected.msgs[k]))
        k++;
    if (k + 1 != rec->chosen.n || k + 1 != rec->rejected.n)
        return bad(r,
                   "fields \"chosen\" and \"rejected\": they differ at turn %zu, not only in their "
                   "final assistant turns (turns %zu and %zu)",
                   k, rec->chosen.n - 1, rec->rejected.n - 1);
    rec->prompt.msgs = rec->chosen.msgs;
    rec->prompt.n = k;
    rec->chosen.msgs += k, rec->chosen.n = 1;
    rec->rejected.msgs += k, rec->rejected.n = 1;
    return REIN_OK;
}

/* ---- ranking -------------------------------------------------------------------------------- */

static rein_status read_rank_index(reader *r, const cJSON *x, size_t K, int32_t place,
                                   int32_t *rank, const char *field) {
    if (!cJSON_IsNumber(x))
        return bad(r, "field \"%s\": expected a response index, found %s", field, json_kind(x));
    double v = x->valuedouble;
    if (!(v >= 0 && v < (double)K) || v != (double)(size_t)v)
        return bad(r, "field \"%s\": %g is not a response index (0..%zu)", field, v, K - 1);
    size_t i = (size_t)v;
    if (rank[i] >= 0) return bad(r, "field \"%s\": response %zu is ranked twice", field, i);
    rank[i] = place;
    return REIN_OK;
}

static rein_status read_ranking(reader *r, const cJSON *obj, rein_rank_record *rec) {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *responses = cJSON_GetObjectItemCaseSensitive(obj, "responses");
    const cJSON *ranking = cJSON_GetObjectItemCaseSensitive(obj, "ranking");
    if (!prompt) return bad(r, "missing field \"prompt\"");
    if (!responses) return bad(r, "missing field \"responses\"");
    if (!ranking) return bad(r, "missing field \"ranking\"");
    if (!cJSON_IsString(prompt) && !cJSON_IsArray(prompt))
        return bad(r, "field \"prompt\": expected a string or an array of messages, found %s",
                   json_kind(prompt));
    if (!cJSON_IsArray(responses))
        return bad(r, "field \"responses\": expected an array, found %s", json_kind(responses));
    if (!cJSON_IsArray(ranking))
        return bad(r, "field \"ranking\": expected an array, found %s", json_kind(ranking));
    size_t K = (size_t)cJSON_GetArraySize(responses);
    if (K < 2) return bad(r, "field \"responses\": %zu responses; a ranking needs at least 2", K);
    rec->conversational = cJSON_IsArray(prompt);
    rec->n_responses = K;
    char name[48];
    if (rec->conversational) {
        REIN_TRY(take_msgs(r, prompt, "prompt", &rec->prompt));
        rein_msg_list *l = arena_alloc(r->arena, K * sizeof(*l));
        if (!l) return REIN_ERR_NOMEM;
        size_t i = 0;
        for (const cJSON *e = responses->child; e; e = e->next, i++) {
            snprintf(name, sizeof name, "responses[%zu]", i);
            if (!cJSON_IsArray(e))
                return bad(r,
                           "field \"%s\": expected an array of messages like \"prompt\", found %s",
                           name, json_kind(e));
            REIN_TRY(take_msgs(r, e, name, &l[i]));
            REIN_TRY(take_response(r, &l[i], &rec->prompt, name));
        }
        rec->responses = l;
    } else {
        REIN_TRY(take_string(r, prompt, "prompt", &rec->prompt_text));
        const char **t = arena_alloc(r->arena, K * sizeof(*t));
        if (!t) return REIN_ERR_NOMEM;
        size_t i = 0;
        for (const cJSON *e = responses->child; e; e = e->next, i++) {
            snprintf(name, sizeof name, "responses[%zu]", i);
            if (!cJSON_IsString(e))
                return bad(r, "field \"%s\": expected a string like \"prompt\", found %s", name,
                           json_kind(e));
            REIN_TRY(take_string(r, e, name, &t[i]));
            if (!t[i][0]) return bad(r, "field \"%s\": empty response", name);
        }
        rec->response_texts = t;
    }
    int32_t *rank = arena_alloc(r->arena, K * sizeof(int32_t));
    if (!rank) return REIN_ERR_NOMEM;
    for (size_t i = 0; i < K; i++)
        rank[i] = -1;
    int32_t place = 0;
    size_t g = 0;
    for (const cJSON *e = ranking->child; e; e = e->next, g++, place++) {
        snprintf(name, sizeof name, "ranking[%zu]", g);
        if (cJSON_IsArray(e)) {
            if (!e->child) return bad(r, "field \"%s\": an empty tie", name);
            size_t t = 0;
            for (const cJSON *x = e->child; x; x = x->next, t++) {
                char sub[64];
                snprintf(sub, sizeof sub, "%s[%zu]", name, t);
                REIN_TRY(read_rank_index(r, x, K, place, rank, sub));
            }
        } else {
            REIN_TRY(read_rank_index(r, e, K, place, rank, name));
        }
    }
    for (size_t i = 0; i < K; i++)
        if (rank[i] < 0)
            return bad(r,
                       "field \"ranking\": response %zu is missing (a ranking must list each of "
                       "0..%zu once; ties as nested arrays)",
                       i, K - 1);
    if (place < 2) return bad(r, "field \"ranking\": every response tied; nothing is preferred");
    rec->rank = rank;
    return REIN_OK;
}

/* ---- the file ------------------------------------------------------------------------------- */

static rein_data_format detect(const cJSON *obj) {
    int has_msgs = cJSON_HasObjectItem(obj, "messages"),
        has_text = cJSON_HasObjectItem(obj, "text");
    int has_p = cJSON_HasObjectItem(obj, "prompt"), has_c = cJSON_HasObjectItem(obj, "completion");
    int has_ch = cJSON_HasObjectItem(obj, "chosen"), has_rj = cJSON_HasObjectItem(obj, "rejected");
    if (cJSON_HasObjectItem(obj, "responses") && cJSON_HasObjectItem(obj, "ranking"))
        return REIN_DATA_RANKING;
    if (has_ch && has_rj) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "chosen");
        if (!has_p && cJSON_IsString(c) && !strncmp(c->valuestring, "\n\nHuman:", 8))
            return REIN_DATA_HH;
        return REIN_DATA_PREF;
    }
    if (has_msgs || has_text || (has_p && has_c)) return REIN_DATA_SFT;
    return REIN_DATA_AUTO;
}

static void list_keys(const cJSON *obj, char *dst, size_t cap) {
    size_t o = 0;
    dst[0] = 0;
    for (const cJSON *e = obj->child; e && o + 1 < cap; e = e->next) {
        char q[64];
        int w = snprintf(dst + o, cap - o, "%s%s", o ? ", " : "", quote(e->string, q, sizeof q));
        if (w < 0) break;
        o += (size_t)w;
    }
    if (!obj->child) snprintf(dst, cap, "none");
}

typedef struct parse_state {
    const char *name;
    rein_dataset *ds;
    size_t cap; /* records allocated */
    rein_buf *problems;
    char first[1024]; /* the first problem, for the error message */
    size_t n_bad;
} parse_state;

static rein_status add_problem(parse_state *ps, size_t line, const char *why) {
    if (!ps->n_bad) snprintf(ps->first, sizeof ps->first, "%s:%zu: %s", ps->name, line, why);
    ps->n_bad++;
    if (ps->problems) return rein_buf_appendf(ps->problems, "%s:%zu: %s\n", ps->name, line, why);
    return REIN_OK;
}

static rein_status grow_records(parse_state *ps) {
    rein_dataset *ds = ps->ds;
    if (ds->n < ps->cap) return REIN_OK;
    size_t cap = ps->cap ? ps->cap * 2 : 64;
    void *p = NULL;
    switch (ds->format) {
    case REIN_DATA_SFT:
        if ((p = rein_realloc(ds->sft, cap * sizeof(*ds->sft)))) ds->sft = p;
        break;
    case REIN_DATA_RANKING:
        if ((p = rein_realloc(ds->rank, cap * sizeof(*ds->rank)))) ds->rank = p;
        break;
    default:
        if ((p = rein_realloc(ds->pref, cap * sizeof(*ds->pref)))) ds->pref = p;
        break;
    }
    if (!p) return REIN_ERR_NOMEM;
    ps->cap = cap;
    return REIN_OK;
}

/* One non-blank line: REIN_OK (a record kept), REIN_ERR_FORMAT (r->why says why) or NOMEM. */
static rein_status read_line(parse_state *ps, reader *r, const char *s, size_t len, size_t line,
                             int file_is_array) {
    rein_dataset *ds = ps->ds;
    const char *nul = memchr(s, 0, len);
    if (nul) return bad(r, "a NUL byte at column %zu: not a text line", (size_t)(nul - s) + 1);
    const char *end = NULL;
    json_oom = 0;
    cJSON *obj = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (json_oom) {
        cJSON_Delete(obj);
        return rein_error(REIN_ERR_NOMEM, "out of memory parsing JSON");
    }
    if (!obj) {
        size_t col = end && end >= s && end <= s + len ? (size_t)(end - s) + 1 : 1;
        return bad(r, "malformed JSON at column %zu%s", col,
                   col >= len ? " (the end of the line: is it cut short?)" : "");
    }
    size_t used = (size_t)(end - s);
    while (used < len && (s[used] == ' ' || s[used] == '\t' || s[used] == '\r'))
        used++;
    rein_status st = REIN_OK;
    if (used < len) {
        st = bad(r, "malformed JSON: unexpected text after the object at column %zu", used + 1);
    } else if (!cJSON_IsObject(obj)) {
        st = bad(r, "expected a JSON object, found %s%s", json_kind(obj),
                 file_is_array ? " (this looks like one JSON array; a dataset is JSON Lines: one "
                                 "object a line)"
                               : "");
    } else if (ds->format == REIN_DATA_AUTO) {
        ds->format = detect(obj);
        if (ds->format == REIN_DATA_AUTO) {
            char keys[256];
            list_keys(obj, keys, sizeof keys);
            st = bad(r,
                     "cannot tell the dataset format from the keys (%s): expected \"messages\", "
                     "\"prompt\" + \"completion\", \"text\", \"chosen\" + \"rejected\" or "
                     "\"prompt\" + \"responses\" + \"ranking\"; or name the format",
                     keys);
        }
    }
    if (st == REIN_OK) st = grow_records(ps);
    if (st == REIN_OK) {
        switch (ds->format) {
        case REIN_DATA_SFT: {
            rein_sft_record *rec = &ds->sft[ds->n];
            memset(rec, 0, sizeof *rec);
            st = read_sft(r, obj, rec);
            rec->line = (int)line;
            break;
        }
        case REIN_DATA_PREF:
        case REIN_DATA_HH: {
            rein_pref_record *rec = &ds->pref[ds->n];
            memset(rec, 0, sizeof *rec);
            st = ds->format == REIN_DATA_HH ? read_hh(r, obj, rec) : read_pref(r, obj, rec);
            rec->line = (int)line;
            break;
        }
        case REIN_DATA_RANKING: {
            rein_rank_record *rec = &ds->rank[ds->n];
            memset(rec, 0, sizeof *rec);
            st = read_ranking(r, obj, rec);
            rec->line = (int)line;
            break;
        }
        default:
            REIN_ASSERT(0);
        }
        if (st == REIN_OK) ds->n++;
    }
    cJSON_Delete(obj);
    return st;
}

rein_status rein_dataset_parse(const char *name, const char *data, size_t len,
                               const rein_dataset_params *p, rein_dataset **out,
                               rein_buf *problems) {
    *out = NULL;
    rein_dataset_params dp = p ? *p : rein_dataset_default_params();
    if ((unsigned)dp.format > REIN_DATA_RANKING)
        return rein_error(REIN_ERR_INVALID, "%s: dataset format %d is not known", name,
                          (int)dp.format);
    pthread_once(&json_once, json_hooks_init);
    rein_dataset *ds = rein_calloc(1, sizeof(*ds));
    if (!ds) return REIN_ERR_NOMEM;
    ds->format = dp.format;
    ds->arena = rein_calloc(1, sizeof(*ds->arena));
    ds->path = rein_strdup(name);
    reader *r = rein_malloc(sizeof(*r));
    if (!ds->arena || !ds->path || !r) {
        rein_free(r);
        rein_dataset_free(ds);
        return REIN_ERR_NOMEM;
    }
    r->arena = ds->arena;
    parse_state ps = {name, ds, 0, problems, {0}, 0};

    size_t pos = 0;
    if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) pos = 3;
    int file_is_array = 0;
    for (size_t i = pos; i < len; i++)
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\r' && data[i] != '\n') {
            file_is_array = data[i] == '[';
            break;
        }
    rein_status st = REIN_OK;
    size_t line = 0;
    while (pos < len && st == REIN_OK) {
        const char *s = data + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
            a++;
        if (a == n) continue; /* blank */
        mark m = arena_mark(ds->arena);
        r->why[0] = 0;
        rein_status lst = read_line(&ps, r, s, n, line, file_is_array);
        if (lst == REIN_ERR_FORMAT) {
            arena_rollback(ds->arena, m);
            st = add_problem(&ps, line, r->why);
        } else if (lst != REIN_OK) {
            st = lst;
        }
    }
    rein_free(r);
    ds->n_lines = line;
    if (st != REIN_OK) {
        rein_dataset_free(ds);
        return st;
    }
    if (ps.n_bad && !dp.skip_bad) {
        rein_dataset_free(ds);
        return rein_error(REIN_ERR_FORMAT,
                          "%s: %zu bad line%s of %zu (pass skip_bad to skip them); "
                          "the first: %s",
                          name, ps.n_bad, ps.n_bad == 1 ? "" : "s", line, ps.first);
    }
    if (ds->n == 0) {
        rein_dataset_free(ds);
        if (ps.n_bad)
            return rein_error(REIN_ERR_FORMAT, "%s: every line is bad (%zu); the first: %s", name,
                              ps.n_bad, ps.first);
        return rein_error(REIN_ERR_FORMAT, "%s: no records (the file is empty or blank)", name);
    }
    ds->n_skipped = ps.n_bad;
    *out = ds;
    return REIN_OK;
}

rein_status rein_dataset_read(const char *path, const rein_dataset_params *p, rein_dataset **out,
                              rein_buf *problems) {
    *out = NULL;
    rein_buf b = {0};
    rein_status st = rein_read_file(path, &b);
    if (st == REIN_OK) st = rein_dataset_parse(path, b.data, b.len, p, out, problems);
    rein_buf_free(&b);
    return st;
}

void rein_dataset_free(rein_dataset *ds) {
    if (!ds) return;
    arena_free(ds->arena);
    rein_free(ds->sft);
    rein_free(ds->pref);
    rein_free(ds->rank);
    rein_free(ds->path);
    rein_free(ds);
}
