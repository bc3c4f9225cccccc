"""Step time of weight-sparse vs dense training of the demo model, and the cost of the projection.

Run: python benchmarks/sparse_step.py [--steps N] [--batch-size B]
Every figure is a ratio against the dense bf16 step measured in the same process, interleaved.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sparsecircuits import RunConfig, TrainConfig, Trainer
from sparsecircuits.cli.demo import DEMO_DENSITY, DEMO_MODEL
from sparsecircuits.sparsity.projection import TopKProjector, kept_count


def naive_project(params, density):
    """A plain per-matrix kthvalue projection, the baseline the fast projector replaces."""
    with torch.no_grad():
        for p in params:
            k = kept_count(p.numel(), density)
            if k < p.numel():
                a = p.abs().flatten()
                thr = a.kthvalue(a.numel() - k + 1).values
                p.mul_(p.abs() >= thr)


def trainer(density: float, autocast: str, batch: int, out: str) -> Trainer:
    train = TrainConfig(steps=10**6, batch_size=batch, density=density, anneal_start=0.0, anneal_end=0.0,
                        autocast=autocast, device="cpu", warmup_frac=0.0)
    return Trainer(RunConfig(model=DEMO_MODEL, train=train), out, progress=False)


def timed_steps(t: Trainer, n: int, start: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        t.train_step(start + i)
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"dense bf16": trainer(1.0, "bf16", args.batch_size, tmp),
                "sparse bf16": trainer(DEMO_DENSITY, "bf16", args.batch_size, tmp),
                "dense fp32": trainer(1.0, "none", args.batch_size, tmp)}
        proj = runs["sparse bf16"].projector
        proj_times: list[float] = []
        fast = proj.project

        def timed_project(density):
            t0 = time.perf_counter()
            kept = fast(density)
            proj_times.append(time.perf_counter() - t0)
            return kept

        proj.project = timed_project
        times = {k: [] for k in runs}
        for k, t in runs.items():
            timed_steps(t, 3, 0)  # warm-up; the sparse run is at its target density from step 1
        for r in range(args.rounds):  # interleave so drift hits every variant alike
            for k, t in runs.items():
                times[k] += timed_steps(t, args.steps, 3 + r * args.steps)
        sparse_params = [p for g in proj.groups for p in g.params]
        naive = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            naive_project(sparse_params, DEMO_DENSITY)
            naive.append(time.perf_counter() - t0)
        exact = all(int((p != 0).sum()) == kept_count(p.numel(), DEMO_DENSITY if g.rows else DEMO_DENSITY ** 0.5)
                    for g in proj.groups for p in g.params)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["dense bf16"]
    print(f"demo model, batch {args.batch_size}, {torch.get_num_threads()} threads, density 1/{1 / DEMO_DENSITY:.0f}")
    print(f"dense bf16 step            {ref * 1e3:8.2f} ms  (reference, 1.000x)")
    print(f"sparse bf16 step           {med['sparse bf16'] * 1e3:8.2f} ms  {med['sparse bf16'] / ref:.3f}x dense")
    print(f"dense fp32 step            {med['dense fp32'] * 1e3:8.2f} ms  {med['dense fp32'] / ref:.3f}x dense bf16")
    print(f"top-k projection alone     {statistics.median(proj_times) * 1e3:8.2f} ms  "
          f"{statistics.median(proj_times) / ref:.3f}x dense step")
    print(f"naive kthvalue projection  {statistics.median(naive) * 1e3:8.2f} ms  "
          f"{statistics.median(naive) / ref:.3f}x dense step")
    print(f"projection exact after the last step: {exact}")


if __name__ == "__main__":
    main()
