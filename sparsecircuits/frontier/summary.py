"""What a sweep shows (METHOD 7): each cell's pretraining loss against the geometric mean of its
circuits' edges over tasks, the sparse/dense edge ratio at matched pretraining loss (how many times
fewer edges the sparse circuits have: dense edges / sparse edges), and whether the two trends hold
(lower L0 at fixed width: higher loss, smaller circuits; wider at fixed L0: both better).

A cell's size is the geometric mean of max(1, edges) at the first target loss over the tasks every
finished cell passes (`pass_accuracy`), and only when each of those circuits reaches the target. A task
whose circuit is empty in every cell (its answer is a constant, e.g. the leading zeros of a padded
sum, which the calibration's bias gives) says nothing about a model and is left out. Dense
sizes are interpolated in log edges against log loss between the two dense cells whose losses bracket
a sparse cell's; a sparse cell outside the dense range is not matched, and the summary says so.
Losses under LOSS_FLOOR count as equal (a model that gets every answer right with confidence), and dense
cells of equal loss are one point, the geometric mean of their sizes.

The ratio over every matched sparse cell is the headline; it is also given per nonzero-weight budget
(where it comes from) and over the sparse cells on the Pareto frontier alone, those that no other sparse
cell beats on both loss and edges (the paper compares frontiers: a cell with the same loss as another
and larger circuits is not on it).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..atomic import atomic_path
from .config import SweepConfig

LOSS_FLOOR = 1e-3  # losses are compared on a log scale; below this (nats per answer token) they count as equal


def _geomean(values) -> float:
    return math.exp(sum(math.log(max(1, v)) for v in values) / len(values))


def cell_point(rec: dict, target: float, tasks: list[str]) -> dict:
    c = rec["cell"]
    rows = [r for r in rec["rows"] if r["target"] == target and r["task"] in tasks]
    reached = [r for r in rows if r.get("reached")]
    return {"cell": c["name"], "kind": c["kind"], "width": c["width"], "density": c["density"],
            "nonzero": rec["nonzero"], "pretrain_loss": rec["pretrain_loss"], "accuracy": rec.get("accuracy"),
            "tasks": len(rows), "reached": len(reached),
            "edges": round(_geomean([r["edges"] for r in reached]), 2) if rows and len(reached) == len(rows) else None}


def _sig(x: float) -> float:
    """Four significant figures: a ratio of 1/3000 must not round to 0."""
    return float(f"{x:.4g}")


def _floored(p: dict) -> float:
    return max(LOSS_FLOOR, p["pretrain_loss"])


def _log_loss(p: dict) -> float:
    return math.log(_floored(p))


def matched_ratios(points: list[dict]) -> tuple[list[dict], dict]:
    """Per sparse cell: the dense size interpolated at its loss, and the ratio; plus their summary."""
    groups: dict[float, list[dict]] = {}
    for p in points:
        if p["kind"] == "dense" and p["edges"]:
            groups.setdefault(_log_loss(p), []).append(p)
    dense = [{"cell": "+".join(d["cell"] for d in ds), "pretrain_loss": ds[0]["pretrain_loss"],
              "edges": _geomean([d["edges"] for d in ds])} for _, ds in sorted(groups.items())]
    out, ratios = [], []
    for p in points:
        if p["kind"] != "sparse" or not p["edges"]:
            continue
        x, entry = _log_loss(p), {"cell": p["cell"], "nonzero": p["nonzero"], "pretrain_loss": p["pretrain_loss"],
                                  "edges": p["edges"]}
        pair = next(((a, b) for a, b in zip(dense, dense[1:]) if _log_loss(a) <= x <= _log_loss(b)), None)
        if pair is None:  # on a dense point itself (e.g. every model at the floor)
            pair = next(((d, d) for d in dense if _log_loss(d) == x), None)
        if pair:
            a, b = pair
            span = _log_loss(b) - _log_loss(a)
            w = (x - _log_loss(a)) / span if span > 0 else 0.0
            edges = math.exp((1 - w) * math.log(a["edges"]) + w * math.log(b["edges"]))
            ratios.append((p, edges / p["edges"]))
            entry.update(matched=True, dense_edges=round(edges, 2), ratio=_sig(ratios[-1][1]),
                         between=[a["cell"]] if w == 0 else [b["cell"]] if w == 1 else [a["cell"], b["cell"]])
        elif dense:
            near = min(dense, key=lambda d: abs(_log_loss(d) - x))
            entry.update(matched=False, nearest_dense=near["cell"], nearest_loss=near["pretrain_loss"],
                         nearest_ratio=_sig(near["edges"] / p["edges"]))
        else:
            entry.update(matched=False)
        out.append(entry)
    losses = [_floored(d) for d in dense]
    budgets: dict[int, list[float]] = {}
    for p, r in ratios:
        budgets.setdefault(p["nonzero"], []).append(r)
    sized = [p for p in points if p["kind"] == "sparse" and p["edges"]]
    front = [(p, r) for p, r in ratios if not any(_beats(q, p) for q in sized)]
    summary = {"ratio": _ratio([r for _, r in ratios]), "matched_cells": len(ratios), "sparse_cells": len(out),
               "dense_loss_range": [min(losses), max(losses)] if losses else None,
               "by_nonzero": [{"nonzero": n, "cells": len(rs), "ratio": _ratio(rs)}
                              for n, rs in sorted(budgets.items(), reverse=True)],
               "frontier": {"ratio": _ratio([r for _, r in front]), "cells": [p["cell"] for p, _ in front]}}
    return out, summary


def _ratio(ratios: list[float]) -> float | None:
    """The geometric mean of some ratios, in four significant figures (None for none)."""
    return _sig(math.exp(sum(map(math.log, ratios)) / len(ratios))) if ratios else None


def _beats(q: dict, p: dict) -> bool:
    """Whether cell q is at least as good as p on loss and on edges, and better on one."""
    lq, lp = _floored(q), _floored(p)
    return lq <= lp and q["edges"] <= p["edges"] and (lq < lp or q["edges"] < p["edges"])


def _monotone(seq: list[float], rising: bool) -> bool | None:
    """Whether the sequence goes the stated way (None: fewer than two values, nothing to tell)."""
    if len(seq) < 2:
        return None
    return all((b >= a) if rising else (b <= a) for a, b in zip(seq, seq[1:]))


def _group(ps: list[dict], key: str) -> dict:
    """A trend's cells in order: losses (floored) of them all, edges of those with a circuit on every task."""
    losses = [_floored(p) for p in ps]
    edges = [p["edges"] for p in ps if p["edges"]]
    return {"cells": [p["cell"] for p in ps], key: [p[key] for p in ps], "loss": [p["pretrain_loss"] for p in ps],
            "edges": [p["edges"] for p in ps], "_losses": losses, "_edges": edges}


