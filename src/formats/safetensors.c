/* safetensors.c - the safetensors reader (mmap, validated) and writer (atomic); see safetensors.h.
 *
 * Reading follows the reference implementation's checks in its order: the header length against
 * the file and a 100 MB cap, the header as one JSON object (trailing spaces allowed), each entry's
 * dtype, shape and offsets, and then the ranges sorted by their start must tile the data section
 * exactly. Numbers are taken only when they are non-negative integers below 2^53 (a JSON number is
 * a double) and every product is checked for overflow before it is compared with a byte count.
 */
#include "formats/safetensors.h"
#include "base/base.h"
#include "kernels/quant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER 100000000ull /* the reference reader's limit */
#define MAX_INT_JSON 9007199254740992.0 /* 2^53: beyond it a JSON number is not exact */

typedef struct dtype_info {
    const char *name;
    int bits;
} dtype_info;

/* The dtypes of the reference implementation with whole-byte elements. */
static const dtype_info DTYPES[] = {
    {"BOOL", 8},  {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
    {"I16", 16},  {"U16", 16}, {"F16", 16}, {"BF16", 16},   {"I32", 32},    {"U32", 32},
    {"F32", 32},  {"F64", 64}, {"I64", 64}, {"U64", 64},    {"C64", 64},
};

static const dtype_info *find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (!strcmp(DTYPES[i].name, s)) return &DTYPES[i];
    return NULL;
}

struct rein_safetensors {
    void *map;
    size_t size;
    rein_safetensors_tensor *t; /* (n) sorted by offset */
    int64_t n;
    char **meta;                /* (2 * n_meta) key, value, key, value... */
    int64_t n_meta;
};

void rein_safetensors_free(rein_safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n; i++) {
        rein_free((char *)st->t[i].name);
        rein_free((char *)st->t[i].dtype);
    }
    for (int64_t i = 0; i < 2 * st->n_meta; i++) rein_free(st->meta[i]);
    rein_free(st->meta);
    rein_free(st->t);
    if (st->map) munmap(st->map, st->size);
    rein_free(st);
}

/* A JSON number that is an exact non-negative integer, or -1. */
static int64_t json_uint(const cJSON *x) {
    if (!cJSON_IsNumber(x)) return -1;
    double v = x->valuedouble;
    if (!(v >= 0) || v > MAX_INT_JSON || v != (double)(int64_t)v) return -1;
    return (int64_t)v;
}

