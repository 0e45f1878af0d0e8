#!/usr/bin/env python3
"""check_export.py - do transformers and llama.cpp load what `rein export` writes, and agree with rein?

A check run by hand (not by CI). For each source model (the tiny tests/fixtures/model/tiny_f32.gguf
and tiny_f16.gguf, and the default models/SmolLM2-135M-Instruct.Q4_1.gguf when downloaded):

  HF folder  `rein export --format hf --type f32`; transformers loads it with
             AutoModelForCausalLM + AutoTokenizer. Printed: the largest difference between its
             logits and rein's on the source GGUF (rein's come from `build/tests/test_export
             --logits`), and, for scale, the same difference for transformers loading the source
             GGUF itself. Then the exported tokenizer.json against `build/rein tokenize --special`
             on texts with digits, unicode, whitespace runs and special tokens: the ids must be equal.
  GGUF       `rein export --type f32|f16|q8_0`. Each f16 / q8_0 tensor must equal, byte for byte,
             gguf-py's conversion (numpy float16, gguf.quants.quantize) of the f32 export's
             tensor. llama.cpp (llama-cpp-python, f32 KV cache) loads each file and its logits are
             compared with rein's on the same file: within 1e-3 of the logit scale for f32; for
             f16 and q8_0, where llama.cpp rounds activations inside its products and rein does
             not, a sanity bound only: twice llama.cpp's own difference between its f32 and
             f16 / q8_0 results (the bytes are what is checked exactly).

Exits 1 if any comparison fails its bound. Run from the repository root after
`make rein build/tests/test_export` (and `make model` for the default model):
  python3 tools/check_export.py
Needs torch, transformers (with gguf), numpy, llama-cpp-python (optional: skipped if absent).
"""
import os
import shutil
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
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

TEXTS = [
    "Hello world! The year 2024 had 366 days; pi is 3.14159.",
    "  leading spaces, trailing spaces   \n\n\tand tabs\r\n",
    "Unicode: café, naïve, Ελληνικά, русский, 日本語のテキスト, emoji 🙂👍🏽, math ∑∫√.",
    "<|im_start|>user\nWhat is 12345 + 67890?<|im_end|>\n<|im_start|>assistant\n",
    "code: def f(x):\n    return x**2  # 1e-5\n<|endoftext|>after",
    "don't won't it's I'm you'll we'd they've   multiple    spaces",
]
failures = []


def run(*args):
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def rein_logits(model, ids):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        run("build/tests/test_export", "--logits", model, f.name, *map(str, ids))
        raw = open(f.name, "rb").read()
    n, v = struct.unpack("<II", raw[:8])
    return np.frombuffer(raw[8:], dtype="<f4").reshape(n, v)


def report(label, diff, bound):
    ok = diff <= bound
    print(f"  {label}: {diff:.3g} (bound {bound:.3g}) {'ok' if ok else 'FAILED'}")
    if not ok:
        failures.append(label)


def check_hf(src, work, ids):
    out = os.path.join(work, "hf")
    run("build/rein", "export", "-m", src, "--out", out, "--format", "hf", "--type", "f32")
    want = rein_logits(src, ids)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    x = torch.tensor(ids)[None]
    with torch.no_grad():
        got = model(x).logits[0].numpy()
        ref = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(src), gguf_file=os.path.basename(src), dtype=torch.float32)(x).logits[0].numpy()
    scale = np.abs(want).max()
    print(f"  HF folder: {len(ids)} tokens, logits up to {scale:.3g}")
    print(f"  (for scale: transformers on the source GGUF vs rein: {np.abs(ref - want).max():.3g})")
    report("max |logit(transformers, exported HF) - logit(rein, source)|",
           np.abs(got - want).max(), 1e-3 * max(scale, 1))
    print(f"  argmax agreement: {(got.argmax(1) == want.argmax(1)).mean() * 100:.1f}%")
    tok = AutoTokenizer.from_pretrained(out)
    agree = 0
    for t in TEXTS:
        hf = tok.encode(t, add_special_tokens=False)
        rein = [int(s) for s in run("build/rein", "tokenize", "-m", src, "--special", t).split()]
        hf_bos = tok.encode(t)
        rein_bos = [int(s) for s in run("build/rein", "tokenize", "-m", src, "--special", "--bos", t).split()]
        if hf == rein and hf_bos == rein_bos:
            agree += 1
        else:
            print(f"  tokenizer differs on {t!r}:\n    HF   {hf}\n    rein {rein}")
        if tok.decode(hf) != t and "\r" not in t:
            print(f"  decode differs on {t!r}: {tok.decode(hf)!r}")
    print(f"  tokenizer.json agrees with rein on {agree}/{len(TEXTS)} texts "
          f"({sum(len(tok.encode(t, add_special_tokens=False)) for t in TEXTS)} tokens)")
    if agree != len(TEXTS):
        failures.append(f"tokenizer {src}")


