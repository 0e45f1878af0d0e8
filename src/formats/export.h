/* export.h - writing a loaded model (with any LoRA adapter already merged) for other programs:
 * a GGUF file llama.cpp reads, or a folder in Hugging Face's layout that transformers reads.
 *
 * GGUF: every key of the source file is copied (tokenizer and chat template included),
 * general.file_type is set for the new type, and the weights are written under llama.cpp's names
 * in F32, F16 or Q8_0 (norms and rope_freqs always F32; a Q8_0 tensor whose rows are not a
 * multiple of 32 falls back to F16, as llama.cpp's converter does).
 *
 * HF: model.safetensors (HF names, q_proj / k_proj rows un-permuted from GGUF's rotary order),
 * config.json (LlamaForCausalLM), generation_config.json, and, when the model has a tokenizer,
 * tokenizer.json (byte-level BPE rebuilt from the GGUF vocabulary and merges, with the
 * pre-tokenizer HF writes for the model's tokenizer.ggml.pre) and tokenizer_config.json. Models
 * whose rotary embedding transformers' Llama cannot express (rope_freqs, partial rotary
 * dimensions) get REIN_ERR_UNSUPPORTED.
 */
#ifndef REIN_FORMATS_EXPORT_H
#define REIN_FORMATS_EXPORT_H

#include "rein.h"

/* Write m as a GGUF file at path, 2-D weights in `type` (REIN_TYPE_F32, F16 or Q8_0). */
rein_status rein_export_gguf(const rein_model *m, const char *path, rein_type type);

/* Write m into folder dir (created if absent) in HF's layout, weights in `type` (REIN_TYPE_F32,
 * F16 or BF16). */
rein_status rein_export_hf(const rein_model *m, const char *dir, rein_type type);

#endif /* REIN_FORMATS_EXPORT_H */