static rein_status parse_tensor(const char *path, const cJSON *e, rein_safetensors_tensor *t,
                                uint64_t data_size) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': expected an object with dtype, shape "
                          "and data_offsets", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'dtype': expected a string",
                          path, name);
    const dtype_info *di = find_dtype(dt->valuestring);
    if (!di)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "%s: tensor '%s': field 'dtype': unknown dtype '%.32s' (expected F32, "
                          "F16, BF16, I64, ...)", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'shape': expected an array",
                          path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > REIN_ST_MAX_DIMS)
        return rein_error(REIN_ERR_UNSUPPORTED, "%s: tensor '%s': field 'shape': %d dimensions "
                          "(at most %d supported)", path, name, nd, REIN_ST_MAX_DIMS);
    t->n_dims = nd;
    uint64_t n_el = 1;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        int64_t v = json_uint(x);
        if (v < 0)
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'shape'[%d]: expected a "
                              "non-negative integer", path, name, d);
        t->shape[d] = v;
        if (__builtin_mul_overflow(n_el, (uint64_t)v, &n_el))
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'shape': the product of "
                              "the dimensions overflows", path, name);
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child) < 0 ||
        json_uint(off->child->next) < 0)
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets': expected "
                          "[begin, end], two non-negative integers", path, name);
    uint64_t b = (uint64_t)json_uint(off->child), en = (uint64_t)json_uint(off->child->next);
    if (en < b)
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets': [%llu, %llu] "
                          "ends before it begins", path, name, (unsigned long long)b,
                          (unsigned long long)en);
    if (en > data_size)
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets': [%llu, %llu] "
                          "outside the %llu bytes of data", path, name, (unsigned long long)b,
                          (unsigned long long)en, (unsigned long long)data_size);
    uint64_t bits;
    if (__builtin_mul_overflow(n_el, (uint64_t)di->bits, &bits))
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'shape': %llu elements overflow "
                          "a byte count", path, name, (unsigned long long)n_el);
    uint64_t bytes = bits / 8;
    if (en - b != bytes)
        return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets': [%llu, %llu] "
                          "holds %llu bytes; dtype %s and shape of %llu elements need %llu", path,
                          name, (unsigned long long)b, (unsigned long long)en,
                          (unsigned long long)(en - b), di->name, (unsigned long long)n_el,
                          (unsigned long long)bytes);
    t->name = rein_strdup(name);
    t->dtype = rein_strdup(di->name);
    if (!t->name || !t->dtype) return REIN_ERR_NOMEM;
    t->elem_bits = di->bits;
    t->n_elements = (int64_t)n_el;
    t->n_bytes = (size_t)bytes;
    t->offset = b; /* relative for now; made absolute once the ranges are checked */
    return REIN_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const rein_safetensors_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static rein_status parse_header(const char *path, rein_safetensors *st, const char *hdr,
                                size_t n, uint64_t data_size) {
    if (n == 0 || hdr[0] != '{')
        return rein_error(REIN_ERR_FORMAT, "%s: offset 8: the header must be a JSON object "
                          "starting with '{'", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
        return rein_error(REIN_ERR_FORMAT, "%s: offset %zu: the header is not valid JSON", path,
                          8 + at);
    }
    rein_status s = REIN_OK;
    for (const char *p = end; p < hdr + n && !s; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            s = rein_error(REIN_ERR_FORMAT, "%s: offset %zu: unexpected bytes after the JSON "
                           "header (only spaces may pad it)", path, 8 + (size_t)(p - hdr));
    if (!s && !cJSON_IsObject(root))
        s = rein_error(REIN_ERR_FORMAT, "%s: the header is not a JSON object", path);
    int64_t n_ent = 0;
    for (const cJSON *e = root->child; e && !s; e = e->next) n_ent++;
    if (!s) {
        st->t = rein_calloc((size_t)n_ent + 1, sizeof *st->t);
        st->meta = rein_calloc((size_t)n_ent * 2 + 2, sizeof *st->meta);
        if (!st->t || !st->meta) s = REIN_ERR_NOMEM;
    }
    for (const cJSON *e = root->child; e && !s; e = e->next) {
        for (const cJSON *f = root->child; f != e; f = f->next)
            if (!strcmp(f->string, e->string)) {
                s = rein_error(REIN_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                               path, e->string);
                break;
            }
        if (s) break;
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                s = rein_error(REIN_ERR_FORMAT, "%s: field '__metadata__': expected an object "
                               "of strings", path);
                break;
            }
            for (const cJSON *m = e->child; m && !s; m = m->next) {
                if (!cJSON_IsString(m)) {
                    s = rein_error(REIN_ERR_FORMAT, "%s: field '__metadata__.%s': expected a "
                                   "string", path, m->string);
                    break;
                }
                char *k = rein_strdup(m->string), *v = rein_strdup(m->valuestring);
                st->meta[2 * st->n_meta] = k;
                st->meta[2 * st->n_meta + 1] = v;
                st->n_meta++;
                if (!k || !v) s = REIN_ERR_NOMEM;
            }
            continue;
        }
        s = parse_tensor(path, e, &st->t[st->n], data_size);
        st->n++; /* even on failure, so that free releases its strings */
    }
    cJSON_Delete(root);
    if (s) return s;
    /* the ranges, sorted by start, must tile [0, data_size) */
    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_offset);
    uint64_t at = 0;
    for (int64_t i = 0; i < st->n; i++) {
        rein_safetensors_tensor *t = &st->t[i];
        if (t->offset != at)
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets': begins at "
                              "%llu, expected %llu (%s)", path, t->name,
                              (unsigned long long)t->offset, (unsigned long long)at,
                              t->offset < at ? "it overlaps the tensor before it"
                                             : "a gap before it");
        at += t->n_bytes;
    }
    if (at != data_size)
        return rein_error(REIN_ERR_FORMAT, "%s: the tensors cover %llu bytes of data, the file "
                          "has %llu after the header", path, (unsigned long long)at,
                          (unsigned long long)data_size);
    return REIN_OK;
}

