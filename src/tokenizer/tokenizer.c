/* tokenizer.c - the public tokenizer: loading it from GGUF, encoding text, decoding ids.
 *
 * Encoding goes in three steps, as in llama.cpp (whose results rein reproduces exactly):
 *   1. special tokens are cut out of the text first, longest match first: user-defined tokens
 *      always (they are the "added tokens" that HF tokenizers always recognise), control tokens
 *      (<|im_start|>, <|endoftext|>) only with REIN_TOKENIZE_PARSE_SPECIAL;
 *   2. each stretch of ordinary text between them is cut into words by the pre-tokenizer;
 *   3. each word is encoded by byte-level BPE.
 * The tokenizer is immutable once built: encoding and decoding only read it, and every call brings
 * its own scratch memory, so one tokenizer serves any number of threads.
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

struct rein_tokenizer {
    rein_bpe *bpe;
    rein_pretok *pre;
    int32_t n_vocab;
    uint8_t *types; /* (n_vocab) REIN_TOKEN_* */
    uint8_t *eog;   /* (n_vocab) 1 where generation ends */
    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_eos;
    /* Special tokens (control, user-defined, unknown) bucketed by first byte, each bucket
     * longest first: special_ids[bucket[c] .. bucket[c + 1]). */
    int32_t *special_ids;
    uint32_t bucket[257];
};

/* ---- loading ---------------------------------------------------------------------------- */

/* Texts that mark end-of-turn / end-of-generation tokens in vocabularies whose metadata does not
 * name them (as llama.cpp recognises them), in order of preference for `eot`. */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>",
};
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
};

void rein_tokenizer_free(rein_tokenizer *t) {
    if (!t) return;
    rein_bpe_free(t->bpe);
    rein_pretok_free(t->pre);
    rein_free(t->types);
    rein_free(t->eog);
    rein_free(t->special_ids);
    rein_free(t);
}

/* An optional token id from metadata: -1 when absent; out of range is ignored with a warning. */
static rein_status opt_id(const rein_gguf *g, const char *key, int32_t n_vocab, int32_t *out) {
    *out = -1;
    if (rein_gguf_find_kv(g, key) < 0) return REIN_OK;
    uint32_t v;
    REIN_TRY(rein_gguf_get_u32(g, key, &v));
    if (v >= (uint32_t)n_vocab)
        rein_log(REIN_LOG_WARN, "%s = %u is not a token id (vocabulary of %d); ignored", key, v,
                 n_vocab);
    else
        *out = (int32_t)v;
    return REIN_OK;
}

static rein_status opt_bool(const rein_gguf *g, const char *key, int *out) {
    if (rein_gguf_find_kv(g, key) < 0) return REIN_OK;
    return rein_gguf_get_bool(g, key, out);
}

static int is_special_type(int type) {
    return type == REIN_TOKEN_CONTROL || type == REIN_TOKEN_USER_DEFINED ||
           type == REIN_TOKEN_UNKNOWN;
}

/* The special tokens sort by first byte, then longest first, then by id. */
typedef struct special_key {
    uint8_t first;
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static rein_status build_specials(rein_tokenizer *t) {
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        rein_bpe_piece(t->bpe, i, &len);
        if (is_special_type(t->types[i]) && len > 0) n++;
    }
    special_key *keys = rein_malloc((n ? n : 1) * sizeof(*keys));
    t->special_ids = rein_malloc((n ? n : 1) * sizeof(*t->special_ids));
    if (!keys || !t->special_ids) {
        rein_free(keys);
        return REIN_ERR_NOMEM;
    }
    size_t k = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        const char *p = rein_bpe_piece(t->bpe, i, &len);
        if (is_special_type(t->types[i]) && len > 0)
            keys[k++] = (special_key){(uint8_t)p[0], (uint32_t)len, i};
    }
    qsort(keys, n, sizeof(*keys), cmp_special);
    memset(t->bucket, 0, sizeof(t->bucket));
    for (size_t i = 0; i < n; i++) {
        t->special_ids[i] = keys[i].id;
        t->bucket[keys[i].first + 1]++;
    }
    for (int c = 0; c < 256; c++) t->bucket[c + 1] += t->bucket[c];
    rein_free(keys);
    return REIN_OK;
}

