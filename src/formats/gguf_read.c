/* gguf_read.c - open and validate a GGUF file (versions 2 and 3); gguf_query.c answers questions.
 *
 * The file is memory-mapped read-only and stays mapped while the rein_gguf lives: strings, arrays
 * and tensor data are handed out as pointers into the mapping. Opening is two passes over the
 * header with the same parser: the first only validates and measures (no allocation: every count,
 * length and dimension is checked against the bytes left and against overflow), the second fills
 * one arena that holds the handle, the key/value table, the tensor table, the index arrays and the
 * name copies. Then the tensor data ranges are checked: inside the file, aligned, not overlapping,
 * and names and keys unique. A bad file gets REIN_ERR_FORMAT (REIN_ERR_UNSUPPORTED for what is
 * well-formed but unknown: a version, a value type, a tensor type) with a message that names the
 * file, the byte offset and the field. The file layout is described in gguf_internal.h.
 */
#include "formats/gguf_internal.h"
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- value types -------------------------------------------------------------------------- */

size_t rein_gguf_scalar_size(int type) {
    switch (type) {
    case REIN_GGUF_UINT8:
    case REIN_GGUF_INT8:
    case REIN_GGUF_BOOL:
        return 1;
    case REIN_GGUF_UINT16:
    case REIN_GGUF_INT16:
        return 2;
    case REIN_GGUF_UINT32:
    case REIN_GGUF_INT32:
    case REIN_GGUF_FLOAT32:
        return 4;
    case REIN_GGUF_UINT64:
    case REIN_GGUF_INT64:
    case REIN_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

const char *rein_gguf_type_str(int type) {
    static const char *const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                        "int32",  "float32", "bool",   "string", "array",
                                        "uint64", "int64",   "float64"};
    return type >= 0 && type <= REIN_GGUF_FLOAT64 ? names[type] : "unknown";
}

/* ---- the parser --------------------------------------------------------------------------- */

/* Smallest encodings, to bound counts by the bytes left before anything is allocated. */
enum {
    MIN_KV_BYTES = 8 + 4 + 1,             /* empty key, type, a 1-byte scalar */
    MIN_TENSOR_BYTES = 8 + 4 + 8 + 4 + 8, /* empty name, n_dims, one dim, type, offset */
};

typedef struct parser {
    const char *path;
    const uint8_t *base;
    uint64_t size, pos;
    uint32_t alignment;
    int64_t n_kv, n_tensors;
    /* pass 1 measures these */
    uint64_t n_str;       /* strings inside string arrays */
    uint64_t names_bytes; /* keys and tensor names with their NULs */
    /* pass 2 fills these (NULL in pass 1) */
    rein_gguf *g;
    uint64_t *str_offs;
    char *names;
} parser;

static uint64_t left(const parser *p) {
    return p->size - p->pos;
}

static rein_status need(parser *p, uint64_t n, const char *field) {
    if (n > left(p))
        return rein_error(REIN_ERR_FORMAT,
                          "%s: offset %" PRIu64 ": %s needs %" PRIu64 " bytes but only %" PRIu64
                          " are left (truncated file?)",
                          p->path, p->pos, field, n, left(p));
    return REIN_OK;
}

static rein_status rd_u32(parser *p, const char *field, uint32_t *v) {
    REIN_TRY(need(p, 4, field));
    memcpy(v, p->base + p->pos, 4);
    p->pos += 4;
    return REIN_OK;
}

static rein_status rd_u64(parser *p, const char *field, uint64_t *v) {
    REIN_TRY(need(p, 8, field));
    memcpy(v, p->base + p->pos, 8);
    p->pos += 8;
    return REIN_OK;
}

/* A string: u64 length, then the bytes. *s points into the file. */
static rein_status rd_str(parser *p, const char *field, const uint8_t **s, uint64_t *len) {
    uint64_t at = p->pos;
    REIN_TRY(rd_u64(p, field, len));
    if (*len > left(p))
        return rein_error(REIN_ERR_FORMAT,
                          "%s: offset %" PRIu64 ": %s length %" PRIu64 " cannot fit in the %" PRIu64
                          " bytes left",
                          p->path, at, field, *len, left(p));
    *s = p->base + p->pos;
    p->pos += *len;
    return REIN_OK;
}

/* Copy a name into the pass-2 pool (NUL-terminated), or count its bytes in pass 1. */
static const char *keep_name(parser *p, const uint8_t *s, uint64_t len) {
    if (!p->g) {
        p->names_bytes += len + 1;
        return NULL;
    }
    char *d = p->names;
    memcpy(d, s, len);
    d[len] = 0;
    p->names += len + 1;
    return d;
}

/* The value of key `key` (already read) of type `type`, at p->pos. */
static rein_status parse_value(parser *p, const char *key, uint64_t kv_pos, uint32_t type,
                               gguf_kv *kv) {
    char field[200];
    uint64_t start = p->pos;
    size_t sz = rein_gguf_scalar_size((int)type);
    int64_t n = 1;
    uint32_t arr_type = 0;
    const uint8_t *val = p->base + p->pos;
    const uint64_t *str_off = NULL;
    if (sz) {
        snprintf(field, sizeof field, "key '%s' value (%s)", key, rein_gguf_type_str((int)type));
        REIN_TRY(need(p, sz, field));
        p->pos += sz;
    } else if (type == REIN_GGUF_STRING) {
        snprintf(field, sizeof field, "key '%s' string value", key);
        uint64_t len;
        REIN_TRY(rd_str(p, field, &val, &len));
        n = (int64_t)len;
    } else if (type == REIN_GGUF_ARRAY) {
        snprintf(field, sizeof field, "key '%s' array element type", key);
        uint64_t at = p->pos;
        REIN_TRY(rd_u32(p, field, &arr_type));
        if (arr_type == REIN_GGUF_ARRAY)
            return rein_error(REIN_ERR_UNSUPPORTED,
                              "%s: offset %" PRIu64
                              ": key '%s': arrays of arrays are not supported",
                              p->path, at, key);
        size_t esz = rein_gguf_scalar_size((int)arr_type);
        if (!esz && arr_type != REIN_GGUF_STRING)
            return rein_error(REIN_ERR_UNSUPPORTED,
                              "%s: offset %" PRIu64
                              ": key '%s': unknown array element type %" PRIu32,
                              p->path, at, key, arr_type);
        at = p->pos;
        uint64_t len;
        snprintf(field, sizeof field, "key '%s' array length", key);
        REIN_TRY(rd_u64(p, field, &len));
        /* each element takes at least esz bytes (a string at least its 8-byte length) */
        uint64_t min_bytes = esz ? esz : 8;
        if (len > left(p) / min_bytes)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": key '%s' array length %" PRIu64
                              " cannot fit in the %" PRIu64 " bytes left",
                              p->path, at, key, len, left(p));
        n = (int64_t)len;
        val = p->base + p->pos;
        if (esz) {
            p->pos += len * esz;
        } else {
            if (p->g) str_off = p->str_offs;
            for (uint64_t j = 0; j < len; j++) {
                const uint8_t *s;
                uint64_t slen;
                if (p->g) p->str_offs[j] = p->pos - (uint64_t)(val - p->base);
                snprintf(field, sizeof field, "key '%s' string %" PRIu64, key, j);
                REIN_TRY(rd_str(p, field, &s, &slen));
            }
            if (p->g) p->str_offs += len;
            p->n_str += len;
        }
    } else {
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "%s: offset %" PRIu64 ": key '%s' has unknown value type %" PRIu32,
                          p->path, kv_pos, key, type);
    }
    if (kv) {
        kv->type = (rein_gguf_value_type)type;
        kv->arr_type = (rein_gguf_value_type)arr_type;
        kv->n = n;
        kv->val = val;
        kv->str_off = str_off;
        kv->raw = p->base + start;
        kv->raw_len = (size_t)(p->pos - start);
        kv->pos = kv_pos;
    }
    return REIN_OK;
}

