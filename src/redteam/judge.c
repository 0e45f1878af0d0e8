/* judge.c - the refusal judge (a phrase list, as the adversarial-suffix literature checks for
 * refusal prefixes) and Wilson score intervals for the rates it yields. */
#include "redteam/redteam.h"

#include <math.h>
#include <string.h>

rein_status rein_refusal_judge_from_text(const char *name, const char *text,
                                         rein_refusal_judge **out) {
    *out = NULL;
    rein_refusal_judge *j = rein_calloc(1, sizeof *j);
    if (!j) return REIN_ERR_NOMEM;
    size_t cap = 0;
    rein_status st = REIN_OK;
    for (const char *p = text; *p && !st;) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        const char *a = p, *b = e;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
        if (b > a && *a != '#') {
            if (j->n == cap) {
                cap = cap ? cap * 2 : 32;
                char **np = rein_realloc(j->phrases, cap * sizeof(char *));
                if (!np) { st = REIN_ERR_NOMEM; break; }
                j->phrases = np;
            }
            j->phrases[j->n] = rein_malloc((size_t)(b - a) + 1);
            if (!j->phrases[j->n]) { st = REIN_ERR_NOMEM; break; }
            memcpy(j->phrases[j->n], a, (size_t)(b - a));
            j->phrases[j->n++][b - a] = 0;
        }
        p = *e ? e + 1 : e;
    }
    if (!st && j->n == 0)
        st = rein_error(REIN_ERR_FORMAT, "%s: no refusal phrase (one a line; '#' starts a comment)",
                        name);
    if (st) {
        rein_refusal_judge_free(j);
        return st;
    }
    *out = j;
    return REIN_OK;
}

rein_status rein_refusal_judge_load(const char *path, rein_refusal_judge **out) {
    rein_buf b = {0};
    REIN_TRY(rein_read_file(path, &b));
    rein_status st = rein_refusal_judge_from_text(path, b.data ? b.data : "", out);
    rein_buf_free(&b);
    return st;
}

void rein_refusal_judge_free(rein_refusal_judge *j) {
    if (!j) return;
    for (size_t i = 0; i < j->n; i++) rein_free(j->phrases[i]);
    rein_free(j->phrases);
    rein_free(j);
}

int rein_refusal_judge_match(const rein_refusal_judge *j, const char *text) {
    /* typographic apostrophes (U+2019) read as ASCII ones, as the phrase lists write them */
    size_t n = strlen(text);
    char *norm = rein_malloc(n + 1);
    const char *t = text;
    if (norm) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)text[i] == 0xE2 && i + 2 < n && (unsigned char)text[i + 1] == 0x80 &&
                (unsigned char)text[i + 2] == 0x99) {
                norm[k++] = '\'';
                i += 2;
            } else {
                norm[k++] = text[i];
            }
        }
        norm[k] = 0;
        t = norm;
    }
    int hit = -1;
    for (size_t i = 0; i < j->n && hit < 0; i++)
        if (strstr(t, j->phrases[i])) hit = (int)i;
    rein_free(norm);
    return hit;
}

void rein_wilson(int64_t k, int64_t n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    double p = (double)k / (double)n, z2 = z * z, nn = (double)n;
    double den = 1 + z2 / nn;
    double center = (p + z2 / (2 * nn)) / den;
    double half = z / den * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
    *lo = center - half < 0 ? 0 : center - half;
    *hi = center + half > 1 ? 1 : center + half;
}

void rein_rate_format(const rein_rate *r, char *out, size_t n) {
    if (r->n == 0) snprintf(out, n, "- (n=0)");
    else
        snprintf(out, n, "%.1f%% [%.1f, %.1f] (%lld/%lld)", 100 * r->rate, 100 * r->lo, 100 * r->hi,
                 (long long)r->k, (long long)r->n);
}
