"""Seeing circuits: the HTML report (views: flow, grid, graph, numbers), its server and static figures."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .data import model_view
from .figures import KINDS, write_figure
from .html import VIEWS, render, write_report
from .serve import make_server


def report_models(circuit_dirs: list[str | Path], labels: list[str] | None = None, details: bool = True,
                  progress: bool = True) -> list[dict]:
    """The viewer's data for each circuit directory (side by side when several, e.g. base vs sparse)."""
    from ..api import load_circuit
    if not circuit_dirs:
        raise UserError("give at least one circuit directory")
    if labels is not None and len(labels) != len(circuit_dirs):
        raise UserError(f"{len(labels)} labels for {len(circuit_dirs)} circuits")
    models = []
    for i, d in enumerate(circuit_dirs):
        circuit, model, means = load_circuit(d, progress=progress)
        label = labels[i] if labels else Path(circuit.settings.get("model") or d).name
        models.append(model_view(circuit, model, means, label, circuit_dir=d, details=details))
    tasks = {m["task"] for m in models}
    if len(tasks) > 1:
        raise UserError(f"circuits of different tasks cannot share a report: {', '.join(sorted(tasks))}")
    return models


__all__ = ["KINDS", "VIEWS", "make_server", "model_view", "render", "report_models", "write_figure", "write_report"]
