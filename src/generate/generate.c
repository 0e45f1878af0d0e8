/* generate.c - prompt in, text out: prefill, then sample and feed back one token at a time.
 *
 * Text is streamed as it becomes final. Two things hold text back: an incomplete UTF-8 character
 * at the end (byte-level tokens can split one), and a tail that could still grow into a stop
 * string. When a stop string appears, the text before it is the answer and generation ends.
 */
#include "base/base.h"
#include "generate/stop.h"
#include "model/model.h"

#include <string.h>

rein_generate_params rein_generate_default_params(void) {
    rein_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampler = rein_sampler_default_params();
    p.max_tokens = 256;
    p.stop_at_eog = 1;
    return p;
}

/* Length of the longest suffix of text[0..len) that is a proper prefix of some stop string. */
static size_t stop_holdback(const char *text, size_t len, const rein_generate_params *p) {
    size_t best = 0;
    for (size_t s = 0; s < p->n_stop; s++) {
        size_t sl = strlen(p->stop[s]);
        for (size_t h = REIN_MIN(sl - 1, len); h > best; h--)
            if (!memcmp(text + len - h, p->stop[s], h)) {
                best = h;
                break;
            }
    }
    return best;
}

/* Bytes at the end of text[0..len) that begin a UTF-8 character not yet complete. */
static size_t utf8_incomplete_tail(const char *text, size_t len) {
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char c = (unsigned char)text[len - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

size_t rein_stop_search_from(size_t before, const char *const *stop, size_t n_stop) {
    size_t from = before;
    for (size_t s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        if (before + 1 >= sl) from = REIN_MIN(from, before + 1 - sl);
        else from = 0;
    }
    return from;
}

int64_t rein_stop_find(const char *text, size_t len, size_t from, const char *const *stop,
                       size_t n_stop) {
    int64_t best = -1;
    for (size_t s = 0; s < n_stop; s++) {
        const char *hit = memmem(text + from, len - from, stop[s], strlen(stop[s]));
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

rein_status rein_generate(rein_model *m, rein_kv_cache *kv, int seq, const int32_t *prompt,
                          size_t n_prompt, const rein_generate_params *p, rein_text_fn on_text,
                          void *ud, rein_buf *out, rein_tokens *out_ids) {
    const rein_tokenizer *tok = m->tok;
    if (!tok) return rein_error(REIN_ERR_INVALID, "the model has no tokenizer to decode with");
    if (seq < 0 || seq >= kv->n_seq)
        return rein_error(REIN_ERR_RANGE, "sequence %d outside the KV cache (0..%d)", seq,
                          kv->n_seq - 1);
    if (n_prompt == 0 && kv->len[seq] == 0)
        return rein_error(REIN_ERR_INVALID, "nothing to continue: empty prompt and empty cache");
    for (size_t s = 0; s < p->n_stop; s++)
        if (!p->stop[s] || !p->stop[s][0])
            return rein_error(REIN_ERR_INVALID, "stop string %zu is empty", s);
    if ((size_t)kv->len[seq] + n_prompt > (size_t)kv->n_ctx)
        return rein_error(REIN_ERR_RANGE, "the prompt (%zu tokens) does not fit the context: %d of "
                          "%d positions are used", n_prompt, kv->len[seq], kv->n_ctx);

    const int32_t V = m->cfg.n_vocab;
    rein_sampler *smp = NULL;
    float *logits = rein_malloc(sizeof(float) * (size_t)V);
    int32_t *seqs = rein_malloc(sizeof(int32_t) * (n_prompt ? n_prompt : 1));
    uint8_t *want = rein_calloc(n_prompt ? n_prompt : 1, 1);
    rein_tokens hist = {0};
    rein_buf text = {0};
    rein_status st = (!logits || !seqs || !want) ? REIN_ERR_NOMEM : REIN_OK;
    if (!st) st = rein_sampler_new(&p->sampler, V, &smp);
    for (size_t i = 0; i < n_prompt && !st; i++) st = rein_tokens_push(&hist, prompt[i]);
    double t0 = rein_time_now(), t1 = t0;
    int32_t n_gen = 0;
    if (!st && n_prompt) {
        for (size_t i = 0; i < n_prompt; i++) seqs[i] = seq;
        want[n_prompt - 1] = 1;
        st = rein_model_forward(m, kv, prompt, seqs, n_prompt, want, logits);
    } else if (!st) {
        st = rein_error(REIN_ERR_INVALID, "an empty prompt needs the last logits; give at least "
                        "one token");
    }
    t1 = rein_time_now();
    size_t emitted = 0;
    int stopped = 0;
    for (int32_t t = 0; !st && !stopped && t < p->max_tokens; t++) {
        int32_t id = rein_sampler_sample(smp, logits, hist.ids, hist.n);
        n_gen++;
        if (p->stop_at_eog && rein_token_is_eog(tok, id)) break;
        if ((st = rein_tokens_push(&hist, id))) break;
        if (out_ids && (st = rein_tokens_push(out_ids, id))) break;
        size_t before = text.len;
        if ((st = rein_token_to_bytes(tok, id, 0, &text))) break;
        size_t from = REIN_MAX(rein_stop_search_from(before, p->stop, p->n_stop), emitted);
        int64_t hit = p->n_stop ? rein_stop_find(text.data, text.len, from, p->stop, p->n_stop) : -1;
        size_t final_len;
        if (hit >= 0) {
            text.len = (size_t)hit;
            text.data[text.len] = 0;
            final_len = text.len;
            stopped = 1;
        } else {
            size_t hold = REIN_MAX(stop_holdback(text.data, text.len, p),
                                   utf8_incomplete_tail(text.data, text.len));
            final_len = text.len - hold;
        }
        if (final_len > emitted && on_text && on_text(ud, text.data + emitted, final_len - emitted))
            stopped = 1;
        emitted = REIN_MAX(emitted, final_len);
        if (stopped || t + 1 == p->max_tokens) break;
        if (kv->len[seq] >= kv->n_ctx) break; /* context full: what we have is the answer */
        uint8_t one = 1;
        st = rein_model_forward(m, kv, &id, &seq, 1, &one, logits);
    }
    if (!st && text.len > emitted && on_text) on_text(ud, text.data + emitted, text.len - emitted);
    if (!st && out) st = rein_buf_append(out, text.data ? text.data : "", text.len);
    if (p->stats) {
        p->stats->n_prompt = (int32_t)n_prompt;
        p->stats->n_generated = n_gen;
        p->stats->prefill_s = t1 - t0;
        p->stats->decode_s = rein_time_now() - t1;
    }
    rein_buf_free(&text);
    rein_tokens_free(&hist);
    rein_sampler_free(smp);
    rein_free(logits);
    rein_free(seqs);
    rein_free(want);
    return st;
}
