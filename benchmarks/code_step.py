"""Training step of the python-tiny preset: the chunked vocabulary loss and fused Adam vs the plain way.

Run: python benchmarks/code_step.py [--corpus DIR] [--steps N] [--rounds R]
Every figure is a ratio against the step as it ships (chunked loss, fused Adam), measured in the same
process, interleaved, at the preset's target density. The references: the whole (tokens x vocab)
logits in one piece, and torch's default per-tensor Adam on CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from sparsecircuits import Trainer
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.model import transformer
from sparsecircuits.training.presets import preset


def trainer(corpus: str, out: str, fused: bool) -> Trainer:
    run = preset("python-tiny", corpus)
    run.train.anneal_start = run.train.anneal_end = 0.0  # at the target density from the first step
    run.train.device = "cpu"
    t = Trainer(run, out, progress=False)
    if not fused:
        t.opt = torch.optim.Adam(t.params, lr=run.train.lr, betas=run.train.betas, eps=run.train.eps)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", help="a built corpus (default: one built from a slice of the standard library)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = str(Path(tmp) / "corpus")
            stdlib = Path(sysconfig.get_paths()["stdlib"])
            build_corpus(corpus, [stdlib / name for name in ("json", "email", "asyncio", "unittest")],
                         progress=lambda *a: None)
        chunk = transformer.LOSS_CHUNK_ELEMENTS
        runs = {"as shipped": (trainer(corpus, tmp, True), chunk),
                "logits in one piece": (trainer(corpus, tmp, True), 2 ** 62),
                "per-tensor Adam": (trainer(corpus, tmp, False), chunk),
                "both plain": (trainer(corpus, tmp, False), 2 ** 62)}
        times = {k: [] for k in runs}
        step = 0
        for r in range(args.rounds + 1):  # round 0 warms up; interleaved so drift hits every variant alike
            for key, (t, elements) in runs.items():
                transformer.LOSS_CHUNK_ELEMENTS = elements
                for i in range(args.steps):
                    t0 = time.perf_counter()
                    t.train_step(step + i)
                    if r:
                        times[key].append(time.perf_counter() - t0)
            step += args.steps
        transformer.LOSS_CHUNK_ELEMENTS = chunk
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["as shipped"]
    t = runs["as shipped"][0].run.train
    print(f"python-tiny, batch {t.batch_size} x {runs['as shipped'][0].run.model.block_size} tokens, "
          f"density {t.density}, {torch.get_num_threads()} threads, median of {args.rounds * args.steps} steps each")
    for key, m in med.items():
        print(f"{key:<24}{m * 1e3:8.1f} ms  {m / ref:.3f}x" + ("  (reference)" if key == "as shipped" else ""))


if __name__ == "__main__":
    main()
