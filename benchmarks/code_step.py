"""Training step of the python-tiny preset, against the same step done the plain way.

Run: python benchmarks/code_step.py [--corpus DIR] [--steps N] [--rounds R]
Every figure is a ratio against the step as it ships, measured in the same process, interleaved, at the
preset's target density. The references swap one part back to the plain way:
- "autograd loss over chunks": unembedding + bigram + cross-entropy per chunk, differentiated by autograd
  (a fresh vocab x vocab bigram gradient per chunk) instead of the fused pass of model/loss.py;
- "masked attention": scores, the additive mask (causal and ALiBi), a concatenated sink column,
  softmax, slice, instead of one baddbmm over the mask with the sink folded in as an extra key;
- "per-tensor Adam": torch's default Adam on CPU instead of the fused kernel.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import types

import torch
import torch.nn.functional as F

from sparsecircuits import Trainer
from sparsecircuits.training.presets import preset

from stdlib_slice import HELP, corpus_or_slice


def autograd_loss(model, x, idx, targets):
    """The training loss as autograd would take it, chunk by chunk."""
    x, idx, targets = x.flatten(0, 1), idx.flatten(), targets.flatten()
    total = x.new_zeros((), dtype=torch.float32)
    for s in range(0, len(targets), 1024):
        part = slice(s, s + 1024)
        logits = model.logits(x[part], idx[part]).float()
        total = total + F.cross_entropy(logits, targets[part], ignore_index=-1, reduction="sum")
    return total / (targets != -1).sum().clamp_min(1)


def masked_pattern(attn, q, k):
    """Attention weights with the mask and the sink applied as separate passes over the (B, H, T, T) scores."""
    B, H, T, D = q.shape
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D) + attn.mask[..., :T, 1:T + 1]  # causal and ALiBi
    sink = attn.sink_logit.to(scores.dtype).view(1, H, 1, 1).expand(B, H, T, 1)
    return torch.softmax(torch.cat([sink, scores], dim=-1), dim=-1)[..., 1:]


def trainer(corpus: str, out: str, loss: bool = False, attention: bool = False, adam: bool = False) -> Trainer:
    run = preset("python-tiny", corpus)
    run.train.anneal_start = run.train.anneal_end = 0.0  # at the target density from the first step
    run.train.device = "cpu"
    t = Trainer(run, out, progress=False)
    if loss:
        t.model.chunked_loss = types.MethodType(autograd_loss, t.model)
    if attention:
        for block in t.model.blocks:
            block.attn.pattern = types.MethodType(masked_pattern, block.attn)
    if adam:
        t.opt = torch.optim.Adam(t.params, lr=run.train.lr, betas=run.train.betas, eps=run.train.eps)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", help=HELP)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = corpus_or_slice(args.corpus, tmp)
        runs = {"as shipped": trainer(corpus, tmp),
                "autograd loss over chunks": trainer(corpus, tmp, loss=True),
                "masked attention": trainer(corpus, tmp, attention=True),
                "per-tensor Adam": trainer(corpus, tmp, adam=True),
                "all three plain": trainer(corpus, tmp, loss=True, attention=True, adam=True)}
        times = {k: [] for k in runs}
        step = 0
        for r in range(args.rounds + 1):  # round 0 warms up; interleaved so drift hits every variant alike
            for key, t in runs.items():
                for i in range(args.steps):
                    t0 = time.perf_counter()
                    t.train_step(step + i)
                    if r:
                        times[key].append(time.perf_counter() - t0)
            step += args.steps
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["as shipped"]
    t = runs["as shipped"]
    print(f"python-tiny, batch {t.run.train.batch_size} x {t.run.model.block_size} tokens, "
          f"density {t.run.train.density:.3f}, {torch.get_num_threads()} threads, median of "
          f"{args.rounds * args.steps} steps each")
    for key, m in med.items():
        print(f"{key:<28}{m * 1e3:8.1f} ms  {m / ref:.3f}x" + ("  (reference)" if key == "as shipped" else ""))


if __name__ == "__main__":
    main()
