/* main.c - the `rein` program: dispatch to a subcommand. */
#include "cli.h"

#include <string.h>

static const char usage[] =
    "rein " REIN_VERSION " - run, train and align Llama-family language models\n"
    "\n"
    "Usage: rein COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  info      describe a GGUF model: architecture, parameters, tensor types, tokenizer\n"
    "  tokenize  turn text into token ids (or pieces, with --json)\n"
    "  generate  continue a prompt, or answer it as a chat turn (--chat)\n"
    "  chat      talk with a model, turn by turn\n"
    "  sft       supervised fine-tuning (LoRA or full) with exact resume\n"
    "  rm        reward models from comparisons: train, score, eval\n"
    "  dpo       direct preference optimisation (LoRA or full) with exact resume\n"
    "  ppo       RLHF with PPO against a reward model or a rule (LoRA, value head, exact resume)\n"
    "  grpo      GRPO / RLOO: group-normalised RL without a critic\n"
    "  align     principle-driven self-alignment from scratch: prompts, answers, engraving, cloning\n"
    "  selfinstruct  new instructions from seed tasks (Self-Instruct, stage 1 of align)\n"
    "  redteam   red-team evaluation: attack-success and over-refusal rates (redteam eval)\n"
    "  export    write a model (LoRA adapter merged) as GGUF or as a Hugging Face folder\n"
    "\n"
    "Run 'rein COMMAND --help' for a command's options. -m MODEL defaults to the downloaded\n"
    "default model (models/" DEFAULT_MODEL_FILE ", fetched by 'make model') or $REIN_MODEL.\n"
    "Environment: REIN_THREADS (worker threads), REIN_LOG (error|warn|info|debug),\n"
    "REIN_KERNEL (avx512|avx2|portable: force the matrix kernels; default: the best the CPU runs).\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("rein " REIN_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "sft")) return cmd_sft(argc - 1, argv + 1);
    if (!strcmp(cmd, "rm")) return cmd_rm(argc - 1, argv + 1);
    if (!strcmp(cmd, "dpo")) return cmd_dpo(argc - 1, argv + 1);
    if (!strcmp(cmd, "ppo")) return cmd_ppo(argc - 1, argv + 1);
    if (!strcmp(cmd, "grpo")) return cmd_grpo(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "align")) return cmd_align(argc - 1, argv + 1);
    if (!strcmp(cmd, "selfinstruct")) return cmd_selfinstruct(argc - 1, argv + 1);
    if (!strcmp(cmd, "redteam")) return cmd_redteam(argc - 1, argv + 1);
    fprintf(stderr, "rein: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
