/* rl.c - the RL driver: rollouts, scores, reference log-probabilities, and PPO / GRPO / RLOO
 * updates, with metrics, checkpoints and exact resume. See rl.h for the loop and docs/rl.md for
 * the choices.
 *
 * The rollout batch is kept as flat per-token arrays: sequence i's response tokens are
 * [off[i], off[i+1]) of old_logp, ref_logp, values, adv, ret and w. A training forward packs whole
 * sequences (prompt + response without its last token) into chunks of at most ts->cap tokens; the
 * logits of row P-1+j of a sequence with a P-token prompt sample response token j, and the value
 * of that token's state is read at the same row.
 */
#include "train/rl.h"
#include "train/trainer.h"
#include "base/base.h"
#include "formats/safetensors.h"
#include "model/train.h"
#include "train/checkpoint.h"
#include "train/params.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

rein_rl_opts rein_rl_default_opts(rein_rl_algo algo) {
    rein_rl_opts o;
    memset(&o, 0, sizeof o);
    o.algo = algo;
    o.lora = rein_lora_default_params();
    o.adam = rein_adamw_default_params();
    o.adam.lr = algo == REIN_RL_PPO ? 1e-4f : 2e-5f;
    o.schedule = REIN_SCHED_CONSTANT;
    o.clip = 1.0f;
    o.iterations = 100;
    o.n_prompts = algo == REIN_RL_PPO ? 16 : 4;
    o.n_samples = algo == REIN_RL_PPO ? 1 : 8;
    o.max_tokens = 64;
    o.max_prompt_tokens = 256;
    o.sampler = rein_sampler_default_params();
    o.sampler.temperature = 1.0f;
    o.sampler.top_k = 0;
    o.sampler.top_p = 1.0f;
    o.sampler.min_p = 0.0f;
    o.sampler.repeat_penalty = 1.0f;
    o.no_eos_penalty = 0.0f;
    o.epochs = algo == REIN_RL_PPO ? 4 : 1;
    o.minibatches = 1;
    o.batch_tokens = 2048;
    o.clip_eps = 0.2f;
    o.clip_v = 0.2f;
    o.vf_coef = 0.1f;
    o.gamma = 1.0f;
    o.lam = 0.95f;
    o.whiten_adv = 1;
    o.scale_std = 1;
    o.kl_coef = algo == REIN_RL_PPO ? 0.05f : 0.0f;
    o.kl_target = 0;
    o.kl_horizon = 10000;
    o.kl_est = algo == REIN_RL_PPO ? REIN_KL_K1 : REIN_KL_K3;
    o.kl_alarm_lower = 1;
    o.seed = 42;
    o.save_every = 10;
    o.max_bad_steps = 5;
    o.eval_every = 0;
    return o;
}

const char *rein_rl_algo_name(rein_rl_algo a) {
    return a == REIN_RL_PPO ? "ppo" : a == REIN_RL_GRPO ? "grpo" : "rloo";
}

