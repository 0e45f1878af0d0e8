#!/usr/bin/env python3
"""gen_train_fixture.py - PyTorch reference for rein's training pass: loss, logits, every gradient,
ten AdamW steps, and the same for LoRA adapters through PEFT.

For a tiny random Llama (grouped-query attention; one model with a tied output head, one untied)
the tool writes, under tests/fixtures/train/:

  tiny_<tied|untied>.gguf      the model (f32; q/k rows permuted as llama.cpp's convert does),
                               written by tools/gen_model_fixture.py's writer
  tiny_<tied|untied>.ref.gguf  the reference, as a GGUF file that rein's own reader opens:
      metadata  ref.tokens, ref.targets (-1 = no loss), ref.cu_seqlens   the packed batch
                ref.loss            mean cross-entropy over the target tokens
                ref.lr, ref.beta1, ref.beta2, ref.eps, ref.weight_decay, ref.clip
                ref.steps_loss      (10) loss before each AdamW step (torch.optim.AdamW, decay on
                                    2-D weights only, clip_grad_norm_ before each step)
                ref.steps_norm      (10) gradient norm before clipping at each step
                ref.lora.rank, ref.lora.alpha, ref.lora.loss, ref.lora.steps_loss (10)
      tensors   logits                  (T, n_vocab) of the packed batch, sequence by sequence
                grad.<gguf name>        gradient of every weight, in GGUF layout (q/k rows permuted)
                grad.input_embeds       (T, dim) gradient with respect to the input embeddings
                lora.<blk.i.attn_q...>.A / .B      PEFT adapter values (B random, so that A learns)
                lora_grad.<...>.A / .B  their gradients (B rows permuted for q/k like the weights)

The packed batch holds two sequences (lengths 7 and 12); PyTorch runs each sequence on its own, so
attention staying inside a sequence and positions restarting are part of what is checked. The
targets are next tokens, with the last token of each sequence and the first three of the second
(a "prompt") excluded.

Rerun from the repository root (torch, transformers, peft, gguf-py; a few seconds):
    python3 tools/gen_train_fixture.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as gm  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

OUT = os.path.join(gm.ROOT, "tests", "fixtures", "train")
CFG = {"dim": 32, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "ffn": 48}
LENS = (7, 12)
LR, BETAS, EPS, WD, CLIP, STEPS = 1e-2, (0.9, 0.999), 1e-8, 0.1, 1.0, 10
LORA_R, LORA_ALPHA, LORA_LR = 4, 8.0, 2e-2
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_GGUF = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def batch(n_vocab, rng):
    tokens, targets, cu = [], [], [0]
    for s, n in enumerate(LENS):
        seq = rng.integers(0, n_vocab - 3, size=n).tolist()
        tg = seq[1:] + [-1]
        if s == 1:
            tg[:3] = [-1, -1, -1]
        tokens += seq
        targets += tg
        cu.append(cu[-1] + n)
    return tokens, targets, cu


def loss_of(model, tokens, targets, cu, logits_out=None):
    total, count = 0.0, 0
    for s in range(len(cu) - 1):
        ids = torch.tensor([tokens[cu[s]:cu[s + 1]]])
        lg = model(ids).logits[0]
        if logits_out is not None:
            logits_out.append(lg.detach().numpy())
        tg = torch.tensor(targets[cu[s]:cu[s + 1]])
        keep = tg >= 0
        total = total + torch.nn.functional.cross_entropy(lg[keep], tg[keep], reduction="sum")
        count += int(keep.sum())
    return total / count


def to_gguf_layout(hf_name, g):
    g = g.detach().numpy().astype(np.float32)
    if ".q_proj." in hf_name:
        g = gm.permute(g, CFG["n_heads"], CFG["n_heads"])
    elif ".k_proj." in hf_name:
        g = gm.permute(g, CFG["n_heads"], CFG["n_kv_heads"])
    return np.ascontiguousarray(g)


def adam_steps(params_decay, params_no_decay, closure, lr):
    opt = torch.optim.AdamW([{"params": params_decay, "weight_decay": WD},
                             {"params": params_no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=BETAS, eps=EPS)
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = closure()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params_decay + params_no_decay, CLIP)))
        losses.append(float(loss))
        opt.step()
    return losses, norms


def gen(tied, seed):
    name = "tied" if tied else "untied"
    vocab = gm.tiny_vocab()
    n_vocab = len(vocab[0])
    path = os.path.join(OUT, f"tiny_{name}.gguf")
    held = gm.write_tiny(path, f"train {name}", QT.F32, CFG, tied, gguf.LlamaFileType.ALL_F32, seed,
                         vocab)
    rng = np.random.default_rng(seed)
    tokens, targets, cu = batch(n_vocab, rng)

    model = gm.hf_direct(CFG, n_vocab, tied, held)
    logits = []
    loss = loss_of(model, tokens, targets, cu, logits)
    loss.backward()
    ref = gguf.GGUFWriter(os.path.join(OUT, f"tiny_{name}.ref.gguf"), "rein-train-reference")
    ref.add_array("ref.tokens", tokens)
    ref.add_array("ref.targets", targets)
    ref.add_array("ref.cu_seqlens", cu)
    ref.add_float32("ref.loss", float(loss))
    ref.add_tensor("logits", np.ascontiguousarray(np.concatenate(logits), dtype=np.float32))
    for hf, p in model.named_parameters():
        ref.add_tensor("grad." + gm.gguf_name(hf), to_gguf_layout(hf, p.grad))

    # the gradient with respect to the input embeddings (what an adversarial-suffix search needs)
    embs = []
    total, count = 0.0, 0
    for s in range(len(cu) - 1):
        ids = torch.tensor([tokens[cu[s]:cu[s + 1]]])
        e = model.model.embed_tokens(ids).detach().requires_grad_(True)
        lg = model(inputs_embeds=e).logits[0]
        tg = torch.tensor(targets[cu[s]:cu[s + 1]])
        keep = tg >= 0
        total = total + torch.nn.functional.cross_entropy(lg[keep], tg[keep], reduction="sum")
        count += int(keep.sum())
        embs.append(e)
    (total / count).backward()
    ref.add_tensor("grad.input_embeds",
                   np.ascontiguousarray(torch.cat([e.grad[0] for e in embs]).numpy()))

    # ten AdamW steps from the same start
    model = gm.hf_direct(CFG, n_vocab, tied, held)
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    losses, norms = adam_steps(decay, no_decay, lambda: loss_of(model, tokens, targets, cu), LR)
    for k, v in (("ref.lr", LR), ("ref.beta1", BETAS[0]), ("ref.beta2", BETAS[1]), ("ref.eps", EPS),
                 ("ref.weight_decay", WD), ("ref.clip", CLIP)):
        ref.add_float32(k, v)
    ref.add_array("ref.steps_loss", [float(x) for x in losses])
    ref.add_array("ref.steps_norm", [float(x) for x in norms])

    # LoRA through PEFT: random B so that every adapter matrix gets a gradient
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seed)
    base = gm.hf_direct(CFG, n_vocab, tied, held)
    pm = get_peft_model(base, LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                         target_modules=LORA_TARGETS, bias="none"))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)
    adapters = {}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            layer = int(n.split(".layers.")[1].split(".")[0])
            mod = [t for t in LORA_TARGETS if f".{t}." in n][0]
            ab = "A" if "lora_A" in n else "B"
            adapters[n] = (f"blk.{layer}.{LORA_GGUF[mod]}.{ab}", mod, p)
    for n, (gname, mod, p) in adapters.items():
        v = p.detach().numpy().astype(np.float32)
        if v.shape[0] != LORA_R:  # B (out, r): rows follow the weight's rows
            v = to_gguf_layout(f"x.{mod}.weight", p)
        ref.add_tensor("lora." + gname, np.ascontiguousarray(v))
    lloss = loss_of(pm, tokens, targets, cu)
    lloss.backward()
    for n, (gname, mod, p) in adapters.items():
        g = p.grad.detach().numpy().astype(np.float32)
        if g.shape[0] != LORA_R:
            g = to_gguf_layout(f"x.{mod}.weight", p.grad)
        ref.add_tensor("lora_grad." + gname, np.ascontiguousarray(g))
    ref.add_uint32("ref.lora.rank", LORA_R)
    ref.add_float32("ref.lora.alpha", LORA_ALPHA)
    ref.add_float32("ref.lora.lr", LORA_LR)
    ref.add_float32("ref.lora.loss", float(lloss))
    params = [p for _, (_, _, p) in adapters.items()]
    for p in params:
        p.grad = None
    llosses, _ = adam_steps(params, [], lambda: loss_of(pm, tokens, targets, cu), LORA_LR)
    ref.add_array("ref.lora.steps_loss", [float(x) for x in llosses])

    ref.write_header_to_file()
    ref.write_kv_data_to_file()
    ref.write_tensors_to_file()
    ref.close()
    print(f"{name}: loss {float(loss):.6f}; 10 AdamW steps {losses[0]:.4f} -> {losses[-1]:.4f}; "
          f"LoRA loss {float(lloss):.6f}, 10 steps -> {llosses[-1]:.4f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen(True, 201)
    gen(False, 202)
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/fixtures/train/{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


if __name__ == "__main__":
    main()
