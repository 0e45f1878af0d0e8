/* pref.c - groups and pairs of compared responses, shared by the reward model and DPO. See pref.h. */
#include "train/pref.h"
#include "base/base.h"
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

void rein_pref_set_free(rein_pref_set *ps) {
    if (!ps) return;
    rein_free(ps->group);
    rein_free(ps->group_pair);
    rein_free(ps->pairs);
    rein_free(ps->len);
    rein_free(ps->n_learned);
    memset(ps, 0, sizeof *ps);
}

int32_t rein_example_used_len(const rein_example *e) {
    for (size_t t = e->n; t-- > 1;)
        if (e->mask[t]) return (int32_t)(t + 1);
    return (int32_t)e->n;
}

rein_status rein_pref_set_build(const rein_example_set *ex, const float *margins,
                                rein_pref_set *ps) {
    memset(ps, 0, sizeof *ps);
    ps->ex = ex;
    size_t n = ex->n, n_groups = 0, n_pairs = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && ex->ex[j].record == ex->ex[i].record) j++;
        for (size_t a = i; a < j; a++)
            for (size_t b = a + 1; b < j; b++) n_pairs += ex->ex[a].rank != ex->ex[b].rank;
        n_groups++;
        i = j;
    }
    ps->group = rein_malloc(sizeof(size_t) * (n_groups + 1));
    ps->group_pair = rein_malloc(sizeof(size_t) * (n_groups + 1));
    ps->pairs = rein_malloc(sizeof(rein_pref_pair) * (n_pairs ? n_pairs : 1));
    ps->len = rein_malloc(sizeof(int32_t) * (n ? n : 1));
    ps->n_learned = rein_malloc(sizeof(int32_t) * (n ? n : 1));
    if (!ps->group || !ps->group_pair || !ps->pairs || !ps->len || !ps->n_learned) {
        rein_pref_set_free(ps);
        return REIN_ERR_NOMEM;
    }
    uint64_t h = REIN_FNV_INIT;
    for (size_t i = 0; i < n; i++) {
        const rein_example *e = &ex->ex[i];
        int32_t k = 0;
        for (size_t t = 1; t < e->n; t++) k += e->mask[t] != 0;
        ps->len[i] = rein_example_used_len(e);
        ps->n_learned[i] = k;
        h = rein_fnv1a(h, e->tokens, sizeof(int32_t) * (size_t)ps->len[i]);
        h = rein_fnv1a(h, e->mask, (size_t)ps->len[i]);
    }
    size_t g = 0, p = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && ex->ex[j].record == ex->ex[i].record) j++;
        ps->group[g] = i;
        ps->group_pair[g] = p;
        float mg = margins ? margins[ex->ex[i].record] : 0.0f;
        /* better ranks first, so that a group's pairs read in order of quality */
        for (int32_t rb = 0; rb <= (int32_t)(j - i); rb++)
            for (size_t a = i; a < j; a++) {
                if (ex->ex[a].rank != rb) continue;
                for (size_t b = i; b < j; b++)
                    if (ex->ex[b].rank > rb) {
                        ps->pairs[p].better = (uint32_t)a;
                        ps->pairs[p].worse = (uint32_t)b;
                        ps->pairs[p].margin = mg;
                        h = rein_fnv1a(h, &ps->pairs[p], sizeof ps->pairs[p]);
                        p++;
                    } else if (b > a && ex->ex[b].rank == rb) {
                        ps->n_tied++;
                    }
            }
        if (j - i < 2 || p == ps->group_pair[g]) {
            int line = ex->ex[i].line;
            rein_pref_set_free(ps);
            return rein_error(REIN_ERR_FORMAT, "line %d: a comparison needs at least two responses "
                              "of different rank", line);
        }
        g++;
        i = j;
    }
    REIN_ASSERT(g == n_groups && p == n_pairs);
    ps->group[g] = n;
    ps->group_pair[g] = p;
    ps->n_groups = n_groups;
    ps->n_pairs = n_pairs;
    ps->hash = h;
    return REIN_OK;
}

