/* cmd_sft.c - `rein sft`: supervised fine-tuning, LoRA or full, with exact resume. */
#include "cli.h"
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
    "Model:\n"
    "  -m, --model FILE     GGUF model (default: the default model)\n"
    "  --lora-rank R        LoRA rank (default 16)\n"
    "  --lora-alpha A       LoRA alpha (default 2 x rank)\n"
    "  --lora-targets LIST  comma-separated: q,k,v,o,gate,up,down or all (default all)\n"
    "  --full               train every weight instead of an adapter\n"
    "Optimisation:\n"
    "  --epochs E           passes over the data (default 1)\n"
    "  --max-steps N        stop after N optimizer steps (default: all epochs)\n"
    "  --lr LR              peak learning rate (default 2e-4; consider 2e-5 with --full)\n"
    "  --schedule S         cosine, linear or constant, after warmup (default cosine)\n"
    "  --warmup N           warmup steps (default 3%% of the steps)\n"
    "  --weight-decay W     AdamW's decoupled decay on matrices (default 0)\n"
    "  --clip C             global gradient-norm clip, 0 = off (default 1.0)\n"
    "  --batch-tokens N     tokens per micro-batch; examples are packed whole (default 2048)\n"
    "  --grad-accum K       micro-batches per step (default 1)\n"
    "  --seed S             data order and adapter initialisation (default 42)\n"
    "Run:\n"
    "  --out DIR            run folder (required)\n"
    "  --resume             continue the run in DIR exactly where its checkpoint left it\n"
    "  --save-every N       steps between checkpoints (default 50; also each epoch's end)\n"
    "  --eval-every N       steps between evaluations (default 50; also start and end)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --plain              log lines instead of a progress bar\n";

enum {
    O_DATA = 2000, O_FORMAT, O_EVAL, O_MAXLEN, O_SKIP, O_TOP, O_RANK, O_ALPHA, O_TARGETS, O_FULL,
    O_EPOCHS, O_MAXSTEPS, O_LR, O_SCHED, O_WARMUP, O_WD, O_CLIP, O_BT, O_ACC, O_SEED, O_OUT,
    O_RESUME, O_SAVE, O_EVALEVERY, O_THREADS, O_PLAIN
};

