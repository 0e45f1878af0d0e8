/* rewards.c - scorers for RL: regex and length rules, reward models, plug-ins. See rewards.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "train/rewards.h"
#include "base/base.h"
#include "train/reward.h"

#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SC_REGEX, SC_LENGTH, SC_RM, SC_FN } scorer_kind;

typedef struct scorer {
    scorer_kind kind;
    float weight;
    char *spec;                /* as given, for the settings line */
    char name[32];
    pcre2_code *re;            /* SC_REGEX without {answer} */
    char *pattern;             /* SC_REGEX */
    int per_answer;            /* the pattern holds {answer}: compiled per sample */
    double target;             /* SC_LENGTH */
    rein_reward_model *rm;     /* SC_RM */
    int normalise;
    int32_t end_id;            /* SC_RM: appended to responses that never ended */
    rein_reward_fn fn;         /* SC_FN */
    void *ud;
} scorer;

struct rein_scorers {
    scorer *s;
    int n, cap;
    float *tmp;
    int tmp_cap;
};

rein_status rein_scorers_new(rein_scorers **out) {
    *out = rein_calloc(1, sizeof **out);
    return *out ? REIN_OK : REIN_ERR_NOMEM;
}

void rein_scorers_free(rein_scorers *s) {
    if (!s) return;
    for (int k = 0; k < s->n; k++) {
        pcre2_code_free(s->s[k].re);
        rein_free(s->s[k].pattern);
        rein_free(s->s[k].spec);
        rein_rm_free(s->s[k].rm);
    }
    rein_free(s->s);
    rein_free(s->tmp);
    rein_free(s);
}

static scorer *push(rein_scorers *s, scorer_kind kind, const char *name, const char *spec,
                    float weight) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 4;
        scorer *p = rein_realloc(s->s, sizeof *p * (size_t)cap);
        if (!p) return NULL;
        s->s = p;
        s->cap = cap;
    }
    scorer *sc = &s->s[s->n];
    memset(sc, 0, sizeof *sc);
    sc->spec = rein_strdup(spec);
    if (!sc->spec) return NULL;
    sc->kind = kind;
    sc->weight = weight;
    snprintf(sc->name, sizeof sc->name, "%s", name);
    s->n++;
    return sc;
}

static rein_status compile(const char *pattern, const char *spec, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return rein_error(REIN_ERR_INVALID, "reward '%s': bad regular expression at offset %zu: %s",
                          spec, (size_t)off, (const char *)msg);
    }
    return REIN_OK;
}

rein_status rein_scorers_add(rein_scorers *s, const char *spec, float weight,
                             const rein_model *policy) {
    if (!strncmp(spec, "regex:", 6)) {
        const char *pat = spec + 6;
        if (!*pat) return rein_error(REIN_ERR_INVALID, "reward '%s': empty pattern", spec);
        scorer *sc = push(s, SC_REGEX, "regex", spec, weight);
        if (!sc) return REIN_ERR_NOMEM;
        sc->pattern = rein_strdup(pat);
        if (!sc->pattern) return REIN_ERR_NOMEM;
        sc->per_answer = strstr(pat, "{answer}") != NULL;
        if (sc->per_answer) {
            /* check the pattern compiles with an answer in it */
            char *probe = rein_malloc(strlen(pat) + 64);
            if (!probe) return REIN_ERR_NOMEM;
            const char *at = strstr(pat, "{answer}");
            sprintf(probe, "%.*s\\Q0\\E%s", (int)(at - pat), pat, at + 8);
            pcre2_code *re = NULL;
            rein_status st = compile(probe, spec, &re);
            pcre2_code_free(re);
            rein_free(probe);
            return st;
        }
        return compile(pat, spec, &sc->re);
    }
    if (!strncmp(spec, "length:", 7)) {
        char *end;
        double t = strtod(spec + 7, &end);
        if (end == spec + 7 || *end || !(t >= 1) || t > 1e6)
            return rein_error(REIN_ERR_INVALID, "reward '%s': expected length:TARGET with TARGET a "
                              "number of tokens >= 1", spec);
        scorer *sc = push(s, SC_LENGTH, "length", spec, weight);
        if (!sc) return REIN_ERR_NOMEM;
        sc->target = t;
        return REIN_OK;
    }
    if (!strncmp(spec, "rm:", 3)) return rein_scorers_add_rm(s, spec + 3, weight, 1, policy);
    return rein_error(REIN_ERR_INVALID, "reward '%s': expected regex:PATTERN, length:TARGET or "
                      "rm:DIR", spec);
}

rein_status rein_scorers_add_rm(rein_scorers *s, const char *dir, float weight, int normalise,
                                const rein_model *policy) {
    rein_reward_model *rm = NULL;
    REIN_TRY(rein_rm_load(dir, NULL, &rm));
    const rein_tokenizer *a = rein_model_tokenizer(rein_rm_model(rm));
    const rein_tokenizer *b = policy ? rein_model_tokenizer(policy) : a;
    if (!a || !b || rein_tokenizer_n_vocab(a) != rein_tokenizer_n_vocab(b) ||
        rein_token_eot(a) != rein_token_eot(b) || rein_token_eos(a) != rein_token_eos(b)) {
        rein_rm_free(rm);
        return rein_error(REIN_ERR_UNSUPPORTED, "reward model %s: its vocabulary differs from the "
                          "policy's (scoring reads the policy's tokens as they are)", dir);
    }
    char spec[4096];
    snprintf(spec, sizeof spec, "rm:%s", dir);
    scorer *sc = push(s, SC_RM, "rm", spec, weight);
    if (!sc) {
        rein_rm_free(rm);
        return REIN_ERR_NOMEM;
    }
    sc->rm = rm;
    sc->normalise = normalise;
    sc->end_id = rein_token_eot(a) >= 0 ? rein_token_eot(a) : rein_token_eos(a);
    return REIN_OK;
}

