/* examples.c - dataset records into token sequences with loss masks (the rules are in examples.h).
 *
 * A builder appends tokenised segments of text, each either learned (mask 1) or context (mask 0).
 * Conversations go through the chat template: the learned spans are found by rendering the
 * conversation turn by turn and checking that each rendering extends the previous one; plain
 * strings are tokenised part by part. Every failure is a status with a message; the batch
 * function adds "FILE:LINE: " and either fails listing all of them or skips and counts.
 */
#include "train/examples.h"

#include "base/base.h"

#include <string.h>

rein_example_params rein_example_default_params(void) {
    rein_example_params p = {NULL, NULL, 0, 1, 0, 0};
    return p;
}

void rein_example_free(rein_example *e) {
    if (!e) return;
    rein_free(e->tokens);
    rein_free(e->mask);
    e->tokens = NULL;
    e->mask = NULL;
    e->n = 0;
}

/* ---- the builder ---------------------------------------------------------------------------- */

typedef struct builder {
    rein_tokens t;
    uint8_t *mask; /* (t.n) */
    size_t mcap;
} builder;

static void builder_free(builder *b) {
    rein_tokens_free(&b->t);
    rein_free(b->mask);
}

/* Make the mask as long as the tokens, new entries set to `target`. */
static rein_status fill_mask(builder *b, size_t from, uint8_t target) {
    if (b->t.n > b->mcap) {
        size_t cap = b->t.n > 2 * b->mcap ? b->t.n : 2 * b->mcap;
        uint8_t *m = rein_realloc(b->mask, cap);
        if (!m) return REIN_ERR_NOMEM;
        b->mask = m;
        b->mcap = cap;
    }
    if (b->t.n > from) memset(b->mask + from, target, b->t.n - from);
    return REIN_OK;
}

static rein_status add_text(builder *b, const rein_tokenizer *tok, const char *s, size_t len,
                            int flags, uint8_t target) {
    size_t from = b->t.n;
    if (len) REIN_TRY(rein_tokenize(tok, s, len, flags, &b->t));
    return fill_mask(b, from, target);
}

static rein_status add_token(builder *b, int32_t id, uint8_t target) {
    size_t from = b->t.n;
    REIN_TRY(rein_tokens_push(&b->t, id));
    return fill_mask(b, from, target);
}

/* BOS when the vocabulary asks for it and `text` (NULL: not checked) does not already begin with
 * BOS's own text. */
static rein_status add_bos(builder *b, const rein_tokenizer *tok, const char *text) {
    rein_tokens t = {0};
    rein_status st = rein_tokenize(tok, "", 0, REIN_TOKENIZE_ADD_BOS, &t);
    int32_t bos = st == REIN_OK && t.n == 1 ? t.ids[0] : -1;
    rein_tokens_free(&t);
    REIN_TRY(st);
    if (bos < 0) return REIN_OK;
    rein_buf piece = {0};
    st = rein_token_to_bytes(tok, bos, 1, &piece);
    int present = st == REIN_OK && text && piece.len > 0 && !strncmp(text, piece.data, piece.len);
    rein_buf_free(&piece);
    REIN_TRY(st);
    return present ? REIN_OK : add_token(b, bos, 0);
}

/* Finish: mask[0] = 0, train_on_prompt, checks, and hand the arrays over to *out. */
static rein_status finish(builder *b, const rein_example_params *p, int all_after_first,
                          rein_example *out) {
    if (b->t.n == 0) return rein_error(REIN_ERR_FORMAT, "the example has no tokens");
    if (all_after_first) memset(b->mask, 1, b->t.n);
    b->mask[0] = 0;
    size_t n_target = 0;
    for (size_t i = 0; i < b->t.n; i++)
        n_target += b->mask[i];
    if (!n_target) return rein_error(REIN_ERR_FORMAT, "the example has no token to learn");
    if (p->max_len && b->t.n > p->max_len)
        return rein_error(REIN_ERR_RANGE,
                          "the example has %zu tokens, more than max_len %zu (examples are never "
                          "truncated: raise max_len, shorten the record or skip it)",
                          b->t.n, p->max_len);
    out->tokens = b->t.ids;
    out->mask = b->mask;
    out->n = b->t.n;
    b->t.ids = NULL;
    b->t.n = b->t.cap = 0;
    b->mask = NULL;
    b->mcap = 0;
    return REIN_OK;
}

/* ---- plain strings -------------------------------------------------------------------------- */

