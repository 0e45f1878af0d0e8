/* principles.c - stage 2's frame: the principle-driven conversation (principles in the system
 * turn, worked exemplars with internal thoughts as earlier turns), the parser that splits what
 * the model writes into thoughts and answer, and the filters on the answer.
 *
 * The conversation is the same for every prompt up to the last user turn; the pipeline renders
 * it once, runs it through the model once, and copies its KV cache into each prompt's sequence
 * (align/batchgen.h). */
#include "align/align.h"

#include <ctype.h>
#include <string.h>

static const char system_head[] =
    "You are a helpful, honest and harmless AI assistant. Before you answer, you think about "
    "which of these principles apply:\n";
static const char system_tail[] =
    "\nFirst write your internal thoughts after \"" REIN_THOUGHTS_START "\", naming the principles "
    "that apply, then write your answer to the user after \"Answer:\".";

void rein_align_msgs_free(rein_chat_msg *msgs, size_t n) {
    if (!msgs) return;
    for (size_t i = 0; i < n; i++) rein_free((void *)msgs[i].content);
    rein_free(msgs);
}

rein_status rein_principle_msgs(const rein_align_inputs *in, const char *user, rein_chat_msg **msgs,
                                size_t *n) {
    size_t total = 1 + 2 * in->n_exemplars + (user ? 1 : 0);
    rein_chat_msg *m = rein_calloc(total, sizeof *m);
    if (!m) return REIN_ERR_NOMEM;
    rein_buf b = {0};
    rein_status st = rein_buf_append(&b, system_head, strlen(system_head));
    for (size_t i = 0; i < in->n_principles && !st; i++)
        st = rein_buf_appendf(&b, "%zu (%s). %s\n", i + 1, in->principles[i].name,
                              in->principles[i].text);
    if (!st) st = rein_buf_append(&b, system_tail, strlen(system_tail));
    size_t k = 0;
    if (!st) m[k++] = (rein_chat_msg){"system", b.data}, b = (rein_buf){0};
    for (size_t i = 0; i < in->n_exemplars && !st; i++) {
        const rein_exemplar *e = &in->exemplars[i];
        char *u = rein_strdup(e->user);
        st = rein_buf_appendf(&b, REIN_THOUGHTS_START " %s\nAnswer: %s", e->thoughts, e->answer);
        if (!u || st) {
            rein_free(u);
            st = st ? st : REIN_ERR_NOMEM;
            break;
        }
        m[k++] = (rein_chat_msg){"user", u};
        m[k++] = (rein_chat_msg){"assistant", b.data};
        b = (rein_buf){0};
    }
    if (!st && user) {
        char *u = rein_strdup(user);
        if (!u) st = REIN_ERR_NOMEM;
        else m[k++] = (rein_chat_msg){"user", u};
    }
    rein_buf_free(&b);
    if (st) {
        rein_align_msgs_free(m, k);
        return st;
    }
    *msgs = m;
    *n = k;
    return REIN_OK;
}

rein_status rein_answer_parse(const char *generated, rein_parsed_answer *out) {
    out->thoughts = out->answer = NULL;
    const char *a = strstr(generated, "Answer:");
    size_t tl = a ? (size_t)(a - generated) : strlen(generated);
    out->thoughts = rein_align_trimmed_copy(generated, tl);
    if (!out->thoughts) return REIN_ERR_NOMEM;
    if (a) {
        const char *s = a + 7;
        out->answer = rein_align_trimmed_copy(s, strlen(s));
        if (!out->answer) {
            rein_parsed_answer_free(out);
            return REIN_ERR_NOMEM;
        }
    }
    return REIN_OK;
}

void rein_parsed_answer_free(rein_parsed_answer *a) {
    rein_free(a->thoughts);
    rein_free(a->answer);
    a->thoughts = a->answer = NULL;
}