/* Print at most 80 bytes of a name from the file, for messages. */
static void name_for_msg(char *dst, size_t cap, const uint8_t *s, uint64_t len) {
    size_t n = len < 80 ? (size_t)len : 80;
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (dst[i] == 0) dst[i] = '?';
    if (len > 80 && cap > 84) strcat(dst, "...");
}

static rein_status parse_header(parser *p) {
    p->pos = 0;
    REIN_TRY(need(p, 4, "magic"));
    if (memcmp(p->base, GGUF_MAGIC, 4) != 0)
        return rein_error(REIN_ERR_FORMAT,
                          "%s: offset 0: magic is %02x %02x %02x %02x, expected \"GGUF\" (not a "
                          "GGUF file)",
                          p->path, p->base[0], p->base[1], p->base[2], p->base[3]);
    p->pos = 4;
    uint32_t version;
    REIN_TRY(rd_u32(p, "version", &version));
    if (version == 0x02000000u || version == 0x03000000u)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "%s: offset 4: version is byte-swapped (a big-endian GGUF file is not "
                          "supported)",
                          p->path);
    if (version != 2 && version != 3)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "%s: offset 4: version %" PRIu32 " is not supported (2 and 3 are)",
                          p->path, version);
    if (p->g) p->g->version = version;
    uint64_t n_tensors, n_kv;
    REIN_TRY(rd_u64(p, "tensor_count", &n_tensors));
    REIN_TRY(rd_u64(p, "kv_count", &n_kv));
    if (n_tensors > left(p) / MIN_TENSOR_BYTES)
        return rein_error(REIN_ERR_FORMAT,
                          "%s: offset 8: tensor_count %" PRIu64 " cannot fit in the %" PRIu64
                          " bytes left",
                          p->path, n_tensors, left(p));
    if (n_kv > left(p) / MIN_KV_BYTES)
        return rein_error(REIN_ERR_FORMAT,
                          "%s: offset 16: kv_count %" PRIu64 " cannot fit in the %" PRIu64
                          " bytes left",
                          p->path, n_kv, left(p));
    p->n_tensors = (int64_t)n_tensors;
    p->n_kv = (int64_t)n_kv;
    return REIN_OK;
}

