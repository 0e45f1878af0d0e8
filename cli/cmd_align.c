/* cmd_align.c - `rein align`: principle-driven self-alignment from scratch, all four stages into a
 * run folder (or one stage: `rein align answer|engrave|clone`), then the evaluation and report.
 * Also the helpers that `rein selfinstruct` shares: finding rein's data/ folder and reading the
 * human-written inputs. */
#include "align/align.h"
#include "cli.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "Usage: rein align [-m MODEL] --out DIR [--prompts N] [--stages A-B] [--resume] [options]\n"
    "       rein align prompts|answer|engrave|clone|report|export --out DIR [options]\n"
    "\n"
    "Align a model with fewer than 300 lines of human-written input (principle-driven\n"
    "self-alignment, after Sun et al. 2023), in four stages, then compare base and aligned model:\n"
    "  1 prompts  Self-Instruct from seed tasks + topic-guided red-teaming from seed questions\n"
    "  2 answer   the base model answers each prompt after the principles and worked exemplars\n"
    "             (internal thoughts, then the answer), parsed and filtered\n"
    "  3 engrave  LoRA fine-tuning on prompt -> answer without principles, exemplars or thoughts\n"
    "  4 clone    the engraved model answers at length; those answers train the final adapter\n"
    "Everything generated, with each filter's verdict and reason, goes to DIR/run.db (SQLite); a\n"
    "killed run continues item by item with --resume. DIR/export/ holds the data as JSONL in TRL's\n"
    "forms, DIR/clone/adapter the aligned adapter (PEFT), DIR/report.md and .html the comparison.\n"
    "\n"
    "Run:\n"
    "  -m, --model FILE       base model (default: the default model)\n"
    "  --out DIR              run folder (required)\n"
    "  --prompts N            prompts to make in stage 1, half red-teaming (default 200)\n"
    "  --stages A-B           stages to run, e.g. 1-4, 2, 3-4 (default 1-4)\n"
    "  --resume               continue the run in DIR (required when DIR holds one)\n"
    "  --seed S               every random choice of the run (default 42)\n"
    "  --parallel N           sequences decoded together (default 16)\n"
    "  --threads N            worker threads (default: all cores)\n"
    "  --int8-decode          decode with int8 activations (Q8_0, Q4_1 weights; AVX-512\n"
    "                         VNNI): faster, batched most; logits slightly off the exact default's\n"
    "  --kv-f16               keys and values cached as f16: half the cache's memory, faster\n"
    "                         batched decoding; logits slightly off the f32 cache's\n"
    "  --plain                log lines instead of progress bars\n"
    "Inputs (rein's own in data/ by default; replace any with your own):\n"
    "  --principles FILE      one 'name: text' a line (data/principles.txt)\n"
    "  --exemplars FILE       User:/Thoughts:/Answer: blocks ended by === (data/exemplars.txt)\n"
    "  --seeds FILE           red-teaming types, topics and seed questions (data/redteam_types.txt)\n"
    "  --seed-tasks FILE      Self-Instruct seeds: .jsonl (\"instruction\") or one a line\n"
    "                         (data/seed_tasks.txt)\n"
    "  --verbose-prompt FILE  the system prompt of verbose cloning (data/verbose_prompt.txt)\n"
    "Generation and training:\n"
    "  --answer-tokens N      longest principle-driven answer (default 192)\n"
    "  --clone-tokens N       longest verbose answer (default 320)\n"
    "  --lora-rank R          LoRA rank of stages 3 and 4 (default 16; alpha = 2 R)\n"
    "  --lr LR                learning rate (default 2e-4)\n"
    "  --epochs E             passes over the answers (default 3)\n"
    "  --batch-tokens N       tokens per micro-batch (default 2048)\n"
    "  --max-len L            longest training example; longer ones are left out (default 1024)\n"
    "  --keep-all             record every filter's verdict but keep every non-empty item (for\n"
    "                         machinery tests on toy models that cannot follow the format)\n"
    "Evaluation (after stage 3 or 4):\n"
    "  --no-eval              write the report without evaluating\n"
    "  --eval-behaviors FILE  harmful prompts (data/heldout_redteam.txt; CSV, JSONL or lines)\n"
    "  --eval-benign FILE     benign prompts (data/heldout_benign.txt)\n"
    "  --refusals FILE        refusal phrases, one a line (data/refusal_phrases.txt)\n"
    "  --eval-tokens N        decoding length of the evaluation (default 64)\n";

