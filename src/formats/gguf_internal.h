/* gguf_internal.h - what the GGUF reader (gguf_read.c) and writer (gguf_write.c) share: the layout
 * of an opened file in memory, and the sizes of the value types.
 *
 * A GGUF file is: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count; kv_count key/value
 * pairs (string key, u32 value type, value); tensor_count tensor infos (string name, u32 n_dims,
 * u64 ne[n_dims] with ne[0] the contiguous dimension, u32 type, u64 offset relative to the data
 * section); padding to the alignment; the data section. Strings are a u64 length and that many
 * bytes (no NUL); arrays are a u32 element type, a u64 count and the elements. Little-endian.
 */
#ifndef REIN_FORMATS_GGUF_INTERNAL_H
#define REIN_FORMATS_GGUF_INTERNAL_H

#include "rein.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* One key/value pair of an opened file. Everything points into the mapping except `key`. */
typedef struct gguf_kv {
    const char *key; /* NUL-terminated copy, in the rein_gguf's arena */
    rein_gguf_value_type type;
    rein_gguf_value_type arr_type; /* element type, for arrays */
    int64_t n;                     /* elements, for arrays; string length, for strings */
    const uint8_t *val;            /* scalar bytes; string chars; first array element */
    const uint64_t *str_off;       /* string arrays: offset of string i's length field from val */
    const uint8_t *raw;            /* the whole serialized value (after the type field) */
    size_t raw_len;
    uint64_t pos; /* byte offset of the pair in the file, for messages */
} gguf_kv;

/* One tensor: the public description plus where its info sits in the file, for messages. */
typedef struct gguf_tensor {
    rein_gguf_tensor pub;
    uint64_t info_pos;   /* byte offset of the tensor info (its name) */
    uint64_t off_pos;    /* byte offset of its data-offset field */
    uint64_t rel_offset; /* data offset relative to the data section */
} gguf_tensor;

/* An opened file; the handle is the start of one arena that holds everything but the mapping. */
struct rein_gguf {
    const char *path;
    const uint8_t *map; /* the whole file, read-only; NULL for an empty file */
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start; /* absolute offset of the data section */
    int64_t n_kv;
    gguf_kv *kv;               /* (n_kv), file order */
    const gguf_kv **kv_sorted; /* (n_kv), by key, for lookup */
    int64_t n_tensors;
    gguf_tensor *tensors;         /* (n_tensors), file order */
    const gguf_tensor **t_sorted; /* (n_tensors), by name, for lookup */
};

/* Size in bytes of a scalar value type; 0 for strings, arrays and unknown types. */
size_t rein_gguf_scalar_size(int type);
/* "uint32", "string", ...; "unknown" for an unknown type. */
const char *rein_gguf_type_str(int type);

/* Pair i of an opened file, or NULL (for rein_gguf_copy_kv). */
const gguf_kv *rein_gguf_kv_at(const rein_gguf *g, int64_t i);

#endif /* REIN_FORMATS_GGUF_INTERNAL_H */
