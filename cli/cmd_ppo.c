/* cmd_ppo.c - `rein ppo` and `rein grpo`: RL from a reward model or a rule-based reward, with a
 * LoRA adapter, exact resume and the guards of train/rl.h. */
#include "cli.h"
#include "train/rl.h"
#include "train_opts.h"

#include <stdlib.h>
#include <string.h>

static const char help_ppo[] =
    "Usage: rein ppo [-m MODEL] --prompts FILE.jsonl (--rm DIR | --reward SPEC)... --out DIR [options]\n"
    "\n"
    "PPO with a LoRA adapter: each iteration samples --batch prompts, one response each, scores\n"
    "them, penalises each token's KL to the reference (the base: the adapter switched off), and\n"
    "takes --epochs x --minibatches clipped policy and value steps. The value head is a scalar\n"
    "head on the policy's own hidden states. See docs/rl.md.\n";

static const char help_grpo[] =
    "Usage: rein grpo [-m MODEL] --prompts FILE.jsonl (--rm DIR | --reward SPEC)... --out DIR [options]\n"
    "\n"
    "GRPO (or RLOO with --algo rloo) with a LoRA adapter: each iteration samples --samples\n"
    "responses to each of --batch prompts; a response's advantage is its score against the\n"
    "others of its group (no value model). Optional KL penalty --beta (k3 estimator). See\n"
    "docs/rl.md.\n";

static const char help_common[] =
    "\n"
    "Prompts and rewards:\n"
    "  --prompts FILE       JSONL: {\"prompt\": \"...\"} or {\"messages\": [...]}, optional \"answer\";\n"
    "                       or HH records ({\"chosen\": \"\\n\\nHuman: ...\"}: the turns before the\n"
    "                       last answer). The chat template is applied. (required)\n"
    "  --rm DIR             a reward model from 'rein rm train' (scores normalised by its\n"
    "                       training mean and std; --rm-raw for the raw scores)\n"
    "  --reward SPEC        regex:PATTERN (1 if the reply matches; {answer} = the prompt's answer)\n"
    "                       or length:TARGET (1 - |tokens - TARGET| / TARGET, at least 0)\n"
    "  --weight W           weight of the last --rm / --reward (default 1); scores are summed\n"
    "  --no-eos-penalty P   added to the score of a reply that never ended (default 0; try -1)\n"
    "  --eval FILE          held-out prompts answered greedily: eval_reward / eval_kl in the\n"
    "                       metrics, the answers in DIR/eval_ITER.jsonl\n"
    "  --eval-n N           evaluate on the first N of them (default all)\n"
    "  --eval-every N       iterations between evaluations (default: start and end only)\n"
    "Rollouts:\n"
    "  -m, --model FILE     GGUF model (default: the default model)\n"
    "  --iterations N       rollout + update rounds (default 100)\n"
    "  --batch N            prompts per iteration (default ppo 16, grpo 4)\n"
    "  --samples G          samples per prompt (default ppo 1, grpo 8)\n"
    "  --max-tokens N       longest reply (default 64)\n"
    "  --max-prompt-tokens N  longest prompt (default 256)\n"
    "  --skip-long          skip longer prompts instead of failing\n"
    "  --temp T, --top-k K, --top-p P, --min-p P   sampling (default: temperature 1, nothing cut;\n"
    "                       the log-probs are always the model's own, at temperature 1)\n"
    "Update:\n"
    "  --epochs E           passes over each rollout batch (default ppo 4, grpo 1)\n"
    "  --minibatches M      optimizer steps per pass (default 1)\n"
    "  --lr LR              learning rate (default ppo 1e-4, grpo 2e-5)\n"
    "  --schedule S         constant, linear or cosine over all steps (default constant)\n"
    "  --clip C             gradient-norm clip (default 1)\n"
    "  --weight-decay W     AdamW decay (default 0)\n"
    "  --clip-eps E         policy ratio clip (default 0.2)\n"
    "  --batch-tokens N     tokens per forward chunk (default 2048)\n"
    "  --lora-rank R, --lora-alpha A, --lora-targets LIST   the adapter (default 16, 2 x rank, all)\n"
    "PPO:\n"
    "  --kl-coef C          KL penalty coefficient (default 0.05)\n"
    "  --kl-target K        adaptive coefficient: target KL per reply (default 0 = fixed)\n"
    "  --kl-horizon H       the controller's horizon in samples (default 10000)\n"
    "  --kl-estimator E     k1, k2 or k3 for the penalty (default ppo k1, grpo k3)\n"
    "  --vf-coef C          value-loss weight (default 0.1)\n"
    "  --clip-v E           value clip (default 0.2)\n"
    "  --gamma G, --lam L   GAE (default 1, 0.95)\n"
    "  --no-whiten          do not whiten the advantages\n"
    "GRPO:\n"
    "  --algo A             grpo or rloo (default grpo)\n"
    "  --beta B             KL penalty in the loss (default 0 = none)\n"
    "  --no-scale-std       subtract the group mean only (Dr. GRPO)\n"
    "Guards and run:\n"
    "  --kl-max K           KL alarm: mean KL per reply above K ...\n"
    "  --kl-alarm A         ... lower (halve the learning rate, default) or stop\n"
    "  --max-bad-steps N    non-finite iterations in a row that stop the run (default 5)\n"
    "  --out DIR            run folder: metrics.jsonl, checkpoint.bin, adapter/ (required)\n"
    "  --resume             continue the run in DIR exactly where its checkpoint left it\n"
    "  --save-every N       iterations between checkpoints (default 10; also the last)\n"
    "  --seed S             prompts order, samples, adapter initialisation (default 42)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --int8-decode        sample with int8 activations (Q8_0, Q4_1 weights; AVX-512 VNNI):\n"
    "                       faster rollouts; their log-probs slightly off the exact ones\n"
    "  --kv-f16             keys and values cached as f16 in the rollouts: half the cache's\n"
    "                       memory, faster; their log-probs slightly off the exact ones\n"
    "  --plain              log lines instead of a progress bar\n";