static rein_status parse_kvs(parser *p) {
    p->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < p->n_kv; i++) {
        char field[120], key[100];
        uint64_t kv_pos = p->pos;
        const uint8_t *k;
        uint64_t klen;
        snprintf(field, sizeof field, "key %" PRId64, i);
        REIN_TRY(rd_str(p, field, &k, &klen));
        name_for_msg(key, sizeof key, k, klen);
        if (memchr(k, 0, (size_t)klen))
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": key '%s' contains a NUL byte", p->path,
                              kv_pos, key);
        uint32_t type;
        uint64_t type_pos = p->pos;
        snprintf(field, sizeof field, "key '%s' value type", key);
        REIN_TRY(rd_u32(p, field, &type));
        gguf_kv *kv = p->g ? &p->g->kv[i] : NULL;
        REIN_TRY(parse_value(p, key, type_pos, type, kv));
        const char *kept = keep_name(p, k, klen);
        if (kv) kv->key = kept;
        if (klen == 17 && !memcmp(k, "general.alignment", 17)) {
            if (type != REIN_GGUF_UINT32)
                return rein_error(REIN_ERR_FORMAT,
                                  "%s: offset %" PRIu64 ": general.alignment has type %s, "
                                  "expected uint32",
                                  p->path, type_pos, rein_gguf_type_str((int)type));
            uint32_t a;
            memcpy(&a, p->base + type_pos + 4, 4);
            if (a == 0 || (a & (a - 1)) != 0)
                return rein_error(REIN_ERR_FORMAT,
                                  "%s: offset %" PRIu64 ": general.alignment %" PRIu32
                                  " is not a power of two",
                                  p->path, type_pos + 4, a);
            p->alignment = a;
        }
    }
    return REIN_OK;
}

