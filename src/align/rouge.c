/* rouge.c - ROUGE-L F-measure as rouge_score computes it, and a threaded pool of entries to check
 * a candidate against (see rouge.h).
 *
 * The pool's longest common subsequence is bit-parallel (Hyyrö 2004). Bit i of the state vector
 * S stands for query token i; M[t] has bit i set where query token i is t. For each token t of an
 * entry, U = S & M[t], S = (S + U) | (S - U), with carries and borrows running across 64-bit
 * words. The LCS length is the number of zero bits among the query's m bits at the end. Bits
 * above m only receive carries and never feed lower bits, so they need no masking.
 */
#include "align/rouge.h"
#include "base/base.h"

#include <string.h>

/* Append rouge_score's tokens of text to `out` as NUL-terminated strings. */
rein_status rein_rouge_tokens(const char *text, rein_buf *out, size_t *n_tokens) {
    size_t n = 0;
    int in_tok = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0;; i++) {
        unsigned char c = s[i];
        char t = 0; /* the ASCII token character this position stands for, or 0 (separator) */
        size_t skip = 0;
        if (c >= 'A' && c <= 'Z') t = (char)(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) t = (char)c;
        else if (c == 0xE2 && s[i + 1] == 0x84 && s[i + 2] == 0xAA) t = 'k', skip = 2; /* U+212A */
        else if (c == 0xC4 && s[i + 1] == 0xB0) {
            /* U+0130 lowercases to "i" + U+0307; the combining dot is a separator */
            REIN_TRY(rein_buf_append(out, "i", 2)); /* 'i' ends the token it joins or starts */
            if (!in_tok) n++;
            in_tok = 0;
            i += 1;
            continue;
        }
        if (t) {
            REIN_TRY(rein_buf_append(out, &t, 1));
            if (!in_tok) n++;
            in_tok = 1;
            i += skip;
        } else {
            if (in_tok) REIN_TRY(rein_buf_append(out, "", 1));
            in_tok = 0;
        }
        if (!c) break;
    }
    if (out->data == NULL) REIN_TRY(rein_buf_append(out, "", 0));
    *n_tokens = n;
    return REIN_OK;
}

/* rouge_score's fmeasure from an LCS length and the two token counts. */
static double fmeasure(size_t lcs, size_t n_pred, size_t n_target) {
    if (n_pred == 0 || n_target == 0) return 0.0;
    double precision = (double)lcs / (double)n_pred, recall = (double)lcs / (double)n_target;
    if (precision + recall > 0) return 2 * precision * recall / (precision + recall);
    return 0.0;
}

/* Split a NUL-separated token buffer into n pointers. */
static const char **split_tokens(const rein_buf *b, size_t n) {
    const char **v = rein_malloc(sizeof(char *) * (n ? n : 1));
    if (!v) return NULL;
    const char *p = b->data;
    for (size_t i = 0; i < n; i++) {
        v[i] = p;
        p += strlen(p) + 1;
    }
    return v;
}

rein_status rein_rouge_l(const char *prediction, const char *target, double *f) {
    rein_buf pb = {0}, tb = {0};
    size_t np = 0, nt = 0;
    const char **pv = NULL, **tv = NULL;
    size_t *row = NULL;
    rein_status st = rein_rouge_tokens(prediction, &pb, &np);
    if (!st) st = rein_rouge_tokens(target, &tb, &nt);
    if (!st) {
        pv = split_tokens(&pb, np);
        tv = split_tokens(&tb, nt);
        row = rein_calloc(nt + 1, sizeof(size_t));
        if (!pv || !tv || !row) st = REIN_ERR_NOMEM;
    }
    if (!st) {
        /* row[j] = LCS of the prediction so far and target[0..j) */
        for (size_t i = 0; i < np; i++) {
            size_t diag = 0;
            for (size_t j = 1; j <= nt; j++) {
                size_t up = row[j];
                row[j] = !strcmp(pv[i], tv[j - 1]) ? diag + 1 : REIN_MAX(row[j], row[j - 1]);
                diag = up;
            }
        }
        *f = fmeasure(row[nt], np, nt);
    }
    rein_free(row);
    rein_free(pv);
    rein_free(tv);
    rein_buf_free(&pb);
    rein_buf_free(&tb);
    return st;
}

/* ---- the pool ------------------------------------------------------------------------------ */