/* splitmix64: seeds for (seed, iteration, epoch) that do not overlap */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void shuffle(int *a, int n, uint64_t seed) {
    rein_rng rng;
    rein_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) a[i] = i;
    for (int i = n; i > 1; i--) {
        int j = (int)(rein_rng_u64(&rng) % (uint64_t)i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

typedef struct rl_run {
    const rein_rl_opts *o;
    rein_model *m;
    const rein_rl_prompts *ps;
    rein_scorers *sc;
    rein_train_state *ts;
    int dim, ppo;
    /* the value head (PPO) and the controller's state, as parameter spans */
    float *vh;              /* w (dim), b (1), dw (dim), db (1) */
    float state[2];         /* kl_coef, lr_scale */
    float state_g[2];       /* always 0: AdamW leaves the span as it is */
    rein_param_list pl;
    int n_model_spans;
    rein_adamw opt;
    /* the prompt order of the current pass */
    int *order;
    int64_t order_pass;
    /* the rollout batch */
    int B;                  /* N * G */
    rein_kv_cache *kv;
    rein_generate_result *res; /* (B) */
    int *prompt_of;         /* (B) */
    int64_t *off;           /* (B + 1) */
    int *perm;              /* (B) */
    float *old_logp, *ref_logp, *values, *adv, *ret, *w, *tok_reward; /* (B * max_tokens) */
    float *scores, *seq_adv; /* (B) */
    double *scorer_means;   /* (scorers) */
    rein_rl_sample *samples; /* (B) */
    /* one chunk */
    int32_t *tokens, *targets, *cu; /* (cap), (cap), (cap + 1) */
    float *logp, *dlogp, *v, *dv;   /* (cap) */
    int *chunk_seq, *chunk_row0;    /* (cap) sequence and first response row of each packed seq */
    /* this iteration's update statistics */
    rein_ppo_loss_stats pg, vf;
    double n_tok_seen, kl_term, grad_norm_sum;
    int n_updates;
} rl_run;

/* Response length in tokens fed to the model (R) and the input length of sequence i. */
static int resp_len(const rl_run *r, int i) {
    return (int)r->res[i].ids.n;
}

static int input_len(const rl_run *r, int i) {
    return resp_len(r, i) ? (int)r->ps->p[r->prompt_of[i]].n + resp_len(r, i) - 1 : 0;
}

/* Pack sequences seqs[*pos..] into the chunk buffers while they fit; returns how many. */
static int pack_chunk(rl_run *r, const int *seqs, int n, int *pos) {
    int k = 0, used = 0;
    r->cu[0] = 0;
    while (*pos < n) {
        int i = seqs[*pos];
        int L = input_len(r, i);
        if (L == 0) {
            (*pos)++;
            continue;
        }
        if (k > 0 && used + L > r->ts->cap) break;
        const rein_rl_prompt *p = &r->ps->p[r->prompt_of[i]];
        int R = resp_len(r, i);
        memcpy(r->tokens + used, p->ids, sizeof(int32_t) * p->n);
        memcpy(r->tokens + used + p->n, r->res[i].ids.ids, sizeof(int32_t) * (size_t)(R - 1));
        for (int t = 0; t < L; t++) r->targets[used + t] = -1;
        int row0 = used + (int)p->n - 1;
        for (int j = 0; j < R; j++) r->targets[row0 + j] = r->res[i].ids.ids[j];
        r->chunk_seq[k] = i;
        r->chunk_row0[k] = row0;
        used += L;
        r->cu[++k] = used;
        (*pos)++;
    }
    return k;
}

static void value_forward(const rl_run *r, int T, float *v) {
    const float *w = r->vh, b = r->vh[r->dim];
    for (int t = 0; t < T; t++) {
        const float *x = r->ts->xf + (int64_t)t * r->dim;
        double acc = b;
        for (int d = 0; d < r->dim; d++) acc += (double)w[d] * x[d];
        v[t] = (float)acc;
    }
}

/* dxf[t] += dv[t] w; dw += dv[t] xf[t]; db += dv[t] (dv already scaled by vf_coef). */
static void value_backward(rl_run *r, int T, const float *dv) {
    const int D = r->dim;
    float *w = r->vh, *dw = r->vh + D + 1, *db = dw + D;
    for (int t = 0; t < T; t++) {
        if (dv[t] == 0) continue;
        const float *x = r->ts->xf + (int64_t)t * D;
        float *dx = r->ts->dxf + (int64_t)t * D;
        for (int d = 0; d < D; d++) {
            dx[d] += dv[t] * w[d];
            dw[d] += dv[t] * x[d];
        }
        *db += dv[t];
    }
}

/* A forward without gradients over the response tokens of seqs: logp into dst (flat), and the
 * values into vdst when not NULL. */
static rein_status score_pass(rl_run *r, const int *seqs, int n, float *dst, float *vdst) {
    int pos = 0;
    while (pos < n) {
        int k = pack_chunk(r, seqs, n, &pos);
        if (k == 0) break;
        REIN_TRY(rein_train_forward(r->m, r->ts, r->tokens, r->cu, k));
        REIN_TRY(rein_lm_head_logprobs(r->m, r->ts, r->targets, r->logp));
        if (vdst) value_forward(r, r->cu[k], r->v);
        for (int s = 0; s < k; s++) {
            int i = r->chunk_seq[s], R = resp_len(r, i);
            memcpy(dst + r->off[i], r->logp + r->chunk_row0[s], sizeof(float) * (size_t)R);
            if (vdst) memcpy(vdst + r->off[i], r->v + r->chunk_row0[s], sizeof(float) * (size_t)R);
        }
    }
    return REIN_OK;
}

/* Reference log-probabilities: the same pass with the adapter off. */
static rein_status ref_pass(rl_run *r, const int *seqs, int n, float *dst) {
    rein_lora_set_enabled(r->m, 0);
    rein_status st = score_pass(r, seqs, n, dst, NULL);
    rein_lora_set_enabled(r->m, 1);
    return st;
}

/* Forward and backward of one minibatch's sequences; gradients accumulate. */
static rein_status update_pass(rl_run *r, const int *seqs, int n) {
    const rein_rl_opts *o = r->o;
    int pos = 0;
    while (pos < n) {
        int k = pack_chunk(r, seqs, n, &pos);
        if (k == 0) break;
        int T = r->cu[k];
        REIN_TRY(rein_train_forward(r->m, r->ts, r->tokens, r->cu, k));
        REIN_TRY(rein_lm_head_logprobs(r->m, r->ts, r->targets, r->logp));
        memset(r->dlogp, 0, sizeof(float) * (size_t)T);
        if (r->ppo) {
            value_forward(r, T, r->v);
            memset(r->dv, 0, sizeof(float) * (size_t)T);
        }
        for (int s = 0; s < k; s++) {
            int i = r->chunk_seq[s], R = resp_len(r, i);
            int64_t f = r->off[i];
            int row = r->chunk_row0[s];
            if (!r->ppo && o->epochs == 1 && o->minibatches == 1)
                /* one step on fresh samples: the old policy is the current one, exactly */
                memcpy(r->old_logp + f, r->logp + row, sizeof(float) * (size_t)R);
            rein_ppo_policy_loss(r->logp + row, r->old_logp + f, r->adv + f, r->w + f, R,
                                 o->clip_eps, r->dlogp + row, &r->pg);
            if (r->ppo)
                rein_ppo_value_loss(r->v + row, r->values + f, r->ret + f, r->w + f, R, o->clip_v,
                                    r->dv + row, &r->vf);
            else if (o->kl_coef > 0)
                for (int j = 0; j < R; j++) {
                    float lp = r->logp[row + j], rf = r->ref_logp[f + j];
                    r->kl_term += r->w[f + j] * o->kl_coef * rein_kl_estimate(o->kl_est, lp, rf);
                    r->dlogp[row + j] +=
                        r->w[f + j] * o->kl_coef * rein_kl_estimate_grad(o->kl_est, lp, rf);
                }
            r->n_tok_seen += R;
        }
        REIN_TRY(rein_lm_head_backward(r->m, r->ts, r->targets, r->dlogp));
        if (r->ppo) {
            for (int t = 0; t < T; t++) r->dv[t] *= o->vf_coef;
            value_backward(r, T, r->dv);
        }
        REIN_TRY(rein_train_backward(r->m, r->ts));
    }
    return REIN_OK;
}

/* Token weights of a minibatch: PPO a mean over its tokens; GRPO/RLOO a mean of the samples'
 * token means. */
static void set_weights(rl_run *r, const int *seqs, int n) {
    int64_t ntok = 0;
    for (int k = 0; k < n; k++) ntok += resp_len(r, seqs[k]);
    for (int k = 0; k < n; k++) {
        int i = seqs[k], R = resp_len(r, i);
        float wt = r->ppo ? (ntok ? 1.0f / (float)ntok : 0.0f)
                          : (R ? 1.0f / ((float)n * (float)R) : 0.0f);
        for (int j = 0; j < R; j++) r->w[r->off[i] + j] = wt;
    }
}

static rein_status chunk_alloc(rl_run *r, int cap) {
    r->tokens = rein_malloc(sizeof(int32_t) * (size_t)cap);
    r->targets = rein_malloc(sizeof(int32_t) * (size_t)cap);
    r->cu = rein_malloc(sizeof(int32_t) * (size_t)(cap + 1));
    float **cf[] = {&r->logp, &r->dlogp, &r->v, &r->dv};
    for (size_t i = 0; i < sizeof cf / sizeof *cf; i++)
        *cf[i] = rein_malloc(sizeof(float) * (size_t)cap);
    r->chunk_seq = rein_malloc(sizeof(int) * (size_t)cap);
    r->chunk_row0 = rein_malloc(sizeof(int) * (size_t)cap);
    return r->tokens && r->targets && r->cu && r->logp && r->dlogp && r->v && r->dv &&
           r->chunk_seq && r->chunk_row0 ? REIN_OK : REIN_ERR_NOMEM;
}

static void chunk_free(rl_run *r) {
    void *bufs[] = {r->tokens, r->targets, r->cu, r->logp, r->dlogp, r->v, r->dv, r->chunk_seq,
                    r->chunk_row0};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) rein_free(bufs[i]);
}

rein_status rein_rl_loss_grad(rein_model *m, rein_train_state *ts, const rein_rl_opts *o, int n,
                              const int32_t *const *prompt, const size_t *n_prompt,
                              const int32_t *const *resp, const int *n_resp, const float *old_logp,
                              const float *ref_logp, const float *old_values, const float *adv,
                              const float *ret, float *vh, double *loss) {
    rl_run run, *r = &run;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->m = m;
    r->ts = ts;
    r->dim = rein_model_get_config(m)->dim;
    r->ppo = o->algo == REIN_RL_PPO;
    r->vh = vh;
    r->B = n;
    rein_rl_prompts ps = {0};
    ps.n = (size_t)n;
    ps.p = rein_calloc((size_t)n, sizeof *ps.p);
    r->ps = &ps;
    r->res = rein_calloc((size_t)n, sizeof *r->res);
    r->prompt_of = rein_malloc(sizeof(int) * (size_t)n);
    r->off = rein_malloc(sizeof(int64_t) * (size_t)(n + 1));
    int *seqs = rein_malloc(sizeof(int) * (size_t)n);
    rein_status st = chunk_alloc(r, ts->cap);
    if (!ps.p || !r->res || !r->prompt_of || !r->off || !seqs) st = REIN_ERR_NOMEM;
    if (!st) {
        r->off[0] = 0;
        for (int i = 0; i < n; i++) {
            ps.p[i].ids = (int32_t *)prompt[i];
            ps.p[i].n = n_prompt[i];
            r->res[i].ids.ids = (int32_t *)resp[i];
            r->res[i].ids.n = (size_t)n_resp[i];
            r->prompt_of[i] = seqs[i] = i;
            r->off[i + 1] = r->off[i] + n_resp[i];
        }
        size_t NT = (size_t)r->off[n] + 1;
        r->old_logp = rein_malloc(sizeof(float) * NT);
        r->w = rein_malloc(sizeof(float) * NT);
        if (!r->old_logp || !r->w) st = REIN_ERR_NOMEM;
    }
    if (!st) {
        memcpy(r->old_logp, old_logp, sizeof(float) * (size_t)r->off[n]);
        r->ref_logp = (float *)ref_logp;
        r->values = (float *)old_values;
        r->adv = (float *)adv;
        r->ret = (float *)ret;
        set_weights(r, seqs, n);
        st = update_pass(r, seqs, n);
        *loss = r->pg.loss + r->vf.loss * o->vf_coef + r->kl_term;
    }
    chunk_free(r);
    rein_free(ps.p);
    rein_free(r->res);
    rein_free(r->prompt_of);
    rein_free(r->off);
    rein_free(seqs);
    rein_free(r->old_logp);
    rein_free(r->w);
    return st;
}

/* The prompt at position idx of the endless sequence of seeded passes over the prompt set. */
static int prompt_at(rl_run *r, int64_t idx) {
    int n = (int)r->ps->n;
    int64_t pass = idx / n;
    if (pass != r->order_pass) {
        shuffle(r->order, n, mix64(r->o->seed * 0x2545f4914f6cdd1dULL + (uint64_t)pass + 7));
        r->order_pass = pass;
    }
    return r->order[idx % n];
}

static void json_str(rein_buf *b, const char *s) {
    rein_buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') rein_buf_appendf(b, "\\%c", c);
        else if (c == '\n') rein_buf_append(b, "\\n", 2);
        else if (c == '\t') rein_buf_append(b, "\\t", 2);
        else if (c < 0x20) rein_buf_appendf(b, "\\u%04x", c);
        else rein_buf_append(b, s, 1);
    }
    rein_buf_append(b, "\"", 1);
}

