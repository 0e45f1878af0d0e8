/* gguf_write.c - build a GGUF v3 file: metadata and tensors in, one atomically written file out.
 *
 * The writer keeps each value already serialized (the bytes that follow the value type in the
 * file), so a value copied from an opened file (rein_gguf_copy_kv) is written back byte for byte.
 * Tensors are copied (and converted from f32 where asked) when they are added.
 * rein_gguf_writer_write lays the file out as ggml does: header, key/value pairs, tensor infos,
 * zero padding to the alignment, then each tensor's data followed by zero padding to the alignment;
 * it writes through rein_atomic_open/commit, so a failure leaves no file behind and never a
 * half-written one.
 */
#include "formats/gguf_internal.h"
#include "base/base.h"

#include <inttypes.h>
#include <string.h>

typedef struct wkv {
    char *key;
    uint32_t type;
    rein_buf val; /* the serialized value */
} wkv;

typedef struct wtensor {
    char *name;
    rein_type type;
    int n_dims;
    int64_t shape[GGUF_MAX_DIMS]; /* PyTorch order */
    uint8_t *data;                /* (n_bytes) in the type's layout */
    size_t n_bytes;
} wtensor;

struct rein_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

rein_status rein_gguf_writer_new(rein_gguf_writer **out) {
    *out = rein_calloc(1, sizeof **out);
    return *out ? REIN_OK : REIN_ERR_NOMEM;
}

void rein_gguf_writer_free(rein_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        rein_free(w->kv[i].key);
        rein_buf_free(&w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        rein_free(w->t[i].name);
        rein_free(w->t[i].data);
    }
    rein_free(w->kv);
    rein_free(w->t);
    rein_free(w);
}

/* Make room for one more element of a growable array. */
static rein_status grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return REIN_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > SIZE_MAX / elem) return rein_error(REIN_ERR_NOMEM, "gguf writer: too many entries");
    void *p = rein_realloc(*arr, ncap * elem);
    if (!p) return REIN_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return REIN_OK;
}

/* Set `key` to an already serialized value; takes ownership of *val (freed on failure too). */
static rein_status set_value(rein_gguf_writer *w, const char *key, uint32_t type, rein_buf *val) {
    rein_status st = REIN_OK;
    if (!w || !key) {
        st = rein_error(REIN_ERR_INVALID, "gguf writer: NULL writer or key");
        goto fail;
    }
    if (!strcmp(key, "general.alignment")) {
        uint32_t a = 0;
        if (type == REIN_GGUF_UINT32 && val->len == 4) memcpy(&a, val->data, 4);
        if (a == 0 || (a & (a - 1)) != 0) {
            st = rein_error(REIN_ERR_INVALID,
                            "gguf writer: general.alignment must be a uint32 power of two");
            goto fail;
        }
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) { /* replace in place: the key keeps its position */
            rein_buf_free(&w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = *val;
            return REIN_OK;
        }
    }
    st = grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv);
    if (st) goto fail;
    char *k = rein_strdup(key);
    if (!k) {
        st = REIN_ERR_NOMEM;
        goto fail;
    }
    w->kv[w->n_kv++] = (wkv){.key = k, .type = type, .val = *val};
    return REIN_OK;
fail:
    rein_buf_free(val);
    return st;
}

/* Serialize a scalar (or the head of an array) into a fresh buffer and set it. */
static rein_status set_bytes(rein_gguf_writer *w, const char *key, uint32_t type, const void *a,
                             size_t alen, const void *b, size_t blen) {
    rein_buf val = {0};
    rein_status st = rein_buf_append(&val, a, alen);
    if (!st && blen) st = rein_buf_append(&val, b, blen);
    if (st) {
        rein_buf_free(&val);
        return st;
    }
    return set_value(w, key, type, &val);
}

rein_status rein_gguf_set_scalar(rein_gguf_writer *w, const char *key, rein_gguf_value_type type,
                                 const void *value) {
    size_t sz = rein_gguf_scalar_size(type);
    if (!sz || !value)
        return rein_error(REIN_ERR_INVALID, "gguf writer: key '%s': %s is not a scalar type",
                          key ? key : "(null)", rein_gguf_type_str(type));
    return set_bytes(w, key, type, value, sz, NULL, 0);
}

rein_status rein_gguf_set_u32(rein_gguf_writer *w, const char *key, uint32_t v) {
    return rein_gguf_set_scalar(w, key, REIN_GGUF_UINT32, &v);
}

rein_status rein_gguf_set_i32(rein_gguf_writer *w, const char *key, int32_t v) {
    return rein_gguf_set_scalar(w, key, REIN_GGUF_INT32, &v);
}

rein_status rein_gguf_set_u64(rein_gguf_writer *w, const char *key, uint64_t v) {
    return rein_gguf_set_scalar(w, key, REIN_GGUF_UINT64, &v);
}

rein_status rein_gguf_set_f32(rein_gguf_writer *w, const char *key, float v) {
    return rein_gguf_set_scalar(w, key, REIN_GGUF_FLOAT32, &v);
}

