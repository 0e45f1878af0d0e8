/* cmd_rm.c - `rein rm`: train a reward model from comparisons, score responses with it, evaluate
 * its pairwise accuracy (with the length bias laid bare). */
#include "train/reward.h"
#include "base/base.h"
#include "train_opts.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: rein rm train [-m MODEL] --data FILE.jsonl --out DIR [options]\n"
    "       rein rm score --rm DIR --data FILE.jsonl [--format F] [--normalize]\n"
    "       rein rm eval  --rm DIR --data FILE.jsonl [--format F] [--json]\n"
    "\n"
    "A reward model is the transformer with a scalar head on the last token's final hidden state,\n"
    "trained with the Bradley-Terry loss -log sigmoid(r_better - r_worse - margin) on every pair\n"
    "of a comparison, each prompt weighted equally. Data: {\"prompt\",\"chosen\",\"rejected\"}\n"
    "(strings or message lists; the prompt may be implicit), Anthropic HH dialogues (--format hh),\n"
    "or rankings {\"prompt\",\"responses\":[...],\"ranking\":[best, [tied, tied], ...]}; a record\n"
    "may give a \"margin\". DIR gets metrics.jsonl, checkpoint.bin and the reward model:\n"
    "adapter/ (PEFT) or model.gguf (--full), reward_head.safetensors, reward_config.json (base\n"
    "model, kind, reward mean/std on the training data for PPO). 'rein export -m BASE --adapter\n"
    "DIR/adapter' exports the transformer like any model.\n"
    "\n"
    "train: the options of 'rein sft', plus\n"
    "  --center C           reward-centring coefficient: adds C (r_better + r_worse)^2 (default 0)\n"
    "  --stats-samples N    training responses scored for the reward mean/std (default 1000)\n"
    "score: one JSON object a line: {\"line\",\"chosen\",\"rejected\"} for pairs, {\"line\",\n"
    "  \"rewards\"} for rankings, {\"line\",\"reward\"} for conversations / completions (SFT form;\n"
    "  the reward is read at the end of the last assistant turn)\n"
    "  --normalize          print (r - mean) / std with the training statistics\n"
    "eval: pairwise accuracy, mean margin, loss, and accuracy by response-length difference\n"
    "  --json               one JSON object instead of the table\n"
    "score and eval: --base MODEL overrides the base model recorded in DIR; --threads N;\n"
    "  --max-len L (default 4096).\n"
    "\n";

enum { O_CENTER = OPT_T_NEXT, O_STATS, O_RM, O_NORM, O_JSON, O_BASE };

static int rm_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, CLI_TRAIN_LONGOPTS,
        {"center", required_argument, 0, O_CENTER},
        {"stats-samples", required_argument, 0, O_STATS}, {0, 0, 0, 0}};
    const char *cmd = "rm train";
    cli_train_args a;
    cli_train_args_init(&a);
    float center = 0;
    long stats_n = 1000;
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            fputs(cli_train_help, stdout);
            return 0;
        }
        if (cli_train_option(cmd, c, optarg, &a)) continue;
        switch (c) {
        case O_CENTER: center = (float)cli_parse_double(cmd, "--center", optarg, 0, 1e6); break;
        case O_STATS: stats_n = cli_parse_long(cmd, "--stats-samples", optarg, 1, 1L << 40); break;
        default: cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    cli_train_args_check(cmd, &a);
    rein_train_opts *o = &a.o;

    rein_status st;
    cli_pref_data d;
    cli_pref_data_load(cmd, &a, 1, &d);
    rein_model *m = d.m;
    rein_example_set *train = d.train, *ev = d.ev;
    rein_pref_set *ps = &d.ps, *pe = &d.pe;
    fprintf(stderr, "rein rm: %zu prompts, %zu pairs (%zu tied pairs left out), %zu tokens%s%s, "
            "%s, %d threads\n", ps->n_groups, ps->n_pairs, ps->n_tied, d.n_tok,
            ev ? ", evaluation on " : "", ev ? a.eval : "", o->full ? "full fine-tuning" : "LoRA",
            rein_get_threads());

    rein_reward_head head;
    if ((st = rein_reward_head_init(&head, rein_model_get_config(m)->dim, o->seed))) cli_die(cmd, st);
    rein_rm_ctx ctx;
    rein_objective obj;
    if ((st = rein_rm_objective(&ctx, ps, ev ? pe : NULL, &head, center, o->batch_tokens, &obj)))
        cli_die(cmd, st);
    char extra[256];
    snprintf(extra, sizeof extra, "max_len=%ld center=%g", a.max_len, center);
    double t0 = rein_time_now();
    if ((st = rein_train_run(m, o, &obj, extra))) cli_die(cmd, st);
    double t_train = rein_time_now() - t0;

    /* reward statistics on (the first stats_n) training responses, for PPO's normalisation */
    rein_example_set view = *train;
    view.n = REIN_MIN(train->n, (size_t)stats_n);
    rein_pref_set pv = *ps;
    pv.ex = &view;
    float *r = malloc(sizeof(float) * (view.n ? view.n : 1));
    rein_train_state *ts = NULL;
    if (!r) cli_die(cmd, REIN_ERR_NOMEM);
    if ((st = rein_train_state_new(m, o->batch_tokens, 0, &ts))) cli_die(cmd, st);
    if ((st = rein_rm_score_set(m, ts, &head, &pv, r))) cli_die(cmd, st);
    double mean = 0, var = 0;
    for (size_t i = 0; i < view.n; i++) mean += r[i];
    mean /= (double)view.n;
    for (size_t i = 0; i < view.n; i++) var += (r[i] - mean) * (r[i] - mean);
    double sd = view.n > 1 ? sqrt(var / (double)(view.n - 1)) : 1.0;
    if ((st = rein_rm_save(o->out_dir, m, &head, o->full, a.model, (float)mean, (float)sd, view.n,
                           center)))
        cli_die(cmd, st);
    fprintf(stderr, "rein rm: trained in %.1f s; training rewards mean %.4f, std %.4f (%zu "
            "responses); wrote the reward model to %s\n", t_train, mean, sd, view.n, o->out_dir);
    free(r);
    rein_train_state_free(ts);
    rein_rm_ctx_free(&ctx);
    rein_reward_head_free(&head);
    cli_pref_data_free(&d);
    return 0;
}

