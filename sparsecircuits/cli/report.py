"""The text the CLI prints: a model's report, a circuit's validation table, the demo's outcome, a
sweep's frontier and a model's activation sparsity."""
from __future__ import annotations

from pathlib import Path


def format_report(report: dict) -> str:
    """A readable report: accuracy, totals, then nonzeros per matrix with one column per layer."""
    lines = [f"model {report['model']}"]
    if "val_loss" in report:
        lines.append(f"  validation loss {report['val_loss']:.4f} nats/token over {report['val_tokens']:,} tokens")
    if report.get("tasks"):
        width = max(len(t["task"]) for t in report["tasks"])
        lines.append(f"  {'task':<{width}}    loss  accuracy")
        for t in report["tasks"]:
            lines.append(f"  {t['task']:<{width}}  {t['loss']:6.3f}  {t['accuracy']:8.1%}")
        below = sum(t["loss"] < 0.3 for t in report["tasks"])
        lines.append(f"  {below} of {len(report['tasks'])} tasks below loss 0.3")
    if "accuracy" in report:
        lines.append(f"  exact match {report['accuracy']:.2%} on {report['n_problems']} held-out problems, "
                     f"answer loss {report['answer_loss']:.4f}")
    lines.append(f"  nonzero weights {report['nonzero_weights']:,} of {report['sparsified_weights']:,} "
                 f"(density {report['density']:.5f} = 1/{1 / max(report['density'], 1e-12):.1f})")
    rows: dict[str, dict[str, str]] = {}
    for name, v in report["per_tensor"].items():
        layer, kind = (name.split(".")[1], name.split(".", 2)[2]) if name.startswith("blocks.") else ("-", name)
        rows.setdefault(kind, {})[layer] = f"{v['nonzero']:,}/{v['numel']:,}"
    layers = sorted({l for r in rows.values() for l in r if l != "-"}, key=int)
    width = max(len(k) for k in rows)
    cell = max(len(c) for r in rows.values() for c in r.values())
    lines.append("    " + " " * width + "".join(f"  {'layer ' + l:>{cell}}" for l in layers))
    for kind, r in rows.items():
        cells = [r["-"]] if "-" in r else [r.get(l, "") for l in layers]
        lines.append(f"    {kind:<{width}}" + "".join(f"  {c:>{cell}}" for c in cells))
    return "\n".join(lines)


