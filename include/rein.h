/* rein.h - the public API of librein.
 *
 * rein is a C toolkit that runs, trains and aligns Llama-family language models. This header is the
 * whole contract between the library and its users (the `rein` program is one of them): every type,
 * who owns what, and how errors come back. Read it top to bottom; it goes from the ground up.
 *
 * Conventions
 * - Every function that can fail on input returns a rein_status. On failure it also leaves a
 *   message on the calling thread (rein_last_error()) that names the file, line or byte offset, the
 *   field, and what was expected. Broken internal invariants are bugs and abort with file and line.
 * - Constructors return their object through an out-pointer; each has a `_free` that accepts NULL.
 * - Tensor shapes are written in PyTorch order: (rows, cols), the last dimension the contiguous one.
 * - All memory goes through one allocator hook (rein_set_allocator), so tests can count and fail it.
 */
#ifndef REIN_H
#define REIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REIN_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------------
 * Status and errors
 * --------------------------------------------------------------------------------------------- */

typedef enum rein_status {
    REIN_OK = 0,
    REIN_ERR_INVALID,     /* a bad argument or option */
    REIN_ERR_IO,          /* a file could not be opened, read, written or renamed */
    REIN_ERR_FORMAT,      /* a file's or a record's content is malformed */
    REIN_ERR_UNSUPPORTED, /* well-formed, but not something rein supports */
    REIN_ERR_NOMEM,       /* an allocation failed */
    REIN_ERR_RANGE,       /* a value out of range: a context that is full, a token id, a size */
    REIN_ERR_NUMERIC,     /* NaN or Inf where a finite number was needed */
} rein_status;

/* A short constant name for a status ("format error", ...). */
const char *rein_status_str(rein_status s);

/* The message of the last error set on this thread; "" if none. Valid until the next error. */
const char *rein_last_error(void);

/* Set this thread's error message (printf-style) and return `s`, so that code can write
 * `return rein_error(REIN_ERR_FORMAT, "%s: line %d: ...", path, line);`. */
