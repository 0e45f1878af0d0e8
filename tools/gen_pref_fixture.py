#!/usr/bin/env python3
"""gen_pref_fixture.py - PyTorch reference for rein's preference losses: the reward model's
Bradley-Terry loss (K-wise rankings as pairs, prompts weighted equally, margins, reward centring)
and DPO's sigmoid (with label smoothing), IPO and hinge losses, with every gradient, for full
training and for LoRA adapters through PEFT.

For a tiny random Llama with an untied head (tools/gen_model_fixture.py's writer) it writes, under
tests/fixtures/pref/:

  tiny.gguf          the model (f32)
  rm.ref.gguf        the reward model reference:
      metadata  ref.tokens, ref.mask, ref.lens          examples back to back (mask 1 = learned)
                ref.record, ref.rank                     each example's comparison and rank
                ref.margins                              one per record
                ref.center                               the centring coefficient
                ref.loss, ref.lora.loss                  mean loss per prompt
                ref.lr ... ref.clip, ref.steps_loss (10) AdamW steps of full training + head
                ref.lora.rank, ref.lora.alpha
      tensors   head.weight (1, dim), head.bias (1)      the head (random)
                grad.<gguf name>, grad.reward_head.weight / .bias       full training
                lora.<blk.i.attn_q>.A / .B, lora_grad.<...>.A / .B,
                lora_grad.reward_head.weight / .bias                     LoRA (PEFT) + head
  dpo.ref.gguf       DPO: the same example layout (pairs: rank 0 chosen, 1 rejected), then per loss
                     L in sigmoid, ipo, hinge:
                ref.<L>.loss, grad.<L>.<gguf name>       policy = reference = the initial weights
                ref.<L>.steps_loss (10)                  AdamW steps (the reference stays fixed,
                                                         so z moves away from 0)
                ref.<L>.lora.loss, lora_grad.<L>.<...>   PEFT adapter with random B (the policy
                                                         differs from the reference = adapter off)
                ref.beta, ref.label_smoothing (sigmoid only)

The reward is read at each example's last learned token (one example has two unlearned tokens
after it, which rein must drop). Rerun from the repository root (torch, transformers, peft,
gguf-py; a few seconds):
    python3 tools/gen_pref_fixture.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as gm  # noqa: E402
import gen_train_fixture as gt  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

OUT = os.path.join(gm.ROOT, "tests", "fixtures", "pref")
CFG = gt.CFG
SEED = 301
CENTER = 0.01
BETA, LABEL_SMOOTHING = 0.2, 0.1
LR, BETAS, EPS, WD, CLIP, STEPS = 1e-2, (0.9, 0.999), 1e-8, 0.1, 1.0, 10
LORA_R, LORA_ALPHA = 4, 8.0


def example(rng, n_vocab, prompt, resp, tail=0):
    """Random tokens: a prompt (not learned), a response (learned), `tail` unlearned tokens."""
    n = prompt + resp + tail
    toks = rng.integers(0, n_vocab - 3, size=n).tolist()
    mask = [0] * prompt + [1] * resp + [0] * tail
    return toks, mask


def rm_data(rng, n_vocab):
    """Three comparisons: a ranking of 3 with a tie (ranks 0,1,1), a pair with a margin, a ranking
    of 4 (ranks 2,0,3,1)."""
    groups = [([0, 1, 1], 0.0), ([0, 1], 0.5), ([2, 0, 3, 1], 0.0)]
    ex = []
    for g, (ranks, _) in enumerate(groups):
        p = 3 + g
        for k, r in enumerate(ranks):
            toks, mask = example(rng, n_vocab, p, 2 + (k + g) % 4, tail=2 if (g, k) == (1, 1) else 0)
            toks[:p] = ex[-1][0][:p] if k else toks[:p]  # a shared prompt
            ex.append((toks, mask, g, r))
    return ex, [m for _, m in groups]


def dpo_data(rng, n_vocab):
    ex = []
    for g in range(3):
        p = 2 + g
        for k in range(2):
            toks, mask = example(rng, n_vocab, p, 3 + 2 * k + g)
            if k:
                toks[:p] = ex[-1][0][:p]
            ex.append((toks, mask, g, k))
    return ex


def put_examples(ref, ex, margins=None):
    ref.add_array("ref.tokens", [t for e in ex for t in e[0]])
    ref.add_array("ref.mask", [m for e in ex for m in e[1]])
    ref.add_array("ref.lens", [len(e[0]) for e in ex])
    ref.add_array("ref.record", [e[2] for e in ex])
    ref.add_array("ref.rank", [e[3] for e in ex])
    if margins is not None:
        ref.add_array("ref.margins", [float(m) for m in margins])


def last_learned(mask):
    return max(i for i, m in enumerate(mask) if m)


def hidden(model, toks):
    """Final normalised hidden states (T, dim) of one sequence."""
    base = model.model if hasattr(model, "model") and hasattr(model.model, "norm") else None
    if base is None:  # a PeftModel
        base = model.base_model.model.model
    return base(torch.tensor([toks])).last_hidden_state[0]


def rm_loss(model, w, b, ex, margins):
    r = [hidden(model, t)[last_learned(m)] @ w[0] + b[0] for t, m, _, _ in ex]
    total = 0
    groups = sorted({e[2] for e in ex})
    for g in groups:
        idx = [i for i, e in enumerate(ex) if e[2] == g]
        terms = []
        for i in idx:
            for j in idx:
                if ex[i][3] < ex[j][3]:
                    d = r[i] - r[j] - margins[g]
                    terms.append(-F.logsigmoid(d) + CENTER * (r[i] + r[j]) ** 2)
        total = total + torch.stack(terms).mean()
    return total / len(groups)


def seq_logps(model, ex):
    out = []
    for toks, mask, _, _ in ex:
        logits = model(torch.tensor([toks])).logits[0]
        lp = torch.log_softmax(logits, -1)
        s, n = 0, 0
        for t in range(len(toks) - 1):
            if mask[t + 1]:
                s = s + lp[t, toks[t + 1]]
                n += 1
        out.append((s, n))
    return out


def dpo_loss(policy, ref_lp, ex, loss_type):
    pol = seq_logps(policy, ex)
    losses = []
    for g in range(len(ex) // 2):
        (pc, nc), (pr, nr) = pol[2 * g], pol[2 * g + 1]
        rc, rr = ref_lp[2 * g][0], ref_lp[2 * g + 1][0]
        if loss_type == "ipo":  # TRL: length-normalised log-probabilities
            pc, pr, rc, rr = pc / nc, pr / nr, rc / nc, rr / nr
        z = (pc - pr) - (rc - rr)
        if loss_type == "sigmoid":
            loss = (-F.logsigmoid(BETA * z) * (1 - LABEL_SMOOTHING)
                    - F.logsigmoid(-BETA * z) * LABEL_SMOOTHING)
        elif loss_type == "hinge":
            loss = torch.relu(1 - BETA * z)
        else:
            loss = (z - 1 / (2 * BETA)) ** 2
        losses.append(loss)
    return torch.stack(losses).mean()


def grads_gguf(ref, prefix, model):
    for hf, p in model.named_parameters():
        ref.add_tensor(prefix + gm.gguf_name(hf), gt.to_gguf_layout(hf, p.grad))


def peft_model(held, n_vocab, seed):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seed)
    base = gm.hf_direct(CFG, n_vocab, False, held)
    pm = get_peft_model(base, LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                         target_modules=gt.LORA_TARGETS, bias="none"))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)
    adapters = []
    for n, p in pm.named_parameters():
        if "lora_" in n:
            layer = int(n.split(".layers.")[1].split(".")[0])
            mod = [t for t in gt.LORA_TARGETS if f".{t}." in n][0]
            adapters.append((f"blk.{layer}.{gt.LORA_GGUF[mod]}.{'A' if 'lora_A' in n else 'B'}",
                             mod, p))
    return pm, adapters


def lora_layout(mod, t):
    v = t.detach().numpy().astype(np.float32)
    if v.shape[0] != LORA_R:  # B (out, r): rows follow the weight's rows
        v = gt.to_gguf_layout(f"x.{mod}.weight", t)
    return np.ascontiguousarray(v)


def adam(params_decay, params_no_decay, closure):
    opt = torch.optim.AdamW([{"params": params_decay, "weight_decay": WD},
                             {"params": params_no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = closure()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params_decay + params_no_decay, CLIP)
        losses.append(float(loss))
        opt.step()
    return losses


def finish(ref):
    ref.write_header_to_file()
    ref.write_kv_data_to_file()
    ref.write_tensors_to_file()
    ref.close()


def gen_rm(held, n_vocab, rng):
    ex, margins = rm_data(rng, n_vocab)
    ref = gguf.GGUFWriter(os.path.join(OUT, "rm.ref.gguf"), "rein-rm-reference")
    put_examples(ref, ex, margins)
    ref.add_float32("ref.center", CENTER)
    w0 = (rng.standard_normal((1, CFG["dim"])) / np.sqrt(CFG["dim"])).astype(np.float32)
    b0 = np.array([0.3], dtype=np.float32)
    ref.add_tensor("head.weight", w0)
    ref.add_tensor("head.bias", b0)

    model = gm.hf_direct(CFG, n_vocab, False, held)
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    loss = rm_loss(model, w, b, ex, margins)
    loss.backward()
    ref.add_float32("ref.loss", float(loss))
    for hf, p in model.named_parameters():
        if hf == "lm_head.weight":
            continue  # the LM head plays no part in a reward
        ref.add_tensor("grad." + gm.gguf_name(hf), gt.to_gguf_layout(hf, p.grad))
    ref.add_tensor("grad.reward_head.weight", w.grad.numpy().reshape(-1))
    ref.add_tensor("grad.reward_head.bias", b.grad.numpy())

    model = gm.hf_direct(CFG, n_vocab, False, held)
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    params = [p for n, p in model.named_parameters() if n != "lm_head.weight"]
    decay = [p for p in params if p.ndim >= 2] + [w]
    no_decay = [p for p in params if p.ndim < 2] + [b]
    steps = adam(decay, no_decay, lambda: rm_loss(model, w, b, ex, margins))
    for k, v in (("ref.lr", LR), ("ref.beta1", BETAS[0]), ("ref.beta2", BETAS[1]),
                 ("ref.eps", EPS), ("ref.weight_decay", WD), ("ref.clip", CLIP)):
        ref.add_float32(k, v)
    ref.add_array("ref.steps_loss", steps)

    pm, adapters = peft_model(held, n_vocab, SEED)
    for gname, mod, p in adapters:
        ref.add_tensor("lora." + gname, lora_layout(mod, p))
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    lloss = rm_loss(pm, w, b, ex, margins)
    lloss.backward()
    for gname, mod, p in adapters:
        ref.add_tensor("lora_grad." + gname, lora_layout(mod, p.grad))
    ref.add_tensor("lora_grad.reward_head.weight", w.grad.numpy().reshape(-1))
    ref.add_tensor("lora_grad.reward_head.bias", b.grad.numpy())
    ref.add_float32("ref.lora.loss", float(lloss))
    ref.add_uint32("ref.lora.rank", LORA_R)
    ref.add_float32("ref.lora.alpha", LORA_ALPHA)
    finish(ref)
    print(f"rm: loss {float(loss):.6f}, 10 AdamW steps -> {steps[-1]:.6f}; LoRA loss {float(lloss):.6f}")


def gen_dpo(held, n_vocab, rng):
    ex = dpo_data(rng, n_vocab)
    ref = gguf.GGUFWriter(os.path.join(OUT, "dpo.ref.gguf"), "rein-dpo-reference")
    put_examples(ref, ex)
    ref.add_float32("ref.beta", BETA)
    ref.add_float32("ref.label_smoothing", LABEL_SMOOTHING)
    base = gm.hf_direct(CFG, n_vocab, False, held)
    with torch.no_grad():
        ref_lp = [(float(s), n) for s, n in seq_logps(base, ex)]
    ref.add_array("ref.ref_logps", [s for s, _ in ref_lp])
    for lt in ("sigmoid", "ipo", "hinge"):
        model = gm.hf_direct(CFG, n_vocab, False, held)
        loss = dpo_loss(model, ref_lp, ex, lt)
        loss.backward()
        ref.add_float32(f"ref.{lt}.loss", float(loss))
        grads_gguf(ref, f"grad.{lt}.", model)
        model = gm.hf_direct(CFG, n_vocab, False, held)
        decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
        steps = adam(decay, no_decay, lambda: dpo_loss(model, ref_lp, ex, lt))
        ref.add_array(f"ref.{lt}.steps_loss", steps)

        pm, adapters = peft_model(held, n_vocab, SEED + 1)
        if lt == "sigmoid":
            for gname, mod, p in adapters:
                ref.add_tensor("lora." + gname, lora_layout(mod, p))
        with torch.no_grad(), pm.disable_adapter():
            plp = [(float(s), n) for s, n in seq_logps(pm, ex)]
        assert max(abs(a[0] - b[0]) for a, b in zip(plp, ref_lp)) < 1e-5  # adapter off = base
        lloss = dpo_loss(pm, ref_lp, ex, lt)
        lloss.backward()
        ref.add_float32(f"ref.{lt}.lora.loss", float(lloss))
        for gname, mod, p in adapters:
            ref.add_tensor(f"lora_grad.{lt}.{gname}", lora_layout(mod, p.grad))
        print(f"dpo {lt}: loss {float(loss):.6f}, 10 AdamW steps -> {steps[-1]:.6f}; "
              f"LoRA loss {float(lloss):.6f}")
    ref.add_uint32("ref.lora.rank", LORA_R)
    ref.add_float32("ref.lora.alpha", LORA_ALPHA)
    ref.add_float32("ref.lr", LR)
    ref.add_float32("ref.weight_decay", WD)
    ref.add_float32("ref.clip", CLIP)
    finish(ref)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    vocab = gm.tiny_vocab()
    n_vocab = len(vocab[0])
    held = gm.write_tiny(os.path.join(OUT, "tiny.gguf"), "pref", QT.F32, CFG, False,
                         gguf.LlamaFileType.ALL_F32, SEED, vocab)
    rng = np.random.default_rng(SEED)
    gen_rm(held, n_vocab, rng)
    gen_dpo(held, n_vocab, rng)
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/fixtures/pref/{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


if __name__ == "__main__":
    main()
