#!/usr/bin/env python3
"""gen_quant_fixture.py - write the GGUF test fixtures with gguf-py, an implementation independent of rein.

Writes, under tests/fixtures/gguf/ (each file a few tens of KB):

  quant.gguf          written by gguf-py's GGUFWriter, so it also tests rein's reader on a file rein
                      did not write. Metadata: one key of every scalar type, a string, and arrays of
                      every scalar type and of strings (keys "test.*", values listed in test_gguf.c).
                      Tensors, for each type T:
                        T.input    F32   random input (with edge cases for F16/BF16)     (T = F32 F16 BF16 Q8_0 Q4_0 Q4_1)
                        T.quant    T     gguf.quants.quantize(T.input, T)
                        T.dequant  F32   gguf.quants.dequantize(T.quant, T)
                        T.rand     T     random valid blocks: random bytes, finite f16 scales   (all 8 types)
                        T.rand_dq  F32   gguf.quants.dequantize(T.rand, T)
  model_samples.gguf  metadata only: for a few tensors of the default model, sample indices
                      ("sample.<tensor>.index", uint64 array) and gguf-py's dequantized values there
                      ("sample.<tensor>.value", float32 array). Only if the model is present.

Usage: python3 tools/gen_quant_fixture.py   (from the repository root; deterministic: fixed seeds)
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter, quants

OUT = "tests/fixtures/gguf"
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
BLOCK = {T.F32: 1, T.F16: 1, T.BF16: 1, T.Q8_0: 32, T.Q4_0: 32, T.Q4_1: 32, T.Q4_K: 256, T.Q6_K: 256}
BYTES = {T.F32: 4, T.F16: 2, T.BF16: 2, T.Q8_0: 34, T.Q4_0: 18, T.Q4_1: 20, T.Q4_K: 144, T.Q6_K: 210}
QUANTIZABLE = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1]


def finite_f16(rng, n, scale):
    """n random finite f16 values as raw bytes."""
    return (rng.standard_normal(n) * scale).astype(np.float16).view(np.uint8)


def quant_input(rng, t):
    """256 f32 inputs: random normals at several scales, plus edge cases."""
    x = (rng.standard_normal(256) * np.repeat([0.01, 1.0, 30.0, 1e-3], 64)).astype(np.float32)
    if t in (T.F16, T.BF16):
        edge = [0.0, -0.0, 65504.0, 65519.0, 65520.0, -70000.0, 1e-8, -3e-8, 5.96e-8, 6.1e-5,
                1.0 + 2**-11, 1.0 + 3 * 2**-11, 2049.0, 2051.0, 3.4e38, 1e-40, float("inf"), float("-inf")]
        x[: len(edge)] = np.array(edge, dtype=np.float32)
        # bf16 ties: exactly halfway between two bf16 values, both parities
        x[32:36] = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3 + 2**-7], dtype=np.float32)
    else:
        x[0:32] = 0.0                       # a block of zeros: d == 0
        x[32:64] = 1.5                      # a constant block (Q4_1: max == min)
        x[64:96] = rng.integers(-8, 8, 32)  # small integers: exact ties for the rounding
        x[96] = -x[96:128].__abs__().max() * 1.0  # the negative value has the largest magnitude
    return x


def random_blocks(rng, t, n_blocks):
    """Random bytes for n_blocks blocks of type t, with every f16 scale finite."""
    raw = rng.integers(0, 256, n_blocks * BYTES[t], dtype=np.uint8).reshape(n_blocks, BYTES[t])
    if t in (T.Q8_0, T.Q4_0):
        raw[:, 0:2] = finite_f16(rng, n_blocks, 0.05).reshape(n_blocks, 2)
    elif t == T.Q4_1:
        raw[:, 0:4] = finite_f16(rng, 2 * n_blocks, 0.05).reshape(n_blocks, 4)
    elif t == T.Q4_K:
        raw[:, 0:4] = finite_f16(rng, 2 * n_blocks, 0.01).reshape(n_blocks, 4)
    elif t == T.Q6_K:
        raw[:, 208:210] = finite_f16(rng, n_blocks, 0.01).reshape(n_blocks, 2)
    elif t == T.F16:
        raw = rng.integers(0, 65536, n_blocks, dtype=np.uint16)
        raw[:4] = [0x0001, 0x83ff, 0x7c00, 0xfc00]  # subnormals and infinities
        raw = raw.view(np.uint8).reshape(n_blocks, 2)
        # NaN payloads are left out: numpy and C agree on them, but nothing needs them
        v = raw.view(np.uint16).ravel()
        v[(v & 0x7c00) == 0x7c00] &= 0xfc00
    elif t == T.BF16:
        v = rng.integers(0, 65536, n_blocks, dtype=np.uint16)
        v[(v & 0x7f80) == 0x7f80] &= 0xff80  # no NaNs
        raw = v.view(np.uint8).reshape(n_blocks, 2)
    elif t == T.F32:
        v = rng.standard_normal(n_blocks).astype(np.float32)
        raw = v.view(np.uint8).reshape(n_blocks, 4)
    return raw


def raw_tensor(w, name, t, data_bytes, n_elements):
    """Add a tensor whose bytes are already in type t's layout (1-D, n_elements)."""
    b = np.ascontiguousarray(data_bytes).view(np.uint8).ravel()
    assert b.size == n_elements // BLOCK[t] * BYTES[t]
    w.add_tensor(name, b, raw_shape=[b.size], raw_dtype=t)  # gguf-py takes the shape in bytes


