#!/usr/bin/env python3
"""gen_model_fixture.py - reference logits for rein's model forward pass, computed by HF transformers.

rein's model code is checked against an independent implementation: Hugging Face transformers
(fp32, CPU) loading the very same GGUF files. This tool writes every fixture the C tests
tests/test_model_ref.c and tests/test_model_ref_tiny.c read, all under tests/fixtures/model/:

  smollm2_ref.bin   The default model (models/SmolLM2-135M-Instruct.Q4_1.gguf; `make model` fetches
                    it). Four prompts given as explicit token ids (plain English, a ChatML chat, code,
                    numbers/unicode; 10..40 tokens), so the tokenizer is not part of the test. For
                    every position: the logits at 480 random vocabulary ids (fixed by seed, the same
                    at every position) and at the reference's own top-32 ids there, the full-vocab
                    argmax, the logsumexp of the whole row and the top1-top2 gap. Then the greedy
                    64-token continuation of each prompt.
  tiny_<type>.gguf  Tiny random Llama models, one per tensor type: f32 f16 bf16 q8_0 q4_0 q4_1 q4_k
                    q6_k (every 2-D weight in that type, norms f32), some with a tied output head and
                    some untied, grouped-query attention everywhere. A tiny byte-level BPE vocabulary
                    (320 tokens: the 256 bytes in GPT-2's byte-to-unicode spelling, 61 merges learnt
                    from a built-in text, <|endoftext|> <|im_start|> <|im_end|>) and a ChatML template
                    sit in the metadata, so the files load like real models.
  tiny_<type>.ref   For each tiny model: two prompts (random ids), the FULL-vocab logits at every
                    position, and the greedy 16-token continuation.

The tiny GGUFs are written as llama.cpp's convert_hf_to_gguf.py writes a Llama: the rows of
attn_q / attn_k are permuted per head (LlamaModel.permute) so that rotary pairs are adjacent, and
transformers' GGUF loader undoes that permutation; gguf-py quantizes F16 / BF16 / Q8_0 / Q4_0 /
Q4_1, and Q4_K / Q6_K (which gguf-py cannot quantize) are made by the small quantizers below, whose
blocks are checked by dequantizing them with gguf-py. As a check on the writing itself, each tiny
model is also built directly in transformers from the weights before permutation (dequantized) and
must give the same logits as transformers loading the GGUF file.

Greedy continuations: transformers generate(do_sample=False, max_new_tokens=N) with eos_token_id
set to None, so exactly N tokens always come out (EOS does not stop it; rein's test runs with
stop_at_eog = 0 to match). The top1-top2 logit gap at each generated step is stored too, so that a
divergence at a near-tie can be recognised rather than blamed on the model.

File format of *.ref (all little-endian; i32/u32/f32 4 bytes, u64 8 bytes):

  char magic[8] = "REINMREF"; u32 version = 1
  u32 n_vocab; u32 n_prompts; u32 n_ids; u32 n_top; u32 n_gen; u64 model_bytes (size of the GGUF)
  i32 ids[n_ids]                  vocabulary ids compared at every position (tiny: 0..n_vocab-1)
  n_prompts times:
    u32 n_tok; i32 tokens[n_tok]
    n_tok times (one per position):
      i32 argmax; f32 logsumexp; f32 gap (top1 - top2 logit)
      i32 top_ids[n_top]; f32 top_logits[n_top]   the reference's n_top largest, descending
      f32 logits[n_ids]                            the logits at ids[]
    i32 gen[n_gen]; f32 gen_gap[n_gen]            greedy continuation, top1-top2 gap at each step

Rerun (from the repository root; needs torch, transformers >= 4.46 with accelerate, gguf-py,
numpy; CPU only, about a minute):

  make model && python3 tools/gen_model_fixture.py

It rewrites every fixture from scratch with fixed seeds and prints what it wrote and the sizes.
Options: --tiny-only (skip the default model), --out DIR (default tests/fixtures/model).
"""

import argparse
import os
import re
import struct
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws progress bars

import gguf  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(max(1, os.cpu_count() or 1))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

# ------------------------------------------------------------------------------------------------
# The .ref writer
# ------------------------------------------------------------------------------------------------


def reference_rows(logits, ids, n_top):
    """Per-position records from a (n_tok, n_vocab) float32 logits array."""
    rows = []
    for row in logits:
        order = np.argsort(-row, kind="stable")
        r64 = row.astype(np.float64)
        lse = float(r64.max() + np.log(np.exp(r64 - r64.max()).sum()))
        rows.append(dict(argmax=int(order[0]), lse=lse, gap=float(row[order[0]] - row[order[1]]),
                         top=order[:n_top].astype(np.int32), top_logits=row[order[:n_top]],
                         at_ids=row[ids]))
    return rows