def trends(points: list[dict]) -> dict:
    """Lower L0 at fixed width (loss up, edges down) and wider at fixed L0 (loss and edges down).
    Losses under LOSS_FLOOR count as equal; a cell without a circuit on every task (its model misses
    a target) counts in the loss trend and not in the edges trend. A trend holds when no step goes the
    wrong way and each half (loss, edges) is measured somewhere; with one half unmeasured it is None.
    `loss_flat` says where lower L0 costs no loss at all (a task every cell has learned)."""
    sparse = [p for p in points if p["kind"] == "sparse"]
    l0, wide = {}, {}
    for w in sorted({p["width"] for p in sparse}):
        ps = sorted((p for p in sparse if p["width"] == w), key=lambda p: -p["nonzero"])
        if len(ps) > 1:
            g = _group(ps, "nonzero")
            losses, edges = g.pop("_losses"), g.pop("_edges")
            l0[w] = {**g, "loss_rises": _monotone(losses, True), "loss_flat": len(set(losses)) == 1,
                     "edges_fall": _monotone(edges, False)}
    budgets = sorted({float(f"{p['density'] * p['width'] ** 2:.6g}") for p in sparse})
    for budget in budgets:
        ps = sorted((p for p in sparse if float(f"{p['density'] * p['width'] ** 2:.6g}") == budget),
                    key=lambda p: p["width"])
        if len(ps) > 1:
            g = _group(ps, "width")
            losses, edges = g.pop("_losses"), g.pop("_edges")
            wide[ps[0]["cell"]] = {**g, "loss_falls": _monotone(losses, False), "edges_fall": _monotone(edges, False)}

    def verdict(groups, keys):
        parts = [[g[k] for g in groups.values() if g[k] is not None] for k in keys]
        if any(False in part for part in parts):
            return False
        return None if not groups or not all(parts) else True

    return {"lower_l0": {"holds": verdict(l0, ("loss_rises", "edges_fall")), "by_width": l0},
            "wider": {"holds": verdict(wide, ("loss_falls", "edges_fall")), "by_l0": wide}}


