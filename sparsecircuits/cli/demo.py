"""`sparsecircuits demo`: dense addition model -> sparsity-finetuned twin -> accuracy and sparsity of
both -> the last-digit circuit of each, pruned at the same target loss and validated -> a report
(`report.html`, `flow.png`, `grid.png`) that shows the two side by side.

Each stage resumes from its checkpoint, so a killed demo picks up where it stopped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import api, viz
from ..atomic import atomic_write_text
from ..model.config import ModelConfig
from ..training.config import DataConfig, RunConfig, TrainConfig
from ..circuits import model_means, prune, validate
from ..tasks import get_task
from .main import format_report, format_validation

DEMO_MODEL = ModelConfig(vocab_size=12, block_size=16, n_layer=4, d_model=128, n_head=4, d_head=16, d_mlp=512,
                         pos_emb="learned")
DEMO_DENSITY = 1 / 64
DEMO_TASK, TARGET_LOSS = "add2_digit4", 0.15  # the last answer digit, as in the seed pictures
FULL_STEPS = {"base": 500, "sparse": 1500}
BATCH_SIZE = 512
QUICK_STEPS = {"base": 40, "sparse": 40}


def run_demo(out: Path, quick: bool = False, progress: bool = True) -> dict:
    steps = QUICK_STEPS if quick else FULL_STEPS
    base_dir, sparse_dir = out / "base", out / "sparse"
    t0 = time.perf_counter()
    base_run = RunConfig(model=DEMO_MODEL, data=DataConfig(kind="addition", n_digits=2),
                         train=TrainConfig(steps=steps["base"], batch_size=BATCH_SIZE, lr=1e-2, density=1.0,
                                           checkpoint_every=250))
    api.train(base_run, base_dir, resume=True, progress=progress)
    t1 = time.perf_counter()
    api.sparsify(base_dir, DEMO_DENSITY, sparse_dir, resume=True, progress=progress, steps=steps["sparse"],
                 batch_size=BATCH_SIZE, checkpoint_every=250)
    t2 = time.perf_counter()
    summary = {}
    for key, path, seconds in (("base", base_dir, t1 - t0), ("sparse", sparse_dir, t2 - t1)):
        report = api.evaluate(path)
        print(format_report(report))
        summary[key] = {"path": str(path), "train_seconds": round(seconds, 1), **report}
    for key, path in (("base", base_dir), ("sparse", sparse_dir)):
        summary[key]["circuit"] = demo_circuit(path, out / f"{key}_circuit", quick, progress)
    bc, sc_ = summary["base"]["circuit"], summary["sparse"]["circuit"]
    summary["circuit_edge_ratio"] = bc["edges"] / max(1, sc_["edges"])
    summary["settings"] = {"quick": quick, "target_density": DEMO_DENSITY, "steps": steps, "task": DEMO_TASK,
                           "target_loss": TARGET_LOSS}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    summary["report"] = demo_report(out, progress)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    b, s = summary["base"], summary["sparse"]
    print(f"\nbase:   exact match {b['accuracy']:.1%}, {b['nonzero_weights']:,} nonzero weights")
    print(f"sparse: exact match {s['accuracy']:.1%}, {s['nonzero_weights']:,} nonzero weights "
          f"(density 1/{1 / s['density']:.1f})")
    print(f"circuits of {DEMO_TASK} at loss {TARGET_LOSS}: base {bc['nodes']} nodes / {bc['edges']:,} edges, "
          f"sparse {sc_['nodes']} nodes / {sc_['edges']:,} edges ({summary['circuit_edge_ratio']:.1f}x fewer edges)")
    print(f"wrote {out / 'summary.json'}, {summary['report']['html']} and the figures beside it")
    return summary


def demo_circuit(model_dir: Path, circuit_dir: Path, quick: bool, progress: bool) -> dict:
    """Prune the last-digit circuit of one demo model, validate it, save both beside the model."""
    model = api.load(model_dir)
    means = model_means(model, progress)
    steps = {"steps": 30} if quick else {}
    circuit = prune(model, DEMO_TASK, TARGET_LOSS, means=means, progress=progress, **steps)
    circuit.save(circuit_dir)
    report = validate(model, get_task(DEMO_TASK), circuit, means, controls=not quick, progress=progress)
    atomic_write_text(circuit_dir / "validation.json", json.dumps(report, indent=2) + "\n")
    print(format_validation(report))
    return {"nodes": circuit.n_nodes, "edges": circuit.n_edges, "loss": circuit.loss, "reached": circuit.reached,
            "path": str(circuit_dir), "validation": report}


def demo_report(out: Path, progress: bool) -> dict:
    """The base vs sparse report (views 1, 2 and 4: flow, grid, numbers) and the figures as PNG."""
    models = viz.report_models([out / "base_circuit", out / "sparse_circuit"], labels=["base", "sparse"],
                               details=False, progress=progress)
    html = viz.write_report(models, out / "report.html", f"sparsecircuits demo: {DEMO_TASK}, base vs sparse",
                            views=("flow", "grid", "numbers"))
    figures = {kind: str(viz.write_figure(models, kind, out / f"{kind}.png")) for kind in ("flow", "grid")}
    return {"html": str(html), "figures": figures}
