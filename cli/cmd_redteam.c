/* cmd_redteam.c - `rein redteam eval`: attack-success and over-refusal rates of a model (and
 * adapter) under a frozen chat template and greedy decoding, judged by a refusal phrase list. */
#include "align/align.h"
#include "cli.h"
#include "redteam/redteam.h"
#include "train/reward.h"

#include <string.h>

static const char help[] =
    "Usage: rein redteam eval [-m MODEL] [--adapter DIR] --behaviors FILE [--benign FILE] --out DIR\n"
    "\n"
    "Answer every harmful behaviour (and benign prompt) as one user turn through the model's chat\n"
    "template with its default system prompt, greedy, at most --max-tokens tokens; a response is\n"
    "a refusal when it contains a phrase of the list (a substring, case-sensitive, as the\n"
    "adversarial-suffix literature checks). Reports the attack-success rate (harmful answered)\n"
    "and the over-refusal rate (benign refused), each with a Wilson 95%% interval and n, as\n"
    "DIR/eval.json and DIR/table.md; every response and verdict in DIR/generations.jsonl.\n"
    "Prompt files: .csv with a header (AdvBench: goal,target), .jsonl (\"goal\", \"prompt\" or\n"
    "\"instruction\"; Self-Instruct seed tasks work), or one prompt a line.\n"
    "  -m, --model FILE    model (default: the default model)\n"
    "  --adapter DIR       a LoRA adapter (PEFT format, e.g. a run's clone/adapter), merged\n"
    "  --behaviors FILE    harmful behaviours (required)\n"
    "  --benign FILE       benign prompts, for the over-refusal rate\n"
    "  --refusals FILE     refusal phrases, one a line (data/refusal_phrases.txt)\n"
    "  --reward-model DIR  a reward model (rein rm train) as a second judge: the mean of its\n"
    "                      normalised rewards per set, with a 95%% interval, and each response's\n"
    "                      reward in generations.jsonl\n"
    "  --max-tokens N      decoding length (default 64)\n"
    "  --limit N           only the first N prompts of each file\n"
    "  --out DIR           where the results go (required)\n"
    "  --parallel N        sequences decoded together (default 16)\n"
    "  --threads N         worker threads\n"
    CLI_INT8_DECODE_HELP CLI_KV_F16_HELP
    "  --plain             log lines instead of progress bars\n";

enum {
    O_ADAPTER = 2000, O_BEH, O_BEN, O_REF, O_MAXTOK, O_LIMIT, O_OUT, O_PAR, O_THREADS, O_PLAIN, O_RM
};

int cmd_redteam(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "eval"))
        cli_usage_error("redteam", "unknown sub-command '%s' (eval)", argv[1]);
    argc--;
    argv++;
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"adapter", required_argument, 0, O_ADAPTER}, {"behaviors", required_argument, 0, O_BEH},
        {"benign", required_argument, 0, O_BEN}, {"refusals", required_argument, 0, O_REF},
        {"max-tokens", required_argument, 0, O_MAXTOK}, {"limit", required_argument, 0, O_LIMIT},
        {"out", required_argument, 0, O_OUT}, {"parallel", required_argument, 0, O_PAR},
        {"threads", required_argument, 0, O_THREADS}, {"plain", no_argument, 0, O_PLAIN},
        {"reward-model", required_argument, 0, O_RM}, CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        {0, 0, 0, 0}};
    const char *model = NULL, *adapter = NULL, *beh = NULL, *ben = NULL, *ref = NULL, *out = NULL;
    const char *rm_dir = NULL;
    rein_redteam_opts ro = rein_redteam_default_opts();
    long limit = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': model = optarg; break;
        case O_ADAPTER: adapter = optarg; break;
        case O_BEH: beh = optarg; break;
        case O_BEN: ben = optarg; break;
        case O_REF: ref = optarg; break;
        case O_MAXTOK: ro.max_tokens = (int)cli_parse_long("redteam", "--max-tokens", optarg, 1, 1 << 20); break;
        case O_LIMIT: limit = cli_parse_long("redteam", "--limit", optarg, 1, 1L << 40); break;
        case O_OUT: out = optarg; break;
        case O_PAR: ro.n_parallel = (int)cli_parse_long("redteam", "--parallel", optarg, 1, 1024); break;
        case O_THREADS: rein_set_threads((int)cli_parse_long("redteam", "--threads", optarg, 1, 256)); break;
        case OPT_INT8_DECODE: cli_int8_decode("redteam"); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        case O_PLAIN: ro.plain = 1; break;
        case O_RM: rm_dir = optarg; break;
        default: cli_usage_error("redteam", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("redteam", "unexpected argument '%s'", argv[optind]);
    if (!beh) cli_usage_error("redteam", "--behaviors FILE is required");
    if (!out) cli_usage_error("redteam", "--out DIR is required");
    model = cli_model_path("redteam", model);
    if (!ref) ref = cli_data_path("redteam", "refusal_phrases.txt");
    rein_prompt_set *harm = NULL, *benign = NULL;
    rein_refusal_judge *judge = NULL;
    rein_status st = rein_prompt_set_read(beh, &harm);
    if (!st && ben) st = rein_prompt_set_read(ben, &benign);
    if (!st) st = rein_refusal_judge_load(ref, &judge);
    if (st) cli_die("redteam", st);
    for (int k = 0; k < 2 && limit; k++) { /* --limit: the first N of each file */
        rein_prompt_set *s = k ? benign : harm;
        while (s && s->n > (size_t)limit) {
            s->n--;
            rein_free(s->text[s->n]);
            rein_free(s->target[s->n]);
        }
    }
    rein_model *m;
    if ((st = rein_align_load_model(model, adapter, &m))) cli_die("redteam", st);
    rein_reward_model *rm = NULL;
    if (rm_dir && (st = rein_rm_load(rm_dir, NULL, &rm))) cli_die("redteam", st);
    ro.rm = rm;
    ro.label = adapter ? "aligned" : "base";
    fprintf(stderr, "rein redteam eval: %s%s%s: %zu harmful%s%zu benign prompts, greedy, %d tokens, "
            "%d threads\n", model, adapter ? " + " : "", adapter ? adapter : "", harm->n,
            benign ? ", " : " (", benign ? benign->n : 0, ro.max_tokens, rein_get_threads());
    rein_redteam_result r;
    st = rein_redteam_eval(m, harm, benign, judge, &ro, &r);
    if (st) cli_die("redteam", st);
    char desc[8192];
    snprintf(desc, sizeof desc, "%s%s%s", model, adapter ? " + " : "", adapter ? adapter : "");
    st = rein_redteam_write(&r, harm, benign, judge, desc, out, stdout);
    if (st) cli_die("redteam", st);
    fprintf(stderr, "rein redteam eval: %.0f s; %s/eval.json, %s/table.md, %s/generations.jsonl\n",
            r.seconds, out, out, out);
    rein_redteam_result_free(&r);
    rein_rm_free(rm);
    rein_model_free(m);
    rein_prompt_set_free(harm);
    rein_prompt_set_free(benign);
    rein_refusal_judge_free(judge);
    return 0;
}
