"""Wall time of pruning the demo's sparse model to its last-digit circuit, and how a single default
run compares with a small hyper-parameter search.

Run `sparsecircuits demo` first, then: python benchmarks/prune.py [--model demo/sparse] [--search 16]
Times are also given as ratios to one training step of the same model measured in this process.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import sparsecircuits as sc
from sparsecircuits.circuits import model_means, prune, search, validate
from sparsecircuits.tasks import get_task

TASK, TARGET = "add2_digit4", 0.15


def train_step_seconds(model_dir: str) -> float:
    """One bf16 training step of this model at the demo batch, as the yardstick."""
    model = sc.load(model_dir).train()
    run = sc.config_io.load_json(sc.RunConfig, Path(model_dir) / "run.json")
    x, y = sc.training.make_data(run).train_batch(0, run.train.batch_size)
    opt = torch.optim.Adam(model.parameters())
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        torch.nn.functional.cross_entropy(logits.float()[y != -1], y[y != -1]).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return sorted(times)[3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo/sparse")
    ap.add_argument("--search", type=int, default=16, help="runs in the comparison search (0: skip)")
    args = ap.parse_args()
    if not Path(args.model).exists():
        raise SystemExit(f"no model at {args.model}: run `sparsecircuits demo` first")
    step = train_step_seconds(args.model)
    model = sc.load(args.model)
    means = model_means(model, progress=False)
    t0 = time.perf_counter()
    circuit = prune(model, TASK, TARGET, means=means, progress=False)
    t_prune = time.perf_counter() - t0
    validate(model, get_task(TASK), circuit, means, progress=False)
    t_all = time.perf_counter() - t0
    print(f"{args.model}, task {TASK}, target loss {TARGET}, {torch.get_num_threads()} threads")
    print(f"training step (reference)   {step:8.3f} s")
    print(f"one default pruning run     {t_prune:8.1f} s  = {t_prune / step:6.0f} training steps  "
          f"({circuit.n_nodes} nodes, {circuit.n_edges} edges, loss {circuit.loss:.4f})")
    print(f"prune + validate            {t_all:8.1f} s  = {t_all / step:6.0f} training steps")
    if args.search:
        t0 = time.perf_counter()
        best, trials = search(model, TASK, TARGET, budget=args.search, progress=False)
        t_search = time.perf_counter() - t0
        print(f"search of {args.search} runs          {t_search:8.1f} s  = {t_search / step:6.0f} training steps  "
              f"(best: {best.n_nodes} nodes, {best.n_edges} edges)")
        print(f"default run / best of search: {circuit.n_edges / max(1, best.n_edges):.2f}x edges "
              f"(target <= 1.25x)")


if __name__ == "__main__":
    main()