enum {
    O_OUT = 2000, O_PROMPTS, O_STAGES, O_RESUME, O_SEED, O_PAR, O_THREADS, O_PLAIN, O_PRINC,
    O_EXEMP, O_SEEDS, O_STASKS, O_VERB, O_ATOK, O_CTOK, O_RANK, O_LR, O_EPOCHS, O_BT, O_MAXLEN,
    O_KEEP, O_NOEVAL, O_EBEH, O_EBEN, O_REF, O_ETOK
};

const char *cli_data_path(const char *cmd, const char *name) {
    static char path[8][PATH_MAX + 64];
    static int next;
    char *out = path[next++ % 8];
    snprintf(out, PATH_MAX + 64, "data/%s", name);
    if (access(out, R_OK) == 0) return out;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *dir = dirname(exe);
        snprintf(out, PATH_MAX + 64, "%s/data/%s", dir, name);
        if (access(out, R_OK) == 0) return out;
        snprintf(out, PATH_MAX + 64, "%s/../data/%s", dir, name);
        if (access(out, R_OK) == 0) return out;
    }
    fprintf(stderr, "rein %s: rein's data file data/%s was not found beside the current folder or "
            "the program; give the file with its option\n", cmd, name);
    exit(1);
}

/* Read one input file with parser `fn`; exits with the parser's message on failure. */
static void read_input(const char *cmd, const char *path,
                       rein_status (*fn)(const char *, const char *, rein_align_inputs *),
                       rein_align_inputs *in) {
    rein_buf b = {0};
    rein_status st = rein_read_file(path, &b);
    if (!st) st = fn(path, b.data ? b.data : "", in);
    rein_buf_free(&b);
    if (st) cli_die(cmd, st);
}

void cli_align_inputs(const char *cmd, const char *principles, const char *exemplars,
                      const char *seeds, const char *seed_tasks, const char *verbose,
                      rein_align_inputs *in) {
    memset(in, 0, sizeof *in);
    read_input(cmd, principles ? principles : cli_data_path(cmd, "principles.txt"),
               rein_principles_parse, in);
    read_input(cmd, exemplars ? exemplars : cli_data_path(cmd, "exemplars.txt"),
               rein_exemplars_parse, in);
    read_input(cmd, seeds ? seeds : cli_data_path(cmd, "redteam_types.txt"), rein_rt_types_parse,
               in);
    read_input(cmd, seed_tasks ? seed_tasks : cli_data_path(cmd, "seed_tasks.txt"),
               rein_seed_tasks_parse, in);
    rein_buf b = {0};
    const char *vp = verbose ? verbose : cli_data_path(cmd, "verbose_prompt.txt");
    rein_status st = rein_read_file(vp, &b);
    if (st) cli_die(cmd, st);
    /* the file's text without '#' lines, trimmed */
    rein_buf t = {0};
    for (char *p = b.data ? b.data : ""; *p;) {
        char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && p[0] != '#') {
            if (t.len) rein_buf_append(&t, " ", 1);
            rein_buf_append(&t, p, n);
        }
        p = e ? e + 1 : p + n;
    }
    rein_buf_free(&b);
    if (!t.len) {
        rein_error(REIN_ERR_FORMAT, "%s: empty verbose-cloning prompt", vp);
        cli_die(cmd, REIN_ERR_FORMAT);
    }
    in->verbose_system = t.data;
}

