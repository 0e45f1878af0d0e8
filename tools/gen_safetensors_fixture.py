#!/usr/bin/env python3
"""gen_safetensors_fixture.py - a safetensors file written by the reference implementation.

tests/test_safetensors.c reads tests/fixtures/safetensors/python.safetensors, written here by the
python `safetensors` package (the Rust reference underneath), and checks every value exactly; it
also writes the same tensors with rein's writer in the order the reference stores them and checks
that the bytes are identical, which is the cross-check in the other direction.

The values are small formulas that F16 and BF16 hold exactly, so the C test recomputes them:
  a   F32  (2, 3)     a[i] = 0.25 * i - 1           (i = flat index)
  s   F32  ()         s = 3.5
  z   F32  (0, 4)     empty
  b   BF16 (5,)       b[i] = -2 + 0.5 * i
  c   F16  (3, 2, 2)  c[i] = (i - 6) / 8
metadata {"format": "pt"} (one key: the reference keeps several in hash order).

Rerun from the repository root: python3 tools/gen_safetensors_fixture.py
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "safetensors", "python.safetensors")

tensors = {
    "a": (torch.arange(6, dtype=torch.float32) * 0.25 - 1).reshape(2, 3),
    "s": torch.tensor(3.5, dtype=torch.float32),
    "z": torch.zeros(0, 4, dtype=torch.float32),
    "b": (-2 + 0.5 * torch.arange(5, dtype=torch.float32)).to(torch.bfloat16),
    "c": ((torch.arange(12, dtype=torch.float32) - 6) / 8).to(torch.float16).reshape(3, 2, 2),
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata={"format": "pt"})
with open(OUT, "rb") as f:
    raw = f.read()
n = int.from_bytes(raw[:8], "little")
print(f"wrote {OUT}: {len(raw)} bytes, header {n} bytes:")
print(raw[8 : 8 + n].decode())
