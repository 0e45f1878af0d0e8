/* train_opts.c - the options the preference trainers (`rein rm train`, `rein dpo`) share with each
 * other and with `rein sft` (same names, same defaults), and the reading of their data into
 * examples with every problem printed as FILE:LINE. */
#include "train_opts.h"

#include <stdlib.h>
#include <string.h>

const char cli_train_help[] =
    "Data:\n"
    "  --data FILE          training data (required)\n"
    "  --format F           auto, pref, hh or ranking (default auto)\n"
    "  --eval FILE          held-out comparisons, evaluated at the start, every --eval-every\n"
    "                       steps and at the end\n"
    "  --max-len L          longest prompt + response in tokens (default 1024); longer is an error\n"
    "  --skip-bad           skip (and count) bad lines and over-long examples instead of failing\n"
    CLI_TRAIN_HELP_COMMON;

void cli_train_args_init(cli_train_args *a) {
    memset(a, 0, sizeof *a);
    a->o = rein_train_default_opts();
    a->max_len = 1024;
}

/* "q,k,down" -> REIN_LORA_* bits; exits on an unknown name. */
static uint32_t parse_targets(const char *cmd, const char *s) {
    static const char *names[] = {"q", "k", "v", "o", "gate", "up", "down"};
    if (!strcmp(s, "all")) return REIN_LORA_ALL;
    uint32_t bits = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < 7; i++)
            if (!strcmp(t, names[i])) bits |= 1u << i, found = 1;
        if (!found)
            cli_usage_error(cmd, "--lora-targets: unknown layer '%s' (q, k, v, o, gate, up, down "
                            "or all)", t);
    }
    free(copy);
    return bits;
}

int cli_train_option(const char *cmd, int opt, const char *arg, cli_train_args *a) {
    rein_train_opts *o = &a->o;
    switch (opt) {
    case 'm': a->model = arg; return 1;
    case OPT_T_DATA: a->data = arg; return 1;
    case OPT_T_FORMAT:
        if (rein_data_format_from_name(arg, &a->fmt) || a->fmt == REIN_DATA_SFT)
            cli_usage_error(cmd, "--format expects auto, pref, hh or ranking, got '%s'", arg);
        return 1;
    case OPT_T_EVAL: a->eval = arg; return 1;
    case OPT_T_MAXLEN: a->max_len = cli_parse_long(cmd, "--max-len", arg, 2, 1 << 20); return 1;
    case OPT_T_SKIP: a->skip_bad = 1; return 1;
    case OPT_T_RANK: o->lora.rank = (int)cli_parse_long(cmd, "--lora-rank", arg, 1, 4096); return 1;
    case OPT_T_ALPHA:
        o->lora.alpha = (float)cli_parse_double(cmd, "--lora-alpha", arg, 1e-6, 1e6);
        a->alpha_set = 1;
        return 1;
    case OPT_T_TARGETS: o->lora.targets = parse_targets(cmd, arg); return 1;
    case OPT_T_FULL: o->full = 1; return 1;
    case OPT_T_EPOCHS: o->epochs = (int)cli_parse_long(cmd, "--epochs", arg, 1, 100000); return 1;
    case OPT_T_MAXSTEPS: o->max_steps = cli_parse_long(cmd, "--max-steps", arg, 1, 1L << 40); return 1;
    case OPT_T_LR: o->adam.lr = (float)cli_parse_double(cmd, "--lr", arg, 0, 10); return 1;
    case OPT_T_SCHED:
        if (rein_schedule_from_name(arg, &o->schedule)) cli_die(cmd, REIN_ERR_INVALID);
        return 1;
    case OPT_T_WARMUP: o->warmup_steps = cli_parse_long(cmd, "--warmup", arg, 0, 1L << 40); return 1;
    case OPT_T_WD:
        o->adam.weight_decay = (float)cli_parse_double(cmd, "--weight-decay", arg, 0, 10);
        return 1;
    case OPT_T_CLIP: o->clip = (float)cli_parse_double(cmd, "--clip", arg, 0, 1e9); return 1;
    case OPT_T_BT: o->batch_tokens = (int)cli_parse_long(cmd, "--batch-tokens", arg, 2, 1 << 22); return 1;
    case OPT_T_ACC: o->grad_accum = (int)cli_parse_long(cmd, "--grad-accum", arg, 1, 1 << 20); return 1;
    case OPT_T_SEED:
        o->seed = (uint64_t)cli_parse_long(cmd, "--seed", arg, 0, 0x7fffffffffffffffL);
        o->lora.seed = o->seed;
        return 1;
    case OPT_T_OUT: o->out_dir = arg; return 1;
    case OPT_T_RESUME: o->resume = 1; return 1;
    case OPT_T_SAVE: o->save_every = cli_parse_long(cmd, "--save-every", arg, 0, 1L << 40); return 1;
    case OPT_T_EVALEVERY: o->eval_every = cli_parse_long(cmd, "--eval-every", arg, 0, 1L << 40); return 1;
    case OPT_T_THREADS: rein_set_threads((int)cli_parse_long(cmd, "--threads", arg, 1, 256)); return 1;
    case OPT_T_PLAIN: o->plain_log = 1; return 1;
    case OPT_T_BF16: o->bf16 = 1; return 1;
    }
    return 0;
}