rein_status rein_gguf_set_bool(rein_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return rein_gguf_set_scalar(w, key, REIN_GGUF_BOOL, &b);
}

rein_status rein_gguf_set_str(rein_gguf_writer *w, const char *key, const char *s) {
    if (!s) return rein_error(REIN_ERR_INVALID, "gguf writer: key '%s': NULL string", key);
    uint64_t len = strlen(s);
    return set_bytes(w, key, REIN_GGUF_STRING, &len, 8, s, (size_t)len);
}

rein_status rein_gguf_writer_set_alignment(rein_gguf_writer *w, uint32_t alignment) {
    return rein_gguf_set_u32(w, "general.alignment", alignment);
}

rein_status rein_gguf_set_arr(rein_gguf_writer *w, const char *key, rein_gguf_value_type type,
                              const void *data, int64_t n) {
    size_t sz = rein_gguf_scalar_size(type);
    if (!sz || n < 0 || (n > 0 && !data))
        return rein_error(REIN_ERR_INVALID,
                          "gguf writer: key '%s': bad array (type %s, %" PRId64 " elements)",
                          key ? key : "(null)", rein_gguf_type_str(type), n);
    if ((uint64_t)n > SIZE_MAX / sz)
        return rein_error(REIN_ERR_NOMEM, "gguf writer: key '%s': array too large", key);
    uint8_t head[12];
    uint32_t t = type;
    uint64_t len = (uint64_t)n;
    memcpy(head, &t, 4);
    memcpy(head + 4, &len, 8);
    return set_bytes(w, key, REIN_GGUF_ARRAY, head, 12, data, (size_t)n * sz);
}

rein_status rein_gguf_set_arr_str(rein_gguf_writer *w, const char *key, const char *const *strs,
                                  const size_t *lens, int64_t n) {
    if (n < 0 || (n > 0 && !strs))
        return rein_error(REIN_ERR_INVALID, "gguf writer: key '%s': bad string array",
                          key ? key : "(null)");
    rein_buf val = {0};
    uint32_t t = REIN_GGUF_STRING;
    uint64_t len = (uint64_t)n;
    rein_status st = rein_buf_append(&val, &t, 4);
    if (!st) st = rein_buf_append(&val, &len, 8);
    for (int64_t i = 0; i < n && !st; i++) {
        if (!strs[i]) {
            st = rein_error(REIN_ERR_INVALID, "gguf writer: key '%s': string %" PRId64 " is NULL",
                            key, i);
            break;
        }
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        st = rein_buf_append(&val, &l, 8);
        if (!st) st = rein_buf_append(&val, strs[i], (size_t)l);
    }
    if (st) {
        rein_buf_free(&val);
        return st;
    }
    return set_value(w, key, REIN_GGUF_ARRAY, &val);
}

rein_status rein_gguf_copy_kv(rein_gguf_writer *w, const rein_gguf *src) {
    for (int64_t i = 0; i < rein_gguf_n_kv(src); i++) {
        const gguf_kv *kv = rein_gguf_kv_at(src, i);
        if (!strncmp(kv->key, "GGUF.", 5) || !strcmp(kv->key, "general.alignment")) continue;
        REIN_TRY(set_bytes(w, kv->key, kv->type, kv->raw, kv->raw_len, NULL, 0));
    }
    return REIN_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

/* Check a new tensor's name, type and shape; its size in bytes goes to *n_bytes. */
static rein_status check_tensor(const rein_gguf_writer *w, const char *name, rein_type type,
                                int n_dims, const int64_t *shape, size_t *n_bytes) {
    if (!w || !name || !shape)
        return rein_error(REIN_ERR_INVALID, "gguf writer: NULL writer, name or shape");
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return rein_error(REIN_ERR_INVALID, "gguf writer: tensor '%s' added twice", name);
    int bs = rein_type_block_size(type);
    if (!bs)
        return rein_error(REIN_ERR_UNSUPPORTED, "gguf writer: tensor '%s': unknown type id %d",
                          name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return rein_error(REIN_ERR_INVALID, "gguf writer: tensor '%s': n_dims %d is not 1 to %d",
                          name, n_dims, GGUF_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] <= 0 || shape[d] > INT64_MAX / n)
            return rein_error(REIN_ERR_INVALID,
                              "gguf writer: tensor '%s': dimension %d (%" PRId64
                              ") is not positive or overflows",
                              name, d, shape[d]);
        n *= shape[d];
    }
    if (shape[n_dims - 1] % bs != 0)
        return rein_error(REIN_ERR_INVALID,
                          "gguf writer: tensor '%s': last dimension %" PRId64
                          " is not a multiple of the %s block size %d",
                          name, shape[n_dims - 1], rein_type_name(type), bs);
    size_t bb = rein_type_block_bytes(type);
    if ((uint64_t)(n / bs) > SIZE_MAX / bb)
        return rein_error(REIN_ERR_INVALID, "gguf writer: tensor '%s': too large", name);
    *n_bytes = (size_t)(n / bs) * bb;
    return REIN_OK;
}

