/* cmd_selfinstruct.c - `rein selfinstruct`: Self-Instruct alone (the first half of stage 1 of
 * `rein align`), into a run folder whose database keeps every instruction with its verdict; the
 * kept ones are exported to DIR/export/prompts.jsonl. */
#include "align/align.h"
#include "cli.h"

#include <string.h>

static const char help[] =
    "Usage: rein selfinstruct [-m MODEL] --out DIR [--n N] [--seed-tasks FILE] [options]\n"
    "\n"
    "Make N new instructions from seed tasks (Self-Instruct): the model continues numbered lists\n"
    "of 6 seed and 2 generated instructions; an instruction is kept when it has 3-150 words,\n"
    "starts with a letter, avoids tasks a text model cannot do (images, files, drawing...), and\n"
    "its ROUGE-L against every instruction kept so far (seeds included) is below 0.7. Every\n"
    "candidate and its verdict go to DIR/run.db; the kept ones to DIR/export/prompts.jsonl.\n"
    "  -m, --model FILE   model (default: the default model)\n"
    "  --out DIR          run folder (required; an existing one is continued)\n"
    "  --n N              instructions to keep (default 100)\n"
    "  --seed-tasks FILE  .jsonl in Self-Instruct's format, or one a line (data/seed_tasks.txt)\n"
    "  --seed S           random seed (default 42)\n"
    "  --parallel N       sequences decoded together (default 16)\n"
    "  --threads N        worker threads\n"
    "  --int8-decode      decode with int8 activations (Q8_0, Q4_1 weights; AVX-512 VNNI):\n"
    "                     faster, batched most; logits slightly off the exact default's\n"
    "  --kv-f16           keys and values cached as f16: half the cache's memory, faster\n"
    "                     batched decoding; logits slightly off the f32 cache's\n"
    "  --plain            log lines instead of a progress bar\n";

enum { O_OUT = 2000, O_N, O_STASKS, O_SEED, O_PAR, O_THREADS, O_PLAIN };

int cmd_selfinstruct(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"out", required_argument, 0, O_OUT}, {"n", required_argument, 0, O_N},
        {"seed-tasks", required_argument, 0, O_STASKS}, {"seed", required_argument, 0, O_SEED},
        {"parallel", required_argument, 0, O_PAR}, {"threads", required_argument, 0, O_THREADS},
        {"plain", no_argument, 0, O_PLAIN}, CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        {0, 0, 0, 0}};
    rein_align_opts o = rein_align_default_opts();
    o.n_prompts = 100;
    const char *stasks = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': o.model_path = optarg; break;
        case O_OUT: o.out_dir = optarg; break;
        case O_N: o.n_prompts = (int)cli_parse_long("selfinstruct", "--n", optarg, 1, 10000000); break;
        case O_STASKS: stasks = optarg; break;
        case O_SEED: o.seed = (uint64_t)cli_parse_long("selfinstruct", "--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_PAR: o.n_parallel = (int)cli_parse_long("selfinstruct", "--parallel", optarg, 1, 1024); break;
        case O_THREADS: rein_set_threads((int)cli_parse_long("selfinstruct", "--threads", optarg, 1, 256)); break;
        case OPT_INT8_DECODE: cli_int8_decode("selfinstruct"); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        case O_PLAIN: o.plain = 1; break;
        default: cli_usage_error("selfinstruct", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("selfinstruct", "unexpected argument '%s'", argv[optind]);
    if (!o.out_dir) cli_usage_error("selfinstruct", "--out DIR is required");
    o.model_path = cli_model_path("selfinstruct", o.model_path);
    rein_align_inputs in;
    cli_align_inputs("selfinstruct", NULL, NULL, NULL, stasks, NULL, &in);
    rein_status st = rein_align_stage_prompts(&o, &in, 1);
    if (!st) st = rein_align_export(o.out_dir);
    rein_align_inputs_free(&in);
    if (st) cli_die("selfinstruct", st);
    fprintf(stderr, "rein selfinstruct: %s/run.db, kept instructions in %s/export/prompts.jsonl\n",
            o.out_dir, o.out_dir);
    return 0;
}
