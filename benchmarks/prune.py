"""How small, how stable and how fast the pruner's circuits are: the demo's two models on their
last-digit task, and the hand-built models whose circuit is known.

Run `sparsecircuits demo` first, then: python benchmarks/prune.py [--demo demo] [--seeds 5] [--search 16]

Per model: nodes, edges and seconds of the default run for each seed, the spread of edges over seeds
(max / min), and for the demo's sparse model the default run against the best of a `--search`. Times
are also given as a ratio to one training step of the same model, measured in this process.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import sparsecircuits as sc
from sparsecircuits.circuits import prune, resolve_means, search
from sparsecircuits.circuits.groundtruth import PLANTED
from sparsecircuits.tasks import get_task

TASK, TARGET = "add2_digit4", 0.15


def train_step_seconds(model_dir: Path) -> float:
    """Median of 5 fp32 training steps of this model at its own batch size: the yardstick."""
    model = sc.load(model_dir).train()
    run = sc.config_io.load_json(sc.RunConfig, model_dir / "run.json")
    x, y = sc.training.make_data(run).train_batch(0, run.train.batch_size)
    opt = torch.optim.Adam(model.parameters())
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return sorted(times[2:])[2]


def seeds_table(label: str, model, task, seeds: int, step: float | None, **options) -> list:
    print(f"\n{label}: task {task if isinstance(task, str) else task.name}, target {TARGET}")
    print(f"  {'seed':>4} {'nodes':>6} {'edges':>6} {'trained':>14} {'loss':>7} {'seconds':>8}"
          + ("  training steps" if step else ""))
    runs = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        c = prune(model, task, TARGET, seed=seed, progress=False, **options)
        dt = time.perf_counter() - t0
        tr = c.settings["trained"]
        runs.append(c)
        print(f"  {seed:>4} {c.n_nodes:>6} {c.n_edges:>6} {str(tr['nodes']) + '/' + str(tr['edges']):>14} "
              f"{c.loss:7.4f} {dt:8.1f}" + (f"  {dt / step:10.0f}" if step else "")
              + ("" if c.reached else "  TARGET MISSED"))
    edges = [c.n_edges for c in runs]
    print(f"  spread of edges over {seeds} seeds: {max(edges) / max(1, min(edges)):.2f}x (max / min; target <= 1.5x)")
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="demo", help="the demo's output folder")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--search", type=int, default=16, help="runs in the comparison search (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads")
    for name, make in PLANTED.items():
        planted = make()
        runs = seeds_table(f"hand-built {name} ({planted.n_planted} planted nodes)", planted.model, planted.task,
                           args.seeds, None, means_from="task")
        planted_names = {sc.node_name(s, ch) for s, v in planted.planted.items() for ch in v}
        found = [set(c.node_names) == planted_names for c in runs]
        print(f"  exactly the planted nodes in {sum(found)} of {len(found)} runs")
    demo = Path(args.demo)
    if not (demo / "sparse" / "model.safetensors").exists():
        raise SystemExit(f"no demo models in {demo}: run `sparsecircuits demo` first")
    for key in ("base", "sparse"):
        step = train_step_seconds(demo / key)
        model = sc.load(demo / key)
        means = resolve_means(model, "pretraining", get_task(TASK), model.tokenizer, progress=False)
        print(f"\n{demo / key}: one training step {step:.3f} s")
        runs = seeds_table(f"demo {key}", model, TASK, args.seeds, step, means=means)
        if key == "sparse" and args.search:
            t0 = time.perf_counter()
            best, _ = search(model, TASK, TARGET, budget=args.search, progress=False, means=means)
            dt = time.perf_counter() - t0
            print(f"  search of {args.search} runs: {dt:.0f} s, best {best.n_nodes} nodes / {best.n_edges} edges; "
                  f"default run (seed 0) / best: {runs[0].n_edges / max(1, best.n_edges):.2f}x edges "
                  f"(target <= 1.25x)")


if __name__ == "__main__":
    main()