/* Append a tensor whose data (n_bytes, owned) is ready; frees data on failure. */
static rein_status push_tensor(rein_gguf_writer *w, const char *name, rein_type type, int n_dims,
                               const int64_t *shape, uint8_t *data, size_t n_bytes) {
    rein_status st = grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t);
    char *nm = st ? NULL : rein_strdup(name);
    if (!nm) {
        rein_free(data);
        return REIN_ERR_NOMEM;
    }
    wtensor *t = &w->t[w->n_t++];
    *t = (wtensor){.name = nm, .type = type, .n_dims = n_dims, .data = data, .n_bytes = n_bytes};
    memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    return REIN_OK;
}

rein_status rein_gguf_add_tensor(rein_gguf_writer *w, const char *name, rein_type type, int n_dims,
                                 const int64_t *shape, const float *data) {
    size_t n_bytes;
    REIN_TRY(check_tensor(w, name, type, n_dims, shape, &n_bytes));
    int64_t n = (int64_t)(n_bytes / rein_type_block_bytes(type)) * rein_type_block_size(type);
    uint8_t *buf = rein_malloc(n_bytes);
    if (!buf) return REIN_ERR_NOMEM;
    rein_status st =
        data ? rein_quantize(type, data, buf, n)
             : rein_error(REIN_ERR_INVALID, "gguf writer: tensor '%s': NULL data", name);
    if (st) {
        rein_free(buf);
        return rein_error_wrap(st, "gguf writer: tensor '%s': ", name);
    }
    return push_tensor(w, name, type, n_dims, shape, buf, n_bytes);
}

rein_status rein_gguf_add_tensor_raw(rein_gguf_writer *w, const char *name, rein_type type,
                                     int n_dims, const int64_t *shape, const void *data,
                                     size_t n_bytes) {
    size_t want;
    REIN_TRY(check_tensor(w, name, type, n_dims, shape, &want));
    if (n_bytes != want || !data)
        return rein_error(REIN_ERR_INVALID,
                          "gguf writer: tensor '%s': %zu bytes given, its shape and type %s take "
                          "%zu",
                          name, n_bytes, rein_type_name(type), want);
    uint8_t *buf = rein_malloc(n_bytes);
    if (!buf) return REIN_ERR_NOMEM;
    memcpy(buf, data, n_bytes);
    return push_tensor(w, name, type, n_dims, shape, buf, n_bytes);
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct out {
    FILE *fp;
    uint64_t pos;
    int failed;
} out;

static void put(out *o, const void *p, size_t n) {
    if (!o->failed && n && fwrite(p, 1, n, o->fp) != n) o->failed = 1;
    o->pos += n;
}

static void put_u32(out *o, uint32_t v) {
    put(o, &v, 4);
}

static void put_u64(out *o, uint64_t v) {
    put(o, &v, 8);
}

static void put_str(out *o, const char *s) {
    uint64_t n = strlen(s);
    put_u64(o, n);
    put(o, s, (size_t)n);
}

static void pad(out *o, uint32_t alignment) {
    static const uint8_t zeros[256];
    while (o->pos % alignment) {
        uint64_t n = alignment - o->pos % alignment;
        put(o, zeros, n < sizeof zeros ? (size_t)n : sizeof zeros);
    }
}

static uint64_t align_up(uint64_t x, uint32_t a) {
    return (x + a - 1) / a * a;
}

rein_status rein_gguf_writer_write(rein_gguf_writer *w, const char *path) {
    if (!w || !path) return rein_error(REIN_ERR_INVALID, "gguf writer: NULL writer or path");
    uint32_t alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment")) memcpy(&alignment, w->kv[i].val.data, 4);

    rein_atomic_file af;
    REIN_TRY(rein_atomic_open(&af, path));
    out o = {.fp = af.fp};
    put(&o, GGUF_MAGIC, 4);
    put_u32(&o, 3);
    put_u64(&o, w->n_t);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key);
        put_u32(&o, w->kv[i].type);
        put(&o, w->kv[i].val.data, w->kv[i].val.len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&o, t->name);
        put_u32(&o, (uint32_t)t->n_dims);
        for (int d = t->n_dims - 1; d >= 0; d--)
            put_u64(&o, (uint64_t)t->shape[d]); /* ne order */
        put_u32(&o, (uint32_t)t->type);
        put_u64(&o, off);
        off = align_up(off + t->n_bytes, alignment);
    }
    pad(&o, alignment);
    for (size_t i = 0; i < w->n_t; i++) {
        put(&o, w->t[i].data, w->t[i].n_bytes);
        pad(&o, alignment);
    }
    if (o.failed) {
        rein_status st = rein_error(REIN_ERR_IO, "%s: write error", af.tmp);
        rein_atomic_abort(&af);
        return st;
    }
    return rein_atomic_commit(&af);
}
