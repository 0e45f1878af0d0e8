/* cmd_export.c - `rein export`: write a model (with a LoRA adapter merged in) as GGUF or as a
 * Hugging Face folder. */
#include "cli.h"
#include "formats/export.h"
#include "model/lora_io.h"

#include <string.h>

static const char help[] =
    "Usage: rein export [-m MODEL] [--adapter DIR] --out PATH [--type TYPE] [--format FORMAT]\n"
    "\n"
    "Write MODEL, with the PEFT LoRA adapter in DIR merged into its weights if given, for other\n"
    "programs: a GGUF file llama.cpp loads (every metadata key of MODEL kept), or a folder in\n"
    "Hugging Face's layout transformers loads (model.safetensors, config.json,\n"
    "generation_config.json, tokenizer.json, tokenizer_config.json).\n"
    "  -m, --model FILE   GGUF model (default: the default model)\n"
    "  --adapter DIR      a LoRA adapter saved as PEFT saves one (adapter_config.json and\n"
    "                     adapter_model.safetensors), merged before writing\n"
    "  -o, --out PATH     the GGUF file, or the folder for --format hf\n"
    "  --type TYPE        weight type: f32, f16 or q8_0 for gguf; f32, f16 or bf16 for hf\n"
    "                     (default f32)\n"
    "  --format FORMAT    gguf or hf (default gguf)\n";

enum { OPT_ADAPTER = 2000, OPT_TYPE, OPT_FORMAT };

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},          {"model", required_argument, 0, 'm'},
        {"out", required_argument, 0, 'o'},     {"adapter", required_argument, 0, OPT_ADAPTER},
        {"type", required_argument, 0, OPT_TYPE}, {"format", required_argument, 0, OPT_FORMAT},
        {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL, *adapter = NULL, *type_name = "f32", *format = "gguf";
    int c;
    while ((c = getopt_long(argc, argv, "hm:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case OPT_ADAPTER: adapter = optarg; break;
        case OPT_TYPE: type_name = optarg; break;
        case OPT_FORMAT: format = optarg; break;
        default: cli_usage_error("export", "unknown option");
        }
    }
    if (optind < argc) cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
    if (!out) cli_usage_error("export", "an output is required (--out PATH)");
    int hf = !strcmp(format, "hf");
    if (!hf && strcmp(format, "gguf"))
        cli_usage_error("export", "--format expects gguf or hf, got '%s'", format);
    rein_type type;
    if (rein_type_from_name(type_name, &type) != REIN_OK ||
        (hf ? type != REIN_TYPE_F32 && type != REIN_TYPE_F16 && type != REIN_TYPE_BF16
            : type != REIN_TYPE_F32 && type != REIN_TYPE_F16 && type != REIN_TYPE_Q8_0))
        cli_usage_error("export", "--type for --format %s expects %s, got '%s'", format,
                        hf ? "f32, f16 or bf16" : "f32, f16 or q8_0", type_name);
    model = cli_model_path("export", model);

    rein_model *m;
    rein_status st = rein_model_load(model, &m);
    if (st) cli_die("export", st);
    if (adapter) {
        if ((st = rein_lora_load(m, adapter))) cli_die("export", st);
        if ((st = rein_lora_merge(m))) cli_die("export", st);
    }
    st = hf ? rein_export_hf(m, out, type) : rein_export_gguf(m, out, type);
    if (st) cli_die("export", st);
    fprintf(stderr, "rein export: wrote %s (%s, %s%s%s)\n", out, hf ? "HF folder" : "GGUF",
            type_name, adapter ? ", adapter merged from " : "", adapter ? adapter : "");
    rein_model_free(m);
    return 0;
}
