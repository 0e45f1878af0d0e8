/* train_opts.h - the options and data loading the preference trainers share (train_opts.c). */
#ifndef REIN_CLI_TRAIN_OPTS_H
#define REIN_CLI_TRAIN_OPTS_H

#include "cli.h"
#include "formats/dataset.h"
#include "train/examples.h"
#include "train/pref.h"
#include "train/trainer.h"

enum {
    OPT_T_DATA = 3000, OPT_T_FORMAT, OPT_T_EVAL, OPT_T_MAXLEN, OPT_T_SKIP, OPT_T_RANK, OPT_T_ALPHA,
    OPT_T_TARGETS, OPT_T_FULL, OPT_T_EPOCHS, OPT_T_MAXSTEPS, OPT_T_LR, OPT_T_SCHED, OPT_T_WARMUP,
    OPT_T_WD, OPT_T_CLIP, OPT_T_BT, OPT_T_ACC, OPT_T_SEED, OPT_T_OUT, OPT_T_RESUME, OPT_T_SAVE,
    OPT_T_EVALEVERY, OPT_T_THREADS, OPT_T_PLAIN, OPT_T_BF16,
    OPT_T_NEXT = 3100 /* a command's own options start here */
};

/* getopt_long entries of the shared options (-m included). */
#define CLI_TRAIN_LONGOPTS                                                                     \
    {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, OPT_T_DATA},          \
    {"format", required_argument, 0, OPT_T_FORMAT}, {"eval", required_argument, 0, OPT_T_EVAL}, \
    {"max-len", required_argument, 0, OPT_T_MAXLEN}, {"skip-bad", no_argument, 0, OPT_T_SKIP}, \
    {"lora-rank", required_argument, 0, OPT_T_RANK},                                           \
    {"lora-alpha", required_argument, 0, OPT_T_ALPHA},                                         \
    {"lora-targets", required_argument, 0, OPT_T_TARGETS}, {"full", no_argument, 0, OPT_T_FULL}, \
    {"epochs", required_argument, 0, OPT_T_EPOCHS},                                            \
    {"max-steps", required_argument, 0, OPT_T_MAXSTEPS}, {"lr", required_argument, 0, OPT_T_LR}, \
    {"schedule", required_argument, 0, OPT_T_SCHED}, {"warmup", required_argument, 0, OPT_T_WARMUP}, \
    {"weight-decay", required_argument, 0, OPT_T_WD}, {"clip", required_argument, 0, OPT_T_CLIP}, \
    {"batch-tokens", required_argument, 0, OPT_T_BT},                                          \
    {"grad-accum", required_argument, 0, OPT_T_ACC}, {"seed", required_argument, 0, OPT_T_SEED}, \
    {"bf16", no_argument, 0, OPT_T_BF16},                                                      \
    {"out", required_argument, 0, OPT_T_OUT}, {"resume", no_argument, 0, OPT_T_RESUME},        \
    {"save-every", required_argument, 0, OPT_T_SAVE},                                          \
    {"eval-every", required_argument, 0, OPT_T_EVALEVERY},                                     \
    {"threads", required_argument, 0, OPT_T_THREADS}, {"plain", no_argument, 0, OPT_T_PLAIN}

/* The help text of the options every trainer shares (model, optimisation, run). */
#define CLI_TRAIN_HELP_COMMON \
    "Model:\n" \
    "  -m, --model FILE     GGUF model (default: the default model)\n" \
    "  --lora-rank R        LoRA rank (default 16)\n" \
    "  --lora-alpha A       LoRA alpha (default 2 x rank)\n" \
    "  --lora-targets LIST  comma-separated: q,k,v,o,gate,up,down or all (default all)\n" \
    "  --full               train every weight instead of an adapter\n" \
    "Optimisation:\n" \
    "  --epochs E           passes over the data (default 1)\n" \
    "  --max-steps N        stop after N optimizer steps (default: all epochs)\n" \
    "  --lr LR              peak learning rate (default 2e-4; consider 1e-5 with --full)\n" \
    "  --schedule S         cosine, linear or constant, after warmup (default cosine)\n" \
    "  --warmup N           warmup steps (default 3% of the steps)\n" \
    "  --weight-decay W     AdamW's decoupled decay on matrices (default 0)\n" \
    "  --clip C             global gradient-norm clip, 0 = off (default 1.0)\n" \
    "  --batch-tokens N     tokens per micro-batch; examples are packed whole (default 2048)\n" \
    "  --grad-accum K       micro-batches per step (default 1)\n" \
    "  --seed S             data order and initialisation (default 42)\n" \
    "  --bf16               matrix products with bfloat16 inputs and f32 accumulation (about\n" \
    "                       twice as fast where the CPU has AVX512_BF16; weights stay f32)\n" \
    "Run:\n" \
    "  --out DIR            run folder (required)\n" \
    "  --resume             continue the run in DIR exactly where its checkpoint left it\n" \
    "  --save-every N       steps between checkpoints (default 50; also each epoch's end)\n" \
    "  --eval-every N       steps between evaluations (default 50; also start and end)\n" \
    "  --threads N          worker threads (default: all cores)\n" \
    "  --plain              log lines instead of a progress bar\n"

/* Data options of the preference trainers, then the common ones. */
extern const char cli_train_help[];

typedef struct cli_train_args {
    rein_train_opts o;
    const char *model, *data, *eval;
    rein_data_format fmt;
    int skip_bad, alpha_set;
    long max_len;
} cli_train_args;

void cli_train_args_init(cli_train_args *a);
/* Take a shared option (returns 1) or leave it to the command (0). Exits on a bad value. */
int cli_train_option(const char *cmd, int opt, const char *arg, cli_train_args *a);
/* After parsing: required options, alpha's default, the model path. Exits on a problem. */
void cli_train_args_check(const char *cmd, cli_train_args *a);

/* Read a preference, HH or ranking file and build its examples; prints every problem as
 * FILE:LINE and exits on failure. *ds_out (if not NULL) gets the dataset (caller frees). */
rein_example_set *cli_load_pref_examples(const char *cmd, const char *path, rein_data_format fmt,
                                         int skip_bad, const rein_example_params *ep,
                                         rein_dataset **ds_out);
/* Group the examples into comparisons, with the file's per-record margins; exits on failure. */
void cli_pref_set(const char *cmd, const rein_example_set *set, const rein_dataset *ds,
                  rein_pref_set *ps);

/* What a preference trainer starts from: the model, its training (and evaluation) comparisons. */
typedef struct cli_pref_data {
    rein_model *m;
    rein_dataset *ds, *eds;
    rein_example_set *train, *ev; /* ev NULL without --eval */
    rein_pref_set ps, pe;
    size_t n_tok;                 /* training tokens per pass */
} cli_pref_data;

/* Load a->model and a->data (and a->eval), with the files' margins when `margins`; exits on any
 * problem, printing each bad line. */
void cli_pref_data_load(const char *cmd, const cli_train_args *a, int margins, cli_pref_data *d);
void cli_pref_data_free(cli_pref_data *d);

#endif
