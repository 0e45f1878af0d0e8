/* bpe.c - the byte-level BPE merge engine: the vocabulary, the merge ranks, and encoding a word.
 *
 * A word (one piece of the pre-tokenizer's split) starts as one symbol per byte, each the token of
 * that byte's printable stand-in (bytes.c). Then the adjacent pair whose merge has the lowest rank
 * is merged, again and again, until no adjacent pair has a merge. Ties go to the leftmost pair,
 * as in llama.cpp and HF tokenizers.
 *
 * Everything is by id: merges are a hash map from the pair (left id, right id) to (rank, merged
 * id), built once from tokenizer.ggml.merges; the candidate pairs of a word sit in a binary heap,
 * and symbols in a linked list over an array, so a word of n bytes costs O(n log n) and no string
 * is rebuilt or rehashed while merging. A heap entry made stale by a neighbouring merge is
 * recognised when popped (its symbols' ids changed) and dropped.
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

/* One slot of the merge table (open addressing). */
typedef struct merge_slot {
    uint64_t key; /* (left << 32 | right), ids as uint32; 0 marks an empty slot with rank < 0 */
    int32_t rank; /* -1: empty */
    int32_t id;   /* the merged token */
} merge_slot;

struct rein_bpe {
    int32_t n_vocab;
    char *pool;         /* every piece, NUL-terminated, back to back */
    size_t *piece_off;  /* (n_vocab) */
    uint32_t *piece_len;/* (n_vocab) */
    int32_t *vocab_tab; /* (vocab_mask + 1) ids, -1 empty */
    size_t vocab_mask;
    merge_slot *merge_tab; /* (merge_mask + 1) */
    size_t merge_mask;
    int32_t byte_id[256]; /* token of each byte's stand-in, -1 if the vocabulary lacks it */
};

typedef struct sym {
    int32_t id;   /* -2 once merged into its left neighbour */
    int32_t prev; /* -1 at the start */
    int32_t next; /* -1 at the end */
} sym;