rein_status rein_safetensors_open(const char *path, rein_safetensors **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rein_error(REIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return rein_error(REIN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return rein_error(REIN_ERR_FORMAT, "%s: %zu bytes; a safetensors file starts with an "
                          "8-byte header length", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return rein_error(REIN_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    rein_safetensors *st = rein_calloc(1, sizeof *st);
    if (!st) {
        munmap(map, size);
        return REIN_ERR_NOMEM;
    }
    st->map = map;
    st->size = size;
    const uint8_t *b = map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    rein_status s = REIN_OK;
    if (n > size - 8)
        s = rein_error(REIN_ERR_FORMAT, "%s: offset 0: header length %llu exceeds the %zu bytes "
                       "after it", path, (unsigned long long)n, size - 8);
    else if (n > MAX_HEADER)
        s = rein_error(REIN_ERR_FORMAT, "%s: offset 0: header length %llu exceeds the limit of "
                       "%llu bytes", path, (unsigned long long)n, MAX_HEADER);
    if (!s) s = parse_header(path, st, (const char *)b + 8, (size_t)n, size - 8 - n);
    if (s) {
        rein_safetensors_free(st);
        return s;
    }
    for (int64_t i = 0; i < st->n; i++) {
        st->t[i].offset += 8 + n;
        st->t[i].data = b + st->t[i].offset;
    }
    *out = st;
    return REIN_OK;
}

int64_t rein_safetensors_n_tensors(const rein_safetensors *st) { return st->n; }

const rein_safetensors_tensor *rein_safetensors_tensor_at(const rein_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const rein_safetensors_tensor *rein_safetensors_find(const rein_safetensors *st,
                                                     const char *name) {
    for (int64_t i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

int64_t rein_safetensors_n_meta(const rein_safetensors *st) { return st->n_meta; }

const char *rein_safetensors_meta_key(const rein_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta[2 * i] : NULL;
}

const char *rein_safetensors_meta_value(const rein_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}

const char *rein_safetensors_get_meta(const rein_safetensors *st, const char *key) {
    for (int64_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

rein_status rein_safetensors_tensor_f32(const rein_safetensors_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    if (!strcmp(t->dtype, "F32")) {
        if (t->n_bytes) memcpy(dst, p, t->n_bytes);
    } else if (!strcmp(t->dtype, "F16") || !strcmp(t->dtype, "BF16")) {
        int bf = t->dtype[0] == 'B';
        for (int64_t i = 0; i < t->n_elements; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = bf ? rein_bf16_to_fp32(h) : rein_fp16_to_fp32(h);
        }
    } else {
        return rein_error(REIN_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be read as f32 "
                          "(F32, F16 and BF16 can)", t->name, t->dtype);
    }
    return REIN_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct wtensor {
    char *name;
    const char *dtype;
    int n_dims;
    int64_t shape[REIN_ST_MAX_DIMS];
    void *data;
    size_t n_bytes;
} wtensor;

struct rein_safetensors_writer {
    wtensor *t;
    int64_t n, cap;
    char **meta; /* key, value pairs */
    int64_t n_meta, cap_meta;
};

rein_status rein_safetensors_writer_new(rein_safetensors_writer **out) {
    *out = rein_calloc(1, sizeof **out);
    return *out ? REIN_OK : REIN_ERR_NOMEM;
}

void rein_safetensors_writer_free(rein_safetensors_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) {
        rein_free(w->t[i].name);
        rein_free(w->t[i].data);
    }
    for (int64_t i = 0; i < 2 * w->n_meta; i++) rein_free(w->meta[i]);
    rein_free(w->meta);
    rein_free(w->t);
    rein_free(w);
}

rein_status rein_safetensors_set_meta(rein_safetensors_writer *w, const char *key,
                                      const char *value) {
    char *v = rein_strdup(value);
    if (!v) return REIN_ERR_NOMEM;
    for (int64_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            rein_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return REIN_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int64_t nc = w->cap_meta ? 2 * w->cap_meta : 4;
        char **m = rein_realloc(w->meta, sizeof *m * 2 * (size_t)nc);
        if (!m) {
            rein_free(v);
            return REIN_ERR_NOMEM;
        }
        w->meta = m;
        w->cap_meta = nc;
    }
    char *k = rein_strdup(key);
    if (!k) {
        rein_free(v);
        return REIN_ERR_NOMEM;
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return REIN_OK;
}

rein_status rein_safetensors_add(rein_safetensors_writer *w, const char *name, rein_type type,
                                 int n_dims, const int64_t *shape, const float *data) {
    const char *dtype = type == REIN_TYPE_F32    ? "F32"
                        : type == REIN_TYPE_F16  ? "F16"
                        : type == REIN_TYPE_BF16 ? "BF16"
                                                 : NULL;
    if (!dtype)
        return rein_error(REIN_ERR_UNSUPPORTED, "safetensors tensor '%s': type %s cannot be "
                          "written (F32, F16 and BF16 can)", name, rein_type_name(type) ?
                          rein_type_name(type) : "?");
    if (n_dims < 0 || n_dims > REIN_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return rein_error(REIN_ERR_INVALID, "safetensors tensor '%s': bad name or %d dimensions",
                          name, n_dims);
    for (int64_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return rein_error(REIN_ERR_INVALID, "safetensors tensor '%s' added twice", name);
    int64_t n_el = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || (shape[d] && n_el > INT64_MAX / 8 / shape[d]))
            return rein_error(REIN_ERR_INVALID, "safetensors tensor '%s': bad shape", name);
        n_el *= shape[d];
    }
    if (w->n == w->cap) {
        int64_t nc = w->cap ? 2 * w->cap : 16;
        wtensor *t = rein_realloc(w->t, sizeof *t * (size_t)nc);
        if (!t) return REIN_ERR_NOMEM;
        w->t = t;
        w->cap = nc;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    size_t esz = type == REIN_TYPE_F32 ? 4 : 2;
    t->n_bytes = (size_t)n_el * esz;
    t->name = rein_strdup(name);
    t->data = rein_malloc(t->n_bytes ? t->n_bytes : 1);
    if (!t->name || !t->data) {
        rein_free(t->name);
        rein_free(t->data);
        return REIN_ERR_NOMEM;
    }
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    if (esz == 4) {
        if (t->n_bytes) memcpy(t->data, data, t->n_bytes);
    } else {
        uint8_t *p = t->data;
        for (int64_t i = 0; i < n_el; i++) {
            uint16_t h = type == REIN_TYPE_F16 ? rein_fp32_to_fp16(data[i]) : rein_fp32_to_bf16(data[i]);
            p[2 * i] = (uint8_t)h;
            p[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    w->n++;
    return REIN_OK;
}

/* A JSON string as serde_json writes it: short escapes for \" \\ \b \f \n \r \t, \u00xx for the
 * other control characters, every other byte (UTF-8 included) as it is. */
static rein_status json_str(rein_buf *b, const char *s) {
    REIN_TRY(rein_buf_append(b, "\"", 1));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = NULL;
        switch (*p) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        }
        if (e) REIN_TRY(rein_buf_append(b, e, strlen(e)));
        else if (*p < 0x20) REIN_TRY(rein_buf_appendf(b, "\\u%04x", *p));
        else REIN_TRY(rein_buf_append(b, p, 1));
    }
    return rein_buf_append(b, "\"", 1);
}

static rein_status build_header(const rein_safetensors_writer *w, rein_buf *h) {
    REIN_TRY(rein_buf_append(h, "{", 1));
    if (w->n_meta) {
        REIN_TRY(rein_buf_appendf(h, "\"__metadata__\":{"));
        for (int64_t i = 0; i < w->n_meta; i++) {
            if (i) REIN_TRY(rein_buf_append(h, ",", 1));
            REIN_TRY(json_str(h, w->meta[2 * i]));
            REIN_TRY(rein_buf_append(h, ":", 1));
            REIN_TRY(json_str(h, w->meta[2 * i + 1]));
        }
        REIN_TRY(rein_buf_append(h, "}", 1));
    }
    uint64_t at = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (i || w->n_meta) REIN_TRY(rein_buf_append(h, ",", 1));
        REIN_TRY(json_str(h, t->name));
        REIN_TRY(rein_buf_appendf(h, ":{\"dtype\":\"%s\",\"shape\":[", t->dtype));
        for (int d = 0; d < t->n_dims; d++)
            REIN_TRY(rein_buf_appendf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]));
        REIN_TRY(rein_buf_appendf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                                  (unsigned long long)(at + t->n_bytes)));
        at += t->n_bytes;
    }
    REIN_TRY(rein_buf_append(h, "}", 1));
    while (h->len % 8) REIN_TRY(rein_buf_append(h, " ", 1));
    return REIN_OK;
}

rein_status rein_safetensors_write(rein_safetensors_writer *w, const char *path) {
    rein_buf h = {0};
    rein_status s = build_header(w, &h);
    if (s) {
        rein_buf_free(&h);
        return s;
    }
    rein_atomic_file af;
    s = rein_atomic_open(&af, path);
    if (s) {
        rein_buf_free(&h);
        return s;
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int ok = fwrite(len, 1, 8, af.fp) == 8 && fwrite(h.data, 1, h.len, af.fp) == h.len;
    for (int64_t i = 0; i < w->n && ok; i++)
        ok = !w->t[i].n_bytes || fwrite(w->t[i].data, 1, w->t[i].n_bytes, af.fp) == w->t[i].n_bytes;
    rein_buf_free(&h);
    if (!ok) {
        rein_atomic_abort(&af);
        return rein_error(REIN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return rein_atomic_commit(&af);
}
