"""Peak memory of the training loss (unembedding + bigram + cross-entropy, forward and backward):
the fused pass of model/loss.py against plain autograd, over the whole logits and over chunks.

Run: python benchmarks/loss_memory.py [--threads 1]
Each variant runs in a fresh process; its figure is the rise of the process's peak resident memory
from just before the loss to just after its backward pass, printed as a ratio against the fused pass.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

SHAPES = [  # (tokens per step, d_model, vocab): python-tiny's step, then larger ones
    (32 * 128, 128, 4096),
    (64 * 256, 256, 8192),
]
VARIANTS = ("fused", "autograd, whole logits", "autograd, chunks")


def measure(variant: str, tokens: int, d: int, vocab: int, threads: int) -> dict:
    import time

    import torch
    import torch.nn.functional as F

    from sparsecircuits.model.loss import CHUNK_ELEMENTS, unembed_cross_entropy

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, d, generator=g, requires_grad=True)
    w = (torch.randn(vocab, d, generator=g) / d ** 0.5).requires_grad_(True)
    bigram = torch.zeros(vocab, vocab, requires_grad=True)
    idx = torch.randint(0, vocab, (tokens,), generator=g)
    targets = torch.randint(0, vocab, (tokens,), generator=g)

    def plain(part):
        logits = F.linear(x[part], w) + bigram[idx[part]]
        return F.cross_entropy(logits, targets[part], reduction="sum")

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if variant == "fused":
        loss = unembed_cross_entropy(x, w, bigram, idx, targets)
    elif variant == "autograd, whole logits":
        loss = plain(slice(None)) / tokens
    else:
        chunk = max(256, CHUNK_ELEMENTS // vocab)
        loss = sum(plain(slice(s, s + chunk)) for s in range(0, tokens, chunk)) / tokens
    loss.backward()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": (after - before) / 1024, "seconds": seconds, "loss": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        variant, *sizes = args.child
        print(json.dumps(measure(variant.replace("_", " "), *map(int, sizes), args.threads)))
        return
    print(f"{args.threads} thread(s); peak memory rise of forward + backward, each in a fresh process\n")
    for tokens, d, vocab in SHAPES:
        print(f"{tokens} tokens x d_model {d}, vocab {vocab} (logits {tokens * vocab * 4 / 2 ** 20:.0f} MB in fp32)")
        runs = {}
        for v in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child",
                                  v.replace(" ", "_"), str(tokens), str(d), str(vocab)],
                                 capture_output=True, text=True, check=True).stdout
            runs[v] = json.loads(out)
        ref = runs["fused"]
        for v, r in runs.items():
            print(f"  {v:<24} {r['peak_mb']:8.0f} MB  {r['peak_mb'] / max(ref['peak_mb'], 1):5.1f}x memory  "
                  f"{r['seconds'] / ref['seconds']:5.2f}x time  loss {r['loss']:.5f}")
        print()


if __name__ == "__main__":
    main()
