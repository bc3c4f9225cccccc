"""The text the CLI and the demo print: a model's report and a circuit's validation table."""
from __future__ import annotations


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
