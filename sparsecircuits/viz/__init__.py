"""Seeing circuits: the HTML report (views: flow, grid, graph, numbers), its server and static figures."""
from __future__ import annotations

from pathlib import Path

from ..api import circuit_model
from ..circuits.circuit import Circuit
from ..errors import UserError
from .data import model_view
from .figures import KINDS, check_figure_args, write_figure
from .html import VIEWS, render, write_report
from .serve import make_server


def report_models(circuit_dirs: list[str | Path], labels: list[str] | None = None, details: bool = True,
                  progress: bool = True) -> list[dict]:
    """The viewer's data for each circuit directory (side by side when several, e.g. base vs sparse)."""
    if not circuit_dirs:
        raise UserError("give at least one circuit directory")
    if labels is not None and len(labels) != len(circuit_dirs):
        raise UserError(f"{len(labels)} labels for {len(circuit_dirs)} circuits")
    circuits = [Circuit.load(d) for d in circuit_dirs]  # read once; cheap checks before any model runs
    tasks = {c.task for c in circuits}
    if len(tasks) > 1:
        raise UserError(f"circuits of different tasks cannot share a report: {', '.join(sorted(tasks))}")
    if labels is None:
        names = [Path(c.settings.get("model") or d).name for c, d in zip(circuits, circuit_dirs)]
        labels = names if len(set(names)) == len(names) else [Path(d).name for d in circuit_dirs]
    models = []
    for circuit, d, label in zip(circuits, circuit_dirs, labels):
        model, means = circuit_model(circuit, d, progress=progress)
        models.append(model_view(circuit, model, means, label, circuit_dir=d, details=details))
    if len({tuple(p["text"] for p in m["prompts"]) for m in models}) > 1:
        raise UserError("the circuits' models tokenize the task's prompts differently; draw them one at a time")
    return models


__all__ = ["KINDS", "VIEWS", "check_figure_args", "make_server", "model_view", "render", "report_models", "write_figure", "write_report"]