/* [BOS] prompt learned-part [EOS]: the learned part and EOS are targets. */
static rein_status build_plain(const rein_example_params *p, const char *prompt,
                               const char *learned, int all_after_first, rein_example *out) {
    builder b = {0};
    const rein_tokenizer *tok = p->tok;
    rein_status st = add_bos(&b, tok, NULL);
    if (st == REIN_OK) st = add_text(&b, tok, prompt, strlen(prompt), 0, 0);
    if (st == REIN_OK) st = add_text(&b, tok, learned, strlen(learned), 0, 1);
    int32_t eos = rein_token_eos(tok);
    if (st == REIN_OK && p->add_eos && eos >= 0) st = add_token(&b, eos, 1);
    if (st == REIN_OK) st = finish(&b, p, all_after_first, out);
    builder_free(&b);
    return st;
}

/* ---- conversations -------------------------------------------------------------------------- */

/* Whether a[0..na) starts with b[0..nb). */
static int starts_with(const char *a, size_t na, const char *b, size_t nb) {
    return nb <= na && !memcmp(a, b, nb);
}

/* The end of the learned part of an assistant span s[a..e): just after its last end-of-turn text
 * when only whitespace (template glue) follows it, else e. */
static size_t learned_end(const rein_chat_template *ct, const char *s, size_t a, size_t e) {
    const char *eot = rein_chat_template_end_of_turn(ct);
    if (!eot || !eot[0]) return e;
    size_t el = strlen(eot);
    for (size_t k = e; k >= a + el; k--) {
        if (memcmp(s + k - el, eot, el) != 0) continue;
        for (size_t i = k; i < e; i++)
            if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') return e;
        return k;
    }
    return e;
}

typedef struct span {
    size_t a, e;
} span;

/* Tokenise msgs[0..n): learned spans are the assistant turns from index `first` on (all_rest = 0)
 * or everything from the generation prompt after msgs[first-1] up to the last end-of-turn
 * (all_rest = 1, preference responses). */
static rein_status build_conv(const rein_example_params *p, const rein_msg *msgs, size_t n,
                              size_t first, int all_rest, int all_after_first, rein_example *out) {
    if (!p->tmpl)
        return rein_error(REIN_ERR_INVALID, "a conversation needs a chat template (none given)");
    const rein_chat_template *ct = p->tmpl;
    rein_chat_msg *cm = rein_malloc((n ? n : 1) * sizeof(*cm));
    span *spans = rein_malloc((n ? n : 1) * sizeof(*spans));
    rein_buf full = {0}, pre = {0}, thr = {0};
    builder b = {0};
    rein_status st = cm && spans ? REIN_OK : REIN_ERR_NOMEM;
    for (size_t i = 0; st == REIN_OK && i < n; i++) {
        cm[i].role = rein_role_name(msgs[i].role);
        cm[i].content = msgs[i].content;
    }
    if (st == REIN_OK) st = rein_chat_apply(ct, cm, n, 0, &full);
    size_t n_spans = 0, prev_end = 0;
    for (size_t j = first; st == REIN_OK && j < n; j++) {
        if (!all_rest && msgs[j].role != REIN_ROLE_ASSISTANT) continue;
        rein_buf_clear(&pre);
        rein_buf_clear(&thr);
        st = rein_chat_apply(ct, cm, j, 1, &pre);
        if (st == REIN_OK) st = rein_chat_apply(ct, cm, all_rest ? n : j + 1, 0, &thr);
        if (st != REIN_OK) break;
        if (!starts_with(thr.data, thr.len, pre.data, pre.len) ||
            !starts_with(full.data, full.len, thr.data, thr.len) || pre.len < prev_end) {
            st = rein_error(REIN_ERR_FORMAT,
                            "chat template %s does not render turn by turn: the conversation up to "
                            "turn %zu (with the generation prompt) is not a prefix of the one "
                            "through it, so the assistant span cannot be found",
                            rein_chat_template_name(ct), j);
            break;
        }
        spans[n_spans].a = pre.len;
        spans[n_spans].e = learned_end(ct, full.data, pre.len, thr.len);
        prev_end = thr.len;
        n_spans++;
        if (all_rest) break;
    }
    const int fl = REIN_TOKENIZE_PARSE_SPECIAL;
    if (st == REIN_OK) st = add_bos(&b, p->tok, full.data);
    size_t at = 0;
    for (size_t k = 0; st == REIN_OK && k < n_spans; k++) {
        st = add_text(&b, p->tok, full.data + at, spans[k].a - at, fl, 0);
        if (st == REIN_OK)
            st = add_text(&b, p->tok, full.data + spans[k].a, spans[k].e - spans[k].a, fl, 1);
        at = spans[k].e;
    }
    if (st == REIN_OK) st = add_text(&b, p->tok, full.data + at, full.len - at, fl, 0);
    if (st == REIN_OK) st = finish(&b, p, all_after_first, out);
    builder_free(&b);
    rein_buf_free(&full);
    rein_buf_free(&pre);
    rein_buf_free(&thr);
    rein_free(cm);
    rein_free(spans);
    return st;
}

