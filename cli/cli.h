/* cli.h - what the subcommands of `rein` share: option tables, model lookup, failing cleanly.
 *
 * cli/ is the only part of rein that may exit(); everything below it returns a status.
 */
#ifndef REIN_CLI_H
#define REIN_CLI_H

#include "rein.h"

#include <getopt.h>
#include <stdio.h>

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

/* Print "rein CMD: <message>" with the library's last error and exit(1). */
void cli_die(const char *cmd, rein_status st) __attribute__((noreturn));
/* Print "rein CMD: <formatted>" plus a hint to see --help, and exit(2). */
void cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Resolve -m: the given path, else $REIN_MODEL, else models/DEFAULT_MODEL_FILE beside the current
 * folder or the program. Exits with a message telling how to download it when absent. */
const char *cli_model_path(const char *cmd, const char *given);

/* Parse numbers strictly ("12x" is an error); exit with a usage error naming the option. */
long cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi);
double cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi);

/* The chat template named `name` (chatml, llama3, generic), recognising the default system prompt
 * from the model's own template where it has one. Exits on error. The caller frees it. */
rein_chat_template *cli_chat_template(const char *cmd, const rein_model *m, const char *name);

/* Append all of standard input to *out. */
rein_status cli_read_stdin(rein_buf *out);

/* Write text to stdout as it comes (a rein_text_fn). */
int cli_print_text(void *ud, const char *text, size_t len);

/* Sampling options shared by generate and chat. cli_sampling_option returns 1 if it took `opt`. */
enum {
    OPT_TEMP = 1000, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N,
    OPT_SEED, OPT_SYSTEM, OPT_TEMPLATE, OPT_STOP, OPT_CTX, OPT_THREADS, OPT_CHAT, OPT_JSON,
    OPT_SPECIAL, OPT_BOS, OPT_NO_SYSTEM, OPT_ADAPTER_DIR,
};
#define CLI_SAMPLING_LONGOPTS                                                                  \
    {"temp", required_argument, 0, OPT_TEMP}, {"top-k", required_argument, 0, OPT_TOP_K},      \
        {"top-p", required_argument, 0, OPT_TOP_P}, {"min-p", required_argument, 0, OPT_MIN_P}, \
        {"repeat-penalty", required_argument, 0, OPT_REPEAT_PENALTY},                          \
        {"repeat-last-n", required_argument, 0, OPT_REPEAT_LAST_N},                            \
        {"seed", required_argument, 0, OPT_SEED}
int cli_sampling_option(const char *cmd, int opt, const char *arg, rein_sampler_params *sp);
extern const char cli_sampling_help[];

/* --int8-decode, shared by the commands that decode: rein_set_decode_int8(1), with a warning where
 * the CPU cannot (decoding stays exact). */
enum { OPT_INT8_DECODE = 4000 };
#define CLI_INT8_DECODE_LONGOPT {"int8-decode", no_argument, 0, OPT_INT8_DECODE}
#define CLI_INT8_DECODE_HELP                                                                   \
    "  --int8-decode       decode with int8 activations (Q8_0, Q4_1 weights; AVX-512 VNNI):\n" \
    "                      faster, batched most; logits slightly off the exact default's\n"
void cli_int8_decode(const char *cmd);

/* --kv-f16, shared by the same commands: KV caches of f16 elements (rein_set_kv_cache_type). */
enum { OPT_KV_F16 = 4001 };
#define CLI_KV_F16_LONGOPT {"kv-f16", no_argument, 0, OPT_KV_F16}
#define CLI_KV_F16_HELP                                                                        \
    "  --kv-f16            keys and values cached as f16: half the cache's memory, faster\n"   \
    "                      long or batched decoding; logits slightly off the f32 cache's\n"
void cli_kv_f16(void);

/* The subcommands: each takes argc/argv starting at its own name and returns the exit status. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_ppo(int argc, char **argv);
int cmd_grpo(int argc, char **argv);
int cmd_align(int argc, char **argv);
int cmd_selfinstruct(int argc, char **argv);
int cmd_redteam(int argc, char **argv);

/* rein's own data file data/NAME, found beside the current folder or the program (exits when
 * absent). The path stays valid for the next 7 calls. */
const char *cli_data_path(const char *cmd, const char *name);
/* The alignment inputs from the given files, or rein's own in data/ for each NULL (exits on
 * error). Free with rein_align_inputs_free. */
struct rein_align_inputs;
void cli_align_inputs(const char *cmd, const char *principles, const char *exemplars,
                      const char *seeds, const char *seed_tasks, const char *verbose,
                      struct rein_align_inputs *in);

#endif
