/* batchgen.c - slots of one KV cache decoding many items together behind a shared prefix
 * (see batchgen.h).
 *
 * Sequence n_parallel of the cache holds the prefix; slots 0..n_parallel-1 the items. One step:
 * every slot without an item takes the next one (its cache cleared, the prefix shared with it:
 * rein_kv_cache_share, so that a step reads the long prefix's keys and values once for all slots,
 * not once a slot; its prompt queued), then one forward pass runs every queued prompt token and every decoding slot's
 * last token, with logits only for each slot's last token; each slot samples, checks its ends,
 * and reports its item when it has ended.
 */
#include "align/batchgen.h"

#include <string.h>

rein_batchgen_params rein_batchgen_default_params(void) {
    rein_batchgen_params p;
    memset(&p, 0, sizeof p);
    p.sampler = rein_sampler_default_params();
    p.max_tokens = 256;
    p.n_parallel = 16;
    return p;
}

typedef struct slot {
    int64_t item;     /* -1: free */
    rein_sampler *smp;
    rein_tokens hist; /* prompt + generated, for the repetition penalty */
    rein_buf text;
    int32_t n_gen;
    int32_t next;     /* the token to feed next (decoding) */
    int fresh;        /* its prompt is queued for this step */
    int row;          /* its logits row in this step, or -1 */
} slot;

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF), 0 if it is invalid, or -1 if it is valid so far but cut off by the end. */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len) return 0;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return -1;
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    }
    return len;
}

/* Make text valid UTF-8 for the callers (JSON, SQLite, the report): a byte-level model can write
 * invalid sequences, and a generation cut by max_tokens can end inside a character. Invalid bytes
 * become U+FFFD; an unfinished character at the very end is dropped. */
static rein_status utf8_clean(rein_buf *text, rein_buf *scratch) {
    rein_buf_clear(scratch);
    const unsigned char *s = (const unsigned char *)text->data;
    size_t n = text->len;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(s + i, n - i);
        if (k < 0) break;
        if (k == 0) {
            REIN_TRY(rein_buf_append(scratch, "\xEF\xBF\xBD", 3));
            i++;
            continue;
        }
        REIN_TRY(rein_buf_append(scratch, s + i, (size_t)k));
        i += (size_t)k;
    }
    rein_buf_clear(text);
    return rein_buf_append(text, scratch->data ? scratch->data : "", scratch->len);
}

