/* pretokenize.c - the pre-tokenizers: regexes that cut text into words before BPE merges them.
 *
 * A byte-level BPE vocabulary is trained on words that a regex split out of the text, so the same
 * split must happen before encoding, or the ids differ from the model's. `tokenizer.ggml.pre`
 * names the split. Each one here is a list of regexes applied in turn, as llama.cpp applies them:
 * the first regex cuts the text into its matches and the gaps between them, the second cuts each
 * of those pieces again (its lookaheads and `\z` see only the piece), and so on. SmolLM's list, for
 * example, first isolates every digit (`\p{N}`), then applies GPT-2's word regex.
 *
 * The regexes run on PCRE2 with UTF and Unicode properties (UCP), JIT-compiled where the library
 * can. `\s` is spelled out as the Unicode White_Space set (which HF tokenizers and llama.cpp use;
 * PCRE2's own `\s` lacks U+0085). The compiled patterns are read-only after creation, so one
 * pre-tokenizer serves any number of threads; each split call brings its own match data.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer.h"

#include <pcre2.h>
#include <string.h>

/* The White_Space code points, for use inside a character class. */
#define WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
#define RE_GPT2                                                                                \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS    \
    "])|[" WS "]+"

/* Llama 3 (and Qwen2 with \p{N} in place of \p{N}{1,3}); the case-insensitive contractions of
 * the original are written out as classes. */
#define RE_LLAMA3_HEAD                                                                         \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL                                                                         \
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"
#define RE_LLAMA3 RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL
#define RE_QWEN2 RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL

/* llama.cpp matches the regexes that name explicit code point ranges (DeepSeek's) on text whose
 * non-ASCII white space was replaced by U+000B, so such a range never matches white space; the
 * guard (?![WS]) does the same here. */
#define NOT_WS "(?![" WS "])"

/* CJK and other scripts that DeepSeek's tokenizers group whole (U+0800..U+4E00 is as upstream;
 * it spans U+2000..U+200A, U+2028, U+3000 and other white space, hence the guard). */
#define RE_DEEPSEEK_CJK "(?:" NOT_WS "[\\x{4e00}-\\x{9fa5}\\x{0800}-\\x{4e00}\\x{ac00}-\\x{d7ff}])+"

/* DeepSeek LLM's letter class: the cased letters of many scripts, as its tokenizer.json lists. */
#define RE_DEEPSEEK_LLM_LETTERS                                                                 \
    "[" WS "]?[A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}"         \
    "\\x{1c4}-\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}\\x{37f}"     \
    "\\x{386}\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-\\x{481}"              \
    "\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}"      \
    "\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}"  \
    "\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}"  \
    "\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}"    \
    "\\x{1fc2}-\\x{1fc4}\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}"  \
    "\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}"             \
    "\\x{2119}-\\x{211d}\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}\\x{2139}"    \
    "\\x{213c}-\\x{213f}\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}"             \
    "\\x{2c7e}-\\x{2ce4}\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}"   \
    "\\x{a722}-\\x{a76f}\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}"  \
    "\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}"                  \
    "\\x{104b0}-\\x{104d3}\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}"             \
    "\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+"

#define MAX_REGEX 6

typedef struct pre_def {
    const char *names; /* '|'-separated: the canonical name first, then aliases */
    int ignore_merges;
    int add_bos;
    const char *re[MAX_REGEX];
} pre_def;

/* Every list as llama.cpp's llm_tokenizer_bpe has it for the same tokenizer.ggml.pre names. */
static const pre_def DEFS[] = {
    {"gpt-2|mpt|olmo|jais|phi-2|jina-es|jina-de|jina-v2-es|jina-v2-de|gigachat|exaone4|trillion",
     0, 0, {RE_GPT2}},
    {"smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b",
     0, 0, {"\\p{N}", RE_GPT2}},
    {"llama3|llama-bpe|llama-v3|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", 1, 1, {RE_LLAMA3}},
    {"dbrx|smaug-bpe", 0, 0, {RE_LLAMA3}},
    {"qwen2|stablelm2|deepseek-r1-qwen|megrez", 0, 0, {RE_QWEN2}},
    {"falcon", 0, 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"deepseek-coder", 0, 0,
     {"[\\r\\n]", "[" WS "]?\\p{L}+", "[" WS "]?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}"}},
    {"deepseek-llm", 0, 0,
     {"[\\r\\n]", RE_DEEPSEEK_LLM_LETTERS,
      "[" WS "]?(?:" NOT_WS
      "[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}])+",
      "[" WS "]+\\z", RE_DEEPSEEK_CJK, "\\p{N}+"}},
    {"default", 0, 0,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
};
#define N_DEFS (sizeof(DEFS) / sizeof(DEFS[0]))

struct rein_pretok {
    char *name;
    const pre_def *def;
    int n_re;
    pcre2_code *re[MAX_REGEX];
    pcre2_general_context *gctx;
    pcre2_match_context *mctx;
};

/* PCRE2 allocates through rein's hook like everything else. */
static void *pcre_malloc(size_t size, void *ud) {
    (void)ud;
    return rein_malloc(size);
}
static void pcre_free(void *p, void *ud) {
    (void)ud;
    rein_free(p);
}

static int name_in(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *p = names;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !memcmp(p, name, n)) return 1;
        if (!bar) return 0;
        p = bar + 1;
    }
}

void rein_pretok_free(rein_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    pcre2_match_context_free(p->mctx);
    pcre2_general_context_free(p->gctx);
    rein_free(p->name);
    rein_free(p);
}