static void fill_samples(rl_run *r, int n) {
    for (int i = 0; i < n; i++) {
        const rein_rl_prompt *p = &r->ps->p[r->prompt_of[i]];
        rein_rl_sample *x = &r->samples[i];
        x->prompt_index = p->line - 1;
        x->answer = p->answer;
        x->prompt_ids = p->ids;
        x->n_prompt = p->n;
        x->ids = r->res[i].ids.ids;
        x->n_ids = r->res[i].ids.n;
        x->text = r->res[i].text.data ? r->res[i].text.data : "";
        x->text_len = r->res[i].text.len;
        x->ended = r->res[i].stop == REIN_STOP_EOG;
    }
}

/* Greedy answers to the evaluation prompts: mean score, length, end rate, KL to the reference;
 * the answers go to out_dir/eval_<iter>.jsonl. Uses the rollout buffers (and restores nothing:
 * it runs between iterations). */
static rein_status evaluate(rl_run *r, int64_t iter, rein_buf *line) {
    const rein_rl_opts *o = r->o;
    const rein_rl_prompts *ev = o->eval;
    int n_eval = o->eval_n > 0 && (size_t)o->eval_n < ev->n ? o->eval_n : (int)ev->n;
    const rein_rl_prompts *saved = r->ps;
    r->ps = ev;
    rein_generate_params gp = rein_generate_default_params();
    gp.sampler = o->sampler;
    gp.sampler.temperature = 0;
    gp.max_tokens = o->max_tokens;
    double sum_score = 0, sum_len = 0, sum_eos = 0, sum_kl = 0;
    rein_buf out = {0};
    rein_status st = REIN_OK;
    int *seqs = r->perm;
    for (int b0 = 0; !st && b0 < n_eval; b0 += r->B) {
        int nb = REIN_MIN(r->B, n_eval - b0);
        const int32_t *pp[nb];
        size_t pn[nb];
        for (int i = 0; i < nb; i++) {
            r->prompt_of[i] = b0 + i;
            pp[i] = ev->p[b0 + i].ids;
            pn[i] = ev->p[b0 + i].n;
            rein_generate_result_free(&r->res[i]);
        }
        st = rein_generate_batch(r->m, r->kv, pp, pn, nb, 1, &gp, r->res);
        if (st) break;
        r->off[0] = 0;
        for (int i = 0; i < nb; i++) r->off[i + 1] = r->off[i] + resp_len(r, i);
        for (int i = 0; i < nb; i++) seqs[i] = i;
        st = ref_pass(r, seqs, nb, r->ref_logp);
        if (st) break;
        fill_samples(r, nb);
        st = rein_scorers_score(r->sc, r->samples, nb, r->scores, NULL);
        for (int i = 0; !st && i < nb; i++) {
            const rein_generate_result *g = &r->res[i];
            int ended = g->stop == REIN_STOP_EOG;
            double kl = 0;
            for (size_t j = 0; j < g->ids.n; j++) kl += g->logprobs[j] - r->ref_logp[r->off[i] + j];
            float score = r->scores[i] + (ended ? 0 : o->no_eos_penalty);
            sum_score += score;
            sum_len += (double)g->ids.n - ended;
            sum_eos += ended;
            sum_kl += kl;
            rein_buf_appendf(&out, "{\"line\":%d,\"prompt\":", ev->p[b0 + i].line);
            json_str(&out, ev->p[b0 + i].text);
            rein_buf_appendf(&out, ",\"response\":");
            json_str(&out, g->text.data ? g->text.data : "");
            rein_buf_appendf(&out, ",\"score\":%.6g,\"tokens\":%d,\"ended\":%d,\"kl\":%.6g}\n",
                             score, (int)g->ids.n - ended, ended, kl);
        }
    }
    r->ps = saved;
    if (!st) {
        char path[4096];
        snprintf(path, sizeof path, "%s/eval_%04lld.jsonl", o->out_dir, (long long)iter);
        rein_atomic_file af;
        st = rein_atomic_open(&af, path);
        if (!st) {
            if (out.len) fwrite(out.data, 1, out.len, af.fp);
            st = rein_atomic_commit(&af);
        }
    }
    rein_buf_free(&out);
    if (!st) {
        rein_buf_clear(line);
        rein_buf_appendf(line, "{\"step\":%lld,\"eval_reward\":%.6f,\"eval_len\":%.2f,"
                         "\"eval_eos_rate\":%.4f,\"eval_kl\":%.6f,\"eval_n\":%d}",
                         (long long)iter, sum_score / n_eval, sum_len / n_eval, sum_eos / n_eval,
                         sum_kl / n_eval, n_eval);
        st = rein_metrics_append(o->out_dir, line->data);
        if (!st && !o->quiet)
            fprintf(stderr, "rein: iteration %lld: eval reward %.4f, length %.1f, eos %.2f, kl %.4f "
                    "(%d prompts)\n", (long long)iter, sum_score / n_eval, sum_len / n_eval,
                    sum_eos / n_eval, sum_kl / n_eval, n_eval);
    }
    return st;
}

