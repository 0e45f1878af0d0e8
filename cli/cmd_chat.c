/* cmd_chat.c - `rein chat`: an interactive, multi-turn conversation.
 *
 * Each turn renders the whole conversation with the chat template and tokenizes it; the KV cache
 * already holds the tokens of everything before, so only the tokens after the longest common
 * prefix with what the cache holds are run through the model. When the conversation outgrows the
 * context, the oldest exchanges are dropped (the system prompt stays).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help_head[] =
    "Usage: rein chat [-m MODEL] [options]\n"
    "\n"
    "Talk with a model. Type a message and press Enter; the answer streams back. Commands:\n"
    "/reset starts over, /quit (or end of input) leaves. Reads standard input, so it also\n"
    "answers a script of messages, one a line.\n"
    "  -m, --model FILE    GGUF model (default: the default model)\n"
    "  --adapter DIR       apply a LoRA adapter (PEFT format, e.g. from rein sft)\n"
    "  -n, --max-tokens N  tokens at most per answer (default 512)\n"
    "  --system TEXT       system prompt (default: the template's own, if any)\n"
    "  --template NAME     chat template: chatml, llama3 or generic (default: from the model)\n"
    "  --ctx N             context size (default: 4096, at most the model's)\n"
    "  --threads N         worker threads (default: all cores, or $REIN_THREADS)\n"
    CLI_INT8_DECODE_HELP CLI_KV_F16_HELP;

typedef struct convo {
    rein_chat_msg *msgs;
    size_t n, cap;
} convo;

static void convo_push(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->msgs = realloc(c->msgs, c->cap * sizeof *c->msgs);
        if (!c->msgs) {
            fprintf(stderr, "rein chat: out of memory\n");
            exit(1);
        }
    }
    c->msgs[c->n++] = (rein_chat_msg){role, strdup(content)};
}

static void convo_drop(convo *c, size_t from, size_t count) {
    for (size_t i = from; i < from + count; i++) free((char *)c->msgs[i].content);
    memmove(c->msgs + from, c->msgs + from + count, (c->n - from - count) * sizeof *c->msgs);
    c->n -= count;
}

int cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},           {"model", required_argument, 0, 'm'},
        {"adapter", required_argument, 0, OPT_ADAPTER_DIR},
        {"max-tokens", required_argument, 0, 'n'}, {"system", required_argument, 0, OPT_SYSTEM},
        {"template", required_argument, 0, OPT_TEMPLATE}, {"ctx", required_argument, 0, OPT_CTX},
        {"threads", required_argument, 0, OPT_THREADS}, CLI_INT8_DECODE_LONGOPT, CLI_KV_F16_LONGOPT,
        CLI_SAMPLING_LONGOPTS, {0, 0, 0, 0}};
    const char *adapter = NULL;
    const char *model = NULL, *system = NULL, *tmpl_name = NULL;
    int n_ctx = 0, c;
    rein_generate_params gp = rein_generate_default_params();
    gp.max_tokens = 512;
    while ((c = getopt_long(argc, argv, "hm:n:", opts, NULL)) != -1) {
        if (cli_sampling_option("chat", c, optarg, &gp.sampler)) continue;
        switch (c) {
        case 'h': printf("%s\n%s", help_head, cli_sampling_help); return 0;
        case 'm': model = optarg; break;
        case OPT_ADAPTER_DIR: adapter = optarg; break;
        case 'n': gp.max_tokens = (int32_t)cli_parse_long("chat", "-n", optarg, 1, 1 << 24); break;
        case OPT_SYSTEM: system = optarg; break;
        case OPT_TEMPLATE: tmpl_name = optarg; break;
        case OPT_CTX: n_ctx = (int)cli_parse_long("chat", "--ctx", optarg, 16, 1 << 20); break;
        case OPT_THREADS: rein_set_threads((int)cli_parse_long("chat", "--threads", optarg, 1, 256)); break;
        case OPT_INT8_DECODE: cli_int8_decode("chat"); break;
        case OPT_KV_F16: cli_kv_f16(); break;
        default: cli_usage_error("chat", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("chat", "unexpected argument '%s'", argv[optind]);
    model = cli_model_path("chat", model);
    rein_status st;
    rein_model *m;
    if ((st = rein_model_load(model, &m))) cli_die("chat", st);
    if (adapter && (st = rein_lora_load(m, adapter))) cli_die("chat", st);
    const rein_tokenizer *tok = rein_model_tokenizer(m);
    if (!tok) {
        rein_error(REIN_ERR_UNSUPPORTED, "%s has no tokenizer", model);
        cli_die("chat", REIN_ERR_UNSUPPORTED);
    }
    rein_chat_template *own_ct = tmpl_name ? cli_chat_template("chat", m, tmpl_name) : NULL;
    const rein_chat_template *ct = own_ct ? own_ct : rein_model_chat_template(m);
    const rein_model_config *cfg = rein_model_get_config(m);
    if (!n_ctx) n_ctx = cfg->ctx_len < 4096 ? cfg->ctx_len : 4096;
    if (gp.max_tokens >= n_ctx) gp.max_tokens = n_ctx / 2;
    rein_kv_cache *kv;
    if ((st = rein_kv_cache_new(m, 1, n_ctx, &kv))) cli_die("chat", st);
    const char *stops[1];
    const char *eot = rein_chat_template_end_of_turn(ct);
    if (eot) {
        stops[0] = eot;
        gp.stop = stops;
        gp.n_stop = 1;
    }

    convo cv = {0};
    if (system) convo_push(&cv, "system", system);
    size_t first_turn = cv.n;
    rein_tokens cached = {0}; /* the tokens the KV cache holds, in order */
    int tty = isatty(0);
    char *line = NULL;
    size_t line_cap = 0;
    if (tty) fprintf(stderr, "rein chat: %s. /reset starts over, /quit leaves.\n", model);
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            convo_drop(&cv, first_turn, cv.n - first_turn);
            rein_kv_cache_clear(kv, 0);
            cached.n = 0;
            continue;
        }
        convo_push(&cv, "user", line);
        rein_buf text = {0};
        rein_tokens ids = {0};
        for (;;) {
            rein_buf_clear(&text);
            ids.n = 0;
            if ((st = rein_chat_apply(ct, cv.msgs, cv.n, 1, &text))) cli_die("chat", st);
            st = rein_tokenize(tok, text.data, text.len,
                               REIN_TOKENIZE_ADD_BOS | REIN_TOKENIZE_PARSE_SPECIAL, &ids);
            if (st) cli_die("chat", st);
            if ((long)ids.n + gp.max_tokens <= n_ctx || cv.n - first_turn <= 1) break;
            convo_drop(&cv, first_turn, cv.n - first_turn >= 3 ? 2 : 1); /* oldest exchange */
        }
        if ((long)ids.n >= n_ctx) {
            fprintf(stderr, "rein chat: this message alone (%zu tokens) does not fit the context of "
                            "%d; try --ctx or a shorter message\n", ids.n, n_ctx);
            convo_drop(&cv, cv.n - 1, 1);
            rein_buf_free(&text);
            rein_tokens_free(&ids);
            continue;
        }
        /* reuse the cached prefix; at least one token must run to give the next logits */
        size_t keep = 0;
        while (keep < cached.n && keep < ids.n && cached.ids[keep] == ids.ids[keep]) keep++;
        if (keep == ids.n) keep--;
        rein_kv_cache_truncate(kv, 0, (int)keep);
        rein_buf reply = {0};
        rein_tokens out_ids = {0};
        st = rein_generate(m, kv, 0, ids.ids + keep, ids.n - keep, &gp, cli_print_text, NULL,
                           &reply, &out_ids);
        if (st) cli_die("chat", st);
        printf("\n");
        fflush(stdout);
        /* what the cache now holds: the prompt, then the generated tokens that were fed back */
        cached.n = 0;
        int held = rein_kv_cache_len(kv, 0);
        for (size_t i = 0; i < ids.n; i++) rein_tokens_push(&cached, ids.ids[i]);
        for (size_t i = 0; i < out_ids.n && (long)cached.n < held; i++)
            rein_tokens_push(&cached, out_ids.ids[i]);
        convo_push(&cv, "assistant", reply.data ? reply.data : "");
        rein_buf_free(&reply);
        rein_tokens_free(&out_ids);
        rein_buf_free(&text);
        rein_tokens_free(&ids);
    }
    free(line);
    convo_drop(&cv, 0, cv.n);
    free(cv.msgs);
    rein_tokens_free(&cached);
    rein_kv_cache_free(kv);
    rein_chat_template_free(own_ct);
    rein_model_free(m);
    return 0;
}