typedef struct pair {
    int32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t lid, rid;    /* their ids when the pair was made: stale if either changed */
} pair;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t table_size(size_t n) {
    size_t c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

int32_t rein_bpe_lookup(const rein_bpe *b, const char *piece, size_t len) {
    for (size_t h = hash_bytes(piece, len) & b->vocab_mask;; h = (h + 1) & b->vocab_mask) {
        int32_t id = b->vocab_tab[h];
        if (id < 0) return -1;
        if (b->piece_len[id] == len && !memcmp(b->pool + b->piece_off[id], piece, len)) return id;
    }
}

const char *rein_bpe_piece(const rein_bpe *b, int32_t id, size_t *len) {
    if (id < 0 || id >= b->n_vocab) return NULL;
    if (len) *len = b->piece_len[id];
    return b->pool + b->piece_off[id];
}

int32_t rein_bpe_n_vocab(const rein_bpe *b) { return b->n_vocab; }

static const merge_slot *merge_find(const rein_bpe *b, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (size_t h = hash_u64(key) & b->merge_mask;; h = (h + 1) & b->merge_mask) {
        const merge_slot *s = &b->merge_tab[h];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

void rein_bpe_free(rein_bpe *b) {
    if (!b) return;
    rein_free(b->pool);
    rein_free(b->piece_off);
    rein_free(b->piece_len);
    rein_free(b->vocab_tab);
    rein_free(b->merge_tab);
    rein_free(b);
}

rein_status rein_bpe_new(const char *const *pieces, const size_t *piece_lens, int32_t n_vocab,
                         const char *const *merges, const size_t *merge_lens, int64_t n_merges,
                         rein_bpe **out, int64_t *n_skipped) {
    *out = NULL;
    if (n_skipped) *n_skipped = 0;
    if (n_vocab <= 0) return rein_error(REIN_ERR_FORMAT, "tokenizer: empty vocabulary");
    rein_bpe *b = rein_calloc(1, sizeof(*b));
    if (!b) return REIN_ERR_NOMEM;
    b->n_vocab = n_vocab;
    size_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (piece_lens[i] > UINT32_MAX - 1) {
            rein_bpe_free(b);
            return rein_error(REIN_ERR_FORMAT, "tokenizer: token %d is %zu bytes long", i,
                              piece_lens[i]);
        }
        total += piece_lens[i] + 1;
    }
    b->pool = rein_malloc(total);
    b->piece_off = rein_malloc((size_t)n_vocab * sizeof(*b->piece_off));
    b->piece_len = rein_malloc((size_t)n_vocab * sizeof(*b->piece_len));
    size_t vcap = table_size((size_t)n_vocab);
    b->vocab_tab = rein_malloc(vcap * sizeof(*b->vocab_tab));
    size_t mcap = table_size(n_merges > 0 ? (size_t)n_merges : 1);
    b->merge_tab = rein_malloc(mcap * sizeof(*b->merge_tab));
    if (!b->pool || !b->piece_off || !b->piece_len || !b->vocab_tab || !b->merge_tab) {
        rein_bpe_free(b);
        return REIN_ERR_NOMEM;
    }
    b->vocab_mask = vcap - 1;
    b->merge_mask = mcap - 1;
    memset(b->vocab_tab, 0xff, vcap * sizeof(*b->vocab_tab));
    for (size_t i = 0; i < mcap; i++) b->merge_tab[i] = (merge_slot){0, -1, -1};

    /* The pieces, and the lookup table: a piece stored twice maps to its last id, as in
     * llama.cpp. An empty piece cannot be looked up. */
    size_t off = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        size_t n = piece_lens[i];
        memcpy(b->pool + off, pieces[i], n);
        b->pool[off + n] = 0;
        b->piece_off[i] = off;
        b->piece_len[i] = (uint32_t)n;
        off += n + 1;
        if (n == 0) continue;
        for (size_t h = hash_bytes(pieces[i], n) & b->vocab_mask;; h = (h + 1) & b->vocab_mask) {
            int32_t id = b->vocab_tab[h];
            if (id < 0 || (b->piece_len[id] == n && !memcmp(b->pool + b->piece_off[id],
                                                            pieces[i], n))) {
                b->vocab_tab[h] = i;
                break;
            }
        }
    }
    for (int c = 0; c < 256; c++) {
        char enc[2];
        int n = rein_tok_byte_encode((uint8_t)c, enc);
        b->byte_id[c] = rein_bpe_lookup(b, enc, (size_t)n);
    }

    /* The merges: "left right", split at the first space after the first byte (a piece may
     * start with a space only in vocabularies that do not byte-encode, but be as lenient as
     * llama.cpp). The first occurrence of a pair keeps its rank. */
    rein_buf cat = {0};
    int64_t skipped = 0;
    for (int64_t r = 0; r < n_merges; r++) {
        const char *m = merges[r];
        size_t n = merge_lens[r];
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        if (r > INT32_MAX) {
            skipped += n_merges - r;
            break;
        }
        if (!sp) {
            skipped++;
            continue;
        }
        size_t ln = (size_t)(sp - m), rn = n - ln - 1;
        int32_t l = rein_bpe_lookup(b, m, ln), rt = rein_bpe_lookup(b, sp + 1, rn);
        rein_buf_clear(&cat);
        if (rein_buf_append(&cat, m, ln) != REIN_OK || rein_buf_append(&cat, sp + 1, rn) != REIN_OK) {
            rein_buf_free(&cat);
            rein_bpe_free(b);
            return REIN_ERR_NOMEM;
        }
        int32_t res = l >= 0 && rt >= 0 ? rein_bpe_lookup(b, cat.data, cat.len) : -1;
        if (res < 0) {
            skipped++;
            continue;
        }
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)rt;
        for (size_t h = hash_u64(key) & b->merge_mask;; h = (h + 1) & b->merge_mask) {
            merge_slot *s = &b->merge_tab[h];
            if (s->rank < 0) {
                *s = (merge_slot){key, (int32_t)r, res};
                break;
            }
            if (s->key == key) break;
        }
    }
    rein_buf_free(&cat);
    if (n_skipped) *n_skipped = skipped;
    *out = b;
    return REIN_OK;
}