static rein_status parse_tensors(parser *p) {
    for (int64_t i = 0; i < p->n_tensors; i++) {
        char field[160], name[100];
        uint64_t info_pos = p->pos;
        const uint8_t *s;
        uint64_t slen;
        snprintf(field, sizeof field, "tensor %" PRId64 " name", i);
        REIN_TRY(rd_str(p, field, &s, &slen));
        name_for_msg(name, sizeof name, s, slen);
        if (memchr(s, 0, (size_t)slen))
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor name '%s' contains a NUL byte",
                              p->path, info_pos, name);
        uint32_t n_dims;
        uint64_t at = p->pos;
        snprintf(field, sizeof field, "tensor '%s' n_dims", name);
        REIN_TRY(rd_u32(p, field, &n_dims));
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' n_dims %" PRIu32
                              " is not 1 to %d",
                              p->path, at, name, n_dims, GGUF_MAX_DIMS);
        uint64_t ne[GGUF_MAX_DIMS];
        int64_t n_el = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            at = p->pos;
            snprintf(field, sizeof field, "tensor '%s' dimension %" PRIu32, name, d);
            REIN_TRY(rd_u64(p, field, &ne[d]));
            if (ne[d] == 0)
                return rein_error(REIN_ERR_FORMAT,
                                  "%s: offset %" PRIu64 ": tensor '%s' dimension %" PRIu32 " is 0",
                                  p->path, at, name, d);
            if (ne[d] > (uint64_t)INT64_MAX / (uint64_t)n_el)
                return rein_error(REIN_ERR_FORMAT,
                                  "%s: offset %" PRIu64 ": tensor '%s' dimension %" PRIu32
                                  " (%" PRIu64 ") makes the element count overflow int64",
                                  p->path, at, name, d, ne[d]);
            n_el *= (int64_t)ne[d];
        }
        uint32_t type;
        at = p->pos;
        snprintf(field, sizeof field, "tensor '%s' type", name);
        REIN_TRY(rd_u32(p, field, &type));
        int bs = rein_type_block_size((int)type);
        if (!bs)
            return rein_error(REIN_ERR_UNSUPPORTED,
                              "%s: offset %" PRIu64 ": tensor '%s' has unknown type id %" PRIu32,
                              p->path, at, name, type);
        if (ne[0] % (uint64_t)bs != 0)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' rows of %" PRIu64
                              " elements are not a multiple of the %s block size %d",
                              p->path, info_pos, name, ne[0], rein_type_name((int)type), bs);
        size_t bb = rein_type_block_bytes((int)type);
        uint64_t n_blocks = (uint64_t)n_el / (uint64_t)bs;
        if (n_blocks > SIZE_MAX / bb || n_blocks > UINT64_MAX / bb)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' byte size overflows", p->path,
                              info_pos, name);
        uint64_t off, off_pos = p->pos;
        snprintf(field, sizeof field, "tensor '%s' data offset", name);
        REIN_TRY(rd_u64(p, field, &off));
        if (off % p->alignment != 0)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' data offset %" PRIu64
                              " is not a multiple of the alignment %" PRIu32,
                              p->path, off_pos, name, off, p->alignment);
        const char *kept = keep_name(p, s, slen);
        if (p->g) {
            gguf_tensor *t = &p->g->tensors[i];
            t->pub.name = kept;
            t->pub.type = (rein_type)type;
            t->pub.n_dims = (int)n_dims;
            for (uint32_t d = 0; d < n_dims; d++)
                t->pub.shape[n_dims - 1 - d] = (int64_t)ne[d];
            for (uint32_t d = n_dims; d < GGUF_MAX_DIMS; d++)
                t->pub.shape[d] = 1;
            t->pub.n_elements = n_el;
            t->pub.n_bytes = (size_t)(n_blocks * bb);
            t->info_pos = info_pos;
            t->off_pos = off_pos;
            t->rel_offset = off;
        }
    }
    return REIN_OK;
}