struct rein_rouge_pool {
    /* interned tokens: open addressing, slots hold id + 1 (0 = empty) */
    uint32_t *slots;
    size_t n_slots;
    rein_buf words;       /* NUL-terminated token strings, back to back */
    size_t *word_off;     /* (n_words) offset of each word in `words` */
    size_t n_words, cap_words;
    /* entries: ids back to back */
    int32_t *ids;
    size_t n_ids, cap_ids;
    size_t *entry_off;    /* (n_entries + 1) */
    size_t n_entries, cap_entries;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The id of word w, or -1 when absent. */
static int32_t lookup(const rein_rouge_pool *p, const char *w) {
    if (!p->n_slots) return -1;
    size_t h = hash_str(w) & (p->n_slots - 1);
    while (p->slots[h]) {
        uint32_t i = p->slots[h] - 1;
        if (!strcmp(p->words.data + p->word_off[i], w)) return (int32_t)i;
        h = (h + 1) & (p->n_slots - 1);
    }
    return -1;
}

/* The id of word w, inserting it when new. */
static rein_status intern(rein_rouge_pool *p, const char *w, int32_t *id) {
    if ((p->n_words + 1) * 2 > p->n_slots) {
        size_t ns = p->n_slots ? p->n_slots * 2 : 1024;
        uint32_t *slots = rein_calloc(ns, sizeof(uint32_t));
        if (!slots) return REIN_ERR_NOMEM;
        for (size_t i = 0; i < p->n_words; i++) {
            size_t h = hash_str(p->words.data + p->word_off[i]) & (ns - 1);
            while (slots[h]) h = (h + 1) & (ns - 1);
            slots[h] = (uint32_t)i + 1;
        }
        rein_free(p->slots);
        p->slots = slots;
        p->n_slots = ns;
    }
    if ((*id = lookup(p, w)) >= 0) return REIN_OK;
    size_t h = hash_str(w) & (p->n_slots - 1);
    while (p->slots[h]) h = (h + 1) & (p->n_slots - 1);
    if (p->n_words == p->cap_words) {
        size_t nc = p->cap_words ? p->cap_words * 2 : 1024;
        size_t *off = rein_realloc(p->word_off, nc * sizeof(size_t));
        if (!off) return REIN_ERR_NOMEM;
        p->word_off = off;
        p->cap_words = nc;
    }
    p->word_off[p->n_words] = p->words.len;
    REIN_TRY(rein_buf_append(&p->words, w, strlen(w) + 1));
    p->slots[h] = (uint32_t)p->n_words + 1;
    *id = (int32_t)p->n_words++;
    return REIN_OK;
}

rein_status rein_rouge_pool_new(rein_rouge_pool **out) {
    *out = rein_calloc(1, sizeof **out);
    if (!*out) return REIN_ERR_NOMEM;
    (*out)->entry_off = rein_calloc(1, sizeof(size_t));
    (*out)->cap_entries = 0;
    if (!(*out)->entry_off) {
        rein_free(*out);
        *out = NULL;
        return REIN_ERR_NOMEM;
    }
    return REIN_OK;
}

void rein_rouge_pool_free(rein_rouge_pool *p) {
    if (!p) return;
    rein_free(p->slots);
    rein_buf_free(&p->words);
    rein_free(p->word_off);
    rein_free(p->ids);
    rein_free(p->entry_off);
    rein_free(p);
}

size_t rein_rouge_pool_size(const rein_rouge_pool *p) {
    return p->n_entries;
}

rein_status rein_rouge_pool_add(rein_rouge_pool *p, const char *text) {
    rein_buf tb = {0};
    size_t n = 0;
    rein_status st = rein_rouge_tokens(text, &tb, &n);
    if (!st && p->n_ids + n > p->cap_ids) {
        size_t nc = REIN_MAX(p->cap_ids * 2, p->n_ids + n + 1024);
        int32_t *ids = rein_realloc(p->ids, nc * sizeof(int32_t));
        if (!ids) st = REIN_ERR_NOMEM;
        else p->ids = ids, p->cap_ids = nc;
    }
    if (!st && p->n_entries + 2 > p->cap_entries) {
        size_t nc = REIN_MAX(p->cap_entries * 2, 1024);
        size_t *off = rein_realloc(p->entry_off, nc * sizeof(size_t));
        if (!off) st = REIN_ERR_NOMEM;
        else p->entry_off = off, p->cap_entries = nc;
    }
    const char *w = tb.data;
    size_t start = p->n_ids;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = -1;
        st = intern(p, w, &id);
        p->ids[start + i] = id;
        w += strlen(w) + 1;
    }
    if (!st) {
        p->n_ids = start + n;
        p->entry_off[++p->n_entries] = p->n_ids;
    }
    rein_buf_free(&tb);
    return st;
}

/* A query prepared for the bit-parallel LCS. */
typedef struct query {
    const rein_rouge_pool *p;
    size_t m;            /* query tokens */
    int n_words;         /* 64-bit words per bit vector */
    int32_t *slot_of;    /* (pool words) mask index of a pool word, -1 if not in the query */
    uint64_t *masks;     /* (distinct query tokens, n_words) */
    /* per task results */
    double *best;
    int64_t *best_entry;
    int n_tasks;
} query;

