/* reward.c - the reward head, the Bradley-Terry objective behind `rein rm train`, and saved reward
 * models (rein_rm_save / rein_rm_load / rein_rm_score). See reward.h. */
#include "train/reward.h"
#include "base/base.h"
#include "formats/export.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the head ------------------------------------------------------------------------------ */

rein_status rein_reward_head_init(rein_reward_head *h, int dim, uint64_t seed) {
    memset(h, 0, sizeof *h);
    h->arena = rein_calloc((size_t)2 * (dim + 1), sizeof(float));
    if (!h->arena) return REIN_ERR_NOMEM;
    h->dim = dim;
    h->w = h->arena;
    h->b = h->w + dim;
    h->dw = h->b + 1;
    h->db = h->dw + dim;
    rein_rng rng;
    rein_rng_seed(&rng, seed ^ 0x5e3a7d1c0ffee11ULL);
    for (int i = 0; i < dim; i++) h->w[i] = rein_rng_normal(&rng) / sqrtf((float)dim);
    return REIN_OK;
}

void rein_reward_head_free(rein_reward_head *h) {
    if (!h) return;
    rein_free(h->arena);
    memset(h, 0, sizeof *h);
}

void rein_reward_head_forward(const rein_reward_head *h, const rein_train_state *ts, float *r) {
    for (int s = 0; s < ts->n_seqs; s++) {
        const float *x = ts->xf + (int64_t)(ts->cu[s + 1] - 1) * h->dim;
        double acc = 0;
        for (int i = 0; i < h->dim; i++) acc += (double)h->w[i] * x[i];
        r[s] = (float)(acc + h->b[0]);
    }
}

void rein_reward_head_backward(rein_reward_head *h, rein_train_state *ts, const float *dr) {
    for (int s = 0; s < ts->n_seqs; s++) {
        if (dr[s] == 0) continue;
        int64_t row = (int64_t)(ts->cu[s + 1] - 1) * h->dim;
        const float *x = ts->xf + row;
        float *dx = ts->dxf + row;
        for (int i = 0; i < h->dim; i++) {
            dx[i] += dr[s] * h->w[i];
            h->dw[i] += dr[s] * x[i];
        }
        h->db[0] += dr[s];
    }
}

/* ---- the loss ------------------------------------------------------------------------------ */