def write_ref(path, n_vocab, model_bytes, ids, n_top, n_gen, prompts):
    """prompts: list of dicts with tokens, rows (reference_rows), gen, gen_gap."""
    out = bytearray()
    out += b"REINMREF" + struct.pack("<I", 1)
    out += struct.pack("<IIIIIQ", n_vocab, len(prompts), len(ids), n_top, n_gen, model_bytes)
    out += np.asarray(ids, "<i4").tobytes()
    for p in prompts:
        assert len(p["gen"]) == n_gen
        out += struct.pack("<I", len(p["tokens"])) + np.asarray(p["tokens"], "<i4").tobytes()
        for r in p["rows"]:
            out += struct.pack("<iff", r["argmax"], r["lse"], r["gap"])
            out += np.asarray(r["top"], "<i4").tobytes() + np.asarray(r["top_logits"], "<f4").tobytes()
            out += np.asarray(r["at_ids"], "<f4").tobytes()
        out += np.asarray(p["gen"], "<i4").tobytes() + np.asarray(p["gen_gap"], "<f4").tobytes()
    with open(path, "wb") as f:
        f.write(out)


def hf_reference(model, prompts, ids, n_top, n_gen):
    """All-position logits and the greedy continuation of each prompt (a list of id lists)."""
    model.generation_config.eos_token_id = None  # exactly n_gen tokens: EOS does not stop it
    model.generation_config.pad_token_id = 0
    res = []
    for toks in prompts:
        x = torch.tensor([toks], dtype=torch.long)
        with torch.no_grad():
            logits = model(x).logits[0].float().numpy()
            g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                               max_new_tokens=n_gen, eos_token_id=None,
                               output_logits=True, return_dict_in_generate=True)
        gen = g.sequences[0, len(toks):].tolist()
        assert len(gen) == n_gen, f"generate gave {len(gen)} tokens, wanted {n_gen}"
        gaps = []
        for step, lg in enumerate(g.logits):
            top2 = torch.topk(lg[0].float(), 2).values
            gaps.append(float(top2[0] - top2[1]))
            assert int(lg[0].argmax()) == gen[step]
        res.append(dict(tokens=list(toks), rows=reference_rows(logits, ids, n_top), gen=gen,
                        gen_gap=gaps, logits=logits))
    return res


def summarise(name, res):
    gaps = [r["gap"] for p in res for r in p["rows"]]
    ggaps = [g for p in res for g in p["gen_gap"]]
    print(f"  {name}: prompts of {[len(p['tokens']) for p in res]} tokens; smallest top1-top2 gap: "
          f"{min(gaps):.2e} over prompt positions, {min(ggaps):.2e} over greedy steps")


# ------------------------------------------------------------------------------------------------
# The default model
# ------------------------------------------------------------------------------------------------

SMOLLM_PROMPTS = [
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "3.14159 \u00d7 2 = 6.28318; na\u00efve caf\u00e9, \u6771\u4eac \u00fc \u20ac 12,345 \u2192",
]


def gen_smollm(outdir, model_path):
    d, name = os.path.split(model_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in SMOLLM_PROMPTS]
    for s, p in zip(SMOLLM_PROMPTS, prompts):
        assert 10 <= len(p) <= 40, (s, len(p))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    n_vocab = model.config.vocab_size
    rng = np.random.default_rng(20240501)
    ids = np.sort(rng.choice(n_vocab, size=480, replace=False)).astype(np.int32)
    res = hf_reference(model, prompts, ids, 32, 64)
    summarise("smollm2", res)
    for p in res:
        print("    " + repr(tok.decode(p["tokens"]))[:60] + " -> " + repr(tok.decode(p["gen"]))[:70])
    path = os.path.join(outdir, "smollm2_ref.bin")
    write_ref(path, n_vocab, os.path.getsize(model_path), ids, 32, 64, res)
    return [path]


# ------------------------------------------------------------------------------------------------
# Tiny models: tokenizer
# ------------------------------------------------------------------------------------------------

BPE_TEXT = (
    "the quick brown fox jumps over the lazy dog. the cat sat on the mat and the dog sat on the "
    "log. in the beginning there was the word, and the word was with the model. a model that "
    "reads the text and writes the next token. we test the model on the text that we write, "
    "then we compare the logits with the reference, token by token, position by position."
)
N_MERGES = 61
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map, in GPT-2's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


