/* gguf_query.c - what an opened GGUF file answers: its keys and values (typed getters by key and
 * by index, which widen integers and floats and check that a value fits) and its tensors (by index
 * and by name, through the sorted index gguf_read.c built, and dequantized whole).
 *
 * Everything returned points into the mapping or the file's arena and lives as long as the
 * rein_gguf. A getter fails with REIN_ERR_RANGE for an absent key, an index out of range or a
 * value that does not fit, and REIN_ERR_FORMAT for a value of an incompatible type.
 */
#include "formats/gguf_internal.h"
#include "base/base.h"

#include <inttypes.h>
#include <string.h>

/* ---- queries ------------------------------------------------------------------------------ */

uint32_t rein_gguf_version(const rein_gguf *g) {
    return g->version;
}

int64_t rein_gguf_n_kv(const rein_gguf *g) {
    return g->n_kv;
}

const gguf_kv *rein_gguf_kv_at(const rein_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const char *rein_gguf_kv_key(const rein_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

rein_gguf_value_type rein_gguf_kv_type(const rein_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].type : (rein_gguf_value_type)-1;
}

int64_t rein_gguf_find_kv(const rein_gguf *g, const char *key) {
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv_sorted[mid]->key, key);
        if (c == 0) return g->kv_sorted[mid] - g->kv;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static rein_status by_key(const rein_gguf *g, const char *key, const gguf_kv **kv) {
    int64_t i = key ? rein_gguf_find_kv(g, key) : -1;
    if (i < 0)
        return rein_error(REIN_ERR_RANGE, "%s: key '%s' is absent", g->path, key ? key : "(null)");
    *kv = &g->kv[i];
    return REIN_OK;
}

static rein_status by_index(const rein_gguf *g, int64_t i, const gguf_kv **kv) {
    if (i < 0 || i >= g->n_kv)
        return rein_error(REIN_ERR_RANGE,
                          "%s: key index %" PRId64 " is out of range (%" PRId64 " keys)", g->path,
                          i, g->n_kv);
    *kv = &g->kv[i];
    return REIN_OK;
}

static rein_status wrong_type(const rein_gguf *g, const gguf_kv *kv, const char *want) {
    return rein_error(REIN_ERR_FORMAT, "%s: offset %" PRIu64 ": key '%s' has type %s, expected %s",
                      g->path, kv->pos, kv->key, rein_gguf_type_str(kv->type), want);
}

/* An integer (or, with allow_bool, bool) scalar: *neg set and *s the value if negative, else
 * *u the value. */
static rein_status read_int(const rein_gguf *g, const gguf_kv *kv, int allow_bool, int *neg,
                            int64_t *s, uint64_t *u) {
    rein_gguf_value_type t = kv->type;
    int is_int = rein_gguf_scalar_size(t) && t != REIN_GGUF_BOOL && t != REIN_GGUF_FLOAT32 &&
                 t != REIN_GGUF_FLOAT64;
    if (!is_int && !(allow_bool && t == REIN_GGUF_BOOL)) return wrong_type(g, kv, "an integer");
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
    } x = {0};
    memcpy(&x, kv->val, rein_gguf_scalar_size(kv->type));
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (kv->type) {
    case REIN_GGUF_BOOL:
        uv = x.u8 != 0;
        break;
    case REIN_GGUF_UINT8:
        uv = x.u8;
        break;
    case REIN_GGUF_INT8:
        sv = x.i8;
        break;
    case REIN_GGUF_UINT16:
        uv = x.u16;
        break;
    case REIN_GGUF_INT16:
        sv = x.i16;
        break;
    case REIN_GGUF_UINT32:
        uv = x.u32;
        break;
    case REIN_GGUF_INT32:
        sv = x.i32;
        break;
    case REIN_GGUF_UINT64:
        uv = x.u64;
        break;
    case REIN_GGUF_INT64:
        sv = x.i64;
        break;
    default:
        REIN_ASSERT(0 && "non-integer type got through");
    }
    *neg = sv < 0;
    *s = sv;
    *u = sv < 0 ? 0 : uv + (uint64_t)sv; /* one of uv, sv is 0 */
    return REIN_OK;
}

static rein_status not_fit(const rein_gguf *g, const gguf_kv *kv, int neg, int64_t s, uint64_t u,
                           const char *into) {
    if (neg)
        return rein_error(REIN_ERR_RANGE, "%s: key '%s' value %" PRId64 " does not fit in %s",
                          g->path, kv->key, s, into);
    return rein_error(REIN_ERR_RANGE, "%s: key '%s' value %" PRIu64 " does not fit in %s", g->path,
                      kv->key, u, into);
}

static rein_status kv_to_i64(const rein_gguf *g, const gguf_kv *kv, int allow_bool, int64_t *out) {
    int neg;
    int64_t s;
    uint64_t u;
    REIN_TRY(read_int(g, kv, allow_bool, &neg, &s, &u));
    if (!neg && u > (uint64_t)INT64_MAX) return not_fit(g, kv, neg, s, u, "int64");
    *out = neg ? s : (int64_t)u;
    return REIN_OK;
}

static rein_status kv_to_u64(const rein_gguf *g, const gguf_kv *kv, int allow_bool, uint64_t *out) {
    int neg;
    int64_t s;
    uint64_t u;
    REIN_TRY(read_int(g, kv, allow_bool, &neg, &s, &u));
    if (neg) return not_fit(g, kv, neg, s, u, "uint64");
    *out = u;
    return REIN_OK;
}