/* Options of score and eval. */
typedef struct use_args {
    const char *rm, *data, *base;
    rein_data_format fmt;
    int normalize, json;
    long max_len;
} use_args;

static void parse_use(const char *cmd, int argc, char **argv, use_args *u) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"rm", required_argument, 0, O_RM},
        {"data", required_argument, 0, OPT_T_DATA}, {"format", required_argument, 0, OPT_T_FORMAT},
        {"normalize", no_argument, 0, O_NORM}, {"json", no_argument, 0, O_JSON},
        {"base", required_argument, 0, O_BASE}, {"max-len", required_argument, 0, OPT_T_MAXLEN},
        {"threads", required_argument, 0, OPT_T_THREADS}, {0, 0, 0, 0}};
    memset(u, 0, sizeof *u);
    u->max_len = 4096;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); exit(0);
        case O_RM: u->rm = optarg; break;
        case OPT_T_DATA: u->data = optarg; break;
        case OPT_T_FORMAT:
            if (rein_data_format_from_name(optarg, &u->fmt))
                cli_usage_error(cmd, "--format expects auto, sft, pref, hh or ranking, got '%s'",
                                optarg);
            break;
        case O_NORM: u->normalize = 1; break;
        case O_JSON: u->json = 1; break;
        case O_BASE: u->base = optarg; break;
        case OPT_T_MAXLEN: u->max_len = cli_parse_long(cmd, "--max-len", optarg, 2, 1 << 20); break;
        case OPT_T_THREADS: rein_set_threads((int)cli_parse_long(cmd, "--threads", optarg, 1, 256)); break;
        default: cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!u->rm) cli_usage_error(cmd, "--rm DIR is required (a folder written by 'rein rm train')");
    if (!u->data) cli_usage_error(cmd, "--data FILE is required");
}

static rein_reward_model *load_rm(const char *cmd, const use_args *u, rein_example_params *ep) {
    rein_reward_model *rm;
    rein_status st = rein_rm_load(u->rm, u->base, &rm);
    if (st) cli_die(cmd, st);
    rein_model *m = rein_rm_model(rm);
    *ep = rein_example_default_params();
    ep->tok = rein_model_tokenizer(m);
    ep->tmpl = rein_model_chat_template(m);
    ep->max_len = (size_t)u->max_len;
    if (!ep->tok) {
        rein_error(REIN_ERR_UNSUPPORTED, "the reward model has no tokenizer");
        cli_die(cmd, REIN_ERR_UNSUPPORTED);
    }
    return rm;
}