/* The options that mean what they mean in the other trainers are parsed by train_opts.c
 * (OPT_T_*); these are RL's own. */
enum {
    O_PROMPTS = OPT_T_NEXT, O_RM, O_RMRAW, O_REWARD, O_WEIGHT, O_NOEOS, O_EVAL, O_EVALN,
    O_EVALEVERY, O_ITERS, O_BATCH, O_SAMPLES, O_MAXTOK, O_MAXPROMPT, O_SKIPLONG, O_MB, O_CLIPEPS,
    O_KLCOEF, O_KLTARGET, O_KLHORIZON, O_KLEST, O_VF, O_CLIPV, O_GAMMA, O_LAM, O_NOWHITEN, O_ALGO,
    O_BETA, O_NOSCALE, O_KLMAX, O_KLALARM, O_MAXBAD
};

typedef struct scorer_arg {
    const char *spec;
    int is_rm;
    float weight;
} scorer_arg;

static rein_rl_prompts *load_prompts(const char *cmd, const char *path, const rein_model *m,
                                     int max_tokens, int skip_long) {
    rein_rl_prompts *ps = NULL;
    rein_buf problems = {0};
    rein_status st = rein_rl_prompts_read(path, m, max_tokens, skip_long, &ps, &problems);
    if (problems.len) fputs(problems.data, stderr);
    rein_buf_free(&problems);
    if (st) cli_die(cmd, st);
    if (ps->n_skipped)
        fprintf(stderr, "rein %s: %s: skipped %zu prompts longer than %d tokens\n", cmd, path,
                ps->n_skipped, max_tokens);
    return ps;
}

