"""`sparsecircuits demo`: dense addition model -> sparsity-finetuned twin -> accuracy and sparsity of
both -> the last-digit circuit of each, pruned at the same target loss and validated -> a report
(`report.html`, `flow.png`, `grid.png`) that shows the two side by side.

Each stage resumes from its checkpoint, so a killed demo picks up where it stopped. The summary
states what was reached and what was not: a circuit that misses the target gets no size ratio.
`show(kind, report)` receives each model's report (`kind` "model") and each circuit's validation
("validation") as they are made; the CLI prints them.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import api, viz
from .atomic import atomic_write_json, refuse_file
from .circuits import prune
from .circuits.validation import BINARISE_STEPS
from .model.config import ModelConfig
from .tasks import get_task
from .tasks.evaluate import evaluate_task
from .training.config import DataConfig, RunConfig, TrainConfig

DEMO_MODEL = ModelConfig(vocab_size=12, block_size=16, n_layer=4, d_model=128, n_head=4, d_head=16, d_mlp=512,
                         pos_emb="learned")
DEMO_DENSITY = 1 / 256  # sparse enough that the last digit is computed by a few hundred edges
DEMO_TASK, TARGET_LOSS = "add2_digit4", 0.15  # the last answer digit, as in the seed pictures
ACCURACY_GOAL = 0.99
BASE = dict(steps=800, batch_size=128, lr=5e-3)
SPARSE = dict(steps=3000, batch_size=128, distill_weight=1.0)
QUICK = {"base": 40, "sparse": 40}
QUICK_PRUNE = {"steps": 40, "n_train": 128, "n_test": 64}


def run_demo(out: str | Path = "demo", quick: bool = False, progress: bool = True, show=None) -> dict:
    """The whole demo into the folder `out`; returns its summary (also `out/summary.json`)."""
    refuse_file(out)
    out, show = Path(out), show or (lambda kind, report: None)
    t0 = time.perf_counter()
    base_dir, sparse_dir = out / "base", out / "sparse"
    base = {**BASE, "steps": QUICK["base"]} if quick else BASE
    sparse = {**SPARSE, "steps": QUICK["sparse"]} if quick else SPARSE
    base_run = RunConfig(model=DEMO_MODEL, data=DataConfig(kind="addition", n_digits=2),
                         train=TrainConfig(density=1.0, checkpoint_every=250, **base))
    api.train(base_run, base_dir, resume=True, progress=progress)
    t1 = time.perf_counter()
    api.sparsify(base_dir, DEMO_DENSITY, sparse_dir, resume=True, progress=progress, checkpoint_every=250, **sparse)
    t2 = time.perf_counter()
    summary = {}
    for key, path, seconds in (("base", base_dir, t1 - t0), ("sparse", sparse_dir, t2 - t1)):
        report = api.evaluate(path)
        model = api.load(path)
        report["task_loss"] = evaluate_task(model, get_task(DEMO_TASK), model.tokenizer, n=1000)["loss"]
        show("model", report)
        summary[key] = {"path": str(path), "train_seconds": round(seconds, 1), **report}
    for key, path in (("base", base_dir), ("sparse", sparse_dir)):  # the controls test the sparse circuit
        summary[key]["circuit"] = demo_circuit(path, out / f"{key}_circuit", quick, progress, key == "sparse", show)
    b, s = summary["base"], summary["sparse"]
    bc, sc_ = b["circuit"], s["circuit"]
    both = bc["reached"] and sc_["reached"]
    summary["circuit_edge_ratio"] = bc["edges"] / max(1, sc_["edges"]) if both else None
    summary["goals"] = goals(summary)
    summary["settings"] = {"quick": quick, "target_density": DEMO_DENSITY, "base": base, "sparse": sparse,
                           "task": DEMO_TASK, "target_loss": TARGET_LOSS}
    summary["report"] = demo_report(out, progress)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out / "summary.json", summary)
    return summary


def goals(summary: dict) -> list[dict]:
    """What the demo sets out to show, each with its measured value and whether it holds."""
    out = []
    for key in ("base", "sparse"):
        m = summary[key]
        out.append({"goal": f"{key} exact match >= {ACCURACY_GOAL:.0%}", "value": round(m["accuracy"], 4),
                    "met": m["accuracy"] >= ACCURACY_GOAL})
        out.append({"goal": f"{key} model's {DEMO_TASK} loss below the target {TARGET_LOSS}",
                    "value": round(m["task_loss"], 4), "met": m["task_loss"] < TARGET_LOSS})
        out.append({"goal": f"{key} circuit reaches the target {TARGET_LOSS}", "value": round(m["circuit"]["loss"], 4),
                    "met": m["circuit"]["reached"]})
    return out


def demo_circuit(model_dir: Path, circuit_dir: Path, quick: bool, progress: bool, controls: bool, show) -> dict:
    """Prune the last-digit circuit of one demo model, validate it (with the three control prunings
    where `controls`), save both beside the model."""
    model = api.load(model_dir)
    circuit = prune(model, DEMO_TASK, TARGET_LOSS, progress=progress, require_reachable=False,  # a miss is reported
                    **(QUICK_PRUNE if quick else {}))
    circuit.save(circuit_dir)
    report = api.validate_circuit(circuit_dir, controls=controls and not quick, progress=progress,
                                  binarise_steps=20 if quick else BINARISE_STEPS)
    show("validation", report)
    return {"nodes": circuit.n_nodes, "edges": circuit.n_edges, "loss": circuit.loss, "reached": circuit.reached,
            "trained": circuit.settings["trained"], "path": str(circuit_dir), "validation": report}


def demo_report(out: Path, progress: bool) -> dict:
    """The base vs sparse report (flow, grid, numbers) and the figures as PNG."""
    models = viz.report_models([out / "base_circuit", out / "sparse_circuit"], labels=["base", "sparse"],
                               details=False, progress=progress)
    html = viz.write_report(models, out / "report.html", f"sparsecircuits demo: {DEMO_TASK}, base vs sparse",
                            views=("flow", "grid", "numbers"))
    figures = {kind: str(viz.write_figure(models, kind, out / f"{kind}.png")) for kind in ("flow", "grid")}
    return {"html": str(html), "figures": figures}