/* prompt ++ rest as one array (both lists are short). */
static rein_status concat(const rein_msg_list *a, const rein_msg_list *b, rein_msg **out) {
    *out = rein_malloc((a->n + b->n ? a->n + b->n : 1) * sizeof(rein_msg));
    if (!*out) return REIN_ERR_NOMEM;
    if (a->n) memcpy(*out, a->msgs, a->n * sizeof(rein_msg));
    if (b->n) memcpy(*out + a->n, b->msgs, b->n * sizeof(rein_msg));
    return REIN_OK;
}

/* ---- records -------------------------------------------------------------------------------- */

static void clear(rein_example *out) {
    memset(out, 0, sizeof *out);
}

rein_status rein_example_sft(const rein_example_params *p, const rein_sft_record *r,
                             rein_example *out) {
    clear(out);
    if (!p || !p->tok) return rein_error(REIN_ERR_INVALID, "rein_example_sft: no tokenizer");
    out->line = r->line;
    int top = p->train_on_prompt;
    switch (r->kind) {
    case REIN_SFT_MESSAGES:
        return build_conv(p, r->messages.msgs, r->messages.n, 0, 0, top, out);
    case REIN_SFT_CONV_COMPLETION: {
        rein_msg *m;
        REIN_TRY(concat(&r->prompt_msgs, &r->completion_msgs, &m));
        rein_status st = build_conv(p, m, r->prompt_msgs.n + r->completion_msgs.n, r->prompt_msgs.n,
                                    0, top, out);
        rein_free(m);
        return st;
    }
    case REIN_SFT_PROMPT_COMPLETION:
        return build_plain(p, r->prompt, r->completion, top, out);
    case REIN_SFT_TEXT:
        return build_plain(p, "", r->text, 1, out);
    }
    return rein_error(REIN_ERR_INVALID, "rein_example_sft: unknown record kind %d", (int)r->kind);
}

rein_status rein_example_response(const rein_example_params *p, int conversational,
                                  const rein_msg_list *prompt, const char *prompt_text,
                                  const rein_msg_list *response, const char *response_text,
                                  rein_example *out) {
    clear(out);
    if (!p || !p->tok) return rein_error(REIN_ERR_INVALID, "rein_example_response: no tokenizer");
    if (!conversational) {
        if (!prompt_text || !response_text)
            return rein_error(REIN_ERR_INVALID, "rein_example_response: a string is NULL");
        return build_plain(p, prompt_text, response_text, 0, out);
    }
    if (!prompt || !response || response->n == 0)
        return rein_error(REIN_ERR_INVALID, "rein_example_response: no response turns");
    rein_msg *m;
    REIN_TRY(concat(prompt, response, &m));
    rein_status st = build_conv(p, m, prompt->n + response->n, prompt->n, 1, 0, out);
    rein_free(m);
    return st;
}

rein_status rein_example_pref(const rein_example_params *p, const rein_pref_record *r,
                              rein_example *chosen, rein_example *rejected) {
    clear(rejected);
    rein_status st = rein_example_response(p, r->conversational, &r->prompt, r->prompt_text,
                                           &r->chosen, r->chosen_text, chosen);
    if (st != REIN_OK) return rein_error_wrap(st, "chosen: ");
    st = rein_example_response(p, r->conversational, &r->prompt, r->prompt_text, &r->rejected,
                               r->rejected_text, rejected);
    if (st != REIN_OK) {
        rein_example_free(chosen);
        return rein_error_wrap(st, "rejected: ");
    }
    chosen->line = rejected->line = r->line;
    rejected->rank = 1;
    return REIN_OK;
}

/* ---- a whole dataset ------------------------------------------------------------------------ */