/* The earliest stop string in text[from..len), or -1. */
static int64_t find_stop(const char *text, size_t len, size_t from, const rein_batchgen_params *p) {
    int64_t best = -1;
    for (size_t s = 0; s < p->n_stop; s++) {
        const char *hit = memmem(text + from, len - from, p->stop[s], strlen(p->stop[s]));
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

rein_status rein_batchgen_run(rein_model *m, const rein_batchgen_params *p, size_t n,
                              const int32_t *const *prompts, const size_t *n_prompt,
                              const uint64_t *seeds, rein_batchgen_done_fn done, void *ud) {
    if (n == 0) return REIN_OK;
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    if (!tok) return rein_error(REIN_ERR_INVALID, "the model has no tokenizer to decode with");
    if (p->n_parallel < 1 || p->max_tokens < 1)
        return rein_error(REIN_ERR_INVALID, "batch generation needs n_parallel >= 1 and "
                          "max_tokens >= 1 (got %d, %d)", p->n_parallel, p->max_tokens);
    for (size_t s = 0; s < p->n_stop; s++)
        if (!p->stop[s] || !p->stop[s][0])
            return rein_error(REIN_ERR_INVALID, "stop string %zu is empty", s);
    const rein_model_config *cfg = rein_model_get_config(m);
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) longest = REIN_MAX(longest, n_prompt[i]);
    int n_ctx = p->n_ctx;
    if (n_ctx <= 0) {
        size_t want = p->n_prefix + longest + (size_t)p->max_tokens;
        n_ctx = (int)REIN_MIN(want, (size_t)cfg->ctx_len);
    }
    if (p->n_prefix >= (size_t)n_ctx)
        return rein_error(REIN_ERR_RANGE, "the shared prompt has %zu tokens; the context holds %d "
                          "(the model's is %d): shorten the principles or exemplars", p->n_prefix,
                          n_ctx, cfg->ctx_len);
    const int S = (int)REIN_MIN((size_t)p->n_parallel, n);
    const int V = cfg->n_vocab;
    size_t max_batch = (size_t)S * (longest + 1) + p->n_prefix + 1;
    rein_kv_cache *kv = NULL;
    slot *slots = rein_calloc((size_t)S, sizeof(slot));
    float *logits = rein_malloc(sizeof(float) * (size_t)V * (size_t)(S + 1));
    float *prefix_logits = rein_malloc(sizeof(float) * (size_t)V);
    int32_t *btok = rein_malloc(sizeof(int32_t) * max_batch);
    int32_t *bseq = rein_malloc(sizeof(int32_t) * max_batch);
    uint8_t *bwant = rein_malloc(max_batch);
    rein_status st = (!slots || !logits || !prefix_logits || !btok || !bseq || !bwant)
                         ? REIN_ERR_NOMEM : REIN_OK;
    if (!st) st = rein_kv_cache_new(m, S + 1, n_ctx, &kv);
    for (int s = 0; s < S && slots; s++) slots[s].item = -1;

    /* the shared prefix, once */
    if (!st && p->n_prefix) {
        for (size_t i = 0; i < p->n_prefix; i++) {
            btok[i] = p->prefix[i];
            bseq[i] = S;
            bwant[i] = i + 1 == p->n_prefix;
        }
        st = rein_model_forward(m, kv, btok, bseq, p->n_prefix, bwant, prefix_logits);
    }

    size_t next_item = 0, n_done = 0;
    rein_buf clean = {0};
    while (!st && n_done < n) {
        /* fill free slots; items whose prompt cannot fit end at once */
        for (int s = 0; s < S && !st; s++) {
            slot *sl = &slots[s];
            while (sl->item < 0 && next_item < n && !st) {
                size_t i = next_item++;
                if (p->n_prefix + n_prompt[i] >= (size_t)n_ctx ||
                    (p->n_prefix == 0 && n_prompt[i] == 0)) {
                    rein_batchgen_out o = {"", 0, 0, REIN_GEN_TOO_LONG};
                    st = done(ud, i, &o);
                    n_done++;
                    if (p->progress)
                        rein_progress_update(p->progress, p->progress_done + (int64_t)n_done,
                                             p->progress_info);
                    continue;
                }
                rein_sampler_params sp = p->sampler;
                sp.seed = seeds ? seeds[i] : p->sampler.seed + i;
                rein_sampler_free(sl->smp);
                sl->smp = NULL;
                if ((st = rein_sampler_new(&sp, V, &sl->smp))) break;
                rein_kv_cache_clear(kv, s);
                if (p->n_prefix && (st = rein_kv_cache_share(kv, S, s, (int)p->n_prefix))) break;
                sl->item = (int64_t)i;
                sl->hist.n = 0;
                rein_buf_clear(&sl->text);
                sl->n_gen = 0;
                sl->fresh = 1;
                for (size_t k = 0; k < n_prompt[i] && !st; k++)
                    st = rein_tokens_push(&sl->hist, prompts[i][k]);
            }
        }
        if (st) break;
        /* one forward pass over every active slot */
        size_t nb = 0;
        int rows = 0;
        for (int s = 0; s < S; s++) {
            slot *sl = &slots[s];
            sl->row = -1;
            if (sl->item < 0) continue;
            if (sl->fresh) {
                size_t np = n_prompt[sl->item];
                for (size_t k = 0; k < np; k++) {
                    btok[nb] = prompts[sl->item][k];
                    bseq[nb] = s;
                    bwant[nb++] = k + 1 == np;
                }
                if (np) sl->row = rows++;
            } else {
                btok[nb] = sl->next;
                bseq[nb] = s;
                bwant[nb++] = 1;
                sl->row = rows++;
            }
        }
        if (nb && (st = rein_model_forward(m, kv, btok, bseq, nb, bwant, logits))) break;
        /* sample, check the ends */
        for (int s = 0; s < S && !st; s++) {
            slot *sl = &slots[s];
            if (sl->item < 0) continue;
            float *lg = sl->row >= 0 ? logits + (size_t)sl->row * V : NULL;
            if (!lg) { /* an empty prompt after the prefix: the prefix's own last logits */
                lg = logits + (size_t)S * V;
                memcpy(lg, prefix_logits, sizeof(float) * (size_t)V);
            }
            sl->fresh = 0;
            int32_t id = rein_sampler_sample(sl->smp, lg, sl->hist.ids, sl->hist.n);
            sl->n_gen++;
            int how = -1;
            if (rein_token_is_eog(tok, id)) {
                how = REIN_GEN_FINISHED;
            } else {
                size_t before = sl->text.len;
                if ((st = rein_tokens_push(&sl->hist, id))) break;
                if ((st = rein_token_to_bytes(tok, id, 0, &sl->text))) break;
                if (!sl->text.data && (st = rein_buf_append(&sl->text, "", 0))) break;
                size_t from = before;
                for (size_t k = 0; k < p->n_stop; k++) {
                    size_t sl_len = strlen(p->stop[k]);
                    from = before + 1 >= sl_len ? REIN_MIN(from, before + 1 - sl_len) : 0;
                }
                int64_t hit = p->n_stop ? find_stop(sl->text.data, sl->text.len, from, p) : -1;
                if (hit >= 0) {
                    sl->text.len = (size_t)hit;
                    sl->text.data[hit] = 0;
                    how = REIN_GEN_FINISHED;
                } else if (sl->n_gen >= p->max_tokens) {
                    how = REIN_GEN_MAX_TOKENS;
                } else if (rein_kv_cache_len(kv, s) >= n_ctx) {
                    how = REIN_GEN_CONTEXT;
                }
            }
            if (how < 0) {
                sl->next = id;
                continue;
            }
            if ((st = utf8_clean(&sl->text, &clean))) break;
            rein_batchgen_out o = {sl->text.data ? sl->text.data : "", sl->text.len, sl->n_gen,
                                   how};
            st = done(ud, (size_t)sl->item, &o);
            sl->item = -1;
            n_done++;
            if (p->progress)
                rein_progress_update(p->progress, p->progress_done + (int64_t)n_done,
                                     p->progress_info);
        }
    }
    for (int s = 0; s < S && slots; s++) {
        rein_sampler_free(slots[s].smp);
        rein_tokens_free(&slots[s].hist);
        rein_buf_free(&slots[s].text);
    }
    rein_buf_free(&clean);
    rein_kv_cache_free(kv);
    rein_free(slots);
    rein_free(logits);
    rein_free(prefix_logits);
    rein_free(btok);
    rein_free(bseq);
    rein_free(bwant);
    return st;
}

/* ---- chat turns into tokens ------------------------------------------------------------------ */

static rein_status push_text(const rein_tokenizer *tok, const char *s, size_t len, int flags,
                             rein_tokens *out) {
    return len ? rein_tokenize(tok, s, len, flags, out) : REIN_OK;
}

rein_status rein_chat_tokens(const rein_tokenizer *tok, const rein_chat_template *tmpl,
                             const rein_chat_msg *msgs, size_t n_msgs, int add_generation_prompt,
                             const char *assistant_start, rein_tokens *out) {
    rein_buf text = {0}, piece = {0};
    rein_tokens t = {0};
    rein_status st = rein_chat_apply(tmpl, msgs, n_msgs, add_generation_prompt, &text);
    if (!st && assistant_start) st = rein_buf_append(&text, assistant_start, strlen(assistant_start));
    if (!st && !text.data) st = rein_buf_append(&text, "", 0);
    /* BOS when asked for and not written by the template */
    if (!st) st = rein_tokenize(tok, "", 0, REIN_TOKENIZE_ADD_BOS, &t);
    if (!st && t.n == 1) {
        st = rein_token_to_bytes(tok, t.ids[0], 1, &piece);
        if (!st && !(piece.len && !strncmp(text.data, piece.data, piece.len)))
            st = rein_tokens_push(out, t.ids[0]);
    }
    /* the template's text with control tokens, each content (found in order) without */
    size_t pos = 0;
    for (size_t i = 0; i < n_msgs && !st; i++) {
        const char *c = msgs[i].content;
        size_t cl = strlen(c);
        if (!cl) continue;
        const char *hit = memmem(text.data + pos, text.len - pos, c, cl);
        if (!hit) continue; /* the template changed it (trimmed): left to the special pass */
        size_t at = (size_t)(hit - text.data);
        st = push_text(tok, text.data + pos, at - pos, REIN_TOKENIZE_PARSE_SPECIAL, out);
        if (!st) st = push_text(tok, c, cl, 0, out);
        pos = at + cl;
    }
    if (!st && assistant_start) {
        size_t al = strlen(assistant_start);
        size_t at = text.len - al;
        if (at >= pos) {
            st = push_text(tok, text.data + pos, at - pos, REIN_TOKENIZE_PARSE_SPECIAL, out);
            if (!st) st = push_text(tok, assistant_start, al, 0, out);
            pos = text.len;
        }
    }
    if (!st) st = push_text(tok, text.data + pos, text.len - pos, REIN_TOKENIZE_PARSE_SPECIAL, out);
    rein_tokens_free(&t);
    rein_buf_free(&text);
    rein_buf_free(&piece);
    return st;
}