def tiny_vocab():
    """Tokens, token types and merges of the tiny byte-level BPE: deterministic BPE training."""
    enc = dict(bytes_to_unicode())
    tokens = [c for _, c in bytes_to_unicode()]
    words = {}
    for w in re.findall(r" ?[a-z]+| ?[^a-z ]+", BPE_TEXT):
        sym = tuple(enc[b] for b in w.encode())
        words[sym] = words.get(sym, 0) + 1
    merges = []
    for _ in range(N_MERGES):
        pairs = {}
        for sym, cnt in words.items():
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + cnt
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best[0] + " " + best[1])
        tokens.append(best[0] + best[1])
        new = {}
        for sym, cnt in words.items():
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + cnt
        words = new
    types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(SPECIALS)
    tokens += SPECIALS
    assert len(set(tokens)) == len(tokens)
    return tokens, types, merges


# ------------------------------------------------------------------------------------------------
# Tiny models: Q4_K and Q6_K quantizers (gguf-py only dequantizes these)
# ------------------------------------------------------------------------------------------------


def quantize_q4_k(x):
    """(rows, cols) f32, cols % 256 == 0 -> (rows, cols/256*144) uint8 of ggml's block_q4_K:
    f16 d, f16 dmin, 12 bytes of 6-bit sub-block scales and mins, 128 bytes of 4-bit quants;
    value = d*sc*q - dmin*m over 8 sub-blocks of 32."""
    rows, cols = x.shape
    b = x.reshape(-1, 8, 32).astype(np.float64)
    nb = b.shape[0]
    mn = -np.minimum(b.min(axis=2), 0.0)  # the (non-negative) amount subtracted
    scale = (b.max(axis=2) + mn) / 15.0
    d = (scale.max(axis=1) / 63.0).astype(np.float16)
    dmin = (mn.max(axis=1) / 63.0).astype(np.float16)
    df, dmf = d.astype(np.float64)[:, None], dmin.astype(np.float64)[:, None]
    sc = np.where(df > 0, np.rint(scale / np.where(df > 0, df, 1)), 0).clip(0, 63).astype(np.uint8)
    m = np.where(dmf > 0, np.rint(mn / np.where(dmf > 0, dmf, 1)), 0).clip(0, 63).astype(np.uint8)
    es, em = (df * sc)[:, :, None], (dmf * m)[:, :, None]
    q = np.where(es > 0, np.rint((b + em) / np.where(es > 0, es, 1)), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((nb, 12), np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)
    blocks = np.concatenate([d.reshape(nb, 1).view(np.uint8), dmin.reshape(nb, 1).view(np.uint8),
                             scales, qs], axis=1)
    return blocks.reshape(rows, cols // 256 * 144)


def quantize_q6_k(x):
    """(rows, cols) f32, cols % 256 == 0 -> (rows, cols/256*210) uint8 of ggml's block_q6_K:
    128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 sub-block scales, f16 d;
    value = d*scale*(q - 32) over 16 sub-blocks of 16."""
    rows, cols = x.shape
    b = x.reshape(-1, 16, 16).astype(np.float64)
    nb = b.shape[0]
    scale = np.abs(b).max(axis=2) / 31.0
    d = (scale.max(axis=1) / 127.0).astype(np.float16)
    df = d.astype(np.float64)[:, None]
    sc = np.where(df > 0, np.rint(scale / np.where(df > 0, df, 1)), 0).clip(-128, 127).astype(np.int8)
    es = (df * sc)[:, :, None]
    q = (np.where(es != 0, np.rint(b / np.where(es != 0, es, 1)), 0).clip(-32, 31) + 32).astype(np.uint8)
    qq = q.reshape(nb, 2, 4, 32)  # [half of 128][quarter k][l]: element 128*half + 32*k + l
    ql = np.concatenate([(qq[:, :, 0] & 0xF) | ((qq[:, :, 2] & 0xF) << 4),
                         (qq[:, :, 1] & 0xF) | ((qq[:, :, 3] & 0xF) << 4)], axis=2)
    qh = (qq[:, :, 0] >> 4) | ((qq[:, :, 1] >> 4) << 2) | ((qq[:, :, 2] >> 4) << 4) | ((qq[:, :, 3] >> 4) << 6)
    blocks = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), sc.view(np.uint8),
                             d.reshape(nb, 1).view(np.uint8)], axis=1)
    return blocks.reshape(rows, cols // 256 * 210)


def quantize(w, qtype):
    """A 2-D f32 weight in `qtype`: (array for GGUFWriter, its f32 dequantization)."""
    if qtype == QT.F32:
        return w, w
    if qtype == QT.F16:
        h = w.astype(np.float16)
        return h, h.astype(np.float32)
    if qtype == QT.Q4_K:
        q = quantize_q4_k(w)
    elif qtype == QT.Q6_K:
        q = quantize_q6_k(w)
    else:
        q = gguf.quants.quantize(w, qtype)
    deq = gguf.quants.dequantize(q, qtype).reshape(w.shape).astype(np.float32)
    err = np.abs(deq - w).max() / np.abs(w).max()
    assert np.isfinite(deq).all() and err < 0.2, (qtype.name, err)  # blocks decode to their input
    return q, deq


# ------------------------------------------------------------------------------------------------
# Tiny models: weights, GGUF, reference
# ------------------------------------------------------------------------------------------------

SMALL = dict(dim=64, n_heads=4, n_kv_heads=2, ffn=128, n_layers=2)  # block-32 types
WIDE = dict(dim=256, n_heads=4, n_kv_heads=2, ffn=256, n_layers=1)  # K-quants: rows of 256
TINY_MODELS = [  # name, type, shape, tied output head, file_type, seed
    ("f32", QT.F32, dict(SMALL, dim=32, n_heads=2, n_kv_heads=1, ffn=64), True,
     gguf.LlamaFileType.ALL_F32, 101),
    ("f16", QT.F16, SMALL, False, gguf.LlamaFileType.MOSTLY_F16, 102),
    ("bf16", QT.BF16, SMALL, True, gguf.LlamaFileType.MOSTLY_BF16, 103),
    ("q8_0", QT.Q8_0, SMALL, False, gguf.LlamaFileType.MOSTLY_Q8_0, 104),
    ("q4_0", QT.Q4_0, SMALL, True, gguf.LlamaFileType.MOSTLY_Q4_0, 105),
    ("q4_1", QT.Q4_1, SMALL, False, gguf.LlamaFileType.MOSTLY_Q4_1, 106),
    ("q4_k", QT.Q4_K, WIDE, True, gguf.LlamaFileType.MOSTLY_Q4_K_S, 107),
    ("q6_k", QT.Q6_K, WIDE, True, gguf.LlamaFileType.MOSTLY_Q6_K, 108),
]
ROPE_BASE = 10000.0
RMS_EPS = 1e-5
CTX = 256


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half order of q/k rows to
    ggml's adjacent rotary pairs. Only rows move, so it applies to quantized rows as well."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def tiny_weights(cfg, n_vocab, tied, rng):
    """Random weights in HF layout and naming: (out, in) matrices."""
    dim, hd = cfg["dim"], cfg["dim"] // cfg["n_heads"]
    kvd = cfg["n_kv_heads"] * hd

    def mat(rows, cols, std):
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(n_vocab, dim, 2.5 / np.sqrt(dim))}
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(dim)
        w[p + "self_attn.q_proj.weight"] = mat(dim, dim, 1.0 / np.sqrt(dim) * 1.5)
        w[p + "self_attn.k_proj.weight"] = mat(kvd, dim, 1.0 / np.sqrt(dim) * 1.5)
        w[p + "self_attn.v_proj.weight"] = mat(kvd, dim, 1.0 / np.sqrt(dim))
        w[p + "self_attn.o_proj.weight"] = mat(dim, dim, 1.0 / np.sqrt(dim))
        w[p + "post_attention_layernorm.weight"] = norm(dim)
        w[p + "mlp.gate_proj.weight"] = mat(cfg["ffn"], dim, 1.0 / np.sqrt(dim))
        w[p + "mlp.up_proj.weight"] = mat(cfg["ffn"], dim, 1.0 / np.sqrt(dim))
        w[p + "mlp.down_proj.weight"] = mat(dim, cfg["ffn"], 1.0 / np.sqrt(cfg["ffn"]))
    w["model.norm.weight"] = norm(dim)
    if not tied:
        w["lm_head.weight"] = mat(n_vocab, dim, 2.0 / np.sqrt(dim))
    return w


