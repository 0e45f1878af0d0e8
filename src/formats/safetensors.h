/* safetensors.h - reading and writing safetensors files, the tensor format of Hugging Face.
 *
 * A safetensors file is: u64 n (little-endian), then n bytes of JSON header, then the data. The
 * header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the start of the data), plus an optional "__metadata__" object of string values.
 * The reference implementation (the Rust crate behind the python package) requires the data
 * ranges, sorted by begin, to tile the data section exactly: no gap, no overlap, nothing after the
 * last one. rein's reader checks the same, and every number against the file size before using
 * it, so a hostile file is rejected with a message naming the tensor and the field. Tensors are
 * handed out as pointers into a read-only mapping.
 *
 * The writer converts f32 data to F32, F16 or BF16 as it is added, and writes the header as the
 * reference writer does (compact JSON, "__metadata__" first, tensors in the order they were added,
 * padded with spaces to a multiple of 8 bytes), atomically (rein_atomic_open/commit): given the
 * tensors in the order python's `safetensors` sorts them (dtype size descending, then name) and at
 * most one metadata key, the bytes are identical to the python package's.
 */
#ifndef REIN_FORMATS_SAFETENSORS_H
#define REIN_FORMATS_SAFETENSORS_H

#include "rein.h"

/* Tensors of more dimensions than this are rejected (safetensors itself has no limit). */
#define REIN_ST_MAX_DIMS 8

typedef struct rein_safetensors_tensor {
    const char *name;        /* NUL-terminated, owned by the rein_safetensors */
    const char *dtype;       /* the header's dtype string: "F32", "BF16", "I64", ... */
    int elem_bits;           /* bits per element of dtype */
    int n_dims;              /* 0 (a scalar) .. REIN_ST_MAX_DIMS */
    int64_t shape[REIN_ST_MAX_DIMS];
    int64_t n_elements;
    size_t n_bytes;
    const void *data;        /* inside the mapping; may be unaligned */
    uint64_t offset;         /* absolute byte offset of the data in the file */
} rein_safetensors_tensor;

typedef struct rein_safetensors rein_safetensors;

/* Open and validate a file. REIN_ERR_FORMAT for a malformed file (the message names the file, the
 * tensor and the field), REIN_ERR_UNSUPPORTED for an unknown dtype or too many dimensions. */
rein_status rein_safetensors_open(const char *path, rein_safetensors **out);
void rein_safetensors_free(rein_safetensors *st);

/* Tensors in the order of their data in the file. */
int64_t rein_safetensors_n_tensors(const rein_safetensors *st);
const rein_safetensors_tensor *rein_safetensors_tensor_at(const rein_safetensors *st, int64_t i);
const rein_safetensors_tensor *rein_safetensors_find(const rein_safetensors *st, const char *name);

/* The "__metadata__" entries (all strings), in header order. */
int64_t rein_safetensors_n_meta(const rein_safetensors *st);
const char *rein_safetensors_meta_key(const rein_safetensors *st, int64_t i);
const char *rein_safetensors_meta_value(const rein_safetensors *st, int64_t i);
const char *rein_safetensors_get_meta(const rein_safetensors *st, const char *key); /* or NULL */

/* Convert a whole F32, F16 or BF16 tensor to f32 (n_elements floats at dst). Other dtypes get
 * REIN_ERR_UNSUPPORTED naming the tensor. */
rein_status rein_safetensors_tensor_f32(const rein_safetensors_tensor *t, float *dst);

/* Writing. The writer copies (and converts) what it is given. */
typedef struct rein_safetensors_writer rein_safetensors_writer;

rein_status rein_safetensors_writer_new(rein_safetensors_writer **out);
void rein_safetensors_writer_free(rein_safetensors_writer *w);
/* Add a "__metadata__" entry (setting a key twice replaces its value). */
rein_status rein_safetensors_set_meta(rein_safetensors_writer *w, const char *key,
                                      const char *value);
/* Add a tensor from f32 data converted to `type` (REIN_TYPE_F32, F16 or BF16); shape in PyTorch
 * order, n_dims 0..REIN_ST_MAX_DIMS. Names must be unique and not "__metadata__". */
rein_status rein_safetensors_add(rein_safetensors_writer *w, const char *name, rein_type type,
                                 int n_dims, const int64_t *shape, const float *data);
/* Write the file atomically. */
rein_status rein_safetensors_write(rein_safetensors_writer *w, const char *path);

#endif /* REIN_FORMATS_SAFETENSORS_H */
