/* cmd_info.c - `rein info MODEL`: what a GGUF model is, without loading its weights. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: rein info [MODEL]\n"
    "\n"
    "Describe a GGUF model: architecture and shapes, parameter count, tensor types, tokenizer and\n"
    "chat template. MODEL defaults to the downloaded default model.\n"
    "  --all   also list every metadata key and every tensor\n";

static void print_kv(const rein_gguf *g, int64_t i) {
    const char *key = rein_gguf_kv_key(g, i);
    rein_gguf_value_type t = rein_gguf_kv_type(g, i);
    printf("  %-45s ", key);
    if (t == REIN_GGUF_STRING) {
        const char *s;
        size_t len;
        if (rein_gguf_kv_str(g, i, &s, &len) == REIN_OK) {
            size_t show = len > 60 ? 60 : len;
            putchar('"');
            for (size_t k = 0; k < show; k++) putchar(s[k] == '\n' ? ' ' : s[k]);
            printf("%s\"\n", len > show ? "..." : "");
        }
    } else if (t == REIN_GGUF_ARRAY) {
        rein_gguf_value_type et;
        int64_t n;
        const void *data;
        if (rein_gguf_kv_arr(g, i, &et, &n, &data) == REIN_OK)
            printf("[array of %lld, type %d]\n", (long long)n, (int)et);
    } else if (t == REIN_GGUF_FLOAT32 || t == REIN_GGUF_FLOAT64) {
        double v;
        if (rein_gguf_kv_float(g, i, &v) == REIN_OK) printf("%g\n", v);
    } else {
        int64_t v;
        uint64_t u;
        if (rein_gguf_kv_int(g, i, &v) == REIN_OK) printf("%lld\n", (long long)v);
        else if (rein_gguf_kv_uint(g, i, &u) == REIN_OK) printf("%llu\n", (unsigned long long)u);
        else printf("?\n");
    }
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {"all", no_argument, 0, 'a'},
                                         {0, 0, 0, 0}};
    int all = 0, c;
    while ((c = getopt_long(argc, argv, "ha", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return 0;
        }
        if (c == 'a') all = 1;
        else cli_usage_error("info", "unknown option");
    }
    if (optind + 1 < argc) cli_usage_error("info", "expects one MODEL, got %d", argc - optind);
    const char *path = cli_model_path("info", optind < argc ? argv[optind] : NULL);
    rein_gguf *g;
    rein_status st = rein_gguf_open(path, &g);
    if (st) cli_die("info", st);
    rein_model_config cfg;
    st = rein_model_config_from_gguf(g, &cfg);
    if (st) cli_die("info", st);

    const char *name = NULL;
    size_t nlen = 0;
    if (rein_gguf_find_kv(g, "general.name") >= 0) rein_gguf_get_str(g, "general.name", &name, &nlen);
    printf("file          %s (GGUF v%u)\n", path, rein_gguf_version(g));
    if (name) printf("name          %.*s\n", (int)nlen, name);
    printf("architecture  %s\n", cfg.arch);
    int64_t n_params = 0, by_type[64] = {0};
    for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++) {
        const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
        n_params += t->n_elements;
        if ((int)t->type >= 0 && (int)t->type < 64) by_type[t->type]++;
    }
    printf("parameters    %lld (%.1f M)\n", (long long)n_params, n_params / 1e6);
    printf("shape         %d layers, width %d, %d heads (%d key/value heads, head size %d), "
           "SwiGLU width %d\n",
           cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim);
    printf("vocabulary    %d tokens, output head %s\n", cfg.n_vocab,
           cfg.tied_head ? "tied to the embedding" : "separate");
    printf("context       %d positions, rotary base %g over %d dims, RMSNorm eps %g\n",
           cfg.ctx_len, cfg.rope_base, cfg.rope_dim, cfg.rms_eps);
    printf("tensor types ");
    for (int t = 0; t < 64; t++)
        if (by_type[t]) printf(" %s x%lld", rein_type_name(t), (long long)by_type[t]);
    printf("\n");

    if (rein_gguf_find_kv(g, "tokenizer.ggml.model") >= 0) {
        rein_tokenizer *tok;
        st = rein_tokenizer_from_gguf(g, &tok);
        if (st) {
            printf("tokenizer     not usable: %s\n", rein_last_error());
        } else {
            printf("tokenizer     byte-level BPE, %d tokens, pre-tokenizer '%s'\n",
                   rein_tokenizer_n_vocab(tok), rein_tokenizer_pre(tok));
            int32_t ids[3] = {rein_token_bos(tok), rein_token_eos(tok), rein_token_eot(tok)};
            const char *what[3] = {"bos", "eos", "eot"};
            printf("special      ");
            for (int k = 0; k < 3; k++)
                if (ids[k] >= 0) printf(" %s=%d %s", what[k], ids[k], rein_token_piece(tok, ids[k]));
            printf("\n");
            rein_tokenizer_free(tok);
        }
        const char *tmpl = NULL;
        size_t tlen = 0;
        char *jinja = NULL;
        if (rein_gguf_find_kv(g, "tokenizer.chat_template") >= 0 &&
            rein_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tlen) == REIN_OK) {
            jinja = malloc(tlen + 1);
            if (jinja) {
                memcpy(jinja, tmpl, tlen);
                jinja[tlen] = 0;
            }
        }
        rein_chat_template *ct;
        if (rein_chat_template_new(jinja, NULL, &ct) == REIN_OK) {
            const char *sys = rein_chat_template_default_system(ct);
            printf("chat template %s%s%s%s\n", rein_chat_template_name(ct),
                   jinja ? "" : " (the file has none)", sys ? ", default system prompt: " : "",
                   sys ? sys : "");
            rein_chat_template_free(ct);
        }
        free(jinja);
    } else {
        printf("tokenizer     none in this file\n");
    }
    if (all) {
        printf("\nmetadata (%lld keys):\n", (long long)rein_gguf_n_kv(g));
        for (int64_t i = 0; i < rein_gguf_n_kv(g); i++) print_kv(g, i);
        printf("\ntensors (%lld):\n", (long long)rein_gguf_n_tensors(g));
        for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++) {
            const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
            printf("  %-32s %-5s (", t->name, rein_type_name(t->type));
            for (int d = 0; d < t->n_dims; d++)
                printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
            printf(")\n");
        }
    }
    rein_gguf_free(g);
    return 0;
}
