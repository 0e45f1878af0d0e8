/* trainer.c - the shared training loop. See trainer.h. */
#include "train/trainer.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "train/checkpoint.h"
#include "train/params.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

rein_train_opts rein_train_default_opts(void) {
    rein_train_opts o;
    memset(&o, 0, sizeof o);
    o.lora = rein_lora_default_params();
    o.adam = rein_adamw_default_params();
    o.adam.lr = 2e-4f;
    o.schedule = REIN_SCHED_COSINE;
    o.warmup_ratio = 0.03f;
    o.warmup_steps = -1;
    o.clip = 1.0f;
    o.epochs = 1;
    o.batch_tokens = 2048;
    o.grad_accum = 1;
    o.seed = 42;
    o.save_every = 50;
    o.eval_every = 50;
    o.max_bad_steps = 5;
    return o;
}

void rein_train_settings(const rein_train_opts *o, const rein_model *m, const char *extra,
                         char *out, size_t n) {
    char lora[96] = "full";
    if (!o->full)
        snprintf(lora, sizeof lora, "lora r=%d alpha=%g targets=0x%x seed=%llu", o->lora.rank,
                 o->lora.alpha, o->lora.targets, (unsigned long long)o->lora.seed);
    snprintf(out, n,
             "params=%lld %s lr=%g betas=%g,%g eps=%g wd=%g schedule=%d warmup=%lld/%g clip=%g "
             "epochs=%d max_steps=%lld batch_tokens=%d grad_accum=%d seed=%llu %s",
             (long long)rein_model_n_params(m), lora, o->adam.lr, o->adam.beta1, o->adam.beta2,
             o->adam.eps, o->adam.weight_decay, (int)o->schedule, (long long)o->warmup_steps,
             o->warmup_ratio, o->clip, o->epochs, (long long)o->max_steps, o->batch_tokens,
             o->grad_accum, (unsigned long long)o->seed, extra ? extra : "");
    if (o->bf16) { /* only then, so that the settings of f32 runs read as before */
        size_t len = strlen(out);
        snprintf(out + len, n - len, " bf16");
    }
}

/* An epoch's plan: a seeded shuffle of the items, packed greedily in that order into micro-batches
 * of at most batch_tokens. mb[k] is the first position in order[] of micro-batch k. */
typedef struct epoch_plan {
    size_t *order;  /* (n_items) */
    size_t *mb;     /* (n_micro + 1) */
    size_t n_micro;
} epoch_plan;

static rein_status plan_epoch(const rein_objective *obj, const rein_train_opts *o, int64_t epoch,
                              epoch_plan *p) {
    size_t n = obj->n_items;
    p->order = rein_malloc(sizeof(size_t) * (n ? n : 1));
    p->mb = rein_malloc(sizeof(size_t) * (n + 1));
    if (!p->order || !p->mb) return REIN_ERR_NOMEM;
    rein_rng rng;
    rein_rng_seed(&rng, o->seed * 1000003ULL + (uint64_t)epoch);
    for (size_t i = 0; i < n; i++) p->order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rein_rng_u64(&rng) % i);
        size_t t = p->order[i - 1];
        p->order[i - 1] = p->order[j];
        p->order[j] = t;
    }
    p->n_micro = 0;
    int used = 0;
    for (size_t i = 0; i < n; i++) {
        int t = obj->item_tokens(obj->ctx, p->order[i]);
        if (i == 0 || used + t > o->batch_tokens) {
            p->mb[p->n_micro++] = i;
            used = 0;
        }
        used += t;
    }
    p->mb[p->n_micro] = n;
    return REIN_OK;
}

static void plan_free(epoch_plan *p) {
    rein_free(p->order);
    rein_free(p->mb);
    memset(p, 0, sizeof *p);
}

rein_status rein_metrics_append(const char *dir, const char *line) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "a");
    if (!f) return rein_error(REIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fputs(line, f);
    fputc('\n', f);
    int bad = fclose(f) != 0;
    return bad ? rein_error(REIN_ERR_IO, "%s: write failed", path) : REIN_OK;
}

static int file_exists(const char *p) {
    return access(p, F_OK) == 0;
}