void rein_bpe_scratch_free(rein_bpe_scratch *s) {
    rein_free(s->sym);
    rein_free(s->heap);
    rein_free(s->enc);
    memset(s, 0, sizeof(*s));
}

static rein_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return REIN_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = rein_realloc(*p, nc * elem);
    if (!q) return REIN_ERR_NOMEM;
    *p = q;
    *cap = nc;
    return REIN_OK;
}

/* Heap order: lower rank first, then the leftmost pair. */
static int before(const pair *a, const pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(pair *h, size_t *n, pair p) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&p, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

static pair heap_pop(pair *h, size_t *n) {
    pair top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && before(&h[c + 1], &h[c])) c++;
        if (!before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = last;
    return top;
}

/* Push the pair (l, r) if it has a merge. The heap holds at most the n - 1 initial pairs plus two
 * per merge made (at most n - 1 merges), so capacity 3 * n suffices. */
static void try_pair(const rein_bpe *b, const sym *s, pair *h, size_t *n, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const merge_slot *m = merge_find(b, s[l].id, s[r].id);
    if (m) heap_push(h, n, (pair){m->rank, l, r, s[l].id, s[r].id});
}

/* A symbol with no token (its byte's stand-in is missing from the vocabulary): llama.cpp then
 * tries each byte of the stand-in's UTF-8 as a token, which is what we do too. */
static rein_status push_unknown_byte(const rein_bpe *b, uint8_t byte, rein_tokens *out) {
    char enc[2];
    int n = rein_tok_byte_encode(byte, enc);
    for (int i = 0; i < n; i++) {
        int32_t id = rein_bpe_lookup(b, &enc[i], 1);
        if (id >= 0) REIN_TRY(rein_tokens_push(out, id));
    }
    return REIN_OK;
}

rein_status rein_bpe_encode(const rein_bpe *b, const char *word, size_t len, int ignore_merges,
                            rein_bpe_scratch *s, rein_tokens *out) {
    if (len == 0) return REIN_OK;
    if (len > INT32_MAX / 3) return rein_error(REIN_ERR_RANGE, "tokenizer: word of %zu bytes", len);
    const unsigned char *w = (const unsigned char *)word;
    if (len == 1) {
        int32_t id = b->byte_id[w[0]];
        return id >= 0 ? rein_tokens_push(out, id) : push_unknown_byte(b, w[0], out);
    }
    if (ignore_merges) {
        REIN_TRY(grow((void **)&s->enc, &s->enc_cap, 2 * len, 1));
        size_t n = 0;
        for (size_t i = 0; i < len; i++) n += (size_t)rein_tok_byte_encode(w[i], s->enc + n);
        int32_t id = rein_bpe_lookup(b, s->enc, n);
        if (id >= 0) return rein_tokens_push(out, id);
    }
    REIN_TRY(grow(&s->sym, &s->sym_cap, len, sizeof(sym)));
    REIN_TRY(grow(&s->heap, &s->heap_cap, 3 * len, sizeof(pair)));
    sym *sy = s->sym;
    pair *h = s->heap;
    size_t nh = 0;
    int32_t n = (int32_t)len;
    for (int32_t i = 0; i < n; i++) sy[i] = (sym){b->byte_id[w[i]], i - 1, i + 1 < n ? i + 1 : -1};
    for (int32_t i = 1; i < n; i++) try_pair(b, sy, h, &nh, i - 1, i);
    while (nh > 0) {
        pair p = heap_pop(h, &nh);
        if (sy[p.left].id != p.lid || sy[p.right].id != p.rid) continue; /* stale */
        const merge_slot *m = merge_find(b, p.lid, p.rid);
        sy[p.left].id = m->id;
        sy[p.left].next = sy[p.right].next;
        if (sy[p.right].next >= 0) sy[sy[p.right].next].prev = p.left;
        sy[p.right].id = -2;
        try_pair(b, sy, h, &nh, sy[p.left].prev, p.left);
        try_pair(b, sy, h, &nh, p.left, sy[p.left].next);
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next) {
        if (sy[i].id >= 0) REIN_TRY(rein_tokens_push(out, sy[i].id));
        else REIN_TRY(push_unknown_byte(b, w[i], out));
    }
    return REIN_OK;
}