static int rm_score(int argc, char **argv) {
    const char *cmd = "rm score";
    use_args u;
    parse_use(cmd, argc, argv, &u);
    rein_example_params ep;
    rein_reward_model *rm = load_rm(cmd, &u, &ep);
    rein_dataset_params dp = rein_dataset_default_params();
    dp.format = u.fmt;
    rein_dataset *ds;
    rein_buf problems = {0};
    rein_status st = rein_dataset_read(u.data, &dp, &ds, &problems);
    rein_example_set *set = NULL;
    if (!st) st = rein_examples_build(ds, &ep, &set, &problems);
    if (st) {
        if (problems.len) fprintf(stderr, "%s", problems.data);
        cli_die(cmd, st);
    }
    /* every example through its response's end, back to back */
    size_t total = 0;
    for (size_t i = 0; i < set->n; i++) total += (size_t)rein_example_used_len(&set->ex[i]);
    int32_t *tokens = malloc(sizeof(int32_t) * (total ? total : 1));
    int32_t *cu = malloc(sizeof(int32_t) * (set->n + 1));
    float *r = malloc(sizeof(float) * (set->n ? set->n : 1));
    if (!tokens || !cu || !r) cli_die(cmd, REIN_ERR_NOMEM);
    cu[0] = 0;
    for (size_t i = 0; i < set->n; i++) {
        int32_t len = rein_example_used_len(&set->ex[i]);
        memcpy(tokens + cu[i], set->ex[i].tokens, sizeof(int32_t) * (size_t)len);
        cu[i + 1] = cu[i] + len;
    }
    if ((st = rein_rm_score(rm, tokens, cu, (int)set->n, r))) cli_die(cmd, st);
    float mean, sd;
    rein_rm_norm(rm, &mean, &sd);
    if (u.normalize)
        for (size_t i = 0; i < set->n; i++) r[i] = (r[i] - mean) / (sd > 0 ? sd : 1);
    for (size_t i = 0; i < set->n;) {
        size_t j = i;
        while (j < set->n && set->ex[j].record == set->ex[i].record) j++;
        if (ds->format == REIN_DATA_SFT)
            printf("{\"line\":%d,\"reward\":%.6g}\n", set->ex[i].line, r[i]);
        else if (ds->format == REIN_DATA_RANKING) {
            printf("{\"line\":%d,\"rewards\":[", set->ex[i].line);
            for (size_t k = i; k < j; k++) printf("%s%.6g", k > i ? "," : "", r[k]);
            printf("]}\n");
        } else
            printf("{\"line\":%d,\"chosen\":%.6g,\"rejected\":%.6g}\n", set->ex[i].line, r[i],
                   r[i + 1]);
        i = j;
    }
    free(tokens);
    free(cu);
    free(r);
    rein_buf_free(&problems);
    rein_example_set_free(set);
    rein_dataset_free(ds);
    rein_rm_free(rm);
    return 0;
}

static int rm_eval(int argc, char **argv) {
    const char *cmd = "rm eval";
    use_args u;
    parse_use(cmd, argc, argv, &u);
    rein_example_params ep;
    rein_reward_model *rm = load_rm(cmd, &u, &ep);
    rein_dataset *ds;
    rein_example_set *set = cli_load_pref_examples(cmd, u.data, u.fmt, 0, &ep, &ds);
    rein_pref_set ps;
    cli_pref_set(cmd, set, ds, &ps);
    float *r = malloc(sizeof(float) * set->n);
    if (!r) cli_die(cmd, REIN_ERR_NOMEM);
    double t0 = rein_time_now();
    rein_status st = rein_rm_score_examples(rm, &ps, r);
    if (st) cli_die(cmd, st);
    double dt = rein_time_now() - t0;
    rein_rm_stats s;
    rein_rm_pair_stats(&ps, r, 0, &s);
    if (u.json) {
        printf("{\"data\":\"%s\",\"groups\":%zu,\"pairs\":%zu,\"data_ties\":%zu,\"equal_rewards\":%zu,"
               "\"accuracy\":%.6f,\"mean_margin\":%.6g,\"loss\":%.6g,\"longer_preferred\":%.6f,"
               "\"data_longer_better\":%.6f,\"by_length\":[",
               u.data, s.n_groups, s.n_pairs, s.n_tied, s.n_equal, s.accuracy, s.mean_margin,
               s.loss, s.longer_preferred, s.data_longer_better);
        for (int b = 0; b < REIN_RM_LEN_BUCKETS; b++)
            printf("%s{\"bucket\":\"%s\",\"n\":%zu,\"accuracy\":%.6f}", b ? "," : "",
                   rein_rm_bucket_names[b], s.bucket_n[b], s.bucket_acc[b]);
        printf("]}\n");
    } else {
        printf("%s: %zu prompts, %zu pairs (%zu tied pairs in the data left out), scored in %.1f s\n",
               u.data, s.n_groups, s.n_pairs, s.n_tied, dt);
        printf("pairwise accuracy  %.4f   (%zu pairs with exactly equal rewards, counted 1/2)\n",
               s.accuracy, s.n_equal);
        printf("mean margin        %.4f   (r_better - r_worse)\n", s.mean_margin);
        printf("loss               %.4f   (Bradley-Terry, mean per prompt)\n", s.loss);
        printf("length bias        the model rewards the longer response more in %.1f%% of pairs "
               "of different length;\n                   the data prefers the longer one in %.1f%%\n",
               100 * s.longer_preferred, 100 * s.data_longer_better);
        printf("accuracy by response length, better minus worse (tokens):\n");
        for (int b = 0; b < REIN_RM_LEN_BUCKETS; b++) {
            printf("  %-26s %6zu pairs", rein_rm_bucket_names[b], s.bucket_n[b]);
            if (s.bucket_n[b]) printf("  accuracy %.4f\n", s.bucket_acc[b]);
            else printf("\n");
        }
    }
    free(r);
    rein_pref_set_free(&ps);
    rein_example_set_free(set);
    rein_dataset_free(ds);
    rein_rm_free(rm);
    return 0;
}

int cmd_rm(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(help, argc < 2 ? stderr : stdout);
        if (argc >= 2) fputs(cli_train_help, stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return rm_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "score")) return rm_score(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return rm_eval(argc - 1, argv + 1);
    cli_usage_error("rm", "unknown subcommand '%s' (train, score or eval)", argv[1]);
}