rein_status rein_pretok_new(const char *name, rein_pretok **out) {
    *out = NULL;
    const pre_def *def = NULL;
    for (size_t i = 0; i < N_DEFS && !def; i++)
        if (name_in(DEFS[i].names, name)) def = &DEFS[i];
    if (!def) {
        rein_buf known = {0};
        for (size_t i = 0; i < N_DEFS; i++) {
            for (const char *c = DEFS[i].names; *c; c++) {
                rein_status st = *c == '|' ? rein_buf_append(&known, ", ", 2)
                                           : rein_buf_append(&known, c, 1);
                if (st != REIN_OK) break;
            }
            if (i + 1 < N_DEFS && rein_buf_append(&known, ", ", 2) != REIN_OK) break;
        }
        rein_status st = rein_error(REIN_ERR_UNSUPPORTED,
                                    "tokenizer.ggml.pre: pre-tokenizer \"%s\" is not supported; "
                                    "rein knows: %s",
                                    name, known.data ? known.data : "(out of memory)");
        rein_buf_free(&known);
        return st;
    }

    rein_pretok *p = rein_calloc(1, sizeof(*p));
    if (!p) return REIN_ERR_NOMEM;
    p->def = def;
    p->name = rein_strdup(name);
    p->gctx = pcre2_general_context_create(pcre_malloc, pcre_free, NULL);
    p->mctx = p->gctx ? pcre2_match_context_create(p->gctx) : NULL;
    if (!p->name || !p->gctx || !p->mctx) {
        rein_pretok_free(p);
        return rein_error(REIN_ERR_NOMEM, "out of memory creating pre-tokenizer \"%s\"", name);
    }
    pcre2_compile_context *cctx = pcre2_compile_context_create(p->gctx);
    if (!cctx) {
        rein_pretok_free(p);
        return rein_error(REIN_ERR_NOMEM, "out of memory creating pre-tokenizer \"%s\"", name);
    }
    for (int i = 0; i < MAX_REGEX && def->re[i]; i++) {
        int err;
        PCRE2_SIZE at;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)def->re[i], PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err,
                                         &at, cctx);
        if (!code) {
            /* Our own patterns are constant: failing to compile one is a bug, unless PCRE2 ran
             * out of memory. */
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof(msg));
            pcre2_compile_context_free(cctx);
            rein_pretok_free(p);
            if (err == PCRE2_ERROR_HEAP_FAILED)
                return rein_error(REIN_ERR_NOMEM, "pre-tokenizer \"%s\": %s", name, (char *)msg);
            fprintf(stderr, "pre-tokenizer %s regex %d at %zu: %s\n", name, i, (size_t)at,
                    (char *)msg);
            REIN_ASSERT(!"pre-tokenizer regex does not compile");
        }
        /* JIT where available; the interpreter gives the same matches, only slower. */
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
        p->re[p->n_re++] = code;
    }
    pcre2_compile_context_free(cctx);
    *out = p;
    return REIN_OK;
}

const char *rein_pretok_name(const rein_pretok *p) { return p->name; }
int rein_pretok_ignore_merges(const rein_pretok *p) { return p->def->ignore_merges; }
int rein_pretok_default_add_bos(const rein_pretok *p) { return p->def->add_bos; }

static rein_status push_span(rein_span **spans, size_t *n, size_t *cap, size_t start, size_t len) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        rein_span *s = rein_realloc(*spans, nc * sizeof(**spans));
        if (!s) return REIN_ERR_NOMEM;
        *spans = s;
        *cap = nc;
    }
    (*spans)[(*n)++] = (rein_span){start, len};
    return REIN_OK;
}

/* Cut the piece text[start, start+len) with one regex, appending its pieces at the array's end. */
static rein_status split_one(const pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mctx,
                             const char *text, size_t start, size_t len, rein_span **spans,
                             size_t *n, size_t *cap) {
    const PCRE2_SPTR s = (PCRE2_SPTR)(text + start);
    size_t pos = 0, done = 0; /* search from pos; text before `done` is already emitted */
    while (pos < len) {
        int rc = pcre2_match(re, s, len, pos, 0, md, mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return rein_error(rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT
                                  ? REIN_ERR_NOMEM
                                  : REIN_ERR_INVALID,
                              "pre-tokenizer: regex match failed at byte %zu: %s", start + pos,
                              (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match is no piece: search on from the next character */
            int cl;
            rein_tok_utf8_next(text + start + ms, len - ms, &cl);
            pos = ms + (size_t)cl;
            continue;
        }
        if (ms > done) REIN_TRY(push_span(spans, n, cap, start + done, ms - done));
        REIN_TRY(push_span(spans, n, cap, start + ms, me - ms));
        done = pos = me;
    }
    if (done < len) REIN_TRY(push_span(spans, n, cap, start + done, len - done));
    return REIN_OK;
}

rein_status rein_pretok_split(const rein_pretok *p, const char *text, size_t len, rein_span **spans,
                              size_t *n, size_t *cap) {
    *n = 0;
    if (len == 0) return REIN_OK;
    REIN_TRY(push_span(spans, n, cap, 0, len));
    pcre2_match_data *md = pcre2_match_data_create(1, p->gctx);
    if (!md) return rein_error(REIN_ERR_NOMEM, "out of memory splitting text");
    rein_status st = REIN_OK;
    for (int r = 0; r < p->n_re && st == REIN_OK; r++) {
        /* The current pieces are [0, cur); the new ones are appended after them, then moved
         * down. The array may move while growing, so it is indexed, never pointed into. */
        size_t cur = *n;
        for (size_t i = 0; i < cur && st == REIN_OK; i++) {
            rein_span sp = (*spans)[i];
            st = split_one(p->re[r], md, p->mctx, text, sp.start, sp.len, spans, n, cap);
        }
        if (st == REIN_OK) {
            memmove(*spans, *spans + cur, (*n - cur) * sizeof(**spans));
            *n -= cur;
        }
    }
    pcre2_match_data_free(md);
    return st;
}