static size_t lcs_entry(const query *q, size_t e, uint64_t *S) {
    const rein_rouge_pool *p = q->p;
    const int W = q->n_words;
    for (int w = 0; w < W; w++) S[w] = ~0ull;
    for (size_t k = p->entry_off[e]; k < p->entry_off[e + 1]; k++) {
        int32_t slot = q->slot_of[p->ids[k]];
        if (slot < 0) continue; /* U = 0: S unchanged */
        const uint64_t *M = q->masks + (size_t)slot * W;
        uint64_t carry = 0, borrow = 0;
        for (int w = 0; w < W; w++) {
            uint64_t s = S[w], u = s & M[w];
            uint64_t x = s + u, sum = x + carry;
            carry = (x < s) | (sum < x);
            uint64_t y = s - u, diff = y - borrow;
            borrow = (s < u) | (y < borrow);
            S[w] = sum | diff;
        }
    }
    size_t zeros = 0;
    for (int w = 0; w < W; w++) {
        int bits = (size_t)(w + 1) * 64 <= q->m ? 64 : (int)(q->m - (size_t)w * 64);
        uint64_t v = bits == 64 ? S[w] : (S[w] | ~((1ull << bits) - 1));
        zeros += (size_t)(64 - __builtin_popcountll(v));
    }
    return zeros;
}

static void max_task(void *ctx, int t, int n_tasks) {
    query *q = ctx;
    size_t n = q->p->n_entries;
    size_t lo = n * (size_t)t / (size_t)n_tasks, hi = n * (size_t)(t + 1) / (size_t)n_tasks;
    uint64_t S[64];
    double best = 0;
    int64_t be = -1;
    for (size_t e = lo; e < hi; e++) {
        size_t len = q->p->entry_off[e + 1] - q->p->entry_off[e];
        double f = fmeasure(lcs_entry(q, e, S), q->m, len);
        if (be < 0 || f > best) best = f, be = (int64_t)e;
    }
    q->best[t] = best;
    q->best_entry[t] = be;
}

rein_status rein_rouge_pool_max(const rein_rouge_pool *p, const char *text, double *best,
                                int64_t *best_entry) {
    *best = 0;
    *best_entry = -1;
    if (p->n_entries == 0) return REIN_OK;
    rein_buf tb = {0};
    size_t m = 0;
    REIN_TRY(rein_rouge_tokens(text, &tb, &m));
    if (m > 64 * 64) {
        rein_buf_free(&tb);
        return rein_error(REIN_ERR_RANGE, "ROUGE-L query of %zu tokens; at most 4096", m);
    }
    query q = {0};
    q.p = p;
    q.m = m;
    q.n_words = (int)((m + 63) / 64);
    q.n_tasks = (int)REIN_MIN((size_t)64, (p->n_entries + 255) / 256);
    if (q.n_tasks < 1) q.n_tasks = 1;
    q.slot_of = rein_malloc(sizeof(int32_t) * (p->n_words ? p->n_words : 1));
    q.masks = rein_calloc((m ? m : 1) * (size_t)(q.n_words ? q.n_words : 1), sizeof(uint64_t));
    q.best = rein_malloc(sizeof(double) * (size_t)q.n_tasks);
    q.best_entry = rein_malloc(sizeof(int64_t) * (size_t)q.n_tasks);
    rein_status st = (!q.slot_of || !q.masks || !q.best || !q.best_entry) ? REIN_ERR_NOMEM : REIN_OK;
    if (!st) {
        for (size_t i = 0; i < p->n_words; i++) q.slot_of[i] = -1;
        const char *w = tb.data;
        int32_t n_slots = 0;
        for (size_t i = 0; i < m; i++) {
            int32_t id = lookup(p, w);
            w += strlen(w) + 1;
            if (id < 0) continue; /* a word no entry has: it never matches */
            if (q.slot_of[id] < 0) q.slot_of[id] = n_slots++;
            q.masks[(size_t)q.slot_of[id] * q.n_words + i / 64] |= 1ull << (i % 64);
        }
        if (m == 0) {
            *best = 0;
            *best_entry = 0;
        } else {
            rein_parallel_for(q.n_tasks, max_task, &q);
            for (int t = 0; t < q.n_tasks; t++)
                if (q.best_entry[t] >= 0 && (*best_entry < 0 || q.best[t] > *best))
                    *best = q.best[t], *best_entry = q.best_entry[t];
        }
    }
    rein_free(q.slot_of);
    rein_free(q.masks);
    rein_free(q.best);
    rein_free(q.best_entry);
    rein_buf_free(&tb);
    return st;
}