GGUF_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", hf)
    return f"blk.{m.group(1)}.{GGUF_NAMES[m.group(2)]}.weight"


def write_tiny(path, name, qtype, cfg, tied, ftype, seed, vocab):
    """Write one tiny GGUF; return the HF-layout weights as the file holds them (dequantized)."""
    tokens, types, merges = vocab
    rng = np.random.default_rng(seed)
    w = tiny_weights(cfg, len(tokens), tied, rng)
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name(f"rein tiny {name}")
    wr.add_context_length(CTX)
    wr.add_embedding_length(cfg["dim"])
    wr.add_block_count(cfg["n_layers"])
    wr.add_feed_forward_length(cfg["ffn"])
    wr.add_head_count(cfg["n_heads"])
    wr.add_head_count_kv(cfg["n_kv_heads"])
    wr.add_rope_dimension_count(cfg["dim"] // cfg["n_heads"])
    wr.add_rope_freq_base(ROPE_BASE)
    wr.add_layer_norm_rms_eps(RMS_EPS)
    wr.add_vocab_size(len(tokens))
    wr.add_file_type(ftype)
    if qtype not in (QT.F32, QT.F16, QT.BF16):
        wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("gpt-2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(tokens.index("<|endoftext|>"))
    wr.add_eos_token_id(tokens.index("<|endoftext|>"))
    wr.add_eot_token_id(tokens.index("<|im_end|>"))
    wr.add_add_bos_token(False)
    wr.add_chat_template(CHATML)
    held = {}
    for hf, t in w.items():
        if t.ndim == 1:
            wr.add_tensor(gguf_name(hf), t)
            held[hf] = t
            continue
        data, deq = quantize(t, qtype)
        if ".q_proj." in hf:
            data = permute(data, cfg["n_heads"], cfg["n_heads"])
        elif ".k_proj." in hf:
            data = permute(data, cfg["n_heads"], cfg["n_kv_heads"])
        if qtype in (QT.F32, QT.F16):
            wr.add_tensor(gguf_name(hf), np.ascontiguousarray(data))
        else:
            wr.add_tensor(gguf_name(hf), np.ascontiguousarray(data), raw_dtype=qtype)
        held[hf] = deq
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return held


def hf_direct(cfg, n_vocab, tied, weights):
    """The same model built in transformers from HF-layout weights (no GGUF involved)."""
    conf = LlamaConfig(vocab_size=n_vocab, hidden_size=cfg["dim"], intermediate_size=cfg["ffn"],
                       num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
                       num_key_value_heads=cfg["n_kv_heads"], max_position_embeddings=CTX,
                       rms_norm_eps=RMS_EPS, rope_theta=ROPE_BASE, tie_word_embeddings=tied,
                       attn_implementation="eager")
    m = LlamaForCausalLM(conf).float().eval()
    sd = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    return m


def gen_tiny(outdir):
    vocab = tiny_vocab()
    n_vocab = len(vocab[0])
    written = []
    for name, qtype, cfg, tied, ftype, seed in TINY_MODELS:
        path = os.path.join(outdir, f"tiny_{name}.gguf")
        held = write_tiny(path, name, qtype, cfg, tied, ftype, seed, vocab)
        model = AutoModelForCausalLM.from_pretrained(outdir, gguf_file=os.path.basename(path),
                                                     dtype=torch.float32, attn_implementation="eager")
        model.eval()
        assert model.config.vocab_size == n_vocab and model.config.tie_word_embeddings == tied
        rng = np.random.default_rng(1000 + seed)
        prompts = [rng.integers(0, n_vocab - len(SPECIALS), size=n).tolist() for n in (13, 7)]
        prompts[1][0] = vocab[0].index("<|im_start|>")
        ids = np.arange(n_vocab, dtype=np.int32)
        res = hf_reference(model, prompts, ids, 0, 16)
        direct = hf_direct(cfg, n_vocab, tied, held)
        worst = 0.0
        for p in res:
            with torch.no_grad():
                d = direct(torch.tensor([p["tokens"]])).logits[0].numpy()
            worst = max(worst, float(np.abs(d - p["logits"]).max()))
        assert worst < 1e-4, f"{name}: transformers from GGUF vs from weights differ by {worst}"
        summarise(f"tiny_{name}", res)
        print("    greedy: " + " | ".join(" ".join(map(str, p["gen"])) for p in res))
        gap = min(min([r["gap"] for r in p["rows"]] + p["gen_gap"]) for p in res)
        assert gap > 1e-3, f"{name}: a near-tie ({gap:.1e}) would make the test fragile: change its seed"
        print(f"    GGUF-loaded vs directly-built transformers model: max |diff| {worst:.1e}; "
              f"logits std {np.std(res[0]['logits']):.2f}")
        ref = os.path.join(outdir, f"tiny_{name}.ref")
        write_ref(ref, n_vocab, os.path.getsize(path), ids, 0, 16, res)
        written += [path, ref]
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "model"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tiny-only", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    written = []
    if not args.tiny_only:
        if not os.path.exists(args.model):
            sys.exit(f"{args.model}: not found (run `make model`), or pass --tiny-only")
        written += gen_smollm(args.out, args.model)
    written += gen_tiny(args.out)
    total = 0
    for p in written:
        total += os.path.getsize(p)
        print(f"wrote {os.path.relpath(p, ROOT):44s} {os.path.getsize(p):9d} bytes")
    print(f"total {total} bytes ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
