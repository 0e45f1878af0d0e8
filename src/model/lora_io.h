/* lora_io.h - LoRA adapters in PEFT's files, and the Hugging Face layout conventions they share
 * with `rein export`.
 *
 * PEFT saves an adapter as a folder: adapter_model.safetensors, with tensors named
 *   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
 *   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
 * (A (r, in), B (out, r)), and adapter_config.json (r, lora_alpha, target_modules, ...). Those names
 * and shapes follow the HF checkpoint, which differs from GGUF (and so from rein's weights) in one
 * place: llama.cpp's converter permutes the rows of q_proj and k_proj within each head so that the
 * two halves of a rotary pair sit side by side,
 *     gguf = hf.reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2).reshape(out, in)
 * (n_head = n_kv_heads for k). A LoRA B has the same output rows, so q/k lora_B rows are
 * un-permuted on save and permuted back on load; A (the input side) is the same in both layouts.
 *
 * rein_lora_save / rein_lora_load are declared in include/rein.h; what is here is shared with
 * src/formats/export.c.
 */
#ifndef REIN_MODEL_LORA_IO_H
#define REIN_MODEL_LORA_IO_H

#include "rein.h"

#include <cjson/cJSON.h>

/* ---- shared with export ---------------------------------------------------------------------- */

/* HF's name of linear layer `which` (REIN_LIN_*) inside a decoder layer: "self_attn.q_proj", ... */
const char *rein_hf_linear_name(int which);

/* Convert the rows of a q or k weight (n_head * head_dim, cols) between GGUF's order and HF's.
 * dst and src must not overlap. */
void rein_hf_rows_from_gguf(float *dst, const float *src, int n_head, int head_dim, int64_t cols);
void rein_hf_rows_to_gguf(float *dst, const float *src, int n_head, int head_dim, int64_t cols);

/* mkdir dir unless it is already a directory. */
rein_status rein_hf_make_dir(const char *dir);
/* A float as the shortest decimal that reads back as the same f32 (1e-05, not 9.99999974e-06). */
cJSON *rein_hf_json_float(float v);
/* Print a JSON value (indented, as HF's files are) to path atomically. */
rein_status rein_hf_write_json(const cJSON *root, const char *path);

#endif /* REIN_MODEL_LORA_IO_H */
