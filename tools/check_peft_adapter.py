#!/usr/bin/env python3
"""check_peft_adapter.py - does PEFT read an adapter rein saved, and compute what rein computes?

A check run by hand (not by CI): `build/tests/test_lora_io --dump DIR` attaches a LoRA adapter with
random A and B (B nonzero, so the adapter changes the output) to every linear layer of the tiny
model tests/fixtures/model/tiny_f32.gguf, saves it with rein_lora_save to DIR/adapter, and writes
rein's logits with the adapter for 20 tokens to DIR/rein_logits.bin. This script loads the same
GGUF in transformers (which undoes llama.cpp's q/k row permutation), wraps it with
peft.PeftModel.from_pretrained(DIR/adapter), and compares the logits. It prints the largest
difference against rein, and for scale, the largest change the adapter makes to transformers'
logits; it exits 1 if the difference exceeds 1e-4.

Run from the repository root after `make build/tests/test_lora_io`:
  python3 tools/check_peft_adapter.py
Needs torch, transformers (with gguf), peft.
"""
import os
import struct
import subprocess
import sys
import tempfile
import warnings

import numpy as np

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

TINY = "tests/fixtures/model/tiny_f32.gguf"


def main():
    work = tempfile.mkdtemp(prefix="rein_peft_")
    subprocess.run(["build/tests/test_lora_io", "--dump", work], check=True)
    with open(os.path.join(work, "rein_logits.bin"), "rb") as f:
        n_tok, n_vocab = struct.unpack("<II", f.read(8))
        tokens = np.frombuffer(f.read(4 * n_tok), dtype="<i4")
        rein = np.frombuffer(f.read(), dtype="<f4").reshape(n_tok, n_vocab)
    base = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(TINY), gguf_file=os.path.basename(TINY), dtype=torch.float32)
    ids = torch.tensor(tokens, dtype=torch.long)[None]
    with torch.no_grad():
        plain = base(ids).logits[0].numpy().copy()
    model = PeftModel.from_pretrained(base, os.path.join(work, "adapter"))
    model.eval()
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        peft = model(ids).logits[0].numpy()
    diff = np.abs(peft - rein).max()
    effect = np.abs(peft - plain).max()
    print(f"adapter: {n_lora} LoRA matrices loaded by PEFT from {work}/adapter")
    print(f"max |logit(PEFT) - logit(rein)| = {diff:.3g} over {n_tok}x{n_vocab} logits")
    print(f"max |logit(PEFT) - logit(base)| = {effect:.3g} (what the adapter changes)")
    print(f"argmax agreement: {(peft.argmax(1) == rein.argmax(1)).mean() * 100:.1f}%")
    ok = diff <= 1e-4 and effect > 1e-2
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