rein_status rein_scorers_add_fn(rein_scorers *s, const char *name, rein_reward_fn fn, void *ud,
                                float weight) {
    if (!fn) return rein_error(REIN_ERR_INVALID, "reward plug-in '%s': no function", name);
    scorer *sc = push(s, SC_FN, name, name, weight);
    if (!sc) return REIN_ERR_NOMEM;
    sc->fn = fn;
    sc->ud = ud;
    return REIN_OK;
}

int rein_scorers_count(const rein_scorers *s) {
    return s->n;
}

const char *rein_scorers_name(const rein_scorers *s, int k) {
    return s->s[k].name;
}

void rein_scorers_describe(const rein_scorers *s, rein_buf *out) {
    for (int k = 0; k < s->n; k++)
        rein_buf_appendf(out, "%s%s*%g", k ? " + " : "", s->s[k].spec, s->s[k].weight);
}

/* Whether the response matches; with {answer}, the pattern is built for this sample. */
static rein_status regex_match(const scorer *sc, const rein_rl_sample *x, int *hit) {
    pcre2_code *re = sc->re;
    char *pat = NULL;
    if (sc->per_answer) {
        if (!x->answer)
            return rein_error(REIN_ERR_INVALID, "reward '%s': prompt %d has no \"answer\" field "
                              "for {answer}", sc->spec, x->prompt_index + 1);
        const char *ans = x->answer;
        if (strstr(ans, "\\E"))
            return rein_error(REIN_ERR_INVALID, "prompt %d: its answer contains \\E, which a "
                              "pattern cannot quote", x->prompt_index + 1);
        rein_buf b = {0};
        const char *p = sc->pattern, *at;
        while ((at = strstr(p, "{answer}"))) {
            rein_buf_append(&b, p, (size_t)(at - p));
            rein_buf_appendf(&b, "\\Q%s\\E", ans);
            p = at + 8;
        }
        rein_buf_appendf(&b, "%s", p);
        if (!b.data) return REIN_ERR_NOMEM;
        pat = b.data;
        rein_status st = compile(pat, sc->spec, &re);
        if (st) {
            rein_buf_free(&b);
            return st;
        }
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)x->text, x->text_len, 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    if (sc->per_answer) pcre2_code_free(re);
    rein_free(pat);
    if (!md) return REIN_ERR_NOMEM;
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && rc != PCRE2_ERROR_BADUTFOFFSET && rc > -100)
        rc = PCRE2_ERROR_NOMATCH; /* invalid UTF-8 in a sampled text counts as no match */
    *hit = rc >= 0;
    return REIN_OK;
}

/* A reward model's scores: prompt + response (+ the end token when missing), packed. */
static rein_status rm_scores(const scorer *sc, const rein_rl_sample *x, int n, float *r) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += x[i].n_prompt + x[i].n_ids + 1;
    int32_t *tok = rein_malloc(sizeof(int32_t) * (total ? total : 1));
    int32_t *cu = rein_malloc(sizeof(int32_t) * (size_t)(n + 1));
    if (!tok || !cu) {
        rein_free(tok);
        rein_free(cu);
        return REIN_ERR_NOMEM;
    }
    size_t k = 0;
    cu[0] = 0;
    for (int i = 0; i < n; i++) {
        memcpy(tok + k, x[i].prompt_ids, sizeof(int32_t) * x[i].n_prompt);
        k += x[i].n_prompt;
        memcpy(tok + k, x[i].ids, sizeof(int32_t) * x[i].n_ids);
        k += x[i].n_ids;
        if (!x[i].ended) tok[k++] = sc->end_id;
        cu[i + 1] = (int32_t)k;
    }
    rein_status st = rein_rm_score(sc->rm, tok, cu, n, r);
    if (!st && sc->normalise) {
        float mean, sd;
        rein_rm_norm(sc->rm, &mean, &sd);
        if (!(sd > 0)) sd = 1;
        for (int i = 0; i < n; i++) r[i] = (r[i] - mean) / sd;
    }
    rein_free(tok);
    rein_free(cu);
    return st;
}

rein_status rein_scorers_score(rein_scorers *s, const rein_rl_sample *samples, int n,
                               float *total, double *means) {
    if (s->tmp_cap < n) {
        float *t = rein_realloc(s->tmp, sizeof(float) * (size_t)n);
        if (!t) return REIN_ERR_NOMEM;
        s->tmp = t;
        s->tmp_cap = n;
    }
    for (int i = 0; i < n; i++) total[i] = 0;
    for (int k = 0; k < s->n; k++) {
        scorer *sc = &s->s[k];
        float *r = s->tmp;
        switch (sc->kind) {
        case SC_REGEX:
            for (int i = 0; i < n; i++) {
                int hit = 0;
                REIN_TRY(regex_match(sc, &samples[i], &hit));
                r[i] = (float)hit;
            }
            break;
        case SC_LENGTH:
            for (int i = 0; i < n; i++) {
                double len = (double)samples[i].n_ids - (samples[i].ended ? 1 : 0);
                double v = 1.0 - fabs(len - sc->target) / sc->target;
                r[i] = (float)(v > 0 ? v : 0);
            }
            break;
        case SC_RM: REIN_TRY(rm_scores(sc, samples, n, r)); break;
        case SC_FN:
            for (int i = 0; i < n; i++) r[i] = NAN;
            REIN_TRY(sc->fn(sc->ud, samples, n, r));
            break;
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            total[i] += sc->weight * r[i];
            sum += r[i];
        }
        if (means) means[k] = n ? sum / n : 0;
    }
    return REIN_OK;
}
