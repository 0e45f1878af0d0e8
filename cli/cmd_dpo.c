/* cmd_dpo.c - `rein dpo`: direct preference optimisation (LoRA or full) with exact resume. */
#include "formats/export.h"
#include "train/dpo.h"
#include "base/base.h"
#include "train_opts.h"

#include <string.h>

static const char help[] =
    "Usage: rein dpo [-m MODEL] --data FILE.jsonl --out DIR [options]\n"
    "\n"
    "Learn from comparisons without a reward model: raise the log-probability of the chosen\n"
    "response against the rejected one, relative to a frozen reference (the model as it starts;\n"
    "a LoRA run uses the base with its adapter switched off, no second copy of the weights). The\n"
    "reference log-probabilities are computed once, before the first step (again on --resume).\n"
    "Data as for 'rein rm train': pairs, HH dialogues (--format hh) or rankings (every ordered\n"
    "pair). Logged per step: loss, acc (implicit-reward accuracy), reward_chosen,\n"
    "reward_rejected, margin, kl (mean policy - reference log-probability of the responses).\n"
    "DIR gets metrics.jsonl, checkpoint.bin and adapter/ (PEFT) or, with --full, model.gguf.\n"
    "\n"
    "DPO:\n"
    "  --beta B             strength of the pull towards the reference (default 0.1)\n"
    "  --loss L             sigmoid, ipo or hinge (default sigmoid; TRL's definitions)\n"
    "  --label-smoothing E  sigmoid only: the rate of flipped labels assumed, cDPO (default 0)\n"
    "\n"
    "rein dpo eval [-m MODEL] --adapter DIR --data FILE [--format F] [--beta B] [--loss L]\n"
    "    [--batch-tokens N] [--max-len L]: implicit-reward metrics of a trained adapter on held-out\n"
    "    comparisons (the reference: MODEL with the adapter switched off). Prints one JSON object.\n"
    "\n";

enum { O_BETA = OPT_T_NEXT, O_LOSS, O_LS, O_ADAPTER };

/* The DPO options training and evaluation share (--beta, --loss); 1 when opt was one of them. */
static int dpo_option(const char *cmd, int opt, const char *arg, rein_dpo_params *dp) {
    switch (opt) {
    case O_BETA: dp->beta = (float)cli_parse_double(cmd, "--beta", arg, 1e-6, 1e6); return 1;
    case O_LOSS:
        if (rein_dpo_loss_from_name(arg, &dp->loss)) cli_die(cmd, REIN_ERR_INVALID);
        return 1;
    }
    return 0;
}

/* `rein dpo eval`: accuracy, rewards, margin, kl and loss of an adapter against its base. */
static int dpo_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, CLI_TRAIN_LONGOPTS, {"beta", required_argument, 0, O_BETA},
        {"loss", required_argument, 0, O_LOSS}, {"adapter", required_argument, 0, O_ADAPTER},
        {0, 0, 0, 0}};
    const char *cmd = "dpo eval", *adapter = NULL;
    cli_train_args a;
    cli_train_args_init(&a);
    a.max_len = 4096;
    a.o.batch_tokens = 4096;
    a.o.out_dir = "-"; /* nothing is written */
    rein_dpo_params dp = rein_dpo_default_params();
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return 0;
        }
        if (cli_train_option(cmd, c, optarg, &a) || dpo_option(cmd, c, optarg, &dp)) continue;
        switch (c) {
        case O_ADAPTER: adapter = optarg; break;
        default: cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!adapter) cli_usage_error(cmd, "--adapter DIR is required (DIR/adapter of a 'rein dpo' run)");
    cli_train_args_check(cmd, &a);
    cli_pref_data d;
    cli_pref_data_load(cmd, &a, 0, &d);
    rein_status st = rein_lora_load(d.m, adapter);
    if (st) cli_die(cmd, st);
    rein_dpo_ctx ctx;
    rein_objective obj;
    rein_train_state *ts = NULL;
    rein_dpo_metrics mt;
    double t0 = rein_time_now();
    if ((st = rein_dpo_objective(&ctx, &dp, &d.ps, NULL, a.o.batch_tokens, &obj)) ||
        (st = rein_dpo_reference(&ctx, d.m, a.o.batch_tokens)) ||
        (st = rein_train_state_new(d.m, a.o.batch_tokens, 0, &ts)) ||
        (st = rein_dpo_evaluate(&ctx, d.m, ts, &d.ps, ctx.ref_train, &mt)))
        cli_die(cmd, st);
    double n = mt.pairs > 0 ? mt.pairs : 1;
    printf("{\"data\":\"%s\",\"pairs\":%.0f,\"loss\":%.6f,\"acc\":%.4f,\"reward_chosen\":%.6g,"
           "\"reward_rejected\":%.6g,\"margin\":%.6g,\"kl\":%.6g,\"seconds\":%.1f}\n",
           a.data, mt.pairs, mt.loss / n, mt.correct / n, mt.chosen / n, mt.rejected / n,
           (mt.chosen - mt.rejected) / n, mt.kl / n, rein_time_now() - t0);
    rein_train_state_free(ts);
    rein_dpo_ctx_free(&ctx);
    cli_pref_data_free(&d);
    return 0;
}

