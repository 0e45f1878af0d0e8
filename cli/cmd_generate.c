/* cmd_generate.c - `rein generate`: continue a prompt, or answer it as one chat turn. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char help_head[] =
    "Usage: rein generate [-m MODEL] -p PROMPT [options]\n"
    "\n"
    "Continue PROMPT and print the text as it is generated. With --chat, PROMPT is a user message\n"
    "rendered with the model's chat template, and the answer stops at the end of the turn.\n"
    "  -m, --model FILE    GGUF model (default: the default model)\n"
    "  --adapter DIR       apply a LoRA adapter (PEFT format, e.g. from rein sft)\n"
    "  -p, --prompt TEXT   the prompt ('-' reads standard input)\n"
    "  -n, --max-tokens N  new tokens at most (default 256)\n"
    "  --chat              treat PROMPT as a user turn of a conversation\n"
    "  --system TEXT       system prompt for --chat (default: the template's own, if any)\n"
    "  --template NAME     chat template: chatml, llama3 or generic (default: from the model)\n"
    "  --stop TEXT         stop when TEXT is generated (repeatable; TEXT is not printed)\n"
    "  --ctx N             context size (default: prompt + max tokens, at most the model's)\n"
    "  --threads N         worker threads (default: all cores, or $REIN_THREADS)\n"
    CLI_INT8_DECODE_HELP CLI_KV_F16_HELP
    "  -v, --verbose       print prompt and generation speed to standard error\n";

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},          {"model", required_argument, 0, 'm'},
        {"adapter", required_argument, 0, OPT_ADAPTER_DIR},
        {"prompt", required_argument, 0, 'p'},  {"max-tokens", required_argument, 0, 'n'},
        {"verbose", no_argument, 0, 'v'},       {"chat", no_argument, 0, OPT_CHAT},
        {"system", required_argument, 0, OPT_SYSTEM},
        {"template", required_argument, 0, OPT_TEMPLATE},
        {"stop", required_argument, 0, OPT_STOP}, {"ctx", required_argument, 0, OPT_CTX},
        {"threads", required_argument, 0, OPT_THREADS}, CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        CLI_SAMPLING_LONGOPTS, {0, 0, 0, 0}};
    const char *adapter = NULL;
    const char *model = NULL, *prompt = NULL, *system = NULL, *tmpl_name = NULL;
    const char *stops[32];
    size_t n_stop = 0;
    int chat = 0, verbose = 0, n_ctx = 0, c;
    rein_generate_params gp = rein_generate_default_params();
    while ((c = getopt_long(argc, argv, "hm:p:n:v", opts, NULL)) != -1) {
        if (cli_sampling_option("generate", c, optarg, &gp.sampler)) continue;
        switch (c) {
        case 'h': printf("%s\n%s", help_head, cli_sampling_help); return 0;
        case 'm': model = optarg; break;
        case OPT_ADAPTER_DIR: adapter = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': gp.max_tokens = (int32_t)cli_parse_long("generate", "-n", optarg, 0, 1 << 24); break;
        case 'v': verbose = 1; break;
        case OPT_CHAT: chat = 1; break;
        case OPT_SYSTEM: system = optarg; break;
        case OPT_TEMPLATE: tmpl_name = optarg; break;
        case OPT_STOP:
            if (n_stop == 31) cli_usage_error("generate", "at most 31 --stop strings");
            if (!optarg[0]) cli_usage_error("generate", "--stop needs a non-empty string");
            stops[n_stop++] = optarg;
            break;
        case OPT_CTX: n_ctx = (int)cli_parse_long("generate", "--ctx", optarg, 1, 1 << 20); break;
        case OPT_THREADS:
            rein_set_threads((int)cli_parse_long("generate", "--threads", optarg, 1, 256));
            break;
        case OPT_INT8_DECODE: cli_int8_decode("generate"); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        default: cli_usage_error("generate", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!prompt) cli_usage_error("generate", "a prompt is required (-p TEXT)");
    if ((system || tmpl_name) && !chat)
        cli_usage_error("generate", "--system and --template need --chat");
    model = cli_model_path("generate", model);

    rein_buf input = {0};
    rein_status st;
    if (!strcmp(prompt, "-")) {
        if ((st = cli_read_stdin(&input))) cli_die("generate", st);
    } else {
        rein_buf_append(&input, prompt, strlen(prompt));
    }
    rein_model *m;
    if ((st = rein_model_load(model, &m))) cli_die("generate", st);
    if (adapter && (st = rein_lora_load(m, adapter))) cli_die("generate", st);
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    if (!tok) {
        rein_error(REIN_ERR_UNSUPPORTED, "%s has no tokenizer", model);
        cli_die("generate", REIN_ERR_UNSUPPORTED);
    }
    rein_buf text = {0};
    rein_chat_template *own_ct = NULL;
    const rein_chat_template *ct = rein_model_chat_template(m);
    if (chat) {
        if (tmpl_name) ct = own_ct = cli_chat_template("generate", m, tmpl_name);
        rein_chat_msg msgs[2];
        size_t n = 0;
        if (system) msgs[n++] = (rein_chat_msg){"system", system};
        msgs[n++] = (rein_chat_msg){"user", input.data};
        if ((st = rein_chat_apply(ct, msgs, n, 1, &text))) cli_die("generate", st);
        const char *eot = rein_chat_template_end_of_turn(ct);
        if (eot && n_stop < 32) stops[n_stop++] = eot;
    } else {
        rein_buf_append(&text, input.data, input.len);
    }
    rein_tokens ids = {0};
    st = rein_tokenize(tok, text.data, text.len, REIN_TOKENIZE_ADD_BOS | REIN_TOKENIZE_PARSE_SPECIAL,
                       &ids);
    if (st) cli_die("generate", st);
    if (ids.n == 0) {
        rein_error(REIN_ERR_INVALID, "the prompt is empty");
        cli_die("generate", REIN_ERR_INVALID);
    }
    const rein_model_config *cfg = rein_model_get_config(m);
    if (!n_ctx) {
        long want = (long)ids.n + gp.max_tokens;
        n_ctx = (int)(want < cfg->ctx_len ? want : cfg->ctx_len);
    }
    if ((long)ids.n >= n_ctx) {
        rein_error(REIN_ERR_RANGE, "the prompt has %zu tokens; the context holds %d", ids.n, n_ctx);
        cli_die("generate", REIN_ERR_RANGE);
    }
    rein_kv_cache *kv;
    if ((st = rein_kv_cache_new(m, 1, n_ctx, &kv))) cli_die("generate", st);
    rein_generate_stats stats;
    gp.stats = &stats;
    gp.stop = stops;
    gp.n_stop = n_stop;
    st = rein_generate(m, kv, 0, ids.ids, ids.n, &gp, cli_print_text, NULL, NULL, NULL);
    if (st) cli_die("generate", st);
    printf("\n");
    fflush(stdout);
    if (verbose)
        fprintf(stderr,
                "rein: prompt %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s "
                "(%.1f tokens/s); %d threads\n",
                stats.n_prompt, stats.prefill_s, stats.n_prompt / (stats.prefill_s + 1e-12),
                stats.n_generated, stats.decode_s,
                stats.n_generated / (stats.decode_s + 1e-12), rein_get_threads());
    rein_kv_cache_free(kv);
    rein_tokens_free(&ids);
    rein_buf_free(&text);
    rein_buf_free(&input);
    rein_chat_template_free(own_ct);
    rein_model_free(m);
    return 0;
}
