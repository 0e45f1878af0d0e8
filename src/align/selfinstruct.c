/* selfinstruct.c - Self-Instruct (Wang et al. 2022) as stage 1 uses it: the prompt that asks the
 * model to continue a numbered list of tasks, the parser of what it wrote, and the filters that
 * decide which new instructions are kept, each rejection with its reason. */
#include "align/align.h"

#include <ctype.h>
#include <string.h>

/* Tasks a text-only model cannot do (as Self-Instruct's keyword list). Matched as whole words,
 * case-insensitive. */
static const char *const default_blacklist[] = {
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
};

rein_instruction_filter rein_instruction_filter_default(void) {
    rein_instruction_filter f;
    f.min_words = 3;
    f.max_words = 150;
    f.max_rouge = 0.7;
    f.blacklist = default_blacklist;
    f.n_blacklist = sizeof default_blacklist / sizeof *default_blacklist;
    return f;
}

rein_status rein_selfinstruct_prompt(const char *const *examples, size_t n, rein_buf *out) {
    REIN_TRY(rein_buf_appendf(out, "Come up with a series of tasks:\n\n"));
    for (size_t i = 0; i < n; i++) {
        /* one line per task: inner newlines would break the list */
        REIN_TRY(rein_buf_appendf(out, "%zu. ", i + 1));
        for (const char *p = examples[i]; *p; p++)
            REIN_TRY(rein_buf_append(out, (*p == '\n' || *p == '\r') ? " " : p, 1));
        REIN_TRY(rein_buf_append(out, "\n", 1));
    }
    return rein_buf_appendf(out, "%zu.", n + 1);
}

/* Whether line s[0..n) starts with "<number>." and which number; *text the rest. */
static int numbered(const char *s, size_t n, size_t *num, const char **text) {
    size_t i = 0, v = 0;
    while (i < n && s[i] == ' ') i++;
    size_t d0 = i;
    while (i < n && isdigit((unsigned char)s[i]) && i - d0 < 6) v = v * 10 + (size_t)(s[i++] - '0');
    if (i == d0 || i >= n || s[i] != '.') return 0;
    *num = v;
    *text = s + i + 1;
    return 1;
}

static rein_status push_item(rein_buf *out, const char *s, size_t n, size_t *n_items) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    REIN_TRY(rein_buf_append(out, s, n));
    REIN_TRY(rein_buf_append(out, "", 1));
    (*n_items)++;
    return REIN_OK;
}

rein_status rein_numbered_list_parse(const char *generated, size_t first_number, int truncated,
                                     rein_buf *out, size_t *n_items, size_t *n_cut) {
    *n_items = 0;
    *n_cut = 0;
    size_t expect = first_number;
    const char *p = generated;
    int first = 1, last_unterminated = 0;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *text = p;
        size_t tn = n;
        if (!first) {
            size_t num;
            const char *t;
            if (!numbered(p, n, &num, &t) || num != expect) break;
            tn = n - (size_t)(t - p);
            text = t;
        }
        REIN_TRY(push_item(out, text, tn, n_items));
        expect++;
        first = 0;
        if (!e) {
            last_unterminated = 1;
            break;
        }
        p = e + 1;
    }
    /* a truncated generation whose last item runs to its very end: that item may be cut short */
    *n_cut = truncated && last_unterminated;
    return REIN_OK;
}

/* Words: runs of non-blank characters. */
static size_t count_words(const char *s) {
    size_t n = 0;
    int in = 0;
    for (; *s; s++) {
        int b = isspace((unsigned char)*s);
        if (!b && !in) n++;
        in = !b;
    }
    return n;
}

/* Whether `word` (lowercase; may hold a space) occurs in text as whole words, ignoring case. */
static int has_word(const char *text, const char *word) {
    size_t wl = strlen(word);
    for (const char *p = text; *p; p++) {
        if (p != text && isalnum((unsigned char)p[-1])) continue;
        if (strncasecmp(p, word, wl)) continue;
        if (isalnum((unsigned char)p[wl])) continue;
        return 1;
    }
    return 0;
}

rein_status rein_instruction_check(const rein_instruction_filter *f, const rein_rouge_pool *pool,
                                   const char *text, char *why, size_t why_len, int *keep,
                                   int64_t *similar_entry) {
    *keep = 0;
    *similar_entry = -1;
    size_t words = count_words(text);
    if (words == 0) {
        snprintf(why, why_len, "empty");
        return REIN_OK;
    }
    if ((int)words < f->min_words) {
        snprintf(why, why_len, "too short: %zu words < %d", words, f->min_words);
        return REIN_OK;
    }
    if ((int)words > f->max_words) {
        snprintf(why, why_len, "too long: %zu words > %d", words, f->max_words);
        return REIN_OK;
    }
    if (!isalpha((unsigned char)text[0]) || (unsigned char)text[0] >= 0x80) {
        snprintf(why, why_len, "does not start with a letter");
        return REIN_OK;
    }
    for (size_t i = 0; i < f->n_blacklist; i++)
        if (has_word(text, f->blacklist[i])) {
            snprintf(why, why_len, "blacklisted word: '%s'", f->blacklist[i]);
            return REIN_OK;
        }
    if (pool) {
        double best;
        int64_t entry;
        REIN_TRY(rein_rouge_pool_max(pool, text, &best, &entry));
        if (entry >= 0 && best >= f->max_rouge) {
            snprintf(why, why_len, "similar: ROUGE-L %.3f >= %.2f against pool entry %lld", best,
                     f->max_rouge, (long long)entry);
            *similar_entry = entry;
            return REIN_OK;
        }
    }
    *keep = 1;
    if (why_len) why[0] = 0;
    return REIN_OK;
}