static void run_free(rl_run *r) {
    if (r->res)
        for (int i = 0; i < r->B; i++) rein_generate_result_free(&r->res[i]);
    rein_free(r->res);
    rein_kv_cache_free(r->kv);
    rein_train_state_free(r->ts);
    rein_params_free(&r->pl);
    rein_adamw_free(&r->opt);
    void *bufs[] = {r->vh, r->order, r->prompt_of, r->off, r->perm, r->old_logp, r->ref_logp,
                    r->values, r->adv, r->ret, r->w, r->tok_reward, r->scores, r->seq_adv,
                    r->scorer_means, r->samples, r->tokens, r->targets, r->cu, r->logp,
                    r->dlogp, r->v, r->dv, r->chunk_seq, r->chunk_row0};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) rein_free(bufs[i]);
}

static rein_status run_alloc(rl_run *r) {
    const rein_rl_opts *o = r->o;
    int cap = REIN_MAX(o->batch_tokens, o->max_prompt_tokens + o->max_tokens);
    r->B = o->n_prompts * o->n_samples;
    size_t B = (size_t)r->B, NT = B * (size_t)o->max_tokens;
    REIN_TRY(rein_train_state_new(r->m, cap, 0, &r->ts));
    REIN_TRY(rein_kv_cache_new(r->m, r->B, o->max_prompt_tokens + o->max_tokens + 1, &r->kv));
    r->res = rein_calloc(B, sizeof *r->res);
    r->order = rein_malloc(sizeof(int) * r->ps->n);
    r->prompt_of = rein_malloc(sizeof(int) * B);
    r->off = rein_malloc(sizeof(int64_t) * (B + 1));
    r->perm = rein_malloc(sizeof(int) * B);
    float **fl[] = {&r->old_logp, &r->ref_logp, &r->values, &r->adv, &r->ret, &r->w,
                    &r->tok_reward};
    for (size_t i = 0; i < sizeof fl / sizeof *fl; i++) *fl[i] = rein_malloc(sizeof(float) * NT);
    r->scores = rein_malloc(sizeof(float) * B);
    r->seq_adv = rein_malloc(sizeof(float) * B);
    r->scorer_means = rein_calloc((size_t)rein_scorers_count(r->sc) + 1, sizeof(double));
    r->samples = rein_calloc(B, sizeof *r->samples);
    REIN_TRY(chunk_alloc(r, cap));
    r->vh = rein_calloc((size_t)2 * (r->dim + 1), sizeof(float));
    if (!r->res || !r->order || !r->prompt_of || !r->off || !r->perm || !r->old_logp ||
        !r->ref_logp || !r->values || !r->adv || !r->ret || !r->w || !r->tok_reward || !r->scores ||
        !r->seq_adv || !r->scorer_means || !r->samples || !r->tokens || !r->targets || !r->cu ||
        !r->logp || !r->dlogp || !r->v || !r->dv || !r->chunk_seq || !r->chunk_row0 || !r->vh)
        return REIN_ERR_NOMEM;
    r->order_pass = -1;
    return REIN_OK;
}