def summarize(cfg: SweepConfig, records: list[dict]) -> dict:
    done = [r for r in records if r["status"] == "done"]
    target = cfg.targets[0]
    rows = [row for r in done for row in r["rows"] if row["target"] == target]
    constant = [t for t in cfg.tasks if all(row.get("edges") == 0 for row in rows if row["task"] == t)]
    compared = [t for t in cfg.tasks if t not in constant and
                all(row["status"] != "not passed" for row in rows if row["task"] == t)]
    points = [cell_point(r, target, compared) for r in done]
    per_cell, ratio = matched_ratios(points)
    dense_acts = {r["cell"]["name"]: r.get("activations") for r in done if r["cell"]["kind"] == "dense"}
    return {"target": target, "tasks_compared": compared, "tasks_constant": constant, "points": points, "matched": per_cell, "sparse_dense_ratio": ratio,
            "trends": trends(points), "activations_dense": dense_acts,
            "activations_sparse": {r["cell"]["name"]: r.get("activations") for r in done
                                   if r["cell"]["kind"] != "dense"},
            "failed": {r["cell"]["name"]: r["error"] for r in records if r["status"] == "failed"},
            "unfinished": {r["cell"]["name"]: len(r["rows"]) for r in records if r["status"] == "running"},
            "cells": len(cfg.cells()), "finished": len(done)}


def write_frontier_figures(summary: dict, rows: list[dict], cfg: SweepConfig, out: Path) -> list[Path]:
    """`frontier.png` and `.svg`: pretraining loss against circuit edges (one line per width, dense
    and sparsified models marked apart, the cells that miss a target in a column of their own at the
    right), and circuit edges against target loss for the curve cells."""
    from matplotlib.figure import Figure  # here, so that `import sparsecircuits` does not load matplotlib

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    pts = [p for p in summary["points"] if p["edges"]]
    for w in sorted({p["width"] for p in pts if p["kind"] == "sparse"}):
        line = sorted((p for p in pts if p["kind"] == "sparse" and p["width"] == w), key=lambda p: -p["nonzero"])
        ax.plot([p["edges"] for p in line], [_floored(p) for p in line], "o-", label=f"sparse, width {w}")
    dense = sorted((p for p in pts if p["kind"] == "dense"), key=lambda p: p["width"])
    if dense:
        ax.plot([p["edges"] for p in dense], [_floored(p) for p in dense], "ks--", label="dense")
    fin = [p for p in pts if p["kind"] == "sparsified"]
    if fin:
        ax.plot([p["edges"] for p in fin], [_floored(p) for p in fin], "r^", label="dense, sparsified")
    strip = 2 * max([p["edges"] for p in pts] + [1])  # where the cells that miss a target are drawn
    missed = [{**p, "edges": strip} for p in summary["points"] if not p["edges"]]
    if missed:
        ax.plot([strip] * len(missed), [_floored(p) for p in missed], "o", mfc="none", color="grey",
                label="misses a target (no circuit size)")
        ax.axvline(strip / 1.4, color="grey", lw=0.8, ls=":")
    _name_points(ax, pts)
    _name_points(ax, missed, left=True)
    ax.set_xscale("log")
    losses = [_floored(p) for p in pts + missed]
    if losses and min(losses) == LOSS_FLOOR:
        ax.axhline(LOSS_FLOOR, color="grey", lw=0.8, ls=":")
        ax.annotate(f"loss <= {LOSS_FLOOR:g}: every answer right, counted equal", (0.01, LOSS_FLOOR),
                    xycoords=("axes fraction", "data"), xytext=(0, -9), textcoords="offset points",
                    fontsize=6, color="grey")
    if losses and max(losses) > 10 * min(losses):
        ax.set_yscale("log")
    _label(ax, f"circuit edges (geometric mean over tasks, target loss {summary['target']:g})",
           "held-out pretraining loss", "capability against interpretability")
    curve_task = cfg.curve_on()
    for name in cfg.curve():
        line = sorted((r for r in rows if r["cell"] == name and r["task"] == curve_task and r.get("reached")),
                      key=lambda r: r["target"])
        if line:
            ax2.plot([r["target"] for r in line], [max(1, r["edges"]) for r in line], "o-", label=name)
    ax2.set_yscale("log")
    _label(ax2, f"target loss ({curve_task})", "circuit edges", "circuit size against target loss")
    paths = []
    for fmt in ("png", "svg"):
        path = out / f"frontier.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110)
        paths.append(path)
    return paths


def _name_points(ax, pts: list[dict], left: bool = False) -> None:
    """Name each point; points at about the same loss (often all of them, at the floor) get their names
    stacked one above the other in order of size, with a leader line, so that neighbours do not print
    over each other."""
    rows: dict[int, list[dict]] = {}
    for p in pts:
        rows.setdefault(round(4 * math.log10(_floored(p))), []).append(p)
    for row in rows.values():
        for i, p in enumerate(sorted(row, key=lambda p: (p["edges"], _floored(p)))):
            ax.annotate(p["cell"], (p["edges"], _floored(p)), fontsize=6, alpha=0.8, textcoords="offset points",
                        xytext=(-6, -3 - 9 * i) if left else (2, 6 + 9 * i), ha="right" if left else "left",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "alpha": 0.5} if i else None)


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize=7)