void cli_train_args_check(const char *cmd, cli_train_args *a) {
    if (!a->data) cli_usage_error(cmd, "--data FILE is required");
    if (!a->o.out_dir) cli_usage_error(cmd, "--out DIR is required");
    if (!a->alpha_set) a->o.lora.alpha = 2.0f * (float)a->o.lora.rank;
    a->model = cli_model_path(cmd, a->model);
}

rein_example_set *cli_load_pref_examples(const char *cmd, const char *path, rein_data_format fmt,
                                         int skip_bad, const rein_example_params *ep,
                                         rein_dataset **ds_out) {
    rein_dataset_params dp = rein_dataset_default_params();
    dp.format = fmt;
    dp.skip_bad = skip_bad;
    rein_dataset *ds = NULL;
    rein_buf problems = {0};
    rein_status st = rein_dataset_read(path, &dp, &ds, &problems);
    if (st) {
        if (problems.len) fprintf(stderr, "%s", problems.data);
        cli_die(cmd, st);
    }
    if (ds->format == REIN_DATA_SFT) {
        rein_error(REIN_ERR_FORMAT, "%s holds SFT records (messages / prompt+completion / text); "
                   "comparisons need {\"prompt\",\"chosen\",\"rejected\"}, HH dialogues (--format "
                   "hh) or rankings {\"prompt\",\"responses\",\"ranking\"}", path);
        cli_die(cmd, REIN_ERR_FORMAT);
    }
    rein_example_set *set = NULL;
    rein_buf_clear(&problems);
    st = rein_examples_build(ds, ep, &set, &problems);
    if (st) {
        if (problems.len) fprintf(stderr, "%s", problems.data);
        cli_die(cmd, st);
    }
    if (ds->n_skipped || set->n_skipped)
        fprintf(stderr, "rein %s: %s: skipped %zu bad lines and %zu records\n", cmd, path,
                ds->n_skipped, set->n_skipped);
    rein_buf_free(&problems);
    if (ds_out) *ds_out = ds;
    else rein_dataset_free(ds);
    return set;
}

void cli_pref_set(const char *cmd, const rein_example_set *set, const rein_dataset *ds,
                  rein_pref_set *ps) {
    float *margins = NULL;
    size_t n_margins = 0;
    rein_status st = ds ? rein_pref_read_margins(ds, &margins, &n_margins) : REIN_OK;
    if (st) cli_die(cmd, st);
    st = rein_pref_set_build(set, n_margins ? margins : NULL, ps);
    rein_free(margins);
    if (st) cli_die(cmd, rein_error_wrap(st, "%s: ", ds ? ds->path : "data"));
    if (n_margins) fprintf(stderr, "rein %s: %s: %zu records give a margin\n", cmd, ds->path, n_margins);
}

void cli_pref_data_load(const char *cmd, const cli_train_args *a, int margins, cli_pref_data *d) {
    memset(d, 0, sizeof *d);
    rein_status st = rein_model_load(a->model, &d->m);
    if (st) cli_die(cmd, st);
    if (!rein_model_tokenizer(d->m)) {
        rein_error(REIN_ERR_UNSUPPORTED, "%s has no tokenizer", a->model);
        cli_die(cmd, REIN_ERR_UNSUPPORTED);
    }
    rein_example_params ep = rein_example_default_params();
    ep.tok = rein_model_tokenizer(d->m);
    ep.tmpl = rein_model_chat_template(d->m);
    ep.max_len = (size_t)a->max_len;
    ep.skip_bad = a->skip_bad;
    d->train = cli_load_pref_examples(cmd, a->data, a->fmt, a->skip_bad, &ep, &d->ds);
    cli_pref_set(cmd, d->train, margins ? d->ds : NULL, &d->ps);
    if (a->eval) {
        d->ev = cli_load_pref_examples(cmd, a->eval, a->fmt, a->skip_bad, &ep, &d->eds);
        cli_pref_set(cmd, d->ev, margins ? d->eds : NULL, &d->pe);
    }
    for (size_t i = 0; i < d->train->n; i++) d->n_tok += (size_t)d->ps.len[i];
}

void cli_pref_data_free(cli_pref_data *d) {
    rein_pref_set_free(&d->ps);
    rein_pref_set_free(&d->pe);
    rein_example_set_free(d->train);
    rein_example_set_free(d->ev);
    rein_dataset_free(d->ds);
    rein_dataset_free(d->eds);
    rein_model_free(d->m);
    memset(d, 0, sizeof *d);
}