static rein_status check_opts(const rein_rl_opts *o, const rein_rl_prompts *ps) {
    if (!o->out_dir) return rein_error(REIN_ERR_INVALID, "no run folder (--out)");
    if (!ps || ps->n == 0) return rein_error(REIN_ERR_INVALID, "no prompts");
    if (o->n_prompts < 1 || o->n_samples < 1 || o->max_tokens < 1 || o->iterations < 1 ||
        o->epochs < 1 || o->minibatches < 1)
        return rein_error(REIN_ERR_INVALID, "prompts per iteration, samples, max tokens, iterations, "
                          "epochs and minibatches must all be >= 1");
    if (o->algo != REIN_RL_PPO && o->n_samples < 2)
        return rein_error(REIN_ERR_INVALID, "%s compares the samples of a prompt: --samples must be "
                          ">= 2", rein_rl_algo_name(o->algo));
    if (o->minibatches > o->n_prompts * o->n_samples)
        return rein_error(REIN_ERR_INVALID, "--minibatches %d is more than the %d sequences of a "
                          "rollout", o->minibatches, o->n_prompts * o->n_samples);
    for (size_t i = 0; i < ps->n; i++)
        if ((int64_t)ps->p[i].n > o->max_prompt_tokens)
            return rein_error(REIN_ERR_RANGE, "prompt at line %d has %zu tokens, more than "
                              "--max-prompt-tokens %d", ps->p[i].line, ps->p[i].n,
                              o->max_prompt_tokens);
    if (o->eval)
        for (size_t i = 0; i < o->eval->n; i++)
            if ((int64_t)o->eval->p[i].n > o->max_prompt_tokens)
                return rein_error(REIN_ERR_RANGE, "evaluation prompt at line %d has %zu tokens, "
                                  "more than --max-prompt-tokens %d", o->eval->p[i].line,
                                  o->eval->p[i].n, o->max_prompt_tokens);
    return REIN_OK;
}

static void settings(const rl_run *r, char *out, size_t n) {
    const rein_rl_opts *o = r->o;
    rein_buf sc = {0};
    rein_scorers_describe(r->sc, &sc);
    snprintf(out, n,
             "algo=%s params=%lld lora r=%d alpha=%g targets=0x%x seed=%llu lr=%g betas=%g,%g "
             "eps=%g wd=%g schedule=%d clip=%g iterations=%lld prompts=%d samples=%d "
             "max_tokens=%d max_prompt=%d temp=%g top_k=%d top_p=%g min_p=%g rep=%g no_eos=%g "
             "epochs=%d minibatches=%d batch_tokens=%d clip_eps=%g clip_v=%g vf=%g gamma=%g "
             "lam=%g whiten=%d scale_std=%d kl=%g target=%g horizon=%g est=%d kl_max=%g lower=%d "
             "rewards=%s",
             rein_rl_algo_name(o->algo), (long long)rein_model_n_params(r->m), o->lora.rank,
             o->lora.alpha, o->lora.targets, (unsigned long long)o->lora.seed, o->adam.lr,
             o->adam.beta1, o->adam.beta2, o->adam.eps, o->adam.weight_decay, (int)o->schedule,
             o->clip, (long long)o->iterations, o->n_prompts, o->n_samples, o->max_tokens,
             o->max_prompt_tokens, o->sampler.temperature, o->sampler.top_k, o->sampler.top_p,
             o->sampler.min_p, o->sampler.repeat_penalty, o->no_eos_penalty, o->epochs,
             o->minibatches, o->batch_tokens, o->clip_eps, o->clip_v, o->vf_coef, o->gamma, o->lam,
             o->whiten_adv, o->scale_std, o->kl_coef, o->kl_target, o->kl_horizon, (int)o->kl_est,
             o->kl_max, o->kl_alarm_lower, sc.data ? sc.data : "");
    rein_buf_free(&sc);
}