static rein_status kv_to_f64(const rein_gguf *g, const gguf_kv *kv, double *out) {
    if (kv->type == REIN_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
    } else if (kv->type == REIN_GGUF_FLOAT64) {
        memcpy(out, kv->val, 8);
    } else {
        return wrong_type(g, kv, "float32 or float64");
    }
    return REIN_OK;
}

static rein_status kv_to_str(const rein_gguf *g, const gguf_kv *kv, const char **s, size_t *len) {
    if (kv->type != REIN_GGUF_STRING) return wrong_type(g, kv, "string");
    *s = (const char *)kv->val;
    *len = (size_t)kv->n;
    return REIN_OK;
}

static rein_status kv_to_arr(const rein_gguf *g, const gguf_kv *kv, rein_gguf_value_type *type,
                             int64_t *n, const void **data) {
    if (kv->type != REIN_GGUF_ARRAY) return wrong_type(g, kv, "array");
    if (type) *type = kv->arr_type;
    if (n) *n = kv->n;
    if (data) *data = kv->arr_type == REIN_GGUF_STRING ? NULL : kv->val;
    return REIN_OK;
}

static rein_status kv_to_arr_str(const rein_gguf *g, const gguf_kv *kv, int64_t i, const char **s,
                                 size_t *len) {
    if (kv->type != REIN_GGUF_ARRAY || kv->arr_type != REIN_GGUF_STRING)
        return wrong_type(g, kv, "array of strings");
    if (i < 0 || i >= kv->n)
        return rein_error(REIN_ERR_RANGE,
                          "%s: key '%s': index %" PRId64 " is out of range (%" PRId64 " strings)",
                          g->path, kv->key, i, kv->n);
    const uint8_t *p = kv->val + kv->str_off[i];
    uint64_t l;
    memcpy(&l, p, 8);
    *s = (const char *)(p + 8);
    *len = (size_t)l;
    return REIN_OK;
}

rein_status rein_gguf_get_u32(const rein_gguf *g, const char *key, uint32_t *out) {
    const gguf_kv *kv = NULL;
    int neg;
    int64_t s;
    uint64_t u;
    REIN_TRY(by_key(g, key, &kv));
    REIN_TRY(read_int(g, kv, 0, &neg, &s, &u));
    if (neg || u > UINT32_MAX) return not_fit(g, kv, neg, s, u, "uint32");
    *out = (uint32_t)u;
    return REIN_OK;
}

rein_status rein_gguf_get_i64(const rein_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_key(g, key, &kv));
    return kv_to_i64(g, kv, 0, out);
}

rein_status rein_gguf_get_f32(const rein_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = NULL;
    double d;
    REIN_TRY(by_key(g, key, &kv));
    REIN_TRY(kv_to_f64(g, kv, &d));
    *out = (float)d;
    return REIN_OK;
}

rein_status rein_gguf_get_bool(const rein_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_key(g, key, &kv));
    if (kv->type != REIN_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = kv->val[0] != 0;
    return REIN_OK;
}

rein_status rein_gguf_get_str(const rein_gguf *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_key(g, key, &kv));
    return kv_to_str(g, kv, s, len);
}

rein_status rein_gguf_get_arr(const rein_gguf *g, const char *key, rein_gguf_value_type *type,
                              int64_t *n, const void **data) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_key(g, key, &kv));
    return kv_to_arr(g, kv, type, n, data);
}

rein_status rein_gguf_get_arr_str(const rein_gguf *g, const char *key, int64_t i, const char **s,
                                  size_t *len) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_key(g, key, &kv));
    return kv_to_arr_str(g, kv, i, s, len);
}

rein_status rein_gguf_kv_int(const rein_gguf *g, int64_t i, int64_t *out) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_i64(g, kv, 1, out);
}

rein_status rein_gguf_kv_uint(const rein_gguf *g, int64_t i, uint64_t *out) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_u64(g, kv, 1, out);
}

rein_status rein_gguf_kv_float(const rein_gguf *g, int64_t i, double *out) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_f64(g, kv, out);
}

rein_status rein_gguf_kv_str(const rein_gguf *g, int64_t i, const char **s, size_t *len) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_str(g, kv, s, len);
}

rein_status rein_gguf_kv_arr(const rein_gguf *g, int64_t i, rein_gguf_value_type *type, int64_t *n,
                             const void **data) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_arr(g, kv, type, n, data);
}

rein_status rein_gguf_kv_arr_str(const rein_gguf *g, int64_t i, int64_t j, const char **s,
                                 size_t *len) {
    const gguf_kv *kv = NULL;
    REIN_TRY(by_index(g, i, &kv));
    return kv_to_arr_str(g, kv, j, s, len);
}

int64_t rein_gguf_n_tensors(const rein_gguf *g) {
    return g->n_tensors;
}

const rein_gguf_tensor *rein_gguf_tensor_at(const rein_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i].pub : NULL;
}

const rein_gguf_tensor *rein_gguf_find_tensor(const rein_gguf *g, const char *name) {
    if (!name) return NULL;
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_sorted[mid]->pub.name, name);
        if (c == 0) return &g->t_sorted[mid]->pub;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

rein_status rein_gguf_tensor_f32(const rein_gguf_tensor *t, float *dst) {
    if (!t || !dst) return rein_error(REIN_ERR_INVALID, "rein_gguf_tensor_f32: NULL argument");
    rein_status st = rein_dequantize(t->type, t->data, dst, t->n_elements);
    if (st) return rein_error_wrap(st, "tensor '%s': ", t->name);
    return REIN_OK;
}