static double softplus(double x) {
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

const char *const rein_rm_bucket_names[REIN_RM_LEN_BUCKETS] = {
    "better shorter by >= 64", "better shorter by 8..63", "within 7 tokens",
    "better longer by 8..63", "better longer by >= 64"};

static int len_bucket(int d) {
    return d <= -64 ? 0 : d <= -8 ? 1 : d < 8 ? 2 : d < 64 ? 3 : 4;
}

/* Loss of group g given the reward r[e - base] of each of its examples e, and, when dr is not NULL,
 * dr[e - base] += scale * d(L_g)/d(r_e). */
static double group_loss(const rein_pref_set *ps, size_t g, const float *r, size_t base, float c,
                         float scale, float *dr) {
    size_t p0 = ps->group_pair[g], p1 = ps->group_pair[g + 1];
    double inv = 1.0 / (double)(p1 - p0), loss = 0;
    for (size_t p = p0; p < p1; p++) {
        const rein_pref_pair *pp = &ps->pairs[p];
        size_t ib = pp->better - base, iw = pp->worse - base;
        double rb = r[ib], rw = r[iw], d = rb - rw - pp->margin;
        loss += softplus(-d) + c * (rb + rw) * (rb + rw);
        if (dr) {
            /* d softplus(-d) / dd = -sigmoid(-d) */
            double gd = -1.0 / (1.0 + exp(d)), gc = 2.0 * c * (rb + rw);
            dr[ib] += (float)(scale * inv * (gd + gc));
            dr[iw] += (float)(scale * inv * (-gd + gc));
        }
    }
    return loss * inv;
}

void rein_rm_pair_stats(const rein_pref_set *ps, const float *r, float c, rein_rm_stats *s) {
    memset(s, 0, sizeof *s);
    double correct = 0, margin = 0, longer = 0, data_longer = 0, n_diff = 0;
    double bc[REIN_RM_LEN_BUCKETS] = {0};
    for (size_t g = 0; g < ps->n_groups; g++) s->loss += group_loss(ps, g, r, 0, c, 0, NULL);
    for (size_t p = 0; p < ps->n_pairs; p++) {
        const rein_pref_pair *pp = &ps->pairs[p];
        double d = (double)r[pp->better] - r[pp->worse];
        double ok = d > 0 ? 1 : d == 0 ? 0.5 : 0;
        correct += ok;
        margin += d;
        s->n_equal += d == 0;
        int dl = ps->n_learned[pp->better] - ps->n_learned[pp->worse];
        int b = len_bucket(dl);
        s->bucket_n[b]++;
        bc[b] += ok;
        if (dl != 0) {
            n_diff++;
            data_longer += dl > 0;
            longer += dl > 0 ? ok : 1 - ok;
        }
    }
    s->n_pairs = ps->n_pairs;
    s->n_groups = ps->n_groups;
    s->n_tied = ps->n_tied;
    if (ps->n_groups) s->loss /= (double)ps->n_groups;
    if (ps->n_pairs) {
        s->accuracy = correct / (double)ps->n_pairs;
        s->mean_margin = margin / (double)ps->n_pairs;
    }
    if (n_diff > 0) {
        s->longer_preferred = longer / n_diff;
        s->data_longer_better = data_longer / n_diff;
    }
    for (int b = 0; b < REIN_RM_LEN_BUCKETS; b++)
        s->bucket_acc[b] = s->bucket_n[b] ? bc[b] / (double)s->bucket_n[b] : 0;
}

rein_status rein_rm_score_set(rein_model *m, rein_train_state *ts, const rein_reward_head *h,
                              const rein_pref_set *ps, float *r) {
    rein_pref_batch b;
    REIN_TRY(rein_pref_batch_init(&b, ts->cap));
    rein_status st = REIN_OK;
    int done = 0;
    while (!st && !(st = rein_pref_batch_next(&b, ps, &done)) && !done) {
        st = rein_train_forward(m, ts, b.tokens, b.cu, b.n);
        if (!st) rein_reward_head_forward(h, ts, r + b.first);
    }
    rein_pref_batch_free(&b);
    return st;
}

/* ---- the objective ------------------------------------------------------------------------- */

static int group_tokens(const rein_pref_set *ps, size_t g) {
    int t = 0;
    for (size_t e = ps->group[g]; e < ps->group[g + 1]; e++) t += ps->len[e];
    return t;
}

static int item_tokens(void *ctx, size_t i) {
    return group_tokens(((rein_rm_ctx *)ctx)->train, i);
}

static double item_weight(void *ctx, size_t i) {
    (void)ctx;
    (void)i;
    return 1.0; /* every prompt counts the same */
}

static rein_status micro_step(void *ctx, rein_model *m, rein_train_state *ts, const size_t *items,
                              int n, float scale, double *loss) {
    rein_rm_ctx *c = ctx;
    const rein_pref_set *ps = c->train;
    /* the examples of the groups, back to back; r and dr are indexed by position in the batch */
    int k = 0;
    for (int i = 0; i < n; i++)
        for (size_t e = ps->group[items[i]]; e < ps->group[items[i] + 1]; e++)
            c->b.idx[k++] = (uint32_t)e;
    rein_pref_pack(ps, c->b.idx, k, c->b.tokens, c->b.targets, c->b.cu);
    REIN_TRY(rein_train_forward(m, ts, c->b.tokens, c->b.cu, k));
    rein_reward_head_forward(c->head, ts, c->r);
    memset(c->dr, 0, sizeof(float) * (size_t)k);
    double sum = 0;
    int pos = 0;
    for (int i = 0; i < n; i++) {
        size_t g = items[i], e0 = ps->group[g];
        const float *rg = c->r + pos; /* rg[e - e0]: the reward of example e of this group */
        sum += group_loss(ps, g, rg, e0, c->center_coef, scale, c->dr + pos);
        for (size_t p = ps->group_pair[g]; p < ps->group_pair[g + 1]; p++) {
            double d = (double)rg[ps->pairs[p].better - e0] - rg[ps->pairs[p].worse - e0];
            c->m_pairs++;
            c->m_correct += d > 0 ? 1 : d == 0 ? 0.5 : 0;
            c->m_margin += d;
        }
        pos += (int)(ps->group[g + 1] - e0);
    }
    *loss += sum;
    if (!isfinite(sum)) return rein_error(REIN_ERR_NUMERIC, "the reward loss is not finite");
    rein_reward_head_backward(c->head, ts, c->dr);
    return rein_train_backward(m, ts);
}

static void step_metrics(void *ctx, rein_buf *out) {
    rein_rm_ctx *c = ctx;
    if (c->m_pairs > 0)
        rein_buf_appendf(out, ",\"acc\":%.4f,\"margin\":%.5g", c->m_correct / c->m_pairs,
                         c->m_margin / c->m_pairs);
    c->m_pairs = c->m_correct = c->m_margin = 0;
}

static rein_status evaluate(void *ctx, rein_model *m, rein_train_state *ts, double *loss) {
    rein_rm_ctx *c = ctx;
    REIN_TRY(rein_rm_score_set(m, ts, c->head, c->eval, c->eval_r));
    rein_rm_pair_stats(c->eval, c->eval_r, c->center_coef, &c->last_eval);
    *loss = c->last_eval.loss;
    return REIN_OK;
}

static void eval_metrics(void *ctx, rein_buf *out) {
    rein_rm_ctx *c = ctx;
    rein_buf_appendf(out, ",\"eval_acc\":%.4f,\"eval_margin\":%.5g", c->last_eval.accuracy,
                     c->last_eval.mean_margin);
}

static rein_status extra_params(void *ctx, rein_param_list *pl) {
    rein_rm_ctx *c = ctx;
    REIN_TRY(rein_params_add(pl, "reward_head.weight", c->head->w, c->head->dw, c->head->dim, 1));
    return rein_params_add(pl, "reward_head.bias", c->head->b, c->head->db, 1, 0);
}

void rein_rm_ctx_free(rein_rm_ctx *c) {
    rein_pref_batch_free(&c->b);
    rein_free(c->r);
    rein_free(c->dr);
    rein_free(c->eval_r);
    memset(c, 0, sizeof *c);
}

rein_status rein_rm_objective(rein_rm_ctx *c, const rein_pref_set *train,
                              const rein_pref_set *eval, rein_reward_head *head,
                              float center_coef, int batch_tokens, rein_objective *obj) {
    memset(c, 0, sizeof *c);
    memset(obj, 0, sizeof *obj);
    c->train = train;
    c->eval = eval && eval->n_pairs ? eval : NULL;
    c->head = head;
    c->center_coef = center_coef;
    size_t cap = (size_t)batch_tokens;
    rein_status st = rein_pref_batch_init(&c->b, batch_tokens);
    c->r = rein_malloc(sizeof(float) * cap);
    c->dr = rein_malloc(sizeof(float) * cap);
    if (c->eval) c->eval_r = rein_malloc(sizeof(float) * c->eval->ex->n);
    if (st || !c->r || !c->dr || (c->eval && !c->eval_r)) {
        rein_rm_ctx_free(c);
        return REIN_ERR_NOMEM;
    }
    obj->kind = "rm";
    obj->ctx = c;
    obj->n_items = train->n_groups;
    obj->data_hash = train->hash;
    obj->item_tokens = item_tokens;
    obj->item_weight = item_weight;
    obj->micro_step = micro_step;
    obj->step_metrics = step_metrics;
    obj->extra_params = extra_params;
    if (c->eval) {
        obj->evaluate = evaluate;
        obj->eval_name = "eval_loss";
        obj->eval_metrics = eval_metrics;
    }
    return REIN_OK;
}

/* ---- saving and loading -------------------------------------------------------------------- */

static rein_status write_text(const char *path, const char *text) {
    rein_atomic_file af;
    REIN_TRY(rein_atomic_open(&af, path));
    fputs(text, af.fp);
    return rein_atomic_commit(&af);
}

rein_status rein_rm_save(const char *dir, const rein_model *m, const rein_reward_head *h, int full,
                         const char *base_model, float reward_mean, float reward_std,
                         size_t n_stats, float center_coef) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return rein_error(REIN_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    char path[PATH_MAX + 64];
    if (full) {
        snprintf(path, sizeof path, "%s/model.gguf", dir);
        REIN_TRY(rein_export_gguf(m, path, REIN_TYPE_F32));
    } else {
        snprintf(path, sizeof path, "%s/adapter", dir);
        REIN_TRY(rein_lora_save(m, path, base_model));
    }
    rein_safetensors_writer *w;
    REIN_TRY(rein_safetensors_writer_new(&w));
    int64_t ws[2] = {1, h->dim}, bs[1] = {1};
    snprintf(path, sizeof path, "%s/reward_head.safetensors", dir);
    rein_status st = rein_safetensors_set_meta(w, "format", "pt");
    if (!st) st = rein_safetensors_add(w, "score.weight", REIN_TYPE_F32, 2, ws, h->w);
    if (!st) st = rein_safetensors_add(w, "score.bias", REIN_TYPE_F32, 1, bs, h->b);
    if (!st) st = rein_safetensors_write(w, path);
    rein_safetensors_writer_free(w);
    REIN_TRY(st);

    char abs[PATH_MAX];
    const char *base = base_model && realpath(base_model, abs) ? abs : base_model;
    cJSON *j = cJSON_CreateObject();
    if (!j) return REIN_ERR_NOMEM;
    cJSON_AddStringToObject(j, "base_model", base ? base : "");
    cJSON_AddStringToObject(j, "kind", full ? "full" : "lora");
    cJSON_AddNumberToObject(j, "dim", h->dim);
    cJSON_AddNumberToObject(j, "reward_mean", reward_mean);
    cJSON_AddNumberToObject(j, "reward_std", reward_std);
    cJSON_AddNumberToObject(j, "n_stats", (double)n_stats);
    cJSON_AddNumberToObject(j, "center_coefficient", center_coef);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return REIN_ERR_NOMEM;
    snprintf(path, sizeof path, "%s/reward_config.json", dir);
    rein_buf b = {0};
    st = rein_buf_appendf(&b, "%s\n", text);
    free(text);
    if (!st) st = write_text(path, b.data);
    rein_buf_free(&b);
    return st;
}

struct rein_reward_model {
    rein_model *m;
    rein_reward_head head;
    rein_train_state *ts;
    float mean, std;
};

void rein_rm_free(rein_reward_model *rm) {
    if (!rm) return;
    rein_train_state_free(rm->ts);
    rein_reward_head_free(&rm->head);
    rein_model_free(rm->m);
    rein_free(rm);
}

rein_model *rein_rm_model(rein_reward_model *rm) {
    return rm->m;
}

const rein_reward_head *rein_rm_head(const rein_reward_model *rm) {
    return &rm->head;
}

void rein_rm_norm(const rein_reward_model *rm, float *mean, float *std) {
    *mean = rm->mean;
    *std = rm->std;
}

static rein_status load_head(const char *path, rein_reward_head *h, int dim) {
    rein_safetensors *sf;
    REIN_TRY(rein_safetensors_open(path, &sf));
    const rein_safetensors_tensor *w = rein_safetensors_find(sf, "score.weight");
    const rein_safetensors_tensor *b = rein_safetensors_find(sf, "score.bias");
    rein_status st = REIN_OK;
    if (!w || w->n_elements != dim)
        st = rein_error(REIN_ERR_FORMAT, "%s: score.weight: expected (1, %d) for this model%s",
                        path, dim, w ? "" : " (missing)");
    else if (!b || b->n_elements != 1)
        st = rein_error(REIN_ERR_FORMAT, "%s: score.bias: expected 1 value%s", path,
                        b ? "" : " (missing)");
    if (!st) st = rein_reward_head_init(h, dim, 0);
    if (!st) st = rein_safetensors_tensor_f32(w, h->w);
    if (!st) st = rein_safetensors_tensor_f32(b, h->b);
    rein_safetensors_free(sf);
    return st;
}

rein_status rein_rm_load(const char *dir, const char *base_model, rein_reward_model **out) {
    *out = NULL;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/reward_config.json", dir);
    rein_buf b = {0};
    rein_status st = rein_read_file(path, &b);
    if (st) return rein_error_wrap(st, "%s is not a reward model folder: ", dir);
    cJSON *j = cJSON_Parse(b.data);
    rein_buf_free(&b);
    if (!j) return rein_error(REIN_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(j, "base_model");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(j, "reward_mean");
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(j, "reward_std");
    int full = cJSON_IsString(kind) && !strcmp(kind->valuestring, "full");
    if (!cJSON_IsString(kind) || (!full && strcmp(kind->valuestring, "lora")))
        st = rein_error(REIN_ERR_FORMAT, "%s: kind: expected \"lora\" or \"full\"", path);
    else if (!full && !base_model && (!cJSON_IsString(base) || !*base->valuestring))
        st = rein_error(REIN_ERR_FORMAT, "%s: base_model: expected the path of the base GGUF", path);
    else if (!cJSON_IsNumber(mean) || !cJSON_IsNumber(sd))
        st = rein_error(REIN_ERR_FORMAT, "%s: reward_mean / reward_std: expected numbers", path);
    rein_reward_model *rm = st ? NULL : rein_calloc(1, sizeof *rm);
    if (!st && !rm) st = REIN_ERR_NOMEM;
    if (!st) {
        rm->mean = (float)mean->valuedouble;
        rm->std = (float)sd->valuedouble;
        if (full) {
            snprintf(path, sizeof path, "%s/model.gguf", dir);
            st = rein_model_load(path, &rm->m);
        } else {
            st = rein_model_load(base_model ? base_model : base->valuestring, &rm->m);
            if (st) rein_error_wrap(st, "the reward model's base (%s/reward_config.json): ", dir);
            snprintf(path, sizeof path, "%s/adapter", dir);
            if (!st) st = rein_lora_load(rm->m, path);
        }
    }
    cJSON_Delete(j);
    if (!st) {
        snprintf(path, sizeof path, "%s/reward_head.safetensors", dir);
        st = load_head(path, &rm->head, rein_model_get_config(rm->m)->dim);
    }
    if (st) {
        rein_rm_free(rm);
        return st;
    }
    *out = rm;
    return REIN_OK;
}

/* Make rm's scoring state hold at least `need` tokens (2048 at least). */
static rein_status rm_reserve(rein_reward_model *rm, int need) {
    need = REIN_MAX(need, 2048);
    if (rm->ts && rm->ts->cap >= need) return REIN_OK;
    rein_train_state_free(rm->ts);
    rm->ts = NULL;
    return rein_train_state_new(rm->m, need, 0, &rm->ts);
}

rein_status rein_rm_score(rein_reward_model *rm, const int32_t *tokens, const int32_t *cu_seqlens,
                          int n_seqs, float *rewards) {
    int longest = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (cu_seqlens[s + 1] <= cu_seqlens[s])
            return rein_error(REIN_ERR_INVALID, "sequence %d to score is empty", s);
        longest = REIN_MAX(longest, cu_seqlens[s + 1] - cu_seqlens[s]);
    }
    REIN_TRY(rm_reserve(rm, longest));
    int32_t *cu = rein_malloc(sizeof(int32_t) * (size_t)(n_seqs + 1));
    if (!cu) return REIN_ERR_NOMEM;
    rein_status st = REIN_OK;
    for (int s = 0; !st && s < n_seqs;) {
        int k = 0, base = cu_seqlens[s];
        cu[0] = 0;
        while (s + k < n_seqs && cu_seqlens[s + k + 1] - base <= rm->ts->cap) {
            cu[k + 1] = cu_seqlens[s + k + 1] - base;
            k++;
        }
        st = rein_train_forward(rm->m, rm->ts, tokens + base, cu, k);
        if (!st) rein_reward_head_forward(&rm->head, rm->ts, rewards + s);
        s += k;
    }
    rein_free(cu);
    return st;
}

rein_status rein_rm_score_examples(rein_reward_model *rm, const rein_pref_set *ps, float *rewards) {
    int longest = 0;
    for (size_t i = 0; i < ps->ex->n; i++) longest = REIN_MAX(longest, ps->len[i]);
    REIN_TRY(rm_reserve(rm, longest));
    return rein_rm_score_set(rm->m, rm->ts, &rm->head, ps, rewards);
}