rein_status rein_rl_run(rein_model *m, const rein_rl_opts *o, const rein_rl_prompts *prompts,
                        rein_scorers *sc, rein_rl_report *report) {
    REIN_TRY(check_opts(o, prompts));
    if (report) memset(report, 0, sizeof *report);
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
        return rein_error(REIN_ERR_IO, "%s: cannot create the run folder: %s", o->out_dir,
                          strerror(errno));
    char ckpt_path[4096], path[4096];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", o->out_dir);
    int have_ckpt = access(ckpt_path, F_OK) == 0;
    if (have_ckpt && !o->resume)
        return rein_error(REIN_ERR_INVALID, "%s already holds a run (checkpoint.bin): pass --resume "
                          "to continue it, or choose another --out", o->out_dir);

    rl_run run, *r = &run;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->m = m;
    r->ps = prompts;
    r->sc = sc;
    r->dim = rein_model_get_config(m)->dim;
    r->ppo = o->algo == REIN_RL_PPO;
    r->state[0] = o->kl_coef;
    r->state[1] = 1.0f;
    rein_status st = rein_lora_attach(m, &o->lora);
    if (!st) st = run_alloc(r);
    if (!st) st = rein_train_param_list(m, r->ts, &r->pl);
    r->n_model_spans = r->pl.n;
    if (!st && r->ppo) {
        st = rein_params_add(&r->pl, "value_head.weight", r->vh, r->vh + r->dim + 1, r->dim, 0);
        if (!st) st = rein_params_add(&r->pl, "value_head.bias", r->vh + r->dim,
                                      r->vh + 2 * r->dim + 1, 1, 0);
    }
    if (!st) st = rein_params_add(&r->pl, "rl.state", r->state, r->state_g, 2, 0);
    if (!st) st = rein_adamw_init(&r->opt, r->pl.total);

    rein_ckpt_state cs, want;
    memset(&want, 0, sizeof want);
    snprintf(want.kind, sizeof want.kind, "%s", rein_rl_algo_name(o->algo));
    settings(r, want.config, sizeof want.config);
    uint64_t h = REIN_FNV_INIT;
    for (size_t i = 0; i < prompts->n; i++) {
        h = rein_fnv1a(h, prompts->p[i].ids, sizeof(int32_t) * prompts->p[i].n);
        if (prompts->p[i].answer)
            h = rein_fnv1a(h, prompts->p[i].answer, strlen(prompts->p[i].answer) + 1);
    }
    want.data_hash = h;
    want.layout_hash = rein_param_layout_hash(&r->pl);
    if (!st && have_ckpt) {
        st = rein_ckpt_load(ckpt_path, &want, &cs, &r->pl, &r->opt);
        if (!st && !o->quiet)
            fprintf(stderr, "rein: resuming %s from iteration %lld\n", o->out_dir,
                    (long long)cs.step);
    } else if (!st) {
        cs = want;
        rein_rng_seed(&cs.rng, o->seed);
        snprintf(path, sizeof path, "%s/settings.txt", o->out_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%s\n", want.config);
            fclose(f);
        }
    }

    const int N = o->n_prompts, G = o->n_samples, B = N * G;
    int64_t total_steps = o->iterations * o->epochs * o->minibatches;
    rein_progress prog;
    rein_progress_init(&prog, rein_rl_algo_name(o->algo), o->iterations, o->plain_log);
    prog.plain_every_s = 10;
    double t_start = rein_time_now();
    rein_buf line = {0};
    if (!st && o->eval && cs.step == 0) st = evaluate(r, 0, &line);

    while (!st && cs.step < o->iterations) {
        const int64_t it = cs.step; /* 0-based iteration being run */
        double t0 = rein_time_now();
        /* 1. prompts */
        const int32_t *pp[N];
        size_t pn[N];
        for (int j = 0; j < N; j++) {
            int pi = prompt_at(r, it * N + j);
            pp[j] = prompts->p[pi].ids;
            pn[j] = prompts->p[pi].n;
            for (int g = 0; g < G; g++) r->prompt_of[j * G + g] = pi;
        }
        /* 2. rollout */
        rein_generate_params gp = rein_generate_default_params();
        gp.sampler = o->sampler;
        gp.sampler.seed = mix64(o->seed ^ mix64((uint64_t)it + 1));
        gp.max_tokens = o->max_tokens;
        for (int i = 0; i < B; i++) rein_generate_result_free(&r->res[i]);
        st = rein_generate_batch(m, r->kv, pp, pn, N, G, &gp, r->res);
        if (st) break;
        if (rein_test_hook("REIN_TEST_KILL_IN_ROLLOUT", it + 1)) raise(SIGKILL); /* tests */
        double t1 = rein_time_now();
        int64_t n_gen = 0;
        r->off[0] = 0;
        for (int i = 0; i < B; i++) {
            r->off[i + 1] = r->off[i] + resp_len(r, i);
            n_gen += resp_len(r, i);
        }
        const int64_t NT = r->off[B];
        /* 3. scores */
        fill_samples(r, B);
        st = rein_scorers_score(sc, r->samples, B, r->scores, r->scorer_means);
        if (st) break;
        double mean_score = 0, mean_len = 0, eos = 0, score_sd = 0;
        int bad_scores = 0;
        for (int i = 0; i < B; i++) {
            int ended = r->samples[i].ended;
            if (!ended) r->scores[i] += o->no_eos_penalty;
            bad_scores |= !isfinite(r->scores[i]);
            mean_score += r->scores[i];
            mean_len += (double)resp_len(r, i) - ended;
            eos += ended;
        }
        mean_score /= B;
        mean_len /= B;
        eos /= B;
        for (int i = 0; i < B; i++) score_sd += (r->scores[i] - mean_score) * (r->scores[i] - mean_score);
        score_sd = sqrt(score_sd / B);
        double t2 = rein_time_now();
        /* 4. reference log-probs; PPO: old log-probs and values from the policy */
        for (int i = 0; i < B; i++) r->perm[i] = i;
        st = ref_pass(r, r->perm, B, r->ref_logp);
        if (st) break;
        double t3 = rein_time_now();
        double logp_gap = 0;
        if (r->ppo) {
            st = score_pass(r, r->perm, B, r->old_logp, r->values);
            if (st) break;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < resp_len(r, i); j++)
                    logp_gap = fmax(logp_gap, fabs((double)r->old_logp[r->off[i] + j] -
                                                   r->res[i].logprobs[j]));
        } else {
            for (int i = 0; i < B; i++)
                memcpy(r->old_logp + r->off[i], r->res[i].logprobs,
                       sizeof(float) * (size_t)resp_len(r, i));
        }
        double t4 = rein_time_now();
        /* KL to the reference per sequence (k1 summed over its tokens, as TRL's objective/kl) */
        double kl = 0, non_score = 0;
        for (int64_t t = 0; t < NT; t++) kl += (double)r->old_logp[t] - r->ref_logp[t];
        kl /= B;
        /* 5. advantages */
        double ev = 0;
        if (r->ppo) {
            float coef = r->state[0];
            for (int i = 0; i < B; i++) {
                int R = resp_len(r, i);
                float *rw = r->tok_reward + r->off[i];
                for (int j = 0; j < R; j++) {
                    rw[j] = -coef * rein_kl_estimate(o->kl_est, r->old_logp[r->off[i] + j],
                                                     r->ref_logp[r->off[i] + j]);
                    non_score += rw[j];
                }
                if (R > 0) rw[R - 1] += r->scores[i];
                rein_ppo_gae(rw, r->values + r->off[i], R, o->gamma, o->lam, r->adv + r->off[i],
                             r->ret + r->off[i]);
            }
            non_score /= B;
            ev = rein_explained_variance(r->values, r->ret, NT);
            if (o->whiten_adv) rein_ppo_whiten(r->adv, NT, 1);
        } else {
            rein_group_advantages(o->algo == REIN_RL_GRPO ? REIN_ADV_GRPO : REIN_ADV_RLOO,
                                  r->scores, N, G, o->scale_std, r->seq_adv);
            for (int i = 0; i < B; i++)
                for (int64_t t = r->off[i]; t < r->off[i + 1]; t++) r->adv[t] = r->seq_adv[i];
        }
        /* the KL alarm */
        int alarm = o->kl_max > 0 && kl > o->kl_max;
        if (alarm && o->kl_alarm_lower) r->state[1] *= 0.5f;
        /* 6. update */
        memset(&r->pg, 0, sizeof r->pg);
        memset(&r->vf, 0, sizeof r->vf);
        r->n_tok_seen = r->kl_term = r->grad_norm_sum = 0;
        r->n_updates = 0;
        int bad_iter = bad_scores, skipped_here = 0;
        float lr = 0;
        for (int e = 0; !st && !bad_iter && !(alarm && !o->kl_alarm_lower) && e < o->epochs; e++) {
            shuffle(r->perm, B, mix64(o->seed * 0x9e3779b97f4a7c15ULL ^ mix64((uint64_t)it * 1000 + e)));
            for (int mb = 0; !st && mb < o->minibatches; mb++) {
                int a = mb * B / o->minibatches, b = (mb + 1) * B / o->minibatches;
                const int *seqs = r->perm + a;
                int n = b - a;
                set_weights(r, seqs, n);
                rein_train_zero_grads(m, r->ts);
                for (int s = r->n_model_spans; s < r->pl.n; s++)
                    memset(r->pl.spans[s].g, 0, sizeof(float) * (size_t)r->pl.spans[s].n);
                double loss0 = r->pg.loss + r->vf.loss + r->kl_term;
                st = update_pass(r, seqs, n);
                if (st == REIN_ERR_NUMERIC) st = REIN_OK;
                if (st) break;
                if (rein_test_hook("REIN_TEST_NAN_STEPS", it + 1) && e == 0 && mb == 0)
                    r->pl.spans[0].g[0] = NAN; /* tests: poison this update */
                double dl = r->pg.loss + r->vf.loss + r->kl_term - loss0;
                int64_t step_no = ((it * o->epochs) + e) * o->minibatches + mb;
                lr = rein_lr_at(o->schedule, o->adam.lr, step_no, 0, total_steps) * r->state[1];
                float gscale; /* a non-finite norm: a bad gradient */
                double norm = rein_grad_clip_scale(&r->pl, o->clip, &gscale);
                if (!isfinite(dl) || !isfinite(norm)) {
                    bad_iter = 1;
                    skipped_here++;
                    break;
                }
                r->grad_norm_sum += norm;
                rein_adamw_step_scaled(&r->opt, &r->pl, &o->adam, lr, gscale);
                r->n_updates++;
            }
        }
        if (st) break;
        if (bad_iter) {
            cs.n_skipped++;
            cs.bad_streak++;
        } else {
            cs.bad_streak = 0;
        }
        /* the controller sees this batch's KL */
        float coef_used = r->state[0];
        if (r->ppo && !bad_iter) r->state[0] = rein_kl_coef_update(r->state[0], kl, o->kl_target,
                                                                 o->kl_horizon, B);
        cs.step++;
        double t5 = rein_time_now();
        double nt = r->n_tok_seen > 0 ? r->n_tok_seen : 1;
        int nu = r->n_updates > 0 ? r->n_updates : 1;
        rein_buf_clear(&line);
        rein_buf_appendf(&line, "{\"step\":%lld,\"reward\":%.6f,\"reward_std\":%.6f", (long long)cs.step,
                         mean_score, score_sd);
        for (int k = 0; k < rein_scorers_count(sc); k++)
            rein_buf_appendf(&line, ",\"reward_%d_%s\":%.6f", k, rein_scorers_name(sc, k),
                             r->scorer_means[k]);
        rein_buf_appendf(&line,
                         ",\"kl\":%.6f,\"kl_coef\":%.6g,\"len\":%.3f,\"eos_rate\":%.4f,"
                         "\"loss\":%.8g,\"clipfrac\":%.6f,\"approx_kl\":%.6g,\"ratio\":%.6f",
                         kl, coef_used, mean_len, eos, r->pg.loss / nu, r->pg.n_clipped / nt,
                         r->pg.approx_kl / nt, r->pg.ratio_sum / nt);
        if (r->ppo)
            rein_buf_appendf(&line,
                             ",\"value_loss\":%.8g,\"vf_clipfrac\":%.6f,\"explained_var\":%.6f,"
                             "\"non_score_reward\":%.6f,\"logp_gap\":%.3g",
                             r->vf.loss / nu, r->vf.n_clipped / nt, ev, non_score, logp_gap);
        else if (o->kl_coef > 0)
            rein_buf_appendf(&line, ",\"kl_loss\":%.8g", r->kl_term / nu);
        rein_buf_appendf(&line,
                         ",\"grad_norm\":%.6g,\"lr\":%.6g,\"updates\":%d,\"skipped\":%lld,"
                         "\"kl_alarm\":%d,\"tokens\":%lld",
                         r->grad_norm_sum / nu, lr, r->n_updates, (long long)cs.n_skipped, alarm,
                         (long long)n_gen);
        rein_buf_appendf(&line,
                         ",\"time\":{\"rollout\":%.3f,\"score\":%.3f,\"ref\":%.3f,\"values\":%.3f,"
                         "\"update\":%.3f,\"rollout_tok_s\":%.1f,\"elapsed\":%.2f}}",
                         t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, n_gen / (t1 - t0 + 1e-9),
                         rein_time_now() - t_start);
        st = rein_metrics_append(o->out_dir, line.data);
        if (report) {
            if (report->iterations == 0) report->first_reward = mean_score;
            report->last_reward = mean_score;
            report->iterations++;
            report->t_rollout += t1 - t0;
            report->t_score += t2 - t1;
            report->t_ref += t3 - t2;
            report->t_values += t4 - t3;
            report->t_update += t5 - t4;
            report->rollout_tokens += n_gen;
        }
        if (rein_test_hook("REIN_TEST_KILL_AFTER_STEP", cs.step)) raise(SIGKILL); /* tests */
        if (!st && !o->quiet) {
            char info[160];
            snprintf(info, sizeof info, "reward %.3f | kl %.3f | len %.0f | eos %.2f", mean_score,
                     kl, mean_len, eos);
            rein_progress_update(&prog, cs.step, info);
        }
        if (!st && alarm && !o->kl_alarm_lower) {
            st = rein_error(REIN_ERR_NUMERIC, "iteration %lld: the KL to the reference (%.4f) "
                            "passed --kl-max %g; stopped before its update. The last checkpoint "
                            "is %s", (long long)cs.step, kl, o->kl_max, ckpt_path);
            break;
        }
        if (!st && alarm && !o->quiet)
            fprintf(stderr, "%srein: iteration %lld: KL %.4f passed --kl-max %g: learning rate "
                    "scale now %g\n", prog.tty ? "\n" : "", (long long)cs.step, kl, o->kl_max,
                    r->state[1]);
        if (!st && cs.bad_streak >= o->max_bad_steps) {
            st = rein_error(REIN_ERR_NUMERIC, "%lld iterations in a row had a non-finite score, "
                            "loss or gradient; stopping. The last good checkpoint is %s",
                            (long long)cs.bad_streak, ckpt_path);
            break;
        }
        if (!st && bad_iter && !o->quiet)
            fprintf(stderr, "%srein: iteration %lld: non-finite score, loss or gradient; update "
                    "skipped\n", prog.tty ? "\n" : "", (long long)cs.step);
        int last = cs.step >= o->iterations;
        if (!st && o->eval && o->eval_every > 0 && (cs.step % o->eval_every == 0 || last))
            st = evaluate(r, cs.step, &line);
        else if (!st && o->eval && last)
            st = evaluate(r, cs.step, &line);
        if (!st && !bad_iter && ((o->save_every > 0 && cs.step % o->save_every == 0) || last))
            st = rein_ckpt_save(ckpt_path, &cs, &r->pl, &r->opt);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s/adapter", o->out_dir);
        st = rein_lora_save(m, path, NULL);
    }
    if (!st && r->ppo) {
        rein_safetensors_writer *w = NULL;
        st = rein_safetensors_writer_new(&w);
        int64_t shw[2] = {1, r->dim}, shb[1] = {1};
        if (!st) st = rein_safetensors_add(w, "value_head.weight", REIN_TYPE_F32, 2, shw, r->vh);
        if (!st) st = rein_safetensors_add(w, "value_head.bias", REIN_TYPE_F32, 1, shb, r->vh + r->dim);
        snprintf(path, sizeof path, "%s/value_head.safetensors", o->out_dir);
        if (!st) st = rein_safetensors_write(w, path);
        rein_safetensors_writer_free(w);
    }
    if (!st && !o->quiet)
        fprintf(stderr, "%srein: %s finished: %lld iterations, %lld skipped, %.1f s\n",
                prog.tty ? "\n" : "", rein_rl_algo_name(o->algo), (long long)cs.step,
                (long long)cs.n_skipped, rein_time_now() - t_start);
    rein_buf_free(&line);
    run_free(r);
    return st;
}