rein_status rein_pref_read_margins(const rein_dataset *ds, float **out, size_t *n_found) {
    *out = NULL;
    *n_found = 0;
    if (ds->format != REIN_DATA_PREF && ds->format != REIN_DATA_HH &&
        ds->format != REIN_DATA_RANKING)
        return rein_error(REIN_ERR_INVALID, "%s: margins belong to preference or ranking data",
                          ds->path);
    rein_buf b = {0};
    REIN_TRY(rein_read_file(ds->path, &b));
    float *m = rein_calloc(ds->n ? ds->n : 1, sizeof(float));
    if (!m) {
        rein_buf_free(&b);
        return REIN_ERR_NOMEM;
    }
    rein_status st = REIN_OK;
    char *line = b.data;
    int lineno = 1;
    size_t r = 0;
    while (!st && line && r < ds->n) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int want = ds->format == REIN_DATA_RANKING ? ds->rank[r].line : ds->pref[r].line;
        if (lineno == want) {
            cJSON *j = cJSON_Parse(line);
            const cJSON *mg = j ? cJSON_GetObjectItemCaseSensitive(j, "margin") : NULL;
            if (mg && !cJSON_IsNull(mg)) {
                if (!cJSON_IsNumber(mg) || !isfinite(mg->valuedouble))
                    st = rein_error(REIN_ERR_FORMAT, "%s:%d: margin: expected a finite number",
                                    ds->path, lineno);
                else {
                    m[r] = (float)mg->valuedouble;
                    (*n_found)++;
                }
            }
            cJSON_Delete(j);
            r++;
        }
        line = nl ? nl + 1 : NULL;
        lineno++;
    }
    rein_buf_free(&b);
    if (st) {
        rein_free(m);
        return st;
    }
    *out = m;
    return REIN_OK;
}

int rein_pref_pack(const rein_pref_set *ps, const uint32_t *ex_idx, int n, int32_t *tokens,
                   int32_t *targets, int32_t *cu) {
    int t = 0;
    cu[0] = 0;
    for (int s = 0; s < n; s++) {
        const rein_example *e = &ps->ex->ex[ex_idx[s]];
        int len = ps->len[ex_idx[s]];
        for (int i = 0; i < len; i++) {
            tokens[t] = e->tokens[i];
            targets[t] = i + 1 < len && e->mask[i + 1] ? e->tokens[i + 1] : -1;
            t++;
        }
        cu[s + 1] = t;
    }
    return t;
}

rein_status rein_pref_batch_init(rein_pref_batch *b, int cap) {
    memset(b, 0, sizeof *b);
    b->cap = cap;
    b->tokens = rein_malloc(sizeof(int32_t) * (size_t)cap);
    b->targets = rein_malloc(sizeof(int32_t) * (size_t)cap);
    b->cu = rein_malloc(sizeof(int32_t) * (size_t)(cap + 1));
    b->idx = rein_malloc(sizeof(uint32_t) * (size_t)cap);
    if (b->tokens && b->targets && b->cu && b->idx) return REIN_OK;
    rein_pref_batch_free(b);
    return REIN_ERR_NOMEM;
}

void rein_pref_batch_free(rein_pref_batch *b) {
    rein_free(b->tokens);
    rein_free(b->targets);
    rein_free(b->cu);
    rein_free(b->idx);
    memset(b, 0, sizeof *b);
}

rein_status rein_pref_batch_next(rein_pref_batch *b, const rein_pref_set *ps, int *done) {
    size_t n = ps->ex->n, i = b->next;
    *done = i >= n;
    if (*done) return REIN_OK;
    int k = 0, used = 0;
    while (i < n && used + ps->len[i] <= b->cap) {
        used += ps->len[i];
        b->idx[k++] = (uint32_t)i++;
    }
    if (k == 0)
        return rein_error(REIN_ERR_RANGE, "line %d: a response of %d tokens is longer than a "
                          "batch (%d tokens)", ps->ex->ex[i].line, ps->len[i], b->cap);
    b->first = b->next;
    b->next = i;
    b->n = k;
    b->T = rein_pref_pack(ps, b->idx, k, b->tokens, b->targets, b->cu);
    return REIN_OK;
}