def format_validation(r: dict) -> str:
    lines = [f"circuit of {r['task']}: {r['nodes']} nodes, {r['edges']} edges (target loss {r['target']}, "
             f"full model {r['full_model_loss']:.4f})",
             f"  {'check':<28} {'loss':>8}  note",
             f"  {'sufficiency (circuit alone)':<28} {r['sufficiency']['loss']:8.4f}  "
             f"{'reaches target' if r['sufficiency']['reaches_target'] else 'MISSES target'}",
             f"  {'necessity (circuit removed)':<28} {r['necessity']['loss_without_circuit']:8.4f}  should rise toward chance",
             f"  {'attribution, same size':<28} {r['attribution_baseline']['loss']:8.4f}  learned masks should beat it",
             f"  {'patch-back (clean into kept)':<28} {r['patch_back']['patched_loss']:8.4f}  "
             f"change {r['patch_back']['change']:+.4f}",
             f"  {'binarised features':<28} {r['binarised']['loss']:8.4f}  two-level step at every kept node"]
    for name, c in r.get("controls", {}).items():
        lines.append(f"  {'control: ' + name:<28} {c['loss']:8.4f}  {c['nodes']} nodes, {c['edges']} edges, "
                     f"{'reached' if c['reached'] else 'not reached'}")
    lines += [f"  WARNING: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)


def format_demo(summary: dict, out) -> str:
    """What the demo reached: both models, both circuits, each goal it missed and the edge ratio."""
    task, target = summary["settings"]["task"], summary["settings"]["target_loss"]
    lines = []
    for key in ("base", "sparse"):
        m = summary[key]
        lines.append(f"{key + ':':<8}exact match {m['accuracy']:.1%}, {task} loss {m['task_loss']:.4f}, "
                     f"{m['nonzero_weights']:,} nonzero weights (density 1/{1 / m['density']:.1f})")
    for key in ("base", "sparse"):
        c = summary[key]["circuit"]
        state = "reaches" if c["reached"] else "MISSES"
        lines.append(f"{key} circuit of {task}: {c['nodes']} nodes / {c['edges']:,} edges, loss {c['loss']:.4f} "
                     f"({state} the target {target})")
    lines += [f"NOT MET: {g['goal']} ({g['value']})" for g in summary["goals"] if not g["met"]]
    if summary["circuit_edge_ratio"] is not None:
        lines.append(f"the sparse circuit has {summary['circuit_edge_ratio']:.1f}x fewer edges than the base circuit")
    else:
        lines.append("no edge ratio: a circuit misses the target")
    lines.append(f"wrote {Path(out) / 'summary.json'}, {summary['report']['html']} and the figures beside it "
                 f"({summary['seconds']:.0f} s)")
    return "\n".join(lines)


def format_frontier(s: dict) -> str:
    """Each cell's loss and circuit size, the matched sparse/dense ratio and the two trends."""
    lines = [f"frontier: {s['finished']} of {s['cells']} cells finished; circuit edges at target loss {s['target']:g} "
             f"(geometric mean over {len(s['tasks_compared'])} tasks every cell passes"
             + (f"; left out, empty in every cell: {', '.join(s['tasks_constant'])})" if s["tasks_constant"] else ")"),
             f"  {'cell':<26} {'kind':<10} {'nonzero':>9} {'loss':>9} {'edges':>9}  tasks reached"]
    for p in s["points"]:
        edges = f"{p['edges']:9.1f}" if p["edges"] else f"{'-':>9}"
        lines.append(f"  {p['cell']:<26} {p['kind']:<10} {p['nonzero']:9,} {p['pretrain_loss']:9.4f} {edges}  "
                     f"{p['reached']}/{p['tasks']}")
    for name, err in s["failed"].items():
        lines.append(f"  {name:<26} FAILED: {err}")
    for name, rows in s["unfinished"].items():
        lines.append(f"  {name:<26} unfinished: {rows} rows in results.jsonl; a rerun goes on from there")
    r = s["sparse_dense_ratio"]
    if r["ratio"] is not None:
        lines.append(f"sparse/dense edge ratio at matched pretraining loss: sparse circuits have {r['ratio']:.1f}x "
                     f"fewer edges ({r['matched_cells']} of {r['sparse_cells']} sparse cells within the dense loss range)")
        lines.append("  by nonzero weights: " + "; ".join(
            f"{b['nonzero']:,}: {b['ratio']:.1f}x ({b['cells']} cell{'s' * (b['cells'] > 1)})" for b in r["by_nonzero"]))
        f = r["frontier"]
        lines.append("  on the sparse Pareto frontier (cells no other sparse cell matches on loss and edges and beats on "
                     "one): " + (f"{f['ratio']:.1f}x ({', '.join(f['cells'])})" if f["ratio"] else
                                 "no matched cell is on it"))
    else:
        lo, hi = r["dense_loss_range"] or (None, None)
        span = ("no dense model finished" if lo is None else
                f"one dense model, at {lo:.4f}" if lo == hi else f"{lo:.4f}-{hi:.4f}")
        lines.append(f"sparse/dense edge ratio at matched pretraining loss: not measured (no sparse cell's loss lies "
                     f"within the dense models' loss range: {span})")
    for m in s["matched"]:
        if m.get("matched"):
            lines.append(f"  {m['cell']}: dense {m['dense_edges']:.1f} vs sparse {m['edges']:.1f} edges -> {m['ratio']:.1f}x")
        elif "nearest_dense" in m:
            lines.append(f"  {m['cell']}: loss {m['pretrain_loss']:.4f} outside the dense range; nearest dense "
                         f"{m['nearest_dense']} (loss {m['nearest_loss']:.4f}) has {m['nearest_ratio']:.1f}x its edges")
    for name, acts in s["activations_dense"].items():
        if acts:
            lines.append(f"activation sparsity of dense {name} (Hoyer, mean over locations): " +
                         ", ".join(f"{k} {v['hoyer']:.3f}" for k, v in acts.items()) +
                         "; near-zero fraction: " + ", ".join(f"{k} {v['near_zero']:.3f}" for k, v in acts.items()))
    t = s["trends"]
    for key, label, groups in (("lower_l0", "lower L0 at fixed width: loss rises, circuits shrink", "by_width"),
                               ("wider", "wider at fixed L0: loss and circuits both fall", "by_l0")):
        holds = t[key]["holds"]
        verdict = 'HOLDS' if holds else 'does NOT hold' if holds is False else 'not measured'
        if holds and all(g.get("loss_flat") for g in t[key][groups].values()):
            verdict += " for the circuits only: the loss is the same in every cell, so no capability is given up here"
        lines.append(f"trend, {label}: {verdict}")
        for g in t[key][groups].values():
            lines.append("  " + " -> ".join(f"{c} (loss {l:.4f}, " + (f"{e:.1f} edges)" if e else "misses a target)")
                                           for c, l, e in zip(g["cells"], g["loss"], g["edges"])))
    return "\n".join(lines)


def format_activations(report: dict) -> str:
    """Mean activation sparsity per input set."""
    lines = [f"  {'inputs':<10} {'tokens':>7} {'near-zero':>10} {'Hoyer':>7} {'top-1% share':>13}"]
    for name, r in report.items():
        m = r["mean"]
        lines.append(f"  {name:<10} {r['n_tokens']:7,} {m['near_zero']:10.3f} {m['hoyer']:7.3f} {m['top1_share']:13.3f}")
    return "\n".join(lines)
