#!/usr/bin/env python3
"""torch_train_bench.py - the PyTorch (CPU) training step that bench/bench_train.c compares against.

The same shapes as rein's benchmark: the default model's architecture (SmolLM2-135M: 30 layers,
width 576, 9 heads / 3 KV heads, SwiGLU 1536, vocabulary 49152, tied head), B sequences of T tokens,
next-token cross-entropy, AdamW; full fine-tuning, or LoRA (PEFT) of rank r on every linear layer.
Random weights: speed does not depend on their values. Prints one JSON object:
{"tokens_per_s", "step_s", "peak_rss_mb", "threads", "torch"}.

Usage: python3 tools/torch_train_bench.py full|lora THREADS [B] [T] [STEPS]
How it is run decides what it measures; bench_train.c runs it twice: as a user runs it by default,
and tuned (OPENBLAS_* unset, OMP_WAIT_POLICY=PASSIVE, glibc's mmap/trim thresholds raised).
"""
import json
import resource
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    mode, threads = sys.argv[1], int(sys.argv[2])
    B = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    T = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, bias="none",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                            "down_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, 49152, (B, T))
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()

    step()  # warm-up: allocations, first-touch
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t) / steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens_per_s": B * T / dt, "step_s": dt, "peak_rss_mb": rss,
                      "threads": threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