static int run(int argc, char **argv, rein_rl_algo algo) {
    const char *cmd = algo == REIN_RL_PPO ? "ppo" : "grpo";
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"prompts", required_argument, 0, O_PROMPTS}, {"rm", required_argument, 0, O_RM},
        {"rm-raw", no_argument, 0, O_RMRAW}, {"reward", required_argument, 0, O_REWARD},
        {"weight", required_argument, 0, O_WEIGHT},
        {"no-eos-penalty", required_argument, 0, O_NOEOS}, {"eval", required_argument, 0, O_EVAL},
        {"eval-n", required_argument, 0, O_EVALN},
        {"eval-every", required_argument, 0, O_EVALEVERY},
        {"iterations", required_argument, 0, O_ITERS}, {"batch", required_argument, 0, O_BATCH},
        {"samples", required_argument, 0, O_SAMPLES},
        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"max-prompt-tokens", required_argument, 0, O_MAXPROMPT},
        {"skip-long", no_argument, 0, O_SKIPLONG}, {"epochs", required_argument, 0, OPT_T_EPOCHS},
        {"minibatches", required_argument, 0, O_MB}, {"lr", required_argument, 0, OPT_T_LR},
        {"schedule", required_argument, 0, OPT_T_SCHED}, {"clip", required_argument, 0, OPT_T_CLIP},
        {"weight-decay", required_argument, 0, OPT_T_WD},
        {"clip-eps", required_argument, 0, O_CLIPEPS},
        {"batch-tokens", required_argument, 0, OPT_T_BT}, {"lora-rank", required_argument, 0, OPT_T_RANK},
        {"lora-alpha", required_argument, 0, OPT_T_ALPHA},
        {"lora-targets", required_argument, 0, OPT_T_TARGETS},
        {"kl-coef", required_argument, 0, O_KLCOEF}, {"kl-target", required_argument, 0, O_KLTARGET},
        {"kl-horizon", required_argument, 0, O_KLHORIZON},
        {"kl-estimator", required_argument, 0, O_KLEST}, {"vf-coef", required_argument, 0, O_VF},
        {"clip-v", required_argument, 0, O_CLIPV}, {"gamma", required_argument, 0, O_GAMMA},
        {"lam", required_argument, 0, O_LAM}, {"no-whiten", no_argument, 0, O_NOWHITEN},
        {"algo", required_argument, 0, O_ALGO}, {"beta", required_argument, 0, O_BETA},
        {"no-scale-std", no_argument, 0, O_NOSCALE}, {"kl-max", required_argument, 0, O_KLMAX},
        {"kl-alarm", required_argument, 0, O_KLALARM},
        {"max-bad-steps", required_argument, 0, O_MAXBAD}, {"out", required_argument, 0, OPT_T_OUT},
        {"resume", no_argument, 0, OPT_T_RESUME}, {"save-every", required_argument, 0, OPT_T_SAVE},
        {"seed", required_argument, 0, OPT_T_SEED}, {"threads", required_argument, 0, OPT_T_THREADS},
        {"plain", no_argument, 0, OPT_T_PLAIN}, CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        {"temp", required_argument, 0, OPT_TEMP}, {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P}, {"min-p", required_argument, 0, OPT_MIN_P},
        {0, 0, 0, 0}};
    rein_rl_opts o = rein_rl_default_opts(algo);
    const char *model = NULL, *prompts = NULL, *eval = NULL;
    scorer_arg sa[32];
    int n_sa = 0, rm_raw = 0, skip_long = 0, alpha_set = 0, beta_set = 0, est_set = 0;
    cli_train_args ta;
    cli_train_args_init(&ta);
    unsigned char given[OPT_T_NEXT - OPT_T_DATA] = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        if (cli_sampling_option(cmd, c, optarg, &o.sampler)) continue;
        if (c == 'm' || (c >= OPT_T_DATA && c < OPT_T_NEXT)) {
            cli_train_option(cmd, c, optarg, &ta);
            if (c != 'm') given[c - OPT_T_DATA] = 1;
            continue;
        }
        switch (c) {
        case 'h':
            fputs(algo == REIN_RL_PPO ? help_ppo : help_grpo, stdout);
            fputs(help_common, stdout);
            return 0;
        case O_PROMPTS: prompts = optarg; break;
        case O_RM:
        case O_REWARD:
            if (n_sa == 32) cli_usage_error(cmd, "at most 32 --rm / --reward");
            sa[n_sa++] = (scorer_arg){optarg, c == O_RM, 1.0f};
            break;
        case O_RMRAW: rm_raw = 1; break;
        case O_WEIGHT:
            if (!n_sa) cli_usage_error(cmd, "--weight follows the --rm or --reward it weighs");
            sa[n_sa - 1].weight = (float)cli_parse_double(cmd, "--weight", optarg, -1e6, 1e6);
            break;
        case O_NOEOS: o.no_eos_penalty = (float)cli_parse_double(cmd, "--no-eos-penalty", optarg, -1e6, 1e6); break;
        case O_EVAL: eval = optarg; break;
        case O_EVALN: o.eval_n = (int)cli_parse_long(cmd, "--eval-n", optarg, 1, 1 << 24); break;
        case O_EVALEVERY: o.eval_every = cli_parse_long(cmd, "--eval-every", optarg, 0, 1L << 40); break;
        case O_ITERS: o.iterations = cli_parse_long(cmd, "--iterations", optarg, 1, 1L << 40); break;
        case O_BATCH: o.n_prompts = (int)cli_parse_long(cmd, "--batch", optarg, 1, 4096); break;
        case O_SAMPLES: o.n_samples = (int)cli_parse_long(cmd, "--samples", optarg, 1, 1024); break;
        case O_MAXTOK: o.max_tokens = (int)cli_parse_long(cmd, "--max-tokens", optarg, 1, 1 << 16); break;
        case O_MAXPROMPT: o.max_prompt_tokens = (int)cli_parse_long(cmd, "--max-prompt-tokens", optarg, 1, 1 << 20); break;
        case O_SKIPLONG: skip_long = 1; break;
        case O_MB: o.minibatches = (int)cli_parse_long(cmd, "--minibatches", optarg, 1, 1 << 20); break;
        case O_CLIPEPS: o.clip_eps = (float)cli_parse_double(cmd, "--clip-eps", optarg, 1e-6, 10); break;
        case O_KLCOEF: o.kl_coef = (float)cli_parse_double(cmd, "--kl-coef", optarg, 0, 1e6); break;
        case O_KLTARGET: o.kl_target = (float)cli_parse_double(cmd, "--kl-target", optarg, 0, 1e6); break;
        case O_KLHORIZON: o.kl_horizon = (float)cli_parse_double(cmd, "--kl-horizon", optarg, 1, 1e12); break;
        case O_KLEST:
            if (rein_kl_estimator_from_name(optarg, &o.kl_est)) cli_die(cmd, REIN_ERR_INVALID);
            est_set = 1;
            break;
        case O_VF: o.vf_coef = (float)cli_parse_double(cmd, "--vf-coef", optarg, 0, 1e6); break;
        case O_CLIPV: o.clip_v = (float)cli_parse_double(cmd, "--clip-v", optarg, 1e-6, 1e6); break;
        case O_GAMMA: o.gamma = (float)cli_parse_double(cmd, "--gamma", optarg, 0, 1); break;
        case O_LAM: o.lam = (float)cli_parse_double(cmd, "--lam", optarg, 0, 1); break;
        case O_NOWHITEN: o.whiten_adv = 0; break;
        case O_ALGO:
            if (algo == REIN_RL_PPO) cli_usage_error(cmd, "--algo belongs to 'rein grpo'");
            if (!strcmp(optarg, "grpo")) o.algo = REIN_RL_GRPO;
            else if (!strcmp(optarg, "rloo")) o.algo = REIN_RL_RLOO;
            else cli_usage_error(cmd, "--algo expects grpo or rloo, got '%s'", optarg);
            break;
        case O_BETA:
            o.kl_coef = (float)cli_parse_double(cmd, "--beta", optarg, 0, 1e6);
            beta_set = 1;
            break;
        case O_NOSCALE: o.scale_std = 0; break;
        case O_KLMAX: o.kl_max = (float)cli_parse_double(cmd, "--kl-max", optarg, 0, 1e9); break;
        case O_KLALARM:
            if (!strcmp(optarg, "lower")) o.kl_alarm_lower = 1;
            else if (!strcmp(optarg, "stop")) o.kl_alarm_lower = 0;
            else cli_usage_error(cmd, "--kl-alarm expects lower or stop, got '%s'", optarg);
            break;
        case OPT_INT8_DECODE: cli_int8_decode(cmd); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        case O_MAXBAD: o.max_bad_steps = (int)cli_parse_long(cmd, "--max-bad-steps", optarg, 1, 1 << 20); break;
        default: cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind < argc) cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
