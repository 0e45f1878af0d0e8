#!/usr/bin/env python3
"""gen_pretok_fixture.py - every pre-tokenizer rein knows against llama.cpp's, on one vocabulary.

The shared test vectors cover gpt-2, mpt, starcoder, refact, falcon and deepseek-coder/-llm, but
not llama3 or qwen2. So this tool takes the GPT-2 vocabulary of the vectors, writes it again under
each pre-tokenizer name (only tokenizer.ggml.pre changes), and records what llama.cpp gives for
every hand-written string of tests/fixtures/tokenizer/smollm2.json: a count and an FNV-1a hash per
string. tests/test_tokenizer_pretok.c rebuilds the same files with rein's GGUF writer and compares.

Usage: python3 tools/gen_pretok_fixture.py [shared-data-dir] [out.json]
"""
import json
import os
import sys
import tempfile

from gguf import GGUFReader, GGUFWriter, GGUFValueType
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tokenizer_fixture import fnv1a64  # noqa: E402  the same hash as the other fixture

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/tokenizer/pretok.json"
HAND = "tests/fixtures/tokenizer/smollm2.json"

PRES = ["gpt-2", "smollm", "llama-bpe", "dbrx", "qwen2", "falcon", "deepseek-coder",
        "deepseek-llm", "default"]


def rewrite(src, dst, pre):
    r = GGUFReader(src)
    w = GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        val = pre if key == "tokenizer.ggml.pre" else f.contents()
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, val, vtype, sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    texts = [h["text"] for h in json.load(open(HAND, encoding="utf-8"))["hand"]]
    src = f"{SHARED}/tokenizer-vectors/ggml-vocab-gpt-2.gguf"
    out = {"vocab": "ggml-vocab-gpt-2.gguf", "n_texts": len(texts), "pre": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRES:
            path = os.path.join(tmp, f"{pre}.gguf")
            rewrite(src, path, pre)
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            hashes = []
            for s in texts:
                ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
                hashes.append(f"{len(ids)}:{fnv1a64(ids):016x}")
            out["pre"][pre] = hashes
            del llm
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(PRES)} pre-tokenizers x {len(texts)} strings")


if __name__ == "__main__":
    main()