static void parse_stages(const char *s, rein_align_opts *o) {
    int a, b;
    char extra;
    if (sscanf(s, "%d-%d%c", &a, &b, &extra) == 2) {
    } else if (sscanf(s, "%d%c", &a, &extra) == 1) {
        b = a;
    } else {
        cli_usage_error("align", "--stages expects A-B or A with stages 1 to 4, got '%s'", s);
    }
    if (a < 1 || b > 4 || a > b)
        cli_usage_error("align", "--stages expects a range within 1-4, got '%s'", s);
    o->first_stage = a;
    o->last_stage = b;
}

int cmd_align(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"out", required_argument, 0, O_OUT}, {"prompts", required_argument, 0, O_PROMPTS},
        {"stages", required_argument, 0, O_STAGES}, {"resume", no_argument, 0, O_RESUME},
        {"seed", required_argument, 0, O_SEED}, {"parallel", required_argument, 0, O_PAR},
        {"threads", required_argument, 0, O_THREADS}, {"plain", no_argument, 0, O_PLAIN},
        CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        {"principles", required_argument, 0, O_PRINC}, {"exemplars", required_argument, 0, O_EXEMP},
        {"seeds", required_argument, 0, O_SEEDS}, {"seed-tasks", required_argument, 0, O_STASKS},
        {"verbose-prompt", required_argument, 0, O_VERB},
        {"answer-tokens", required_argument, 0, O_ATOK},
        {"clone-tokens", required_argument, 0, O_CTOK},
        {"lora-rank", required_argument, 0, O_RANK}, {"lr", required_argument, 0, O_LR},
        {"epochs", required_argument, 0, O_EPOCHS}, {"batch-tokens", required_argument, 0, O_BT},
        {"max-len", required_argument, 0, O_MAXLEN}, {"keep-all", no_argument, 0, O_KEEP},
        {"no-eval", no_argument, 0, O_NOEVAL}, {"eval-behaviors", required_argument, 0, O_EBEH},
        {"eval-benign", required_argument, 0, O_EBEN}, {"refusals", required_argument, 0, O_REF},
        {"eval-tokens", required_argument, 0, O_ETOK}, {0, 0, 0, 0}};
    const char *sub = NULL;
    if (argc > 1 && argv[1][0] != '-') {
        sub = argv[1];
        static const char *subs[] = {"prompts", "answer", "engrave", "clone", "report", "export"};
        int ok = 0;
        for (int i = 0; i < 6; i++) ok |= !strcmp(sub, subs[i]);
        if (!ok)
            cli_usage_error("align", "unknown sub-command '%s' (prompts, answer, engrave, clone, "
                            "report or export)", sub);
        argc--;
        argv++;
    }
    rein_align_opts o = rein_align_default_opts();
    const char *princ = NULL, *exemp = NULL, *seeds = NULL, *stasks = NULL, *verb = NULL;
    int resume = 0, c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': o.model_path = optarg; break;
        case O_OUT: o.out_dir = optarg; break;
        case O_PROMPTS: o.n_prompts = (int)cli_parse_long("align", "--prompts", optarg, 2, 10000000); break;
        case O_STAGES: parse_stages(optarg, &o); break;
        case O_RESUME: resume = 1; break;
        case O_SEED: o.seed = (uint64_t)cli_parse_long("align", "--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_PAR: o.n_parallel = (int)cli_parse_long("align", "--parallel", optarg, 1, 1024); break;
        case O_THREADS: rein_set_threads((int)cli_parse_long("align", "--threads", optarg, 1, 256)); break;
        case OPT_INT8_DECODE: cli_int8_decode("align"); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        case O_PLAIN: o.plain = 1; break;
        case O_PRINC: princ = optarg; break;
        case O_EXEMP: exemp = optarg; break;
        case O_SEEDS: seeds = optarg; break;
        case O_STASKS: stasks = optarg; break;
        case O_VERB: verb = optarg; break;
        case O_ATOK: o.answer_max_tokens = (int)cli_parse_long("align", "--answer-tokens", optarg, 1, 1 << 20); break;
        case O_CTOK: o.clone_max_tokens = (int)cli_parse_long("align", "--clone-tokens", optarg, 1, 1 << 20); break;
        case O_RANK: o.lora_rank = (int)cli_parse_long("align", "--lora-rank", optarg, 1, 4096); break;
        case O_LR: o.lr = (float)cli_parse_double("align", "--lr", optarg, 0, 10); break;
        case O_EPOCHS: o.epochs = (int)cli_parse_long("align", "--epochs", optarg, 1, 10000); break;
        case O_BT: o.batch_tokens = (int)cli_parse_long("align", "--batch-tokens", optarg, 2, 1 << 22); break;
        case O_MAXLEN: o.max_len = (int)cli_parse_long("align", "--max-len", optarg, 2, 1 << 20); break;
        case O_KEEP: o.keep_all = 1; break;
        case O_NOEVAL: o.eval = 0; break;
        case O_EBEH: o.eval_harmful = optarg; break;
        case O_EBEN: o.eval_benign = optarg; break;
        case O_REF: o.refusals = optarg; break;
        case O_ETOK: o.eval_max_tokens = (int)cli_parse_long("align", "--eval-tokens", optarg, 1, 1 << 20); break;
        default: cli_usage_error("align", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("align", "unexpected argument '%s'", argv[optind]);
    if (!o.out_dir) cli_usage_error("align", "--out DIR is required");
    if (o.max_len > o.batch_tokens)
        cli_usage_error("align", "--max-len %d is larger than --batch-tokens %d", o.max_len,
                        o.batch_tokens);
    o.model_path = cli_model_path("align", o.model_path);
    if (!o.eval_harmful) o.eval_harmful = cli_data_path("align", "heldout_redteam.txt");
    if (!o.eval_benign) o.eval_benign = cli_data_path("align", "heldout_benign.txt");
    if (!o.refusals) o.refusals = cli_data_path("align", "refusal_phrases.txt");

    char db_path[PATH_MAX + 16];
    snprintf(db_path, sizeof db_path, "%s/run.db", o.out_dir);
    int exists = access(db_path, F_OK) == 0;
    if (!sub && exists && !resume && o.first_stage == 1) {
        rein_error(REIN_ERR_INVALID, "%s already holds a run (run.db): pass --resume to continue "
                   "it, or choose another --out", o.out_dir);
        cli_die("align", REIN_ERR_INVALID);
    }
    if ((sub && strcmp(sub, "prompts")) && !exists) {
        rein_error(REIN_ERR_INVALID, "%s holds no run (run.db): start one with 'rein align --out "
                   "%s'", o.out_dir, o.out_dir);
        cli_die("align", REIN_ERR_INVALID);
    }

    rein_align_inputs in;
    cli_align_inputs("align", princ, exemp, seeds, stasks, verb, &in);
    fprintf(stderr, "rein align: %s -> %s: %zu principles, %zu exemplars, %zu red-teaming types, "
            "%zu seed tasks; %d threads\n", o.model_path, o.out_dir, in.n_principles,
            in.n_exemplars, in.n_types, in.n_seed_tasks, rein_get_threads());
    rein_status st;
    if (!sub) st = rein_align_run(&o, &in);
    else if (!strcmp(sub, "prompts")) st = rein_align_stage_prompts(&o, &in, 0);
    else if (!strcmp(sub, "answer")) st = rein_align_stage_answer(&o, &in);
    else if (!strcmp(sub, "engrave")) st = rein_align_stage_engrave(&o, &in);
    else if (!strcmp(sub, "clone")) st = rein_align_stage_clone(&o, &in);
    else if (!strcmp(sub, "report")) st = rein_align_evaluate_and_report(&o, &in);
    else st = REIN_OK;
    if (!st && sub) st = rein_align_export(o.out_dir);
    rein_align_inputs_free(&in);
    if (st) cli_die("align", st);
    return 0;
}
