/* cmd_sft.c - `rein sft`: supervised fine-tuning, LoRA or full, with exact resume. */
#include "cli.h"
#include "train_opts.h"
#include "formats/dataset.h"
#include "formats/export.h"
#include "model/lora_io.h"
#include "train/sft.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: rein sft [-m MODEL] --data FILE.jsonl --out DIR [options]\n"
    "\n"
    "Fine-tune on conversations or completions. Data: one JSON object a line, in TRL's forms:\n"
    "{\"messages\":[{\"role\",\"content\"}...]}, {\"prompt\",\"completion\"} (strings or message\n"
    "lists) or {\"text\"}; or preference data (--format hh|pref), trained on the chosen answers.\n"
    "The chat template is applied; the loss covers assistant turns / completions only.\n"
    "The run folder gets metrics.jsonl, checkpoint.bin, and at the end adapter/ (PEFT format)\n"
    "or, with --full, model.gguf.\n"
    "\n"
    "Data:\n"
    "  --data FILE          training data (required)\n"
    "  --format F           auto, sft, hh or pref (default auto)\n"
    "  --eval FILE          held-out data for the evaluation loss\n"
    "  --max-len L          longest example in tokens (default 1024); longer ones are errors\n"
    "  --skip-bad           skip (and count) bad lines and over-long examples instead of failing\n"
    "  --train-on-prompt    learn the prompt tokens too\n"
    CLI_TRAIN_HELP_COMMON;

/* Read a dataset and build its examples; prints every problem and exits on failure. */
static rein_example_set *load_examples(const char *path, rein_data_format fmt, int skip_bad,
                                       const rein_example_params *ep) {
    rein_dataset_params dp = rein_dataset_default_params();
    dp.format = fmt;
    dp.skip_bad = skip_bad;
    rein_dataset *ds = NULL;
    rein_buf problems = {0};
    rein_status st = rein_dataset_read(path, &dp, &ds, &problems);
    if (st) {
        if (problems.len) fprintf(stderr, "%s", problems.data);
        cli_die("sft", st);
    }
    rein_example_set *set = NULL;
    rein_buf_clear(&problems);
    st = rein_examples_build(ds, ep, &set, &problems);
    if (st) {
        if (problems.len) fprintf(stderr, "%s", problems.data);
        cli_die("sft", st);
    }
    if (ds->format == REIN_DATA_PREF || ds->format == REIN_DATA_HH) {
        /* preference data: train on the chosen answers only */
        size_t k = 0;
        for (size_t i = 0; i < set->n; i++) {
            if (set->ex[i].rank == 0) set->ex[k++] = set->ex[i];
            else rein_example_free(&set->ex[i]);
        }
        set->n = k;
    }
    if (ds->n_skipped || set->n_skipped)
        fprintf(stderr, "rein sft: %s: skipped %zu bad lines and %zu examples\n", path,
                ds->n_skipped, set->n_skipped);
    rein_dataset_free(ds);
    rein_buf_free(&problems);
    return set;
}

int cmd_sft(int argc, char **argv) {
    enum { O_TOP = OPT_T_NEXT };
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, CLI_TRAIN_LONGOPTS,
                                         {"train-on-prompt", no_argument, 0, O_TOP}, {0, 0, 0, 0}};
    cli_train_args a;
    cli_train_args_init(&a);
    int train_on_prompt = 0, c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        if (c == OPT_T_FORMAT) { /* SFT reads SFT records, or the chosen side of comparisons */
            if (rein_data_format_from_name(optarg, &a.fmt) || a.fmt == REIN_DATA_RANKING)
                cli_usage_error("sft", "--format expects auto, sft, hh or pref, got '%s'", optarg);
            continue;
        }
        if (cli_train_option("sft", c, optarg, &a)) continue;
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case O_TOP: train_on_prompt = 1; break;
        default: cli_usage_error("sft", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("sft", "unexpected argument '%s'", argv[optind]);
    cli_train_args_check("sft", &a);
    rein_train_opts o = a.o;
    const char *model = a.model, *data = a.data, *eval = a.eval;
    rein_data_format fmt = a.fmt;
    int skip_bad = a.skip_bad;
    long max_len = a.max_len;
    if (max_len > o.batch_tokens)
        cli_usage_error("sft", "--max-len %ld is larger than --batch-tokens %d: an example must fit "
                        "a micro-batch", max_len, o.batch_tokens);

    rein_status st;
    rein_model *m;
    if ((st = rein_model_load(model, &m))) cli_die("sft", st);
    if (!rein_model_tokenizer(m)) {
        rein_error(REIN_ERR_UNSUPPORTED, "%s has no tokenizer", model);
        cli_die("sft", REIN_ERR_UNSUPPORTED);
    }
    rein_example_params ep = rein_example_default_params();
    ep.tok = rein_model_tokenizer(m);
    ep.tmpl = rein_model_chat_template(m);
    ep.train_on_prompt = train_on_prompt;
    ep.max_len = (size_t)max_len;
    ep.skip_bad = skip_bad;
    rein_example_set *train = load_examples(data, fmt, skip_bad, &ep);
    rein_example_set *ev = eval ? load_examples(eval, fmt, skip_bad, &ep) : NULL;
    size_t n_tok = 0;
    for (size_t i = 0; i < train->n; i++) n_tok += train->ex[i].n;
    fprintf(stderr, "rein sft: %zu examples (%zu tokens)%s%s, %s, %d threads\n", train->n, n_tok,
            ev ? ", evaluation on " : "", ev ? eval : "",
            o.full ? "full fine-tuning" : "LoRA", rein_get_threads());

    rein_sft_ctx ctx;
    rein_objective obj;
    if ((st = rein_sft_objective(&ctx, train, ev, o.batch_tokens, &obj))) cli_die("sft", st);
    char extra[256];
    snprintf(extra, sizeof extra, "max_len=%ld train_on_prompt=%d", max_len, train_on_prompt);
    st = rein_train_run(m, &o, &obj, extra);
    if (st) cli_die("sft", st);

    char path[4096];
    if (o.full) {
        snprintf(path, sizeof path, "%s/model.gguf", o.out_dir);
        st = rein_export_gguf(m, path, REIN_TYPE_F32);
    } else {
        snprintf(path, sizeof path, "%s/adapter", o.out_dir);
        st = rein_lora_save(m, path, model);
    }
    if (st) cli_die("sft", st);
    fprintf(stderr, "rein sft: wrote %s\n", path);
    rein_sft_ctx_free(&ctx);
    rein_example_set_free(train);
    rein_example_set_free(ev);
    rein_model_free(m);
    return 0;
}