rein_status rein_tokenizer_from_gguf(const rein_gguf *g, rein_tokenizer **out) {
    *out = NULL;
    const char *s;
    size_t slen;
    if (rein_gguf_find_kv(g, "tokenizer.ggml.model") < 0)
        return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.model: missing (the file has no tokenizer)");
    REIN_TRY(rein_gguf_get_str(g, "tokenizer.ggml.model", &s, &slen));
    if (slen != 4 || memcmp(s, "gpt2", 4) != 0)
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "tokenizer.ggml.model: \"%.*s\" is not supported; rein supports \"gpt2\" "
                          "(byte-level BPE) only",
                          (int)REIN_MIN(slen, 64), s);

    char pre_name[128] = "default";
    if (rein_gguf_find_kv(g, "tokenizer.ggml.pre") >= 0) {
        REIN_TRY(rein_gguf_get_str(g, "tokenizer.ggml.pre", &s, &slen));
        if (slen >= sizeof(pre_name))
            return rein_error(REIN_ERR_UNSUPPORTED, "tokenizer.ggml.pre: a name of %zu bytes", slen);
        memcpy(pre_name, s, slen);
        pre_name[slen] = 0;
    } else {
        rein_log(REIN_LOG_WARN, "tokenizer.ggml.pre: missing, using the \"default\" pre-tokenizer");
    }

    int64_t ki = rein_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (ki < 0) return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.tokens: missing");
    int64_t mi = rein_gguf_find_kv(g, "tokenizer.ggml.merges");
    if (mi < 0) return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.merges: missing (a BPE vocabulary needs merges)");
    rein_gguf_value_type at;
    int64_t n_vocab, n_merges;
    const void *data;
    REIN_TRY(rein_gguf_kv_arr(g, ki, &at, &n_vocab, &data));
    if (at != REIN_GGUF_STRING)
        return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.tokens: expected an array of strings");
    if (n_vocab <= 0 || n_vocab > INT32_MAX)
        return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.tokens: %lld tokens", (long long)n_vocab);
    REIN_TRY(rein_gguf_kv_arr(g, mi, &at, &n_merges, &data));
    if (at != REIN_GGUF_STRING)
        return rein_error(REIN_ERR_FORMAT, "tokenizer.ggml.merges: expected an array of strings");

    rein_tokenizer *t = rein_calloc(1, sizeof(*t));
    if (!t) return REIN_ERR_NOMEM;
    t->n_vocab = (int32_t)n_vocab;
    rein_status st = REIN_OK;
    const char **strs = rein_malloc((size_t)n_vocab * sizeof(*strs));
    size_t *lens = rein_malloc((size_t)n_vocab * sizeof(*lens));
    const char **mstrs = NULL;
    t->types = rein_malloc((size_t)n_vocab);
    t->eog = rein_calloc((size_t)n_vocab, 1);
    if (!strs || !lens || !t->types || !t->eog) {
        st = REIN_ERR_NOMEM;
        goto done;
    }

    for (int64_t i = 0; i < n_vocab && st == REIN_OK; i++)
        st = rein_gguf_kv_arr_str(g, ki, i, &strs[i], &lens[i]);
    if (st != REIN_OK) goto done;
    mstrs = rein_malloc((size_t)(n_merges > 0 ? n_merges : 1) * sizeof(*mstrs));
    size_t *mlens = rein_malloc((size_t)(n_merges > 0 ? n_merges : 1) * sizeof(*mlens));
    if (!mstrs || !mlens) {
        rein_free(mlens);
        st = REIN_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < n_merges && st == REIN_OK; i++)
        st = rein_gguf_kv_arr_str(g, mi, i, &mstrs[i], &mlens[i]);
    int64_t skipped = 0;
    if (st == REIN_OK)
        st = rein_bpe_new(strs, lens, t->n_vocab, mstrs, mlens, n_merges, &t->bpe, &skipped);
    rein_free(mlens);
    if (st != REIN_OK) goto done;
    if (skipped)
        rein_log(REIN_LOG_WARN, "tokenizer.ggml.merges: %lld of %lld merges name pieces that are not "
                 "in the vocabulary and can never apply", (long long)skipped, (long long)n_merges);

    /* Token types: NORMAL where the file has none. */
    memset(t->types, REIN_TOKEN_NORMAL, (size_t)n_vocab);
    int64_t ti = rein_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (ti >= 0) {
        int64_t nt;
        st = rein_gguf_kv_arr(g, ti, &at, &nt, &data);
        if (st != REIN_OK) goto done;
        if ((at != REIN_GGUF_INT32 && at != REIN_GGUF_UINT32) || nt != n_vocab) {
            st = rein_error(REIN_ERR_FORMAT,
                            "tokenizer.ggml.token_type: expected %lld int32 values, found %lld of "
                            "type %d", (long long)n_vocab, (long long)nt, (int)at);
            goto done;
        }
        for (int64_t i = 0; i < n_vocab; i++) {
            int32_t v;
            memcpy(&v, (const char *)data + 4 * i, 4);
            t->types[i] = v >= REIN_TOKEN_NORMAL && v <= REIN_TOKEN_BYTE ? (uint8_t)v
                                                                          : REIN_TOKEN_NORMAL;
        }
    }

    if ((st = rein_pretok_new(pre_name, &t->pre)) != REIN_OK) goto done;

    if ((st = opt_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos)) != REIN_OK ||
        (st = opt_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos)) != REIN_OK ||
        (st = opt_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot)) != REIN_OK ||
        (st = opt_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom)) != REIN_OK ||
        (st = opt_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk)) != REIN_OK ||
        (st = opt_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad)) != REIN_OK)
        goto done;
    t->add_bos = rein_pretok_default_add_bos(t->pre);
    if ((st = opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) != REIN_OK ||
        (st = opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) != REIN_OK)
        goto done;

    /* End of turn and end of generation, from the vocabulary's texts where metadata is silent. */
    for (size_t i = 0; t->eot < 0 && i < sizeof(EOT_TEXTS) / sizeof(EOT_TEXTS[0]); i++)
        t->eot = rein_bpe_lookup(t->bpe, EOT_TEXTS[i], strlen(EOT_TEXTS[i]));
    if (t->eom < 0) t->eom = rein_bpe_lookup(t->bpe, "<|eom_id|>", 10);
    for (size_t i = 0; i < sizeof(EOG_TEXTS) / sizeof(EOG_TEXTS[0]); i++) {
        int32_t id = rein_bpe_lookup(t->bpe, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id >= 0) {
            t->eog[id] = 1;
            t->types[id] = REIN_TOKEN_CONTROL; /* as llama.cpp: these are control tokens */
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;

    st = build_specials(t);

done:
    rein_free(strs);
    rein_free(lens);
    rein_free(mstrs);
    if (st != REIN_OK) {
        rein_tokenizer_free(t);
        return st;
    }
    *out = t;
    return REIN_OK;
}

/* ---- small accessors -------------------------------------------------------------------- */

int32_t rein_tokenizer_n_vocab(const rein_tokenizer *t) { return t->n_vocab; }
const char *rein_tokenizer_pre(const rein_tokenizer *t) { return rein_pretok_name(t->pre); }
const char *rein_token_piece(const rein_tokenizer *t, int32_t id) {
    return rein_bpe_piece(t->bpe, id, NULL);
}
int rein_token_type(const rein_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->types[id] : -1;
}
int32_t rein_token_lookup(const rein_tokenizer *t, const char *piece) {
    return rein_bpe_lookup(t->bpe, piece, strlen(piece));
}
int32_t rein_token_bos(const rein_tokenizer *t) { return t->bos; }
int32_t rein_token_eos(const rein_tokenizer *t) { return t->eos; }
int32_t rein_token_eot(const rein_tokenizer *t) { return t->eot; }
int rein_token_is_eog(const rein_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct encoder {
    const rein_tokenizer *t;
    rein_span *spans;
    size_t cap;
    rein_bpe_scratch scratch;
    rein_buf fixed; /* the text made canonical UTF-8, when it was not */
} encoder;

/* Decode one sequence the way llama.cpp does (lenient: overlong forms and surrogates pass,
 * a lead byte needs only its continuation bytes); returns its length, or 0 if invalid. */
static int lenient_utf8(const unsigned char *s, size_t n, uint32_t *cp) {
    int need;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (!(s[0] & 0x40)) return 0;
    if (!(s[0] & 0x20)) need = 1, *cp = s[0] & 0x1f;
    else if (!(s[0] & 0x10)) need = 2, *cp = s[0] & 0x0f;
    else if (!(s[0] & 0x08)) need = 3, *cp = s[0] & 0x07;
    else return 0;
    if ((size_t)need >= n) return 0;
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    return need + 1;
}

static int utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    if (cp > 0x10ffff) return utf8_put(0xfffd, o);
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* llama.cpp reads ordinary text as code points: a byte that starts no decodable sequence becomes
 * U+FFFD, an overlong form its code point. Do the same, so that ids match for any bytes. Sets
 * *changed, and the rewritten text in *fixed, if the text was not canonical already. */
static rein_status canonical_utf8(const char *text, size_t len, rein_buf *fixed, int *changed) {
    const unsigned char *u = (const unsigned char *)text;
    size_t i = 0;
    *changed = 0;
    while (i < len) {
        uint32_t cp;
        char enc[4];
        int n = lenient_utf8(u + i, len - i, &cp);
        int m = n ? utf8_put(cp, enc) : utf8_put(0xfffd, enc);
        int same = n == m && !memcmp(enc, u + i, (size_t)n);
        if (!same && !*changed) {
            *changed = 1;
            rein_buf_clear(fixed);
            REIN_TRY(rein_buf_append(fixed, text, i));
        }
        if (*changed) REIN_TRY(rein_buf_append(fixed, enc, (size_t)m));
        i += n ? (size_t)n : 1;
    }
    return REIN_OK;
}

/* Ordinary text (no special tokens in it): pre-tokenize, then BPE each word. */
static rein_status encode_text(encoder *e, const char *text, size_t len, rein_tokens *out) {
    if (len == 0) return REIN_OK;
    int changed;
    REIN_TRY(canonical_utf8(text, len, &e->fixed, &changed));
    if (changed) {
        text = e->fixed.data;
        len = e->fixed.len;
    }
    size_t n;
    REIN_TRY(rein_pretok_split(e->t->pre, text, len, &e->spans, &n, &e->cap));
    int ignore = rein_pretok_ignore_merges(e->t->pre);
    for (size_t i = 0; i < n; i++)
        REIN_TRY(rein_bpe_encode(e->t->bpe, text + e->spans[i].start, e->spans[i].len, ignore,
                                 &e->scratch, out));
    return REIN_OK;
}

/* The longest special token that text[0..len) starts with and that these flags allow; -1 if
 * none. */
static int32_t special_at(const rein_tokenizer *t, const char *text, size_t len, int parse_special) {
    uint8_t c = (uint8_t)text[0];
    for (uint32_t k = t->bucket[c]; k < t->bucket[c + 1]; k++) {
        int32_t id = t->special_ids[k];
        if (!parse_special && t->types[id] != REIN_TOKEN_USER_DEFINED) continue;
        size_t plen;
        const char *p = rein_bpe_piece(t->bpe, id, &plen);
        if (plen <= len && !memcmp(p, text, plen)) return id;
    }
    return -1;
}

rein_status rein_tokenize(const rein_tokenizer *t, const char *text, size_t len, int flags,
                          rein_tokens *out) {
    if (!text && len) return rein_error(REIN_ERR_INVALID, "rein_tokenize: text is NULL");
    if ((flags & REIN_TOKENIZE_ADD_BOS) && t->add_bos && t->bos >= 0)
        REIN_TRY(rein_tokens_push(out, t->bos));
    encoder e = {t, NULL, 0, {0}, {0}};
    rein_status st = REIN_OK;
    int parse_special = (flags & REIN_TOKENIZE_PARSE_SPECIAL) != 0;
    size_t start = 0; /* ordinary text not yet encoded begins here */
    for (size_t i = 0; i < len && st == REIN_OK;) {
        uint8_t c = (uint8_t)text[i];
        int32_t id = t->bucket[c] < t->bucket[c + 1] ? special_at(t, text + i, len - i, parse_special)
                                                     : -1;
        if (id < 0) {
            i++;
            continue;
        }
        st = encode_text(&e, text + start, i - start, out);
        if (st == REIN_OK) st = rein_tokens_push(out, id);
        size_t plen;
        rein_bpe_piece(t->bpe, id, &plen);
        i += plen;
        start = i;
    }
    if (st == REIN_OK) st = encode_text(&e, text + start, len - start, out);
    rein_free(e.spans);
    rein_bpe_scratch_free(&e.scratch);
    rein_buf_free(&e.fixed);
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

rein_status rein_token_to_bytes(const rein_tokenizer *t, int32_t id, int render_special,
                                rein_buf *out) {
    if (id < 0 || id >= t->n_vocab)
        return rein_error(REIN_ERR_RANGE, "token id %d is out of range (vocabulary of %d)", id,
                          t->n_vocab);
    size_t len;
    const char *p = rein_bpe_piece(t->bpe, id, &len);
    switch (t->types[id]) {
    case REIN_TOKEN_CONTROL:
    case REIN_TOKEN_UNKNOWN:
        return render_special ? rein_buf_append(out, p, len) : REIN_OK;
    case REIN_TOKEN_USER_DEFINED: /* added tokens are stored as plain text */
        return rein_buf_append(out, p, len);
    case REIN_TOKEN_UNUSED:
        return REIN_OK;
    case REIN_TOKEN_BYTE: /* "<0x0A>" */
        if (len == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' &&
            hexval(p[3]) >= 0 && hexval(p[4]) >= 0) {
            char b = (char)(hexval(p[3]) * 16 + hexval(p[4]));
            return rein_buf_append(out, &b, 1);
        }
        return rein_tok_piece_decode(p, len, out);
    default:
        return rein_tok_piece_decode(p, len, out);
    }
}

rein_status rein_detokenize(const rein_tokenizer *t, const int32_t *ids, size_t n,
                            int render_special, rein_buf *out) {
    for (size_t i = 0; i < n; i++) REIN_TRY(rein_token_to_bytes(t, ids[i], render_special, out));
    return REIN_OK;
}