void rein_example_set_free(rein_example_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        rein_example_free(&s->ex[i]);
    rein_free(s->ex);
    rein_free(s);
}

static rein_status reserve(rein_example_set *s, size_t *cap, size_t more) {
    if (s->n + more <= *cap) return REIN_OK;
    size_t c = *cap ? *cap : 64;
    while (c < s->n + more)
        c *= 2;
    rein_example *e = rein_realloc(s->ex, c * sizeof(*e));
    if (!e) return REIN_ERR_NOMEM;
    s->ex = e;
    *cap = c;
    return REIN_OK;
}

/* The examples of record i appended to s (all of them, or none and an error). */
static rein_status record_examples(const rein_dataset *ds, const rein_example_params *p, size_t i,
                                   rein_example_set *s, size_t *cap, int *line) {
    switch (ds->format) {
    case REIN_DATA_SFT:
        *line = ds->sft[i].line;
        REIN_TRY(reserve(s, cap, 1));
        REIN_TRY(rein_example_sft(p, &ds->sft[i], &s->ex[s->n]));
        s->ex[s->n].record = i;
        s->n++;
        return REIN_OK;
    case REIN_DATA_PREF:
    case REIN_DATA_HH:
        *line = ds->pref[i].line;
        REIN_TRY(reserve(s, cap, 2));
        REIN_TRY(rein_example_pref(p, &ds->pref[i], &s->ex[s->n], &s->ex[s->n + 1]));
        s->ex[s->n].record = s->ex[s->n + 1].record = i;
        s->n += 2;
        return REIN_OK;
    case REIN_DATA_RANKING: {
        const rein_rank_record *r = &ds->rank[i];
        *line = r->line;
        REIN_TRY(reserve(s, cap, r->n_responses));
        for (size_t k = 0; k < r->n_responses; k++) {
            rein_example *e = &s->ex[s->n + k];
            rein_status st =
                rein_example_response(p, r->conversational, &r->prompt, r->prompt_text,
                                      r->conversational ? &r->responses[k] : NULL,
                                      r->conversational ? NULL : r->response_texts[k], e);
            if (st != REIN_OK) {
                for (size_t j = 0; j < k; j++)
                    rein_example_free(&s->ex[s->n + j]);
                return rein_error_wrap(st, "responses[%zu]: ", k);
            }
            e->record = i;
            e->rank = r->rank[k];
            e->line = r->line;
        }
        s->n += r->n_responses;
        return REIN_OK;
    }
    default:
        break;
    }
    return rein_error(REIN_ERR_INVALID, "dataset format %d has no examples", (int)ds->format);
}

rein_status rein_examples_build(const rein_dataset *ds, const rein_example_params *p,
                                rein_example_set **out, rein_buf *problems) {
    *out = NULL;
    if (!p || !p->tok) return rein_error(REIN_ERR_INVALID, "rein_examples_build: no tokenizer");
    rein_example_set *s = rein_calloc(1, sizeof(*s));
    if (!s) return REIN_ERR_NOMEM;
    size_t cap = 0, n_bad = 0, n_range = 0;
    char first[1024] = "";
    rein_status st = REIN_OK;
    for (size_t i = 0; i < ds->n && st == REIN_OK; i++) {
        int line = 0;
        rein_status rs = record_examples(ds, p, i, s, &cap, &line);
        if (rs == REIN_OK) continue;
        if (rs != REIN_ERR_FORMAT && rs != REIN_ERR_RANGE) {
            st = rs;
            break;
        }
        if (!n_bad) snprintf(first, sizeof first, "%s:%d: %s", ds->path, line, rein_last_error());
        n_bad++;
        n_range += rs == REIN_ERR_RANGE;
        if (problems)
            st = rein_buf_appendf(problems, "%s:%d: %s\n", ds->path, line, rein_last_error());
    }
    if (st == REIN_OK && n_bad && !p->skip_bad)
        st = rein_error(n_range == n_bad ? REIN_ERR_RANGE : REIN_ERR_FORMAT,
                        "%s: %zu of %zu records make no example; the first: %s", ds->path, n_bad,
                        ds->n, first);
    if (st == REIN_OK && s->n == 0)
        st =
            rein_error(REIN_ERR_FORMAT, "%s: no examples (every record was skipped); the first: %s",
                       ds->path, first);
    if (st != REIN_OK) {
        rein_example_set_free(s);
        return st;
    }
    s->n_skipped = n_bad;
    *out = s;
    return REIN_OK;
}