int cmd_dpo(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "eval")) return dpo_eval(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, CLI_TRAIN_LONGOPTS, {"beta", required_argument, 0, O_BETA},
        {"loss", required_argument, 0, O_LOSS}, {"label-smoothing", required_argument, 0, O_LS},
        {0, 0, 0, 0}};
    const char *cmd = "dpo";
    cli_train_args a;
    cli_train_args_init(&a);
    rein_dpo_params dp = rein_dpo_default_params();
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            fputs(cli_train_help, stdout);
            return 0;
        }
        if (cli_train_option(cmd, c, optarg, &a) || dpo_option(cmd, c, optarg, &dp)) continue;
        switch (c) {
        case O_LS:
            dp.label_smoothing = (float)cli_parse_double(cmd, "--label-smoothing", optarg, 0, 0.4999);
            break;
        default: cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (dp.label_smoothing > 0 && dp.loss != REIN_DPO_SIGMOID)
        cli_usage_error(cmd, "--label-smoothing applies to the sigmoid loss only");
    cli_train_args_check(cmd, &a);
    rein_train_opts *o = &a.o;

    rein_status st;
    cli_pref_data d;
    cli_pref_data_load(cmd, &a, 0, &d); /* margins are a reward-model notion */
    rein_model *m = d.m;
    const rein_example_set *train = d.train, *ev = d.ev;
    fprintf(stderr, "rein dpo: %zu pairs, %zu tokens%s%s, %s loss, beta %g, %s, %d threads\n",
            d.ps.n_pairs, d.n_tok, ev ? ", evaluation on " : "", ev ? a.eval : "",
            rein_dpo_loss_name(dp.loss), dp.beta, o->full ? "full fine-tuning" : "LoRA",
            rein_get_threads());

    rein_dpo_ctx ctx;
    rein_objective obj;
    if ((st = rein_dpo_objective(&ctx, &dp, &d.ps, ev ? &d.pe : NULL, o->batch_tokens, &obj)))
        cli_die(cmd, st);
    /* the reference: the model before any step (no adapter attached yet: the base) */
    double t0 = rein_time_now();
    if ((st = rein_dpo_reference(&ctx, m, o->batch_tokens))) cli_die(cmd, st);
    fprintf(stderr, "rein dpo: reference log-probabilities of %zu responses in %.1f s\n",
            train->n + (ev ? ev->n : 0), rein_time_now() - t0);
    char extra[256];
    snprintf(extra, sizeof extra, "max_len=%ld beta=%g loss=%s label_smoothing=%g", a.max_len,
             dp.beta, rein_dpo_loss_name(dp.loss), dp.label_smoothing);
    if ((st = rein_train_run(m, o, &obj, extra))) cli_die(cmd, st);

    char path[4096];
    if (o->full) {
        snprintf(path, sizeof path, "%s/model.gguf", o->out_dir);
        st = rein_export_gguf(m, path, REIN_TYPE_F32);
    } else {
        snprintf(path, sizeof path, "%s/adapter", o->out_dir);
        st = rein_lora_save(m, path, a.model);
    }
    if (st) cli_die(cmd, st);
    fprintf(stderr, "rein dpo: wrote %s\n", path);
    rein_dpo_ctx_free(&ctx);
    cli_pref_data_free(&d);
    return 0;
}
