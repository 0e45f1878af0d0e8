#!/usr/bin/env python3
"""gen_cli_fixture.py - the known greedy outputs that tests/test_cli.c expects from `rein generate`.

For each case below, HF transformers (fp32, CPU) loads the default model's GGUF, builds the prompt
(for chat cases with the chat template stored in the GGUF, via apply_chat_template), generates
greedily until EOS / <|im_end|> or max_new_tokens, and the new text (special tokens dropped) is
written to tests/fixtures/cli/<name>.txt. The prompts have no digits: SmolLM2's tokenizer splits
digits one by one and the tokenizer transformers rebuilds from a GGUF may not; to be sure the
reference tokenizes like the model's own, the ids are checked against llama.cpp's tokenizer
(llama-cpp-python, vocab_only) when that is installed.

Rerun from the repository root (needs torch, transformers, gguf; `make model` first):
    python3 tools/gen_cli_fixture.py
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL_DIR = "models"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = "tests/fixtures/cli"

# name, chat?, prompt, max_new_tokens  (the C test passes the same -p and -n)
CASES = [
    ("chat_capital", True, "What is the capital of France?", 48),
    ("raw_fox", False, "The quick brown fox", 32),
]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE,
                                                 torch_dtype=torch.float32)
    model.eval()
    try:
        import llama_cpp
        ref = llama_cpp.Llama(model_path=os.path.join(MODEL_DIR, MODEL_FILE), vocab_only=True,
                              verbose=False)
    except ImportError:
        ref = None
        print("note: llama-cpp-python not installed; tokenization not cross-checked")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    os.makedirs(OUT, exist_ok=True)
    for name, chat, prompt, n in CASES:
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        else:
            text = prompt
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ref is not None:
            want = ref.tokenize(text.encode(), add_bos=False, special=True)
            if list(want) != list(ids):
                sys.exit(f"{name}: transformers and llama.cpp tokenize the prompt differently")
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n,
                                 eos_token_id=[tok.eos_token_id, im_end], pad_token_id=im_end)
        new = out[0, len(ids):].tolist()
        answer = tok.decode(new, skip_special_tokens=True)
        path = os.path.join(OUT, name + ".txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(answer)
        print(f"{path}: {len(new)} tokens: {answer!r}")


if __name__ == "__main__":
    main()
