#!/usr/bin/env python3
"""gen_rl_fixture.py - PyTorch reference for rein's RL arithmetic (src/train/ppo.c, grpo.c) and for
the policy gradient through the model (src/train/rl.c's update), written as GGUF files that rein's
own reader opens (tests/test_rl_math.c and tests/test_rl_pg.c compare).

tests/fixtures/rl/rl_math.ref.gguf, on fixed random tensors, computed the way TRL computes them:
  gae.*        three sequences (lengths in gae.lens): rewards, values -> advantages, returns
               (TRL PPOTrainer's reversed loop; gamma, lambda in the metadata)
  whiten.*     x -> whitened with and without shift_mean (TRL's masked_whiten, all-ones mask)
  pg.*         logp, old_logp, adv, w -> the clipped policy loss (sum of w_t max(...)), its
               gradient with respect to logp (autograd), the clip fraction
  vf.*         v, old_v, returns, w -> the clipped value loss, its gradient, the clip fraction
  kl.*         logp, ref -> k1, k2, k3 and their gradients with respect to logp (autograd)
  group.*      scores of 4 groups of 5 -> GRPO (std-scaled), Dr. GRPO (mean only), RLOO advantages
  ev.*         values, returns -> explained variance
  klctl.*      Ziegler's adaptive KL controller (TRL's AdaptiveKLController): coefficient after
               each of a sequence of measured KLs
tests/fixtures/rl/tiny_pg.gguf + rl_pg.ref.gguf: a tiny random Llama (tied head) and one fixed
rollout of three sequences (prompt + response token ids, old log-probs, reference log-probs,
advantages, old values, returns, a value head): the PPO loss (clipped policy + 0.1 x clipped value
loss, token mean) and the GRPO loss (clipped policy with per-sample token means + beta k3), and
the gradient of each with respect to every weight and the value head.

Rerun from the repository root (torch, transformers, gguf-py; a few seconds):
    python3 tools/gen_rl_fixture.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as gm  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

OUT = os.path.join(gm.ROOT, "tests", "fixtures", "rl")
CFG = {"dim": 32, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "ffn": 48}
GAMMA, LAM, CLIP_EPS, CLIP_V, VF_COEF, BETA = 0.99, 0.95, 0.2, 0.2, 0.1, 0.1
PROMPT_LENS, RESP_LENS = (3, 5, 2), (4, 6, 3)


def f32(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def gae(rewards, values):
    """TRL PPOTrainer: rewards, values (1, n)."""
    n = rewards.shape[1]
    last, rev = 0.0, []
    for t in reversed(range(n)):
        nextv = values[:, t + 1] if t < n - 1 else 0.0
        delta = rewards[:, t] + GAMMA * nextv - values[:, t]
        last = delta + GAMMA * LAM * last
        rev.append(last)
    adv = torch.stack(rev[::-1], dim=1)
    return adv, adv + values


def whiten(x, shift_mean):
    """TRL masked_whiten with an all-ones mask (masked_var is unbiased)."""
    n = x.numel()
    mean = x.mean()
    var = ((x - mean) ** 2).mean() * n / (n - 1)
    w = (x - mean) * torch.rsqrt(var + 1e-8)
    return w if shift_mean else w + mean


def policy_loss(logp, old, adv, w):
    ratio = torch.exp(logp - old)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - CLIP_EPS, 1 + CLIP_EPS)
    return (torch.max(l1, l2) * w).sum(), float((l2 > l1).double().sum())


def value_loss(v, old, ret, w):
    vc = torch.max(torch.min(v, old + CLIP_V), old - CLIP_V)
    e1, e2 = (v - ret) ** 2, (vc - ret) ** 2
    return 0.5 * (torch.max(e1, e2) * w).sum(), float((e2 > e1).double().sum())


def kls(logp, ref):
    d = logp - ref
    return d, 0.5 * d * d, torch.exp(-d) - 1 + d


def away_from_clip(d, eps, rng):
    """log-ratios in (-0.5, 0.5) kept away from the clip boundaries (torch.max splits a tie)."""
    for i in range(len(d)):
        while min(abs(np.exp(d[i]) - (1 - eps)), abs(np.exp(d[i]) - (1 + eps))) < 1e-3:
            d[i] = rng.uniform(-0.5, 0.5)
    return d


def math_fixture():
    rng = np.random.default_rng(601)
    w = gguf.GGUFWriter(os.path.join(OUT, "rl_math.ref.gguf"), "rein-rl-reference")
    w.add_float32("ref.gamma", GAMMA)
    w.add_float32("ref.lam", LAM)
    w.add_float32("ref.clip_eps", CLIP_EPS)
    w.add_float32("ref.clip_v", CLIP_V)

    lens = [5, 1, 9]
    r = rng.standard_normal(sum(lens)).astype(np.float32)
    v = rng.standard_normal(sum(lens)).astype(np.float32)
    adv, ret, o = [], [], 0
    for n in lens:
        a, b = gae(torch.tensor(r[o:o + n])[None], torch.tensor(v[o:o + n])[None])
        adv.append(a[0].numpy())
        ret.append(b[0].numpy())
        o += n
    w.add_array("gae.lens", lens)
    for k, x in (("rewards", r), ("values", v), ("adv", np.concatenate(adv)),
                 ("returns", np.concatenate(ret))):
        w.add_tensor("gae." + k, f32(x))

    x = (rng.standard_normal(37) * 3 + 1.5).astype(np.float32)
    w.add_tensor("whiten.x", f32(x))
    w.add_tensor("whiten.shift", f32(whiten(torch.tensor(x), True).numpy()))
    w.add_tensor("whiten.noshift", f32(whiten(torch.tensor(x), False).numpy()))

    n = 64
    old = rng.standard_normal(n).astype(np.float32) - 2
    d = away_from_clip(rng.uniform(-0.5, 0.5, n), CLIP_EPS, rng)
    logp = (old + d).astype(np.float32)
    a = rng.standard_normal(n).astype(np.float32)
    wt = rng.uniform(0.1, 1.0, n).astype(np.float32) / n
    lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    loss, nclip = policy_loss(lp, torch.tensor(old, dtype=torch.float64),
                              torch.tensor(a, dtype=torch.float64),
                              torch.tensor(wt, dtype=torch.float64))
    loss.backward()
    for k, t in (("logp", logp), ("old", old), ("adv", a), ("w", wt), ("grad", lp.grad.numpy())):
        w.add_tensor("pg." + k, f32(t))
    w.add_float32("pg.loss", float(loss))
    w.add_float32("pg.n_clipped", nclip)

    ov = rng.standard_normal(n).astype(np.float32)
    vv = (ov + rng.uniform(-0.5, 0.5, n)).astype(np.float32)
    for i in range(n):  # away from the value clip's boundaries
        while abs(abs(vv[i] - ov[i]) - CLIP_V) < 1e-3:
            vv[i] = ov[i] + rng.uniform(-0.5, 0.5)
    rr = rng.standard_normal(n).astype(np.float32)
    vt = torch.tensor(vv, dtype=torch.float64, requires_grad=True)
    vl, vclip = value_loss(vt, torch.tensor(ov, dtype=torch.float64),
                           torch.tensor(rr, dtype=torch.float64),
                           torch.tensor(wt, dtype=torch.float64))
    vl.backward()
    for k, t in (("v", vv), ("old", ov), ("returns", rr), ("grad", vt.grad.numpy())):
        w.add_tensor("vf." + k, f32(t))
    w.add_float32("vf.loss", float(vl))
    w.add_float32("vf.n_clipped", vclip)

    ref = (logp + rng.uniform(-1.5, 1.5, n)).astype(np.float32)
    w.add_tensor("kl.logp", f32(logp))
    w.add_tensor("kl.ref", f32(ref))
    for i, kk in enumerate(kls(torch.tensor(logp, dtype=torch.float64),
                               torch.tensor(ref, dtype=torch.float64))):
        lpk = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
        g = torch.autograd.grad(kls(lpk, torch.tensor(ref, dtype=torch.float64))[i].sum(), lpk)[0]
        w.add_tensor(f"kl.k{i + 1}", f32(kk.numpy()))
        w.add_tensor(f"kl.k{i + 1}_grad", f32(g.numpy()))

    G = 5
    sc = rng.standard_normal(4 * G).astype(np.float32)
    sc[G:2 * G] = 1.0  # a group of equal scores: zero advantages, no division by zero
    s = torch.tensor(sc).view(-1, G)
    mean, std = s.mean(dim=1, keepdim=True), s.std(dim=1, keepdim=True)
    w.add_uint32("group.g", G)
    w.add_tensor("group.scores", f32(sc))
    w.add_tensor("group.grpo", f32(((s - mean) / (std + 1e-4)).flatten().numpy()))
    w.add_tensor("group.drgrpo", f32((s - mean).flatten().numpy()))
    w.add_tensor("group.rloo", f32((s - (s.sum(dim=1, keepdim=True) - s) / (G - 1)).flatten().numpy()))

    evv = rng.standard_normal(50).astype(np.float32)
    evr = (evv * 0.7 + rng.standard_normal(50) * 0.5).astype(np.float32)
    w.add_tensor("ev.values", f32(evv))
    w.add_tensor("ev.returns", f32(evr))
    tv, tr = torch.tensor(evv, dtype=torch.float64), torch.tensor(evr, dtype=torch.float64)
    w.add_float32("ev.value", float(1 - torch.var(tr - tv) / torch.var(tr)))

    # TRL's AdaptiveKLController(init_kl_coef, target, horizon).update(current, n_steps)
    coef, target, horizon, nsteps = 0.2, 6.0, 10000.0, 64
    measured = [0.5, 3.0, 6.0, 9.0, 20.0, 7.0, 5.5, 0.0]
    out = []
    for kl in measured:
        e = np.clip(kl / target - 1, -0.2, 0.2)
        coef *= 1 + e * nsteps / horizon
        out.append(coef)
    w.add_float32("klctl.init", 0.2)
    w.add_float32("klctl.target", target)
    w.add_float32("klctl.horizon", horizon)
    w.add_uint32("klctl.n", nsteps)
    w.add_array("klctl.kl", measured)
    w.add_array("klctl.coef", [float(c) for c in out])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def to_gguf_layout(hf_name, g):
    g = g.detach().numpy().astype(np.float32)
    if ".q_proj." in hf_name:
        g = gm.permute(g, CFG["n_heads"], CFG["n_heads"])
    elif ".k_proj." in hf_name:
        g = gm.permute(g, CFG["n_heads"], CFG["n_kv_heads"])
    return np.ascontiguousarray(g)


def pg_fixture():
    vocab = gm.tiny_vocab()
    n_vocab = len(vocab[0])
    held = gm.write_tiny(os.path.join(OUT, "tiny_pg.gguf"), "rl pg", QT.F32, CFG, True,
                         gguf.LlamaFileType.ALL_F32, 602, vocab)
    rng = np.random.default_rng(603)
    prompts = [rng.integers(0, n_vocab - 3, size=n).tolist() for n in PROMPT_LENS]
    resps = [rng.integers(0, n_vocab - 3, size=n).tolist() for n in RESP_LENS]
    vw = (rng.standard_normal(CFG["dim"]) * 0.3).astype(np.float32)
    vb = np.float32(0.1)
    ntok = sum(RESP_LENS)

    def forward(model, head_w, head_b):
        logps, values = [], []
        for p, r in zip(prompts, resps):
            ids = torch.tensor([p + r[:-1]])
            out = model(ids, output_hidden_states=True)
            lp = torch.log_softmax(out.logits[0].float(), dim=-1)
            rows = torch.arange(len(p) - 1, len(p) + len(r) - 1)
            logps.append(lp[rows, torch.tensor(r)])
            hidden = out.hidden_states[-1][0]  # after the final norm
            values.append(hidden[rows] @ head_w + head_b)
        return torch.cat(logps), torch.cat(values)

    model = gm.hf_direct(CFG, n_vocab, True, held)
    with torch.no_grad():
        lp0, v0 = forward(model, torch.tensor(vw), torch.tensor(vb))
    old = (lp0 + torch.tensor(away_from_clip(rng.uniform(-0.4, 0.4, ntok), CLIP_EPS, rng),
                              dtype=torch.float32)).float()
    ref = (lp0 + torch.tensor(rng.uniform(-0.6, 0.6, ntok), dtype=torch.float32)).float()
    adv = torch.tensor(rng.standard_normal(ntok), dtype=torch.float32)
    oldv = (v0 + torch.tensor(rng.uniform(-0.4, 0.4, ntok), dtype=torch.float32)).float()
    ret = torch.tensor(rng.standard_normal(ntok), dtype=torch.float32)
    seq_adv = torch.tensor(rng.standard_normal(len(RESP_LENS)), dtype=torch.float32)
    gadv = torch.cat([seq_adv[i].repeat(n) for i, n in enumerate(RESP_LENS)])

    ref_w = gguf.GGUFWriter(os.path.join(OUT, "rl_pg.ref.gguf"), "rein-rl-pg-reference")
    ref_w.add_array("ref.prompt_lens", list(PROMPT_LENS))
    ref_w.add_array("ref.resp_lens", list(RESP_LENS))
    ref_w.add_array("ref.prompts", sum(prompts, []))
    ref_w.add_array("ref.resps", sum(resps, []))
    for k, t in (("old_logp", old), ("ref_logp", ref), ("adv", adv), ("old_values", oldv),
                 ("returns", ret), ("grpo_adv", gadv), ("logp", lp0)):
        ref_w.add_tensor(k, f32(t.numpy()))
    ref_w.add_tensor("value_head.weight", f32(vw))
    ref_w.add_float32("value_head.bias", float(vb))
    ref_w.add_float32("ref.clip_eps", CLIP_EPS)
    ref_w.add_float32("ref.clip_v", CLIP_V)
    ref_w.add_float32("ref.vf_coef", VF_COEF)
    ref_w.add_float32("ref.beta", BETA)

    # PPO: clipped policy loss + vf_coef x clipped value loss, a mean over the batch's tokens
    hw = torch.tensor(vw, requires_grad=True)
    hb = torch.tensor(vb, requires_grad=True)
    lp, v = forward(model, hw, hb)
    wt = torch.full((ntok,), 1.0 / ntok)
    pl, _ = policy_loss(lp, old, adv, wt)
    vl, _ = value_loss(v, oldv, ret, wt)
    loss = pl + VF_COEF * vl
    loss.backward()
    ref_w.add_float32("ppo.loss", float(loss))
    for hf, p in model.named_parameters():
        ref_w.add_tensor("ppo.grad." + gm.gguf_name(hf), to_gguf_layout(hf, p.grad))
    ref_w.add_tensor("ppo.grad.value_head.weight", f32(hw.grad.numpy()))
    ref_w.add_float32("ppo.grad.value_head.bias", float(hb.grad))

    # GRPO: a mean of the samples' token means of the clipped loss, plus beta k3
    model = gm.hf_direct(CFG, n_vocab, True, held)
    lp, _ = forward(model, torch.tensor(vw), torch.tensor(vb))
    wt = torch.cat([torch.full((n,), 1.0 / (len(RESP_LENS) * n)) for n in RESP_LENS])
    pl, _ = policy_loss(lp, old, gadv, wt)
    k3 = kls(lp, ref)[2]
    loss = pl + BETA * (k3 * wt).sum()
    loss.backward()
    ref_w.add_float32("grpo.loss", float(loss))
    for hf, p in model.named_parameters():
        ref_w.add_tensor("grpo.grad." + gm.gguf_name(hf), to_gguf_layout(hf, p.grad))

    ref_w.write_header_to_file()
    ref_w.write_kv_data_to_file()
    ref_w.write_tensors_to_file()
    ref_w.close()
    print(f"ppo loss {float(pl):.6f}; grpo loss {float(loss):.6f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    math_fixture()
    pg_fixture()
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/fixtures/rl/{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


if __name__ == "__main__":
    main()