static rein_status parse(parser *p) {
    REIN_TRY(parse_header(p));
    REIN_TRY(parse_kvs(p));
    return parse_tensors(p);
}

/* ---- checks on the whole table ------------------------------------------------------------ */

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->rel_offset < y->rel_offset ? -1 : x->rel_offset > y->rel_offset;
}

static int cmp_tensor_name(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    int c = strcmp(x->pub.name, y->pub.name);
    /* equal names: file order, so that a duplicate is reported at its second occurrence */
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_kv_key(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x < y ? -1 : x > y);
}

static rein_status check_tables(rein_gguf *g) {
    uint64_t size = g->size;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t rel = t->rel_offset, nb = t->pub.n_bytes;
        if (rel > size || g->data_start > size - rel || nb > size - rel - g->data_start)
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' data offset %" PRIu64
                              " + %" PRIu64 " bytes lies beyond the end of the file (data "
                              "section at %" PRIu64 ", file %" PRIu64 " bytes)",
                              g->path, t->off_pos, t->pub.name, rel, nb, g->data_start, size);
        t->pub.offset = g->data_start + rel;
        t->pub.data = g->map + t->pub.offset;
    }
    /* overlaps: sort by offset, then each tensor must start at or after the previous one's end */
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->t_sorted[i] = &g->tensors[i];
    qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_tensor_offset);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const gguf_tensor *a = g->t_sorted[i - 1], *b = g->t_sorted[i];
        if (b->rel_offset < a->rel_offset + a->pub.n_bytes) {
            const gguf_tensor *later = a->off_pos > b->off_pos ? a : b;
            const gguf_tensor *other = later == a ? b : a;
            return rein_error(REIN_ERR_FORMAT,
                              "%s: offset %" PRIu64 ": tensor '%s' data [%" PRIu64 ", %" PRIu64
                              ") overlaps tensor '%s' [%" PRIu64 ", %" PRIu64 ")",
                              g->path, later->off_pos, later->pub.name, later->rel_offset,
                              later->rel_offset + later->pub.n_bytes, other->pub.name,
                              other->rel_offset, other->rel_offset + other->pub.n_bytes);
        }
    }
    qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_tensor_name);
    for (int64_t i = 1; i < g->n_tensors; i++)
        if (!strcmp(g->t_sorted[i - 1]->pub.name, g->t_sorted[i]->pub.name))
            return rein_error(REIN_ERR_FORMAT, "%s: offset %" PRIu64 ": duplicate tensor name '%s'",
                              g->path, g->t_sorted[i]->info_pos, g->t_sorted[i]->pub.name);
    for (int64_t i = 0; i < g->n_kv; i++)
        g->kv_sorted[i] = &g->kv[i];
    qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_key);
    for (int64_t i = 1; i < g->n_kv; i++)
        if (!strcmp(g->kv_sorted[i - 1]->key, g->kv_sorted[i]->key))
            return rein_error(REIN_ERR_FORMAT, "%s: offset %" PRIu64 ": duplicate key '%s'",
                              g->path, g->kv_sorted[i]->pos, g->kv_sorted[i]->key);
    return REIN_OK;
}

/* ---- open / free -------------------------------------------------------------------------- */

/* Add `n` bytes (rounded up to 8) to a running arena size; 0 on overflow. */
static int arena_add(uint64_t *total, uint64_t n, uint64_t *at) {
    if (n > UINT64_MAX - 7) return 0;
    n = (n + 7) & ~(uint64_t)7;
    if (*total > UINT64_MAX - n || *total + n > SIZE_MAX) return 0;
    *at = *total;
    *total += n;
    return 1;
}