def write_quant(path):
    rng = np.random.default_rng(1234)
    w = GGUFWriter(path, arch="test")
    # metadata of every type (arch already wrote general.architecture = "test")
    w.add_key_value("test.u8", 200, V.UINT8)
    w.add_key_value("test.i8", -100, V.INT8)
    w.add_key_value("test.u16", 60000, V.UINT16)
    w.add_key_value("test.i16", -30000, V.INT16)
    w.add_key_value("test.u32", 4000000000, V.UINT32)
    w.add_key_value("test.i32", -2000000000, V.INT32)
    w.add_key_value("test.f32", 0.15625, V.FLOAT32)
    w.add_key_value("test.bool", True, V.BOOL)
    w.add_key_value("test.str", "héllo gguf", V.STRING)
    w.add_key_value("test.u64", 18000000000000000000, V.UINT64)
    w.add_key_value("test.i64", -9000000000000000000, V.INT64)
    w.add_key_value("test.f64", -2.5e300, V.FLOAT64)
    for key, vals, vt in [("u8", [1, 2, 255], V.UINT8), ("i8", [-1, 2, -128], V.INT8),
                          ("u16", [1, 65535], V.UINT16), ("i16", [-32768, 7], V.INT16),
                          ("u32", [1, 4294967295], V.UINT32), ("i32", [-5, 6, -7], V.INT32),
                          ("f32", [0.5, -1.25], V.FLOAT32), ("bool", [True, False, True], V.BOOL),
                          ("u64", [2**64 - 1], V.UINT64), ("i64", [-(2**63), 3], V.INT64),
                          ("f64", [1e-300, 2.0], V.FLOAT64), ("str", ["a", "", "ccc"], V.STRING)]:
        w.add_key_value("test.arr_" + key, vals, V.ARRAY, sub_type=vt)
    for t in QUANTIZABLE:
        x = quant_input(rng, t)
        q = quants.quantize(x, t)
        dq = quants.dequantize(q.view(np.uint8), t).astype(np.float32)
        w.add_tensor(t.name + ".input", x)
        raw_tensor(w, t.name + ".quant", t, q.view(np.uint8), 256)
        w.add_tensor(t.name + ".dequant", dq.ravel())
    for t in BLOCK:
        n_el = 4 * 256 if BLOCK[t] == 256 else 256
        raw = random_blocks(rng, t, n_el // BLOCK[t])
        dq = quants.dequantize(raw.ravel(), t).astype(np.float32)
        raw_tensor(w, t.name + ".rand", t, raw, n_el)
        w.add_tensor(t.name + ".rand_dq", dq.ravel())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_model_samples(path):
    rng = np.random.default_rng(99)
    r = GGUFReader(MODEL)
    w = GGUFWriter(path, arch="test")
    for name in ["token_embd.weight", "blk.0.attn_norm.weight", "blk.3.ffn_down.weight",
                 "blk.29.attn_v.weight"]:
        t = next(t for t in r.tensors if t.name == name)
        dq = quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        idx = np.sort(rng.choice(dq.size, 100, replace=False)).astype(np.uint64)
        w.add_key_value("sample.%s.index" % name, [int(i) for i in idx], V.ARRAY, sub_type=V.UINT64)
        w.add_key_value("sample.%s.value" % name, [float(v) for v in dq[idx]], V.ARRAY, sub_type=V.FLOAT32)
        w.add_key_value("sample.%s.type" % name, t.tensor_type.name, V.STRING)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    write_quant(os.path.join(OUT, "quant.gguf"))
    if os.path.exists(MODEL):
        write_model_samples(os.path.join(OUT, "model_samples.gguf"))
    else:
        print("model absent: model_samples.gguf not written (run `make model`)", file=sys.stderr)
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