/* Remove temporary files a killed save left behind (checkpoint.bin.tmp.PID). */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    const char *prefix = "checkpoint.bin.tmp.";
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
    closedir(d);
}

int rein_test_hook(const char *var, int64_t step) {
    const char *v = getenv(var);
    if (!v) return 0;
    for (const char *p = v; *p;) {
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p) break;
        if (x == step) return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* Close an evaluation's metrics line: the objective's extra fields (left in *extra, for the log
 * line too), then the closing brace. */
static void eval_extra(const rein_objective *obj, rein_buf *line, rein_buf *extra) {
    rein_buf_clear(extra);
    if (obj->eval_metrics) obj->eval_metrics(obj->ctx, extra);
    if (extra->len) rein_buf_append(line, extra->data, extra->len);
    rein_buf_append(line, "}", 1);
}

static rein_status make_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return rein_error(REIN_ERR_IO, "%s: cannot create the run folder: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return rein_error(REIN_ERR_IO, "%s: not a folder", dir);
    return REIN_OK;
}

rein_status rein_train_run(rein_model *m, const rein_train_opts *o, const rein_objective *obj,
                           const char *extra_settings) {
    if (obj->n_items == 0) return rein_error(REIN_ERR_INVALID, "no training items");
    if (o->batch_tokens < 2 || o->grad_accum < 1 || o->epochs < 1)
        return rein_error(REIN_ERR_INVALID, "batch tokens >= 2, gradient accumulation >= 1 and "
                          "epochs >= 1 are needed");
    for (size_t i = 0; i < obj->n_items; i++)
        if (obj->item_tokens(obj->ctx, i) > o->batch_tokens)
            return rein_error(REIN_ERR_INVALID, "item %zu has %d tokens, more than a micro-batch "
                              "holds (--batch-tokens %d): raise --batch-tokens or lower --max-len",
                              i, obj->item_tokens(obj->ctx, i), o->batch_tokens);
    REIN_TRY(make_dir(o->out_dir));
    char ckpt_path[4096], settings_path[4096];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", o->out_dir);
    snprintf(settings_path, sizeof settings_path, "%s/settings.txt", o->out_dir);
    remove_stale_tmp(o->out_dir);
    int have_ckpt = file_exists(ckpt_path);
    if (have_ckpt && !o->resume)
        return rein_error(REIN_ERR_INVALID, "%s already holds a run (checkpoint.bin): pass --resume "
                          "to continue it, or choose another --out", o->out_dir);

    if (o->bf16) {
        rein_matmul_set_bf16(1);
        if (!rein_matmul_bf16())
            rein_log(REIN_LOG_WARN, "--bf16: no BF16 products here (no AVX512_BF16, or a BLAS=openblas build); training in f32");
    }

    /* the plan of every epoch, so that the schedule knows the total number of steps */
    epoch_plan *plans = rein_calloc((size_t)o->epochs, sizeof *plans);
    if (!plans) return REIN_ERR_NOMEM;
    rein_status st = REIN_OK;
    int64_t total_steps = 0;
    for (int e = 0; e < o->epochs && !st; e++) {
        st = plan_epoch(obj, o, e, &plans[e]);
        total_steps += ((int64_t)plans[e].n_micro + o->grad_accum - 1) / o->grad_accum;
    }
    if (o->max_steps > 0 && o->max_steps < total_steps) total_steps = o->max_steps;
    int64_t warmup = o->warmup_steps >= 0 ? o->warmup_steps
                                          : (int64_t)ceil(o->warmup_ratio * (double)total_steps);

    rein_train_state *ts = NULL;
    rein_param_list pl = {0};
    rein_adamw opt = {0};
    if (!st && !o->full) st = rein_lora_attach(m, &o->lora);
    if (!st) st = rein_train_state_new(m, o->batch_tokens, o->full, &ts);
    if (!st) st = rein_train_param_list(m, ts, &pl);
    int n_model_spans = pl.n; /* the objective's own spans follow */
    if (!st && obj->extra_params) st = obj->extra_params(obj->ctx, &pl);
    if (!st) st = rein_adamw_init(&opt, pl.total);

    rein_ckpt_state cs, want;
    memset(&want, 0, sizeof want);
    snprintf(want.kind, sizeof want.kind, "%s", obj->kind);
    rein_train_settings(o, m, extra_settings, want.config, sizeof want.config);
    want.data_hash = obj->data_hash;
    want.layout_hash = rein_param_layout_hash(&pl);
    if (!st && have_ckpt) {
        st = rein_ckpt_load(ckpt_path, &want, &cs, &pl, &opt);
        if (!st && o->full) rein_model_weights_changed(m); /* decoding must read the arena */
        if (!st && !o->quiet)
            fprintf(stderr, "rein: resuming %s from step %lld (epoch %lld)\n", o->out_dir,
                    (long long)cs.step, (long long)cs.epoch + 1);
    } else if (!st) {
        cs = want;
        rein_rng_seed(&cs.rng, o->seed);
        FILE *f = fopen(settings_path, "w");
        if (f) {
            fprintf(f, "%s\n", want.config);
            fclose(f);
        }
    }

    rein_progress prog;
    rein_progress_init(&prog, obj->kind, total_steps, o->plain_log);
    prog.plain_every_s = 10;
    double t_start = rein_time_now();
    int64_t tokens_seen = 0;
    rein_buf line = {0}, extra = {0};
    size_t *items = rein_malloc(sizeof(size_t) * obj->n_items);
    if (!items && !st) st = REIN_ERR_NOMEM;

    /* evaluation before any step of a fresh run */
    if (!st && obj->evaluate && cs.step == 0 && !have_ckpt) {
        double ev;
        st = obj->evaluate(obj->ctx, m, ts, &ev);
        if (!st) {
            rein_buf_clear(&line);
            rein_buf_appendf(&line, "{\"step\":0,\"%s\":%.6f", obj->eval_name, ev);
            eval_extra(obj, &line, &extra);
            st = rein_metrics_append(o->out_dir, line.data);
            if (!o->quiet)
                fprintf(stderr, "rein: step 0: %s %.4f%s\n", obj->eval_name, ev,
                        extra.data ? extra.data : "");
        }
    }
    int done = 0;
    while (!st && !done && cs.epoch < o->epochs) {
        const epoch_plan *p = &plans[cs.epoch];
        while (!st && cs.micro < (int64_t)p->n_micro) {
            if (o->max_steps > 0 && cs.step >= o->max_steps) {
                done = 1;
                break;
            }
            double t0 = rein_time_now();
            int64_t mb0 = cs.micro, mb1 = REIN_MIN((int64_t)p->n_micro, mb0 + o->grad_accum);
            double weight = 0;
            int step_tokens = 0;
            for (size_t k = p->mb[mb0]; k < p->mb[mb1]; k++) {
                weight += obj->item_weight(obj->ctx, p->order[k]);
                step_tokens += obj->item_tokens(obj->ctx, p->order[k]);
            }
            rein_train_zero_grads(m, ts);
            for (int i = n_model_spans; i < pl.n; i++)
                memset(pl.spans[i].g, 0, sizeof(float) * (size_t)pl.spans[i].n);
            double loss = 0;
            rein_buf_clear(&extra);
            for (int64_t mb = mb0; mb < mb1 && !st; mb++) {
                int n = (int)(p->mb[mb + 1] - p->mb[mb]);
                memcpy(items, p->order + p->mb[mb], sizeof(size_t) * (size_t)n);
                st = obj->micro_step(obj->ctx, m, ts, items, n,
                                     weight > 0 ? (float)(1.0 / weight) : 0.0f, &loss);
            }
            if (st == REIN_ERR_NUMERIC) st = REIN_OK; /* caught below as a non-finite step */
            if (st) break;
            if (rein_test_hook("REIN_TEST_NAN_STEPS", cs.step + 1) && pl.n > 0)
                pl.spans[0].g[0] = NAN; /* tests: poison this step's gradient */
            double mean = weight > 0 ? loss / weight : 0;
            /* one pass for the norm: a NaN or Inf gradient makes it non-finite; clipping's scale
             * is applied inside the update, not in a pass of its own */
            float gscale;
            double norm = rein_grad_clip_scale(&pl, o->clip, &gscale);
            int bad = !isfinite(mean) || !isfinite(norm);
            float lr = rein_lr_at(o->schedule, o->adam.lr, cs.step, warmup, total_steps);
            cs.micro = mb1;
            if (bad) {
                norm = 0;
                cs.n_skipped++;
                if (++cs.bad_streak >= o->max_bad_steps) {
                    st = rein_error(REIN_ERR_NUMERIC,
                                    "%lld steps in a row had a non-finite loss or gradient (last: "
                                    "loss %g); stopping. The last good checkpoint is %s",
                                    (long long)cs.bad_streak, mean, ckpt_path);
                    break;
                }
                if (!o->quiet)
                    fprintf(stderr, "\nrein: step %lld: non-finite loss or gradient, skipped\n",
                            (long long)cs.step + 1);
            } else {
                cs.bad_streak = 0;
                rein_adamw_step_scaled(&opt, &pl, &o->adam, lr, gscale);
                if (o->full) rein_model_weights_changed(m);
            }
            cs.step++;
            tokens_seen += step_tokens;
            double dt = rein_time_now() - t0;
            if (obj->step_metrics) obj->step_metrics(obj->ctx, &extra);
            rein_buf_clear(&line);
            rein_buf_appendf(&line,
                             "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.9g,\"lr\":%.6g,"
                             "\"grad_norm\":%.6g,\"tokens\":%d,\"tokens_per_s\":%.1f,"
                             "\"elapsed_s\":%.2f,\"skipped\":%lld%s}",
                             (long long)cs.step,
                             (double)cs.epoch + (double)cs.micro / (double)p->n_micro, mean, lr,
                             norm, step_tokens, step_tokens / (dt + 1e-9),
                             rein_time_now() - t_start, (long long)cs.n_skipped,
                             extra.data ? extra.data : "");
            st = rein_metrics_append(o->out_dir, line.data);
            if (rein_test_hook("REIN_TEST_KILL_AFTER_STEP", cs.step)) raise(SIGKILL); /* tests */
            if (!st && !o->quiet) {
                char info[128];
                snprintf(info, sizeof info, "loss %.4f | %.0f tok/s",
                         mean, tokens_seen / (rein_time_now() - t_start + 1e-9));
                rein_progress_update(&prog, cs.step, info);
            }
            int last = (o->max_steps > 0 && cs.step >= o->max_steps) ||
                       (cs.epoch == o->epochs - 1 && cs.micro >= (int64_t)p->n_micro);
            if (!st && obj->evaluate && o->eval_every > 0 &&
                (cs.step % o->eval_every == 0 || last)) {
                double ev;
                st = obj->evaluate(obj->ctx, m, ts, &ev);
                if (!st) {
                    rein_buf_clear(&line);
                    rein_buf_appendf(&line, "{\"step\":%lld,\"%s\":%.6f", (long long)cs.step,
                                     obj->eval_name, ev);
                    eval_extra(obj, &line, &extra);
                    st = rein_metrics_append(o->out_dir, line.data);
                    if (!o->quiet)
                        fprintf(stderr, "%srein: step %lld: %s %.4f%s\n", prog.tty ? "\n" : "",
                                (long long)cs.step, obj->eval_name, ev,
                                extra.data ? extra.data : "");
                }
            }
            if (cs.micro >= (int64_t)p->n_micro) {
                cs.epoch++;
                cs.micro = 0;
            }
            /* never save a state poisoned by a skipped step's leftovers: weights only change
             * on good steps, so every saved state is one a good step produced */
            if (!st && !bad &&
                ((o->save_every > 0 && cs.step % o->save_every == 0) || cs.micro == 0 || last))
                st = rein_ckpt_save(ckpt_path, &cs, &pl, &opt);
            if (cs.micro == 0) break; /* next epoch */
        }
    }
    if (!st && !o->quiet) {
        fprintf(stderr, "%srein: %s finished: %lld steps, %lld skipped, %.1f s\n",
                prog.tty ? "" : "", obj->kind, (long long)cs.step, (long long)cs.n_skipped,
                rein_time_now() - t_start);
    }
    rein_free(items);
    rein_buf_free(&line);
    rein_buf_free(&extra);
    for (int e = 0; e < o->epochs; e++) plan_free(&plans[e]);
    rein_free(plans);
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    rein_matmul_set_bf16(0);
    return st;
}