/* "q,k,down" -> REIN_LORA_* bits; exits on an unknown name. */
static uint32_t parse_targets(const char *s) {
    static const char *names[] = {"q", "k", "v", "o", "gate", "up", "down"};
    if (!strcmp(s, "all")) return REIN_LORA_ALL;
    uint32_t bits = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < 7; i++)
            if (!strcmp(t, names[i])) bits |= 1u << i, found = 1;
        if (!found)
            cli_usage_error("sft", "--lora-targets: unknown layer '%s' (q, k, v, o, gate, up, down "
                            "or all)", t);
    }
    free(copy);
    return bits;
}

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
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"data", required_argument, 0, O_DATA}, {"format", required_argument, 0, O_FORMAT},
        {"eval", required_argument, 0, O_EVAL}, {"max-len", required_argument, 0, O_MAXLEN},
        {"skip-bad", no_argument, 0, O_SKIP}, {"train-on-prompt", no_argument, 0, O_TOP},
        {"lora-rank", required_argument, 0, O_RANK}, {"lora-alpha", required_argument, 0, O_ALPHA},
        {"lora-targets", required_argument, 0, O_TARGETS}, {"full", no_argument, 0, O_FULL},
        {"epochs", required_argument, 0, O_EPOCHS}, {"max-steps", required_argument, 0, O_MAXSTEPS},
        {"lr", required_argument, 0, O_LR}, {"schedule", required_argument, 0, O_SCHED},
        {"warmup", required_argument, 0, O_WARMUP}, {"weight-decay", required_argument, 0, O_WD},
        {"clip", required_argument, 0, O_CLIP}, {"batch-tokens", required_argument, 0, O_BT},
        {"grad-accum", required_argument, 0, O_ACC}, {"seed", required_argument, 0, O_SEED},
        {"out", required_argument, 0, O_OUT}, {"resume", no_argument, 0, O_RESUME},
        {"save-every", required_argument, 0, O_SAVE},
        {"eval-every", required_argument, 0, O_EVALEVERY},
        {"threads", required_argument, 0, O_THREADS}, {"plain", no_argument, 0, O_PLAIN},
        {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *eval = NULL;
    rein_data_format fmt = REIN_DATA_AUTO;
    rein_train_opts o = rein_train_default_opts();
    int skip_bad = 0, train_on_prompt = 0, alpha_set = 0;
    long max_len = 1024;
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': model = optarg; break;
        case O_DATA: data = optarg; break;
        case O_FORMAT:
            if (rein_data_format_from_name(optarg, &fmt) || fmt == REIN_DATA_RANKING)
                cli_usage_error("sft", "--format expects auto, sft, hh or pref, got '%s'", optarg);
            break;
        case O_EVAL: eval = optarg; break;
        case O_MAXLEN: max_len = cli_parse_long("sft", "--max-len", optarg, 2, 1 << 20); break;
        case O_SKIP: skip_bad = 1; break;
        case O_TOP: train_on_prompt = 1; break;
        case O_RANK: o.lora.rank = (int)cli_parse_long("sft", "--lora-rank", optarg, 1, 4096); break;
        case O_ALPHA:
            o.lora.alpha = (float)cli_parse_double("sft", "--lora-alpha", optarg, 1e-6, 1e6);
            alpha_set = 1;
            break;
        case O_TARGETS: o.lora.targets = parse_targets(optarg); break;
        case O_FULL: o.full = 1; break;
        case O_EPOCHS: o.epochs = (int)cli_parse_long("sft", "--epochs", optarg, 1, 100000); break;
        case O_MAXSTEPS: o.max_steps = cli_parse_long("sft", "--max-steps", optarg, 1, 1L << 40); break;
        case O_LR: o.adam.lr = (float)cli_parse_double("sft", "--lr", optarg, 0, 10); break;
        case O_SCHED:
            if (rein_schedule_from_name(optarg, &o.schedule)) cli_die("sft", REIN_ERR_INVALID);
            break;
        case O_WARMUP: o.warmup_steps = cli_parse_long("sft", "--warmup", optarg, 0, 1L << 40); break;
        case O_WD: o.adam.weight_decay = (float)cli_parse_double("sft", "--weight-decay", optarg, 0, 10); break;
        case O_CLIP: o.clip = (float)cli_parse_double("sft", "--clip", optarg, 0, 1e9); break;
        case O_BT: o.batch_tokens = (int)cli_parse_long("sft", "--batch-tokens", optarg, 2, 1 << 22); break;
        case O_ACC: o.grad_accum = (int)cli_parse_long("sft", "--grad-accum", optarg, 1, 1 << 20); break;
        case O_SEED:
            o.seed = (uint64_t)cli_parse_long("sft", "--seed", optarg, 0, 0x7fffffffffffffffL);
            o.lora.seed = o.seed;
            break;
        case O_OUT: o.out_dir = optarg; break;
        case O_RESUME: o.resume = 1; break;
        case O_SAVE: o.save_every = cli_parse_long("sft", "--save-every", optarg, 0, 1L << 40); break;
        case O_EVALEVERY: o.eval_every = cli_parse_long("sft", "--eval-every", optarg, 0, 1L << 40); break;
        case O_THREADS: rein_set_threads((int)cli_parse_long("sft", "--threads", optarg, 1, 256)); break;
        case O_PLAIN: o.plain_log = 1; break;
        default: cli_usage_error("sft", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("sft", "unexpected argument '%s'", argv[optind]);
    if (!data) cli_usage_error("sft", "--data FILE is required");
    if (!o.out_dir) cli_usage_error("sft", "--out DIR is required");
    if (!alpha_set) o.lora.alpha = 2.0f * (float)o.lora.rank;
    if (max_len > o.batch_tokens)
        cli_usage_error("sft", "--max-len %ld is larger than --batch-tokens %d: an example must fit "
                        "a micro-batch", max_len, o.batch_tokens);
    model = cli_model_path("sft", model);

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
