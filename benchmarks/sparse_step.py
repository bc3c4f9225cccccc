"""Step time of weight-sparse vs dense training of the demo model, and the cost of the projection.

Run: python benchmarks/sparse_step.py [--steps N] [--batch-size B] [--threads T]
Every figure is a ratio against the dense step measured in the same process, interleaved. Every
variant trains at the precision training picks by default (`autocast="auto"`: fp32 on a CPU, bf16 on
a GPU); the sparse ones run at the demo's target density and differ only in how they project.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sparsecircuits import RunConfig, TrainConfig, Trainer
from sparsecircuits.demo import DEMO_DENSITY, DEMO_MODEL, SPARSE
from sparsecircuits.sparsity.projection import kept_count


def naive_project(params, density):
    """A plain per-matrix kthvalue projection, the baseline the fast projector replaces."""
    with torch.no_grad():
        for p in params:
            k = kept_count(p.numel(), density)
            if k < p.numel():
                a = p.abs().flatten()
                thr = a.kthvalue(a.numel() - k + 1).values
                p.mul_(p.abs() >= thr)


def reference_project(proj, density):
    """The same exact projection by a full `topk` on every tensor (no remembered threshold)."""
    with torch.no_grad():
        for slot in proj.slots:
            k, j = proj.budget(slot, density)
            if k < slot.param.numel():
                slot.param.mul_(slot.exact_mask(slot.param.abs(), k, j))


def trainer(density: float, batch: int, out: str) -> Trainer:
    train = TrainConfig(steps=10**6, batch_size=batch, density=density, anneal_start=0.0, anneal_end=0.0,
                        device="cpu", warmup_frac=0.0)
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
    ap.add_argument("--batch-size", type=int, default=SPARSE["batch_size"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"dense": trainer(1.0, args.batch_size, tmp),
                "sparse, fast projection": trainer(DEMO_DENSITY, args.batch_size, tmp),
                "sparse, full selection": trainer(DEMO_DENSITY, args.batch_size, tmp),
                "sparse, plain kthvalue": trainer(DEMO_DENSITY, args.batch_size, tmp)}
        proj_times = {k: [] for k in runs if k.startswith("sparse")}
        for key in proj_times:
            proj = runs[key].projector
            impl = {"sparse, fast projection": proj.project,
                    "sparse, full selection": lambda d, proj=proj: reference_project(proj, d),
                    "sparse, plain kthvalue": lambda d, proj=proj: naive_project([s.param for s in proj.slots], d)}[key]

            def timed(density, impl=impl, out=proj_times[key]):
                t0 = time.perf_counter()
                impl(density)
                out.append(time.perf_counter() - t0)

            proj.project = timed
        times = {k: [] for k in runs}
        for k, t in runs.items():
            timed_steps(t, 3, 0)  # warm-up; the sparse runs are at their target density from step 1
        for r in range(args.rounds):  # interleave so drift hits every variant alike
            for k, t in runs.items():
                times[k] += timed_steps(t, args.steps, 3 + r * args.steps)
        proj = runs["sparse, fast projection"].projector
        exact = all(int((s.param != 0).sum()) == proj.budget(s, DEMO_DENSITY)[0] for s in proj.slots)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["dense"]
    print(f"demo model, batch {args.batch_size}, {torch.get_num_threads()} threads, density 1/{1 / DEMO_DENSITY:.0f}, "
          f"median of {args.rounds * args.steps} steps each")
    print(f"{'dense':<32}{ref * 1e3:8.2f} ms  1.000x (reference)")
    for key in runs:
        if key != "dense":
            print(f"{key:<32}{med[key] * 1e3:8.2f} ms  {med[key] / ref:.3f}x dense")
    for key, v in proj_times.items():
        m = statistics.median(v)
        print(f"{'projection alone, ' + key.removeprefix('sparse, '):<32}{m * 1e3:8.2f} ms  "
              f"{m / ref:.3f}x dense step")
    print(f"fast projection exact after the last step: {exact}")


if __name__ == "__main__":
    main()