/* The longest run of consecutive rouge tokens that `text` shares with `ref`, in tokens. */
static size_t longest_shared_run(const char **t, size_t nt, const char *ref) {
    rein_buf rb = {0};
    size_t nr = 0, best = 0;
    if (rein_rouge_tokens(ref, &rb, &nr)) return 0;
    const char **r = rein_malloc(sizeof(char *) * (nr ? nr : 1));
    if (r) {
        const char *p = rb.data;
        for (size_t i = 0; i < nr; i++) r[i] = p, p += strlen(p) + 1;
        for (size_t i = 0; i < nt; i++)
            for (size_t j = 0; j < nr; j++) {
                size_t k = 0;
                while (i + k < nt && j + k < nr && !strcmp(t[i + k], r[j + k])) k++;
                if (k > best) best = k;
            }
    }
    rein_free(r);
    rein_buf_free(&rb);
    return best;
}

/* Runs of this many tokens shared with an exemplar count as copying it. */
#define LEAK_RUN 8

rein_status rein_answer_check(const rein_align_inputs *in, const char *answer, int how, char *why,
                              size_t why_len, int *keep) {
    *keep = 0;
    if (how == REIN_GEN_TOO_LONG) {
        snprintf(why, why_len, "prompt too long for the context");
        return REIN_OK;
    }
    if (how != REIN_GEN_FINISHED) {
        snprintf(why, why_len, "truncated: %s", how == REIN_GEN_MAX_TOKENS ? "reached the token "
                 "limit" : "filled the context");
        return REIN_OK;
    }
    if (!answer) {
        snprintf(why, why_len, "no answer: no \"Answer:\" after the thoughts");
        return REIN_OK;
    }
    if (!answer[0]) {
        snprintf(why, why_len, "empty answer");
        return REIN_OK;
    }
    static const char *const format_marks[] = {REIN_THOUGHTS_START, "Answer:", "User:",
                                               "<|im_start|>", "<|im_end|>"};
    for (size_t i = 0; i < sizeof format_marks / sizeof *format_marks; i++)
        if (strstr(answer, format_marks[i])) {
            snprintf(why, why_len, "leaks the prompt format: contains \"%s\"", format_marks[i]);
            return REIN_OK;
        }
    rein_buf tb = {0};
    size_t nt = 0;
    REIN_TRY(rein_rouge_tokens(answer, &tb, &nt));
    const char **t = rein_malloc(sizeof(char *) * (nt ? nt : 1));
    if (!t) {
        rein_buf_free(&tb);
        return REIN_ERR_NOMEM;
    }
    const char *p = tb.data;
    for (size_t i = 0; i < nt; i++) t[i] = p, p += strlen(p) + 1;
    int dropped = 0;
    for (size_t e = 0; e < in->n_exemplars && !dropped; e++) {
        const rein_exemplar *x = &in->exemplars[e];
        const char *parts[] = {x->user, x->thoughts, x->answer};
        for (int k = 0; k < 3 && !dropped; k++) {
            size_t run = longest_shared_run(t, nt, parts[k]);
            if (run >= LEAK_RUN) {
                snprintf(why, why_len, "leaks exemplar text: %zu words in a row from exemplar %zu",
                         run, e + 1);
                dropped = 1;
            }
        }
    }
    /* degenerate repetition: few distinct word trigrams among many */
    if (!dropped && nt >= 24) {
        size_t n3 = nt - 2, distinct = 0;
        for (size_t i = 0; i < n3; i++) {
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++)
                seen = !strcmp(t[i], t[j]) && !strcmp(t[i + 1], t[j + 1]) &&
                       !strcmp(t[i + 2], t[j + 2]);
            distinct += !seen;
        }
        if (distinct * 2 < n3) {
            snprintf(why, why_len, "repetitive: %zu distinct word trigrams of %zu", distinct, n3);
            dropped = 1;
        }
    }
    rein_free(t);
    rein_buf_free(&tb);
    if (!dropped) {
        *keep = 1;
        if (why_len) why[0] = 0;
    }
    return REIN_OK;
}