rein_status rein_error(rein_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend context to this thread's error message ("loading x.gguf: " + old) and return `s`. */
rein_status rein_error_wrap(rein_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------------------------------
 * Memory
 * --------------------------------------------------------------------------------------------- */

/* One allocation function, as in Lua: realloc(ud, ptr, size). size == 0 frees ptr and returns
 * NULL; ptr == NULL allocates. Returning NULL for size > 0 is an out-of-memory failure, which
 * rein reports as REIN_ERR_NOMEM and never crashes on. */
typedef void *(*rein_realloc_fn)(void *ud, void *ptr, size_t size);

/* Install an allocator for all of rein (NULL restores the C library's). Not thread-safe: set it
 * before creating any rein object, and free every object before changing it again. */
void rein_set_allocator(rein_realloc_fn fn, void *ud);

void *rein_malloc(size_t size);                   /* NULL on failure (message set) */
void *rein_calloc(size_t n, size_t size);         /* zeroed; NULL on failure or overflow */
void *rein_realloc(void *ptr, size_t size);       /* NULL on failure; ptr is then untouched */
void rein_free(void *ptr);                        /* NULL is a no-op */
void *rein_malloc_aligned(size_t size, size_t alignment); /* alignment a power of two <= 4096 */
void rein_free_aligned(void *ptr);                /* for rein_malloc_aligned; NULL is a no-op */
char *rein_strdup(const char *s);

/* A growable byte buffer. Zero-initialise it ({0}); `data` is always NUL-terminated once anything
 * was appended. The owner frees it with rein_buf_free. */
typedef struct rein_buf {
    char *data;
    size_t len;
    size_t cap;
} rein_buf;

rein_status rein_buf_append(rein_buf *b, const void *data, size_t len);
rein_status rein_buf_appendf(rein_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
rein_status rein_buf_reserve(rein_buf *b, size_t cap);
void rein_buf_clear(rein_buf *b); /* len = 0, keeps the memory */
void rein_buf_free(rein_buf *b);

/* A growable array of token ids, owned like rein_buf. */
typedef struct rein_tokens {
    int32_t *ids;
    size_t n;
    size_t cap;
} rein_tokens;

rein_status rein_tokens_push(rein_tokens *t, int32_t id);
void rein_tokens_free(rein_tokens *t);

/* ------------------------------------------------------------------------------------------------
 * Threads
 * --------------------------------------------------------------------------------------------- */

/* Number of worker threads rein's kernels use (default: the number of online CPUs, or the
 * REIN_THREADS environment variable). Workers sleep on a condition variable when idle: they never
 * spin and steal a core from another process. */
void rein_set_threads(int n);
int rein_get_threads(void);

/* Decoding with int8 activations (off by default; process-wide): the products with Q8_0 and Q4_1
 * weights quantize each activation row per block of 32 to int8, as llama.cpp does, and multiply
 * with AVX-512 VNNI dot products. Several times faster batched (the rollouts of PPO, GRPO and
 * self-alignment), at the cost of the activations' rounding: the logits move slightly off the
 * exact ones, which the default keeps (decoding then gives the logits the prefill gives). A
 * sequence decoded in a batch still gets the tokens it would get alone. Returns whether the mode
 * runs here (on a CPU without AVX512_VNNI decoding stays exact). Call it while no forward runs. */
int rein_set_decode_int8(int on);

/* ------------------------------------------------------------------------------------------------
 * GGUF files (v2 and v3): reading, validation, dequantization, writing
 * --------------------------------------------------------------------------------------------- */

typedef enum rein_gguf_value_type {
    REIN_GGUF_UINT8 = 0,
    REIN_GGUF_INT8 = 1,
    REIN_GGUF_UINT16 = 2,
    REIN_GGUF_INT16 = 3,
    REIN_GGUF_UINT32 = 4,
    REIN_GGUF_INT32 = 5,
    REIN_GGUF_FLOAT32 = 6,
    REIN_GGUF_BOOL = 7,
    REIN_GGUF_STRING = 8,
    REIN_GGUF_ARRAY = 9,
    REIN_GGUF_UINT64 = 10,
    REIN_GGUF_INT64 = 11,
    REIN_GGUF_FLOAT64 = 12,
} rein_gguf_value_type;

/* Tensor element types, numbered as ggml numbers them. */
typedef enum rein_type {
    REIN_TYPE_F32 = 0,
    REIN_TYPE_F16 = 1,
    REIN_TYPE_Q4_0 = 2,
    REIN_TYPE_Q4_1 = 3,
    REIN_TYPE_Q8_0 = 8,
    REIN_TYPE_Q4_K = 12,
    REIN_TYPE_Q6_K = 14,
    REIN_TYPE_BF16 = 30,
} rein_type;

/* Name ("Q4_1"), block size in elements, and bytes per block; NULL / 0 for an unknown type. */
const char *rein_type_name(int type);
int rein_type_block_size(int type);
size_t rein_type_block_bytes(int type);
/* Parse a type name ("f32", "Q8_0", case-insensitive) into *out. */
rein_status rein_type_from_name(const char *name, rein_type *out);

/* Dequantize n elements (n a multiple of the block size) of `type` from src to dst (f32). */
rein_status rein_dequantize(int type, const void *src, float *dst, int64_t n);
/* Quantize n f32 elements to `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1); dst holds
 * n / block_size * block_bytes bytes. */
rein_status rein_quantize(int type, const float *src, void *dst, int64_t n);

typedef struct rein_gguf rein_gguf; /* an opened, fully validated GGUF file (memory-mapped) */

/* Open and validate a GGUF file. Every count, length, dimension and offset is checked against the
 * bytes left and against overflow before anything is allocated; a bad file gets REIN_ERR_FORMAT
 * (or REIN_ERR_UNSUPPORTED) with a message naming the field and its byte offset. */
rein_status rein_gguf_open(const char *path, rein_gguf **out);
void rein_gguf_free(rein_gguf *g);

uint32_t rein_gguf_version(const rein_gguf *g);
int64_t rein_gguf_n_kv(const rein_gguf *g);
const char *rein_gguf_kv_key(const rein_gguf *g, int64_t i);
rein_gguf_value_type rein_gguf_kv_type(const rein_gguf *g, int64_t i);
int64_t rein_gguf_find_kv(const rein_gguf *g, const char *key); /* -1 if absent */

/* Typed getters by key. REIN_ERR_RANGE if the key is absent (message names it), REIN_ERR_FORMAT if
 * it has an incompatible type. Integer getters accept any integer type whose value fits. */
rein_status rein_gguf_get_u32(const rein_gguf *g, const char *key, uint32_t *out);
rein_status rein_gguf_get_i64(const rein_gguf *g, const char *key, int64_t *out);
rein_status rein_gguf_get_f32(const rein_gguf *g, const char *key, float *out); /* f32 or f64 */
rein_status rein_gguf_get_bool(const rein_gguf *g, const char *key, int *out);
/* The string points into the mapped file (not NUL-terminated in general): use len. */
rein_status rein_gguf_get_str(const rein_gguf *g, const char *key, const char **s, size_t *len);
/* An array: its element type and length. Numeric arrays: *data points at the elements (may be
 * unaligned: copy with memcpy). String arrays: use rein_gguf_get_arr_str. */
rein_status rein_gguf_get_arr(const rein_gguf *g, const char *key, rein_gguf_value_type *type,
                              int64_t *n, const void **data);
rein_status rein_gguf_get_arr_str(const rein_gguf *g, const char *key, int64_t i, const char **s,
                                  size_t *len);

/* By index i (0..n_kv-1), for tools that list everything; same rules as the getters above.
 * The scalar is widened: integers and bools to int64 / uint64, floats to double. */
rein_status rein_gguf_kv_int(const rein_gguf *g, int64_t i, int64_t *out);
rein_status rein_gguf_kv_uint(const rein_gguf *g, int64_t i, uint64_t *out);
rein_status rein_gguf_kv_float(const rein_gguf *g, int64_t i, double *out);
rein_status rein_gguf_kv_str(const rein_gguf *g, int64_t i, const char **s, size_t *len);
rein_status rein_gguf_kv_arr(const rein_gguf *g, int64_t i, rein_gguf_value_type *type, int64_t *n,
                             const void **data);
rein_status rein_gguf_kv_arr_str(const rein_gguf *g, int64_t i, int64_t j, const char **s,
                                 size_t *len);

typedef struct rein_gguf_tensor {
    const char *name;  /* NUL-terminated copy, owned by the rein_gguf */
    rein_type type;
    int n_dims;        /* 1..4 */
    int64_t shape[4];  /* PyTorch order: shape[n_dims-1] is the contiguous dimension */
    int64_t n_elements;
    size_t n_bytes;
    const void *data;  /* inside the mapping, aligned to the file's alignment */
    uint64_t offset;   /* absolute byte offset of the data in the file */
} rein_gguf_tensor;

int64_t rein_gguf_n_tensors(const rein_gguf *g);
const rein_gguf_tensor *rein_gguf_tensor_at(const rein_gguf *g, int64_t i);
const rein_gguf_tensor *rein_gguf_find_tensor(const rein_gguf *g, const char *name); /* or NULL */
/* Dequantize a whole tensor into dst (n_elements floats). */
rein_status rein_gguf_tensor_f32(const rein_gguf_tensor *t, float *dst);

/* Writing. A writer collects metadata and tensors, then writes a v3 file atomically (a temporary
 * file beside the target, flushed, then renamed): a crash never leaves a half-written file. Keys
 * keep their insertion order; setting a key twice replaces its value. The writer copies what it is
 * given. */
typedef struct rein_gguf_writer rein_gguf_writer;

rein_status rein_gguf_writer_new(rein_gguf_writer **out);
void rein_gguf_writer_free(rein_gguf_writer *w);
rein_status rein_gguf_writer_set_alignment(rein_gguf_writer *w, uint32_t alignment);
rein_status rein_gguf_set_u32(rein_gguf_writer *w, const char *key, uint32_t v);
rein_status rein_gguf_set_i32(rein_gguf_writer *w, const char *key, int32_t v);
rein_status rein_gguf_set_u64(rein_gguf_writer *w, const char *key, uint64_t v);
rein_status rein_gguf_set_f32(rein_gguf_writer *w, const char *key, float v);
rein_status rein_gguf_set_bool(rein_gguf_writer *w, const char *key, int v);
rein_status rein_gguf_set_str(rein_gguf_writer *w, const char *key, const char *s);
/* A scalar of any type, raw (for copying metadata from another file). */
rein_status rein_gguf_set_scalar(rein_gguf_writer *w, const char *key, rein_gguf_value_type type,
                                 const void *value);
/* An array of a numeric or bool type: n elements packed at `data`. */
rein_status rein_gguf_set_arr(rein_gguf_writer *w, const char *key, rein_gguf_value_type type,
                              const void *data, int64_t n);
/* An array of strings given as pointer/length pairs (lens may be NULL for NUL-terminated). */
rein_status rein_gguf_set_arr_str(rein_gguf_writer *w, const char *key, const char *const *strs,
                                  const size_t *lens, int64_t n);
/* Copy every key of `src` (except GGUF.* and general.alignment) into the writer. */
rein_status rein_gguf_copy_kv(rein_gguf_writer *w, const rein_gguf *src);

/* Add a tensor from f32 data, converted to `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1). shape is in
 * PyTorch order; the last dimension must be a multiple of the type's block size. */
rein_status rein_gguf_add_tensor(rein_gguf_writer *w, const char *name, rein_type type, int n_dims,
                                 const int64_t *shape, const float *data);
/* Add a tensor whose bytes are already in `type`'s layout (any supported type). */
rein_status rein_gguf_add_tensor_raw(rein_gguf_writer *w, const char *name, rein_type type,
                                     int n_dims, const int64_t *shape, const void *data,
                                     size_t n_bytes);
rein_status rein_gguf_writer_write(rein_gguf_writer *w, const char *path);

/* ------------------------------------------------------------------------------------------------
 * Tokenizer: byte-level BPE as GGUF stores it
 * --------------------------------------------------------------------------------------------- */

typedef struct rein_tokenizer rein_tokenizer;

/* Token types, as tokenizer.ggml.token_type stores them. */
enum {
    REIN_TOKEN_NORMAL = 1,
    REIN_TOKEN_UNKNOWN = 2,
    REIN_TOKEN_CONTROL = 3,
    REIN_TOKEN_USER_DEFINED = 4,
    REIN_TOKEN_UNUSED = 5,
    REIN_TOKEN_BYTE = 6,
};

/* Build the tokenizer from a GGUF file's tokenizer.ggml.* metadata (model "gpt2"; the pre-tokenizer
 * that tokenizer.ggml.pre names). REIN_ERR_UNSUPPORTED names what is not supported. */
rein_status rein_tokenizer_from_gguf(const rein_gguf *g, rein_tokenizer **out);
void rein_tokenizer_free(rein_tokenizer *t);

int32_t rein_tokenizer_n_vocab(const rein_tokenizer *t);
const char *rein_tokenizer_pre(const rein_tokenizer *t); /* pre-tokenizer name, e.g. "smollm" */

/* Flags for rein_tokenize. */
enum {
    REIN_TOKENIZE_ADD_BOS = 1,       /* prepend BOS if the vocabulary asks for it (add_bos_token) */
    REIN_TOKENIZE_PARSE_SPECIAL = 2, /* recognise control tokens (<|im_start|>...) written in the
                                      * text; user-defined tokens are always recognised, as in HF
                                      * tokenizers and llama.cpp */
};

/* Append the ids of text[0..len) to *out. */
rein_status rein_tokenize(const rein_tokenizer *t, const char *text, size_t len, int flags,
                          rein_tokens *out);

/* The bytes a token stands for (byte-level decoding undone), appended to *out. Control tokens
 * (BOS, EOS, <|im_end|>) are rendered as their text only if `render_special`. */
rein_status rein_token_to_bytes(const rein_tokenizer *t, int32_t id, int render_special,
                                rein_buf *out);
/* Decode a sequence of ids: the concatenation of rein_token_to_bytes. */
rein_status rein_detokenize(const rein_tokenizer *t, const int32_t *ids, size_t n,
                            int render_special, rein_buf *out);

/* The stored piece of a token (byte-level encoded, e.g. "Ġhello"), NUL-terminated; NULL if id is
 * out of range. */
const char *rein_token_piece(const rein_tokenizer *t, int32_t id);
int rein_token_type(const rein_tokenizer *t, int32_t id);
/* Look a piece up exactly; -1 if absent. */
int32_t rein_token_lookup(const rein_tokenizer *t, const char *piece);

/* Special ids, -1 where the vocabulary has none. `eot` is the end-of-turn token of chat models
 * (<|im_end|>, <|eot_id|>), found from metadata or the vocabulary. */
int32_t rein_token_bos(const rein_tokenizer *t);
int32_t rein_token_eos(const rein_tokenizer *t);
int32_t rein_token_eot(const rein_tokenizer *t);
/* Whether generation should stop at this id (EOS, EOT, or another end-of-generation token). */
int rein_token_is_eog(const rein_tokenizer *t, int32_t id);

/* ------------------------------------------------------------------------------------------------
 * Chat templates
 * --------------------------------------------------------------------------------------------- */

typedef struct rein_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} rein_chat_msg;

typedef struct rein_chat_template rein_chat_template;

/* Recognise a template from the Jinja source in tokenizer.chat_template (ChatML, with or without a
 * default system prompt; Llama-3); anything unrecognised falls back to "generic". `name`, when not
 * NULL, overrides recognition: "chatml", "llama3" or "generic". */
rein_status rein_chat_template_new(const char *jinja, const char *name, rein_chat_template **out);
void rein_chat_template_free(rein_chat_template *ct);
const char *rein_chat_template_name(const rein_chat_template *ct);
/* The default system prompt inserted when the conversation has none, or NULL. */
const char *rein_chat_template_default_system(const rein_chat_template *ct);
/* Render a conversation; with add_generation_prompt the assistant's header is appended. */
rein_status rein_chat_apply(const rein_chat_template *ct, const rein_chat_msg *msgs, size_t n,
                            int add_generation_prompt, rein_buf *out);
/* The text that ends a turn (e.g. "<|im_end|>"), to use as a stop string; NULL if none. */
const char *rein_chat_template_end_of_turn(const rein_chat_template *ct);

/* ------------------------------------------------------------------------------------------------
 * Model: the Llama family
 * --------------------------------------------------------------------------------------------- */

typedef struct rein_model_config {
    char arch[32];      /* "llama" */
    int32_t n_vocab;
    int32_t dim;        /* embedding width */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads; /* grouped-query attention: n_heads % n_kv_heads == 0 */
    int32_t head_dim;   /* dim / n_heads unless metadata says otherwise */
    int32_t rope_dim;   /* rotated dimensions per head (<= head_dim) */
    int32_t ffn_dim;    /* SwiGLU hidden width */
    int32_t ctx_len;    /* trained context length */
    float rope_base;
    float rms_eps;
    int tied_head;      /* output head shares the token embedding */
} rein_model_config;

typedef struct rein_model rein_model;

/* Load a model (weights dequantized to f32 into one arena) and its tokenizer and chat template.
 * Training and prefill use the f32 arena; a forward over few rows (decoding) reads the file's own
 * blocks instead (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, F16, BF16, F32, memory-mapped, no copy),
 * dequantized in registers to the very values the arena holds, so decoding is bound by the file's
 * size, not by an f32 copy, and gives the prefill's results. Once the weights change (LoRA merge,
 * full fine-tuning) decoding falls back to the arena; an active LoRA adapter runs on top of
 * either. */
rein_status rein_model_load(const char *path, rein_model **out);
void rein_model_free(rein_model *m);

const rein_model_config *rein_model_get_config(const rein_model *m);
/* Read a model's hyperparameters from a GGUF file's metadata without loading its weights. */
rein_status rein_model_config_from_gguf(const rein_gguf *g, rein_model_config *cfg);
const rein_tokenizer *rein_model_tokenizer(const rein_model *m);
const rein_chat_template *rein_model_chat_template(const rein_model *m);
const rein_gguf *rein_model_gguf(const rein_model *m); /* the file it came from */
int64_t rein_model_n_params(const rein_model *m);

/* A KV cache for n_seq independent sequences of up to n_ctx positions each. */
typedef struct rein_kv_cache rein_kv_cache;

rein_status rein_kv_cache_new(const rein_model *m, int n_seq, int n_ctx, rein_kv_cache **out);
/* The same with the keys and values stored as `type`: REIN_TYPE_F32 (exact), or REIN_TYPE_F16 (as
 * llama.cpp's default): half the memory, and half the bytes attention reads a step, which at batch
 * 16 is a fifth of decoding's time. Each key and value is rounded to f16 once, when written;
 * prefill and decoding then read the same rounded values, so decoding still gives the logits the
 * prefill gives and a sequence in a batch the logits it gets alone, but neither is the f32 cache's
 * (the logits move by about 1e-3 of their spread). REIN_ERR_INVALID for another type. */
rein_status rein_kv_cache_new_typed(const rein_model *m, int n_seq, int n_ctx, rein_type type,
                                    rein_kv_cache **out);
/* The type rein_kv_cache_new gives (process-wide; REIN_TYPE_F32 unless set; the CLI's --kv-f16
 * sets REIN_TYPE_F16). REIN_ERR_INVALID for a type other than F32 and F16. */
rein_status rein_set_kv_cache_type(rein_type type);
rein_type rein_kv_cache_type(const rein_kv_cache *kv);
void rein_kv_cache_free(rein_kv_cache *kv);
int rein_kv_cache_len(const rein_kv_cache *kv, int seq); /* positions filled in sequence seq */
int rein_kv_cache_n_ctx(const rein_kv_cache *kv);
int rein_kv_cache_n_seq(const rein_kv_cache *kv);
void rein_kv_cache_clear(rein_kv_cache *kv, int seq); /* seq < 0 clears all */
/* Drop positions >= len of sequence seq (len <= its current length). */
rein_status rein_kv_cache_truncate(rein_kv_cache *kv, int seq, int len);
/* Copy the first len positions of sequence src into dst (a shared prompt prefix). */
rein_status rein_kv_cache_copy(rein_kv_cache *kv, int src, int dst, int len);
/* Let dst start with the first len positions of src without copying them: dst reads those rows
 * where src holds them (decoding many continuations of one long prompt then reads the prompt's
 * keys and values once a step, not once a sequence). The logits are those a copy gives, to the
 * bit. src stays free to grow; clearing or truncating it, or copying or sharing into it, first
 * copies into dst the rows dst still reads from it, so nothing dst sees ever changes. */
rein_status rein_kv_cache_share(rein_kv_cache *kv, int src, int dst, int len);

/* Run the model over n tokens that may belong to different sequences: token i goes to sequence
 * seq[i] at the next free position of that sequence (tokens of one sequence in order). Each token
 * attends to its own sequence only. For every i with want_logits[i] != 0 (or every i when
 * want_logits is NULL) one row of n_vocab logits is written to `logits`, in order: logits is
 * (n_wanted, n_vocab). REIN_ERR_RANGE if a sequence would overflow its n_ctx (nothing is written to
 * the cache then) or a token id is out of range. The model keeps scratch space for this call, so
 * one model runs one forward at a time (the call itself uses every rein thread). */
rein_status rein_model_forward(rein_model *m, rein_kv_cache *kv, const int32_t *tokens,
                               const int32_t *seq, size_t n, const uint8_t *want_logits,
                               float *logits);

/* ------------------------------------------------------------------------------------------------
 * LoRA adapters
 * --------------------------------------------------------------------------------------------- */

/* Which linear layers of each block get an adapter. */
enum {
    REIN_LORA_Q = 1 << 0,
    REIN_LORA_K = 1 << 1,
    REIN_LORA_V = 1 << 2,
    REIN_LORA_O = 1 << 3,
    REIN_LORA_GATE = 1 << 4,
    REIN_LORA_UP = 1 << 5,
    REIN_LORA_DOWN = 1 << 6,
    REIN_LORA_ALL = (1 << 7) - 1,
};

typedef struct rein_lora_params {
    int32_t rank;      /* r */
    float alpha;       /* the update is scaled by alpha / r */
    uint32_t targets;  /* REIN_LORA_* bits */
    uint64_t seed;     /* for A's initialisation (PEFT's: uniform in +-1/sqrt(in)); B starts at 0 */
} rein_lora_params;

rein_lora_params rein_lora_default_params(void); /* r 16, alpha 32, every linear layer */

/* Attach fresh adapters (replacing any). The base weights stay as loaded and get no gradients. */
rein_status rein_lora_attach(rein_model *m, const rein_lora_params *p);
void rein_lora_detach(rein_model *m);
/* Switch the adapters off (the model is then exactly the base: the frozen reference of DPO and
 * PPO, with no second copy of the weights) and on again. */
void rein_lora_set_enabled(rein_model *m, int on);
int rein_lora_is_enabled(const rein_model *m);     /* 0 when none is attached */
int64_t rein_lora_n_params(const rein_model *m);   /* 0 when none is attached */
/* Fold the adapters into the base weights (W += alpha/r B A) and detach them. */
rein_status rein_lora_merge(rein_model *m);

/* Save the attached adapter as PEFT does: dir/adapter_model.safetensors (F32) and
 * dir/adapter_config.json (base_model_name_or_path = base_model_name, may be NULL). dir is created
 * if absent; both files are written atomically. REIN_ERR_INVALID if no adapter is attached. */
rein_status rein_lora_save(const rein_model *m, const char *dir, const char *base_model_name);

/* Load a PEFT LoRA adapter from dir: attach a fresh adapter with the config's r, lora_alpha and
 * target_modules and fill A and B from the safetensors file (F32, F16 or BF16). Everything is
 * checked before the model is touched; on error any previously attached adapter stays. Errors name
 * the file and the field or tensor: REIN_ERR_IO for a missing file, REIN_ERR_FORMAT for a missing,
 * misnamed or misshapen tensor (an adapter made for another model), REIN_ERR_UNSUPPORTED for
 * options rein does not implement (use_rslora, use_dora, bias other than "none", fan_in_fan_out,
 * rank_pattern / alpha_pattern, layers_to_transform, modules_to_save, a target it cannot adapt). */
rein_status rein_lora_load(rein_model *m, const char *dir);


/* ------------------------------------------------------------------------------------------------
 * Sampling and generation
 * --------------------------------------------------------------------------------------------- */

typedef struct rein_sampler_params {
    float temperature;    /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off; CTRL-style: positive logits divided, negative multiplied */
    int32_t repeat_last_n;/* how many recent tokens the penalty looks at */
    uint64_t seed;
} rein_sampler_params;

rein_sampler_params rein_sampler_default_params(void);

typedef struct rein_sampler rein_sampler;

rein_status rein_sampler_new(const rein_sampler_params *p, int32_t n_vocab, rein_sampler **out);
void rein_sampler_free(rein_sampler *s);
/* Choose the next token from logits (n_vocab; modified in place) given the tokens so far. */
int32_t rein_sampler_sample(rein_sampler *s, float *logits, const int32_t *history, size_t n_hist);

/* What a generation did, for reporting speed. */
typedef struct rein_generate_stats {
    int32_t n_prompt;     /* prompt tokens run through the model */
    int32_t n_generated;  /* tokens sampled */
    double prefill_s;     /* seconds spent on the prompt */
    double decode_s;      /* seconds spent sampling and feeding back generated tokens */
} rein_generate_stats;

typedef struct rein_generate_params {
    rein_sampler_params sampler;
    int32_t max_tokens;       /* new tokens at most */
    const char *const *stop;  /* stop strings (not included in the output), or NULL */
    size_t n_stop;
    int stop_at_eog;          /* stop at EOS / end-of-turn tokens (default 1) */
    rein_generate_stats *stats; /* filled in when not NULL */
} rein_generate_params;

rein_generate_params rein_generate_default_params(void);

/* Called with each piece of text as soon as it is final (whole UTF-8 characters, stop strings held
 * back until they are ruled out). Return non-zero to stop. */
typedef int (*rein_text_fn)(void *ud, const char *text, size_t len);

/* Continue sequence `seq` of kv with prompt tokens, then sample up to max_tokens. The generated
 * text goes to *out (if not NULL) and to on_text (if not NULL); the generated ids to *out_ids (if not
 * NULL). The cache keeps the prompt and every generated token that was fed back, so a chat can go
 * on from where it stopped. */
rein_status rein_generate(rein_model *m, rein_kv_cache *kv, int seq, const int32_t *prompt,
                          size_t n_prompt, const rein_generate_params *p, rein_text_fn on_text,
                          void *ud, rein_buf *out, rein_tokens *out_ids);


/* Why one sequence of rein_generate_batch ended. */
typedef enum rein_stop_reason {
    REIN_STOP_MAX_TOKENS = 0, /* max_tokens were sampled */
    REIN_STOP_EOG,            /* an end-of-generation token was sampled (stop_at_eog) */
    REIN_STOP_STRING,         /* a stop string appeared in the text */
    REIN_STOP_CONTEXT,        /* the sequence filled its n_ctx positions of the KV cache */
} rein_stop_reason;

/* One sequence's output of rein_generate_batch. Zero-initialise it ({0}); the owner frees it
 * with rein_generate_result_free (which leaves it zeroed, ready for reuse). */
typedef struct rein_generate_result {
    rein_tokens ids;  /* every sampled token in order: unlike rein_generate's out_ids this keeps a
                       * final end-of-generation token (stop == REIN_STOP_EOG), since PPO trains
                       * on it; with REIN_STOP_STRING the last id is the one completing the stop */
    float *logprobs;  /* (ids.n) log p(ids[i] | what came before) under the model itself: the log
                       * softmax of the raw logits (temperature 1, before repetition penalty,
                       * top-k/p and min-p), as the training forward computes it */
    rein_buf text;    /* the text of ids: the end-of-generation token not rendered, cut before a
                       * stop string; exactly what rein_generate writes to *out */
    rein_stop_reason stop;
} rein_generate_result;

void rein_generate_result_free(rein_generate_result *r);

/* Sample n_samples continuations of each of n_prompts prompts, all sequences decoded together
 * (one forward pass of the active sequences per step: the rollout engine of PPO and
 * self-alignment). Result i (0 <= i < n_prompts * n_samples) is sample i % n_samples of prompt
 * i / n_samples and uses sequence i of kv, which must have at least n_prompts * n_samples
 * sequences and room for the longest prompt (those sequences are cleared first; afterwards each
 * holds its prompt and the tokens fed back, as rein_generate leaves its one). Each prompt is run
 * once and its KV shared with its other samples (rein_kv_cache_share). Sequence i samples with its
 * own sampler seeded p->sampler.seed + i; every other setting of *p (sampler, max_tokens, stop
 * strings, stop_at_eog) applies to each sequence, and each stops on its own. The results equal
 * running each sequence alone through rein_generate with seed p->sampler.seed + i, token for
 * token (the forward pass computes a row the same way whatever else is in the batch).
 * p->stats, if set, gets the totals (prefill: the prompts; decode: the rest). results holds
 * n_prompts * n_samples zero-initialised or freed entries; on error they are left freed. */
rein_status rein_generate_batch(rein_model *m, rein_kv_cache *kv, const int32_t *const *prompts,
                                const size_t *n_prompt, int n_prompts, int n_samples,
                                const rein_generate_params *p, rein_generate_result *results);

#ifdef __cplusplus
}
#endif
#endif /* REIN_H */