#define GIVEN(opt) given[(opt) - OPT_T_DATA]
    if (GIVEN(OPT_T_RANK)) o.lora.rank = ta.o.lora.rank;
    if (GIVEN(OPT_T_ALPHA)) o.lora.alpha = ta.o.lora.alpha, alpha_set = 1;
    if (GIVEN(OPT_T_TARGETS)) o.lora.targets = ta.o.lora.targets;
    if (GIVEN(OPT_T_EPOCHS)) o.epochs = ta.o.epochs;
    if (GIVEN(OPT_T_LR)) o.adam.lr = ta.o.adam.lr;
    if (GIVEN(OPT_T_SCHED)) o.schedule = ta.o.schedule;
    if (GIVEN(OPT_T_WD)) o.adam.weight_decay = ta.o.adam.weight_decay;
    if (GIVEN(OPT_T_CLIP)) o.clip = ta.o.clip;
    if (GIVEN(OPT_T_BT)) o.batch_tokens = ta.o.batch_tokens;
    if (GIVEN(OPT_T_SEED)) o.seed = o.lora.seed = ta.o.seed;
    if (GIVEN(OPT_T_SAVE)) o.save_every = ta.o.save_every;
#undef GIVEN
    o.out_dir = ta.o.out_dir;
    o.resume = ta.o.resume;
    o.plain_log = ta.o.plain_log;
    model = ta.model;
    if (!prompts) cli_usage_error(cmd, "--prompts FILE is required");
    if (!o.out_dir) cli_usage_error(cmd, "--out DIR is required");
    if (!n_sa) cli_usage_error(cmd, "no reward: give --rm DIR or --reward SPEC");
    if (algo == REIN_RL_PPO && beta_set) cli_usage_error(cmd, "ppo's KL penalty is --kl-coef");
    if (algo != REIN_RL_PPO && o.kl_target > 0)
        cli_usage_error(cmd, "--kl-target (the adaptive controller) belongs to ppo");
    (void)est_set;
    if (!alpha_set) o.lora.alpha = 2.0f * (float)o.lora.rank;
    model = cli_model_path(cmd, model);

    rein_status st;
    rein_model *m;
    if ((st = rein_model_load(model, &m))) cli_die(cmd, st);
    rein_rl_prompts *ps = load_prompts(cmd, prompts, m, o.max_prompt_tokens, skip_long);
    rein_rl_prompts *ev = eval ? load_prompts(cmd, eval, m, o.max_prompt_tokens, skip_long) : NULL;
    o.eval = ev;
    rein_scorers *sc;
    if ((st = rein_scorers_new(&sc))) cli_die(cmd, st);
    for (int i = 0; i < n_sa; i++) {
        st = sa[i].is_rm ? rein_scorers_add_rm(sc, sa[i].spec, sa[i].weight, !rm_raw, m)
                         : rein_scorers_add(sc, sa[i].spec, sa[i].weight, m);
        if (st) cli_die(cmd, st);
    }
    fprintf(stderr, "rein %s: %zu prompts, %d x %d samples per iteration, %lld iterations, LoRA r=%d, "
            "%d threads\n", rein_rl_algo_name(o.algo), ps->n, o.n_prompts, o.n_samples,
            (long long)o.iterations, o.lora.rank, rein_get_threads());
    st = rein_rl_run(m, &o, ps, sc, NULL);
    if (st) cli_die(cmd, st);
    fprintf(stderr, "rein %s: wrote %s/adapter\n", rein_rl_algo_name(o.algo), o.out_dir);
    rein_scorers_free(sc);
    rein_rl_prompts_free(ps);
    rein_rl_prompts_free(ev);
    rein_model_free(m);
    return 0;
}

int cmd_ppo(int argc, char **argv) {
    return run(argc, argv, REIN_RL_PPO);
}

int cmd_grpo(int argc, char **argv) {
    return run(argc, argv, REIN_RL_GRPO);
}
