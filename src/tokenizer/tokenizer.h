/* tokenizer.h - the tokenizer module's internal pieces, shared by its files.
 *
 * The public API (rein_tokenize, rein_chat_apply, ...) is in include/rein.h. Inside, a byte-level
 * BPE tokenizer is three steps, one file each:
 *   bytes.c       the GPT-2 map between raw bytes and the printable characters the vocabulary uses;
 *   pretokenize.c the pre-tokenizer: the regexes that cut text into words before BPE (PCRE2);
 *   bpe.c         the merge engine: a word's bytes merged pairwise by rank into token ids;
 * and tokenizer.c ties them together (special tokens, BOS, decoding, loading from GGUF).
 * chat.c renders conversations with chat templates.
 */
#ifndef REIN_TOKENIZER_INTERNAL_H
#define REIN_TOKENIZER_INTERNAL_H

#include "base/base.h"

/* ---- bytes.c: the GPT-2 byte <-> unicode map ---------------------------------------------
 * Byte-level BPE stores every byte as one printable code point: bytes that are printable Latin-1
 * stand for themselves, the other 68 (controls, space, 0x7f-0xa0, soft hyphen) map in order to
 * U+0100..U+0143. Pure functions: no tables to initialise, safe from any thread. */

/* The code point that stands for byte b. */
uint32_t rein_tok_byte_to_cp(uint8_t b);
/* The byte a code point stands for, or -1 if it is not one of the 256. */
int rein_tok_cp_to_byte(uint32_t cp);
/* Write the UTF-8 of rein_tok_byte_to_cp(b) to out (1 or 2 bytes); returns the length. */
int rein_tok_byte_encode(uint8_t b, char out[2]);
/* Undo the byte-level encoding of a stored piece: append its raw bytes to out. A code point that
 * is not in the map is copied through as its UTF-8 (a vocabulary bug, not worth an error). */
rein_status rein_tok_piece_decode(const char *piece, size_t len, rein_buf *out);
/* Decode one UTF-8 sequence at s[0..n): its code point and length; an invalid or truncated
 * sequence gives cp = 0xFFFD and length 1. n must be > 0. */
uint32_t rein_tok_utf8_next(const char *s, size_t n, int *len);

/* ---- pretokenize.c: the pre-tokenizer ------------------------------------------------------ */

typedef struct rein_pretok rein_pretok;

/* Compile the regexes of the pre-tokenizer that tokenizer.ggml.pre names. REIN_ERR_UNSUPPORTED,
 * listing the supported names, if it is not one rein knows. */
rein_status rein_pretok_new(const char *name, rein_pretok **out);
void rein_pretok_free(rein_pretok *p);
/* The canonical name ("llama3" for "llama-bpe", ...). */
const char *rein_pretok_name(const rein_pretok *p);
/* Whether a word found whole in the vocabulary is taken as is, without merging (llama3). */
int rein_pretok_ignore_merges(const rein_pretok *p);
/* Whether the vocabulary adds BOS when tokenizer.ggml.add_bos_token does not say (llama3). */
int rein_pretok_default_add_bos(const rein_pretok *p);

/* One word of a split: bytes text[start, start+len). */
typedef struct rein_span {
    size_t start, len;
} rein_span;

/* Cut text[0..len) into words: each regex in turn splits every piece that the previous ones left
 * into its matches and the gaps between them, as llama.cpp does. The words cover the text
 * exactly, in order. *spans is a caller-owned array of *cap entries (grown with rein_realloc);
 * *n receives the count. Invalid UTF-8 is allowed: bytes that are not part of a valid sequence
 * match no letter, digit or space class. */
rein_status rein_pretok_split(const rein_pretok *p, const char *text, size_t len, rein_span **spans,
                              size_t *n, size_t *cap);

/* ---- bpe.c: the merge engine --------------------------------------------------------------- */

typedef struct rein_bpe rein_bpe;

/* Build the merge table. pieces[0..n_vocab) are the stored (byte-level encoded) token pieces;
 * merges[0..n_merges) the "left right" strings in rank order. A merge whose parts or result are
 * not in the vocabulary can never apply and is skipped (counted in *n_skipped, may be NULL). */
rein_status rein_bpe_new(const char *const *pieces, const size_t *piece_lens, int32_t n_vocab,
                         const char *const *merges, const size_t *merge_lens, int64_t n_merges,
                         rein_bpe **out, int64_t *n_skipped);
void rein_bpe_free(rein_bpe *b);
/* Look a piece up exactly; -1 if absent. */
int32_t rein_bpe_lookup(const rein_bpe *b, const char *piece, size_t len);
/* The stored piece of id (NUL-terminated) and its length; NULL if out of range. */
const char *rein_bpe_piece(const rein_bpe *b, int32_t id, size_t *len);
int32_t rein_bpe_n_vocab(const rein_bpe *b);

/* Scratch memory for rein_bpe_encode, reused across words; zero-initialise, free with
 * rein_bpe_scratch_free. One per thread: it is what makes encoding thread-safe. */
typedef struct rein_bpe_scratch {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    char *enc;
    size_t enc_cap;
} rein_bpe_scratch;
void rein_bpe_scratch_free(rein_bpe_scratch *s);

/* Encode one word of raw bytes into token ids appended to out. With ignore_merges, a word whose
 * byte-level encoding is a token is that token. */
rein_status rein_bpe_encode(const rein_bpe *b, const char *word, size_t len, int ignore_merges,
                            rein_bpe_scratch *s, rein_tokens *out);

#endif /* REIN_TOKENIZER_INTERNAL_H */