def check_gguf_bytes(f32_path, path, ty):
    """Every tensor of the export equals gguf-py's conversion of the f32 export's tensor."""
    import gguf

    ref = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(f32_path).tensors}
    same = total = 0
    for t in gguf.GGUFReader(path).tensors:
        x = ref[t.name].astype(np.float32)
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            want = x
        elif t.tensor_type == gguf.GGMLQuantizationType.F16:
            want = x.astype(np.float16)
        else:
            want = gguf.quants.quantize(x, t.tensor_type)
        total += 1
        same += np.asarray(t.data).tobytes() == want.tobytes()
    report(f"GGUF {ty}: tensors differing from gguf-py's conversion of the f32 export "
           f"(of {total})", total - same, 0)


def check_gguf(src, work, ids):
    try:
        from llama_cpp import Llama
    except ImportError:
        print("  SKIP llama.cpp: llama-cpp-python is not installed")
        return
    llama = {}
    for ty in ("f32", "f16", "q8_0"):
        out = os.path.join(work, f"export_{ty}.gguf")
        run("build/rein", "export", "-m", src, "--out", out, "--type", ty)
        if ty != "f32":
            check_gguf_bytes(os.path.join(work, "export_f32.gguf"), out, ty)
        want = rein_logits(out, ids)
        # an f32 KV cache: llama.cpp's default f16 cache would add its own rounding
        llm = Llama(model_path=out, n_ctx=256, logits_all=True, verbose=False, n_threads=2,
                    type_k=0, type_v=0)
        llm.eval(ids)
        got = llama[ty] = np.array(llm.scores[: len(ids)], dtype=np.float32)
        del llm
        diff = np.abs(got - want).max()
        label = f"GGUF {ty}: max |logit(llama.cpp) - logit(rein)| on the exported file"
        if ty == "f32":
            report(label, diff, 1e-3 * max(np.abs(want).max(), 1))
        else:
            # llama.cpp rounds activations to f16 / 8 bits inside its f16 / q8_0 products, rein
            # does not: a sanity bound of twice llama.cpp's own distance from its f32 result (the
            # file's content is checked exactly above)
            report(label + " (bound: 2 x llama.cpp's own f32-vs-" + ty + " difference)", diff,
                   2 * np.abs(got - llama["f32"]).max())
        print(f"  GGUF {ty}: argmax agreement llama.cpp vs rein "
              f"{(got.argmax(1) == want.argmax(1)).mean() * 100:.1f}%")


def main():
    sources = ["tests/fixtures/model/tiny_f32.gguf", "tests/fixtures/model/tiny_f16.gguf"]
    default = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    if os.path.exists(default):
        sources.append(default)
    else:
        print(f"SKIP {default}: not downloaded (make model)")
    for src in sources:
        print(src)
        work = tempfile.mkdtemp(prefix="rein_export_")
        ids = [int(s) for s in run("build/rein", "tokenize", "-m", src, "--special", TEXTS[3] + TEXTS[0]).split()]
        check_hf(src, work, ids)
        check_gguf(src, work, ids)
        shutil.rmtree(work)
    print("OK" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