static rein_status map_file(const char *path, const uint8_t **map, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rein_error(REIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rein_status s = rein_error(REIN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rein_error(REIN_ERR_IO, "%s: not a regular file", path);
    }
    *size = (size_t)st.st_size;
    *map = NULL;
    if (*size > 0) {
        void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rein_status s = rein_error(REIN_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return s;
        }
        *map = m;
    }
    close(fd); /* the mapping keeps the file alive */
    return REIN_OK;
}

rein_status rein_gguf_open(const char *path, rein_gguf **out) {
    *out = NULL;
    if (!path) return rein_error(REIN_ERR_INVALID, "rein_gguf_open: path is NULL");
    const uint8_t *map = NULL;
    size_t size = 0;
    REIN_TRY(map_file(path, &map, &size));

    /* pass 1: validate and measure, allocating nothing */
    parser p = {.path = path, .base = map, .size = size};
    rein_status st = parse(&p);
    if (st) goto fail_unmap;

    /* one arena: the handle, the tables, the string offsets, the names and the path */
    uint64_t total = 0, at_g, at_kv, at_kvs, at_t, at_ts, at_str, at_names;
    uint64_t nkv = (uint64_t)p.n_kv, nt = (uint64_t)p.n_tensors;
    int ok = arena_add(&total, sizeof(rein_gguf), &at_g) &&
             arena_add(&total, nkv * sizeof(gguf_kv), &at_kv) &&
             arena_add(&total, nkv * sizeof(gguf_kv *), &at_kvs) &&
             arena_add(&total, nt * sizeof(gguf_tensor), &at_t) &&
             arena_add(&total, nt * sizeof(gguf_tensor *), &at_ts) &&
             arena_add(&total, p.n_str * sizeof(uint64_t), &at_str) &&
             arena_add(&total, p.names_bytes + strlen(path) + 1, &at_names);
    if (!ok) { /* cannot happen for counts bounded by the file size on a 64-bit machine */
        st = rein_error(REIN_ERR_NOMEM, "%s: tables too large for this machine", path);
        goto fail_unmap;
    }
    char *arena = rein_calloc(1, (size_t)total);
    if (!arena) {
        st = rein_error_wrap(REIN_ERR_NOMEM, "%s: ", path);
        goto fail_unmap;
    }
    rein_gguf *g = (rein_gguf *)(arena + at_g);
    g->map = map;
    g->size = size;
    g->n_kv = p.n_kv;
    g->n_tensors = p.n_tensors;
    g->kv = (gguf_kv *)(arena + at_kv);
    g->kv_sorted = (const gguf_kv **)(arena + at_kvs);
    g->tensors = (gguf_tensor *)(arena + at_t);
    g->t_sorted = (const gguf_tensor **)(arena + at_ts);
    char *names = arena + at_names;
    strcpy(names, path);
    g->path = names;

    /* pass 2: the same parse, filling the tables; it cannot fail where pass 1 passed */
    parser q = {.path = g->path,
                .base = map,
                .size = size,
                .g = g,
                .str_offs = (uint64_t *)(arena + at_str),
                .names = names + strlen(path) + 1};
    st = parse(&q);
    REIN_ASSERT(st == REIN_OK && q.pos == p.pos);
    g->alignment = q.alignment;
    g->data_start = (q.pos + q.alignment - 1) / q.alignment * q.alignment;
    st = check_tables(g);
    if (st) {
        rein_gguf_free(g);
        return st;
    }
    *out = g;
    return REIN_OK;

fail_unmap:
    if (map) munmap((void *)map, size);
    return st;
}

void rein_gguf_free(rein_gguf *g) {
    if (!g) return;
    if (g->map) munmap((void *)g->map, g->size);
    rein_free(g); /* the handle is the start of the arena */
}
