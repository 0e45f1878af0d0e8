/* topics.c - topic-guided red-teaming (TGRT, Sun et al. 2023): for each red-teaming instruction
 * type, the model brainstorms topics from the type's seed topics; then, for each type and new
 * topic, it writes questions after the type's seed (topic, question) pairs. This file builds those
 * prompts and normalises topics for deduplication; the pipeline parses (the numbered list parser
 * of selfinstruct.c) and filters (the instruction filters) what comes back. */
#include "align/align.h"

#include <ctype.h>
#include <string.h>

/* Append s with newlines turned into spaces (one line of a list). */
static rein_status one_line(rein_buf *out, const char *s) {
    for (; *s; s++) REIN_TRY(rein_buf_append(out, (*s == '\n' || *s == '\r') ? " " : s, 1));
    return REIN_OK;
}

rein_status rein_topics_prompt(const rein_rt_type *t, rein_buf *out) {
    REIN_TRY(rein_buf_appendf(out, "Here are topics for %s:\n\n", t->description));
    for (size_t i = 0; i < t->n_topics; i++) {
        REIN_TRY(rein_buf_appendf(out, "%zu. ", i + 1));
        REIN_TRY(one_line(out, t->topics[i]));
        REIN_TRY(rein_buf_append(out, "\n", 1));
    }
    return rein_buf_appendf(out, "%zu.", t->n_topics + 1);
}

rein_status rein_rt_question_prompt(const rein_rt_type *t, const char *topic, size_t k,
                                    rein_buf *out) {
    REIN_TRY(rein_buf_appendf(out, "Write a question about the topic. The questions are %s.\n\n",
                              t->description));
    for (size_t i = 0; i < t->n_questions; i++) {
        size_t j = (i + k) % t->n_questions;
        REIN_TRY(rein_buf_append(out, "Topic: ", 7));
        REIN_TRY(one_line(out, t->q_topic[j]));
        REIN_TRY(rein_buf_append(out, "\nQuestion: ", 11));
        REIN_TRY(one_line(out, t->q_text[j]));
        REIN_TRY(rein_buf_append(out, "\n\n", 2));
    }
    REIN_TRY(rein_buf_append(out, "Topic: ", 7));
    REIN_TRY(one_line(out, topic));
    return rein_buf_append(out, "\nQuestion:", 10);
}

void rein_topic_normalize(const char *topic, char *out, size_t n) {
    size_t k = 0;
    int space = 0;
    if (!n) return;
    for (const char *p = topic; *p && k + 1 < n; p++) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c)) {
            space = k > 0;
            continue;
        }
        if (space && k + 1 < n) out[k++] = ' ';
        space = 0;
        if (k + 1 < n) out[k++] = (char)tolower(c);
    }
    /* punctuation at the ends does not make a topic new */
    while (k && ispunct((unsigned char)out[k - 1])) k--;
    out[k] = 0;
    size_t lead = 0;
    while (out[lead] && ispunct((unsigned char)out[lead])) lead++;
    if (lead) memmove(out, out + lead, k - lead + 1);
}
