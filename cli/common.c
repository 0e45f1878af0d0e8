/* common.c - helpers shared by the subcommands: errors, model lookup, number parsing. */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_die(const char *cmd, rein_status st) {
    fprintf(stderr, "rein %s: %s: %s\n", cmd, rein_status_str(st), rein_last_error());
    exit(1);
}

void cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rein %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'rein %s --help')\n", cmd);
    va_end(ap);
    exit(2);
}

const char *cli_model_path(const char *cmd, const char *given) {
    if (given) return given;
    const char *env = getenv("REIN_MODEL");
    if (env && *env) return env;
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "models/%s", DEFAULT_MODEL_FILE);
    if (access(path, R_OK) == 0) return path;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *dir = dirname(exe);
        snprintf(path, sizeof path, "%s/models/%s", dir, DEFAULT_MODEL_FILE);
        if (access(path, R_OK) == 0) return path;
        snprintf(path, sizeof path, "%s/../models/%s", dir, DEFAULT_MODEL_FILE);
        if (access(path, R_OK) == 0) return path;
    }
    fprintf(stderr,
            "rein %s: no model given (-m FILE) and the default model is not downloaded.\n"
            "  Run 'make model' in the rein folder to fetch %s,\n"
            "  or point REIN_MODEL at a GGUF file.\n",
            cmd, DEFAULT_MODEL_FILE);
    exit(1);
}

long cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        cli_usage_error(cmd, "%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

double cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        cli_usage_error(cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}

const char cli_sampling_help[] =
    "Sampling:\n"
    "  --temp T            temperature; 0 = greedy (default 0.8)\n"
    "  --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"
    "  --top-p P           keep the smallest set holding probability P; 1 = off (default 0.95)\n"
    "  --min-p P           drop tokens below P x the top probability; 0 = off (default 0.05)\n"
    "  --repeat-penalty R  penalise tokens seen in the last N; 1 = off (default 1.0)\n"
    "  --repeat-last-n N   how many recent tokens the penalty looks at (default 64)\n"
    "  --seed S            random seed: the same seed gives the same text (default 42)\n";

int cli_sampling_option(const char *cmd, int opt, const char *arg, rein_sampler_params *sp) {
    switch (opt) {
    case OPT_TEMP: sp->temperature = (float)cli_parse_double(cmd, "--temp", arg, 0, 100); return 1;
    case OPT_TOP_K: sp->top_k = (int32_t)cli_parse_long(cmd, "--top-k", arg, 0, 1 << 24); return 1;
    case OPT_TOP_P: sp->top_p = (float)cli_parse_double(cmd, "--top-p", arg, 1e-6, 1); return 1;
    case OPT_MIN_P: sp->min_p = (float)cli_parse_double(cmd, "--min-p", arg, 0, 0.999999); return 1;
    case OPT_REPEAT_PENALTY:
        sp->repeat_penalty = (float)cli_parse_double(cmd, "--repeat-penalty", arg, 1e-3, 100);
        return 1;
    case OPT_REPEAT_LAST_N:
        sp->repeat_last_n = (int32_t)cli_parse_long(cmd, "--repeat-last-n", arg, 0, 1 << 24);
        return 1;
    case OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-')
            cli_usage_error(cmd, "--seed expects a non-negative integer, got '%s'", arg);
        sp->seed = v;
        return 1;
    }
    }
    return 0;
}

rein_chat_template *cli_chat_template(const char *cmd, const rein_model *m, const char *name) {
    const rein_gguf *g = rein_model_gguf(m);
    const char *jinja = NULL;
    size_t len = 0;
    char *j = NULL;
    if (rein_gguf_find_kv(g, "tokenizer.chat_template") >= 0 &&
        rein_gguf_get_str(g, "tokenizer.chat_template", &jinja, &len) == REIN_OK)
        j = strndup(jinja, len);
    rein_chat_template *ct;
    rein_status st = rein_chat_template_new(j, name, &ct);
    free(j);
    if (st) cli_die(cmd, st);
    return ct;
}

int cli_print_text(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

rein_status cli_read_stdin(rein_buf *out) {
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        rein_status st = rein_buf_append(out, chunk, n);
        if (st) return st;
    }
    if (ferror(stdin)) return rein_error(REIN_ERR_IO, "reading standard input: %s", strerror(errno));
    return rein_buf_append(out, "", 0);
}

void cli_kv_f16(void) {
    (void)rein_set_kv_cache_type(REIN_TYPE_F16); /* cannot fail: F16 is a cache type */
}

void cli_int8_decode(const char *cmd) {
    if (!rein_set_decode_int8(1))
        fprintf(stderr, "rein %s: --int8-decode needs AVX-512 VNNI and the AVX-512 kernels (not "
                        "REIN_KERNEL=avx2|portable); decoding stays exact\n", cmd);
}
