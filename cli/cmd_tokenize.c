/* cmd_tokenize.c - `rein tokenize`: text to token ids, or to pieces as JSON. */
#include "cli.h"

#include <string.h>

static const char help[] =
    "Usage: rein tokenize [-m MODEL] [--json] [--special] [--bos] TEXT\n"
    "\n"
    "Print the token ids of TEXT, space-separated (TEXT '-' reads standard input).\n"
    "  -m, --model FILE  GGUF model whose tokenizer to use (default: the default model)\n"
    "  --json            print a JSON array of {\"id\", \"piece\", \"bytes\"} instead\n"
    "  --special         recognise special tokens written in the text (e.g. <|im_start|>)\n"
    "  --bos             prepend BOS when the vocabulary asks for it\n";

static void json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},       {"model", required_argument, 0, 'm'},
        {"json", no_argument, 0, OPT_JSON},  {"special", no_argument, 0, OPT_SPECIAL},
        {"bos", no_argument, 0, OPT_BOS},    {0, 0, 0, 0}};
    const char *model = NULL;
    int json = 0, flags = 0, c;
    while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': model = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_SPECIAL: flags |= REIN_TOKENIZE_PARSE_SPECIAL; break;
        case OPT_BOS: flags |= REIN_TOKENIZE_ADD_BOS; break;
        default: cli_usage_error("tokenize", "unknown option");
        }
    }
    if (optind + 1 != argc) cli_usage_error("tokenize", "expects one TEXT argument");
    model = cli_model_path("tokenize", model);
    rein_buf text = {0};
    rein_status st;
    if (!strcmp(argv[optind], "-")) {
        st = cli_read_stdin(&text);
        if (st) cli_die("tokenize", st);
    } else {
        rein_buf_append(&text, argv[optind], strlen(argv[optind]));
    }
    rein_gguf *g;
    rein_tokenizer *tok;
    if ((st = rein_gguf_open(model, &g)) || (st = rein_tokenizer_from_gguf(g, &tok)))
        cli_die("tokenize", st);
    rein_tokens ids = {0};
    st = rein_tokenize(tok, text.data ? text.data : "", text.len, flags, &ids);
    if (st) cli_die("tokenize", st);
    if (json) {
        rein_buf bytes = {0};
        printf("[");
        for (size_t i = 0; i < ids.n; i++) {
            rein_buf_clear(&bytes);
            rein_token_to_bytes(tok, ids.ids[i], 1, &bytes);
            const char *piece = rein_token_piece(tok, ids.ids[i]);
            printf("%s{\"id\": %d, \"piece\": ", i ? ",\n " : "", ids.ids[i]);
            json_string(piece, strlen(piece));
            printf(", \"bytes\": ");
            json_string(bytes.data ? bytes.data : "", bytes.len);
            printf("}");
        }
        printf("]\n");
        rein_buf_free(&bytes);
    } else {
        for (size_t i = 0; i < ids.n; i++) printf("%s%d", i ? " " : "", ids.ids[i]);
        printf("\n");
    }
    rein_tokens_free(&ids);
    rein_buf_free(&text);
    rein_tokenizer_free(tok);
    rein_gguf_free(g);
    return 0;
}
