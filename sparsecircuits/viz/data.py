"""What the viewer and the figures show, computed once from a circuit and its model.

`model_view` returns a JSON-ready dict for one (model, circuit): the numbers, the kept nodes with
their ablation effects, weights and activations, the circuit's edges, the component grid and the
information flow over token positions for a few task prompts. Everything is plain numbers and
strings: the page escapes every string it shows.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from ..circuits.circuit import Circuit
from ..circuits.nodes import parse_node
from ..circuits.prune import PruneConfig, Pruner, calibrated_loss
from ..circuits.run import reference_data
from ..errors import UserError
from ..tasks import get_task
from ..tasks.evaluate import EncodedTask
from .grid import component_grid
from .flow import flow_strengths

QUANTILES = (1.0, 0.99, 0.9, 0.5, 0.1, 0.01, 0.0)


def _r(x: float, digits: int = 4) -> float:
    """Round to `digits` significant digits (keeps the page small)."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _strings(tokenizer, ids: list[int]) -> list[str]:
    return list(tokenizer.token_strings(ids))


def _prompts(pruner: Pruner, tokenizer, task, n: int) -> tuple[list[dict], torch.Tensor]:
    examples = task.examples("test", pruner.cfg.n_test, pruner.cfg.seed)[:n]
    enc = pruner.test
    out = []
    for i, e in enumerate(examples):
        ids = enc.tokens[i, : int(enc.last[i]) + 1].tolist()
        out.append({"tokens": _strings(tokenizer, ids), "pair": i // 2 if task.binary else i,
                    "correct": e.correct, "wrong": e.wrong})
    return out, enc.tokens[: len(examples)]


def _ranked_nodes(circuit: Circuit, max_nodes: int) -> list[str]:
    """Kept nodes, all of them up to `max_nodes`, else those with the largest total |edge weight|."""
    names = circuit.node_names
    if len(names) <= max_nodes:
        return names
    weight = defaultdict(float)
    for a, b, w in circuit.edges:
        weight[a] += abs(w)
        weight[b] += abs(w)
    keep = set(sorted(names, key=lambda n: -weight[n])[:max_nodes])
    return [n for n in names if n in keep]


@torch.no_grad()
def _ablation_effects(pruner: Pruner, circuit: Circuit, names: list[str], model, batch: int = 16) -> list[float]:
    """The rise in the circuit's task loss when each node of `names` is ablated as well; `batch`
    nodes at a time, each against its own copy of the test prompts."""
    gates = circuit.gates(model.cfg, pruner.device)
    enc, n = pruner.test, len(pruner.test.last)
    scale, shift = (torch.tensor(float(v)) for v in pruner.calib)
    base = float(calibrated_loss(pruner.run(enc, gates), enc, scale, shift))
    effects = []
    for start in range(0, len(names), batch):
        chunk = names[start:start + batch]
        K = len(chunk)
        per_copy = {site: g.expand(K, -1).clone() for site, g in gates.items()}
        for k, name in enumerate(chunk):
            layer, loc, ch = parse_node(name)
            per_copy[f"{layer}.{loc}"][k, ch] = 0.0
        copies = {site: g.repeat_interleave(n, 0)[:, None, :] for site, g in per_copy.items()}
        rep = EncodedTask(enc.tokens.repeat(K, 1), enc.last.repeat(K), enc.correct.repeat(K), enc.wrong.repeat(K),
                          enc.binary)
        out = pruner.run(rep, copies).cpu()
        effects += [float(calibrated_loss(out[k * n:(k + 1) * n], enc, scale, shift)) - base for k in range(K)]
    return effects


@torch.no_grad()
def _site_acts(model, tokens: torch.Tensor, sites: list[str]) -> dict[str, torch.Tensor]:
    _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device), sites)
    return {k: v.float().cpu() for k, v in cache.items()}


def _text_examples(model, tokenizer, names: list[str], n_windows: int, width: int) -> tuple[list, list]:
    """Pretraining windows (as token strings) and, per node, (window, position, activation) at QUANTILES."""
    try:
        _, data = reference_data(model)
    except UserError:  # a model without its run.json: no pretraining text to show
        return [], [[] for _ in names]
    tokens = data.train_batch(20_000_000, n_windows)[0][:, :width]
    acts = _site_acts(model, tokens, sorted({n.split("[")[0] for n in names}))
    texts = [_strings(tokenizer, row.tolist()) for row in tokens]
    T = tokens.shape[1]
    out = []
    for name in names:
        layer, loc, ch = parse_node(name)
        flat = acts[f"{layer}.{loc}"][..., ch].flatten()
        order = flat.argsort()
        picks = []
        for q in QUANTILES:
            i = int(order[round(q * (len(order) - 1))])
            picks.append([q, i // T, i % T, _r(flat[i])])
        out.append(picks)
    return texts, out


def _validation(circuit_dir: Path | None) -> dict | None:
    if circuit_dir is None or not (circuit_dir / "validation.json").exists():
        return None
    return json.loads((circuit_dir / "validation.json").read_text())


def model_view(circuit: Circuit, model, means, label: str, circuit_dir: str | Path | None = None,
               n_prompts: int = 8, max_nodes: int = 4000, max_edges: int = 5000, n_windows: int = 24,
               width: int = 48, details: bool = True) -> dict:
    """The viewer's data for one model and its circuit. `details=False` skips the per-node panel data
    (ablation effects, weights, activations), which views 1, 2 and 4 do not need."""
    task = get_task(circuit.task)
    tokenizer = model.tokenizer
    cfg = PruneConfig(ablation=circuit.settings.get("ablation", "mean"), n_train=2, n_test=max(32, n_prompts),
                      freeze_norms=bool(circuit.settings.get("freeze_norms", False)),
                      seed=int(circuit.settings.get("seed", 0)))
    pruner = Pruner(model, task, tokenizer, means, cfg)
    pruner.calib = tuple(circuit.calibration)
    prompts, prompt_tokens = _prompts(pruner, tokenizer, task, n_prompts)
    c = model.cfg
    view = {
        "label": label, "task": task.name, "description": task.description,
        "model": str(circuit.settings.get("model")),
        "config": {"n_layer": c.n_layer, "n_head": c.n_head, "d_head": c.d_head, "d_model": c.d_model,
                   "d_mlp": c.d_mlp},
        "numbers": {"full_loss": _r(circuit.full_loss), "circuit_loss": _r(circuit.loss), "target": circuit.target,
                    "reached": circuit.reached, "nodes": circuit.n_nodes, "edges": circuit.n_edges,
                    "curve": [[k, _r(v)] for k, v in circuit.curve], "ablation": cfg.ablation,
                    "validation": _validation(Path(circuit_dir) if circuit_dir else None)},
        "prompts": prompts,
        "flow": flow_strengths(model, circuit, pruner, prompt_tokens),
        "grid": component_grid(model.cfg, circuit),
    }
    if details:
        view.update(node_details(model, circuit, pruner, prompt_tokens, max_nodes, max_edges, n_windows, width))
    return view


def node_details(model, circuit: Circuit, pruner: Pruner, prompt_tokens: torch.Tensor, max_nodes: int,
                 max_edges: int, n_windows: int, width: int) -> dict:
    """Per kept node: name, ablation effect, strongest input/output weights, activations over the task
    prompts and pretraining text at several quantiles; and the circuit's largest edges."""
    names = _ranked_nodes(circuit, max_nodes)
    index = {n: i for i, n in enumerate(names)}
    effects = _ablation_effects(pruner, circuit, names, model)
    prompt_acts = _site_acts(model, prompt_tokens, sorted({n.split("[")[0] for n in names}))
    lengths = [int(x) + 1 for x in pruner.test.last[: len(prompt_tokens)]]
    texts, examples = _text_examples(model, model.tokenizer, names, n_windows, width)
    inputs, outputs = defaultdict(list), defaultdict(list)
    for a, b, w in circuit.edges:
        outputs[a].append((b, w))
        inputs[b].append((a, w))

    def strongest(pairs):
        return [[n, _r(w)] for n, w in sorted(pairs, key=lambda p: -abs(p[1]))[:12]]

    nodes = []
    for name, effect, text in zip(names, effects, examples):
        layer, loc, ch = parse_node(name)
        acts = prompt_acts[f"{layer}.{loc}"][..., ch]
        nodes.append({"id": name, "layer": layer, "loc": loc, "index": ch, "effect": _r(effect),
                      "in": strongest(inputs[name]), "out": strongest(outputs[name]),
                      "acts": [[_r(v, 3) for v in acts[i, :n].tolist()] for i, n in enumerate(lengths)],
                      "text": text})
    drawn = sorted((e for e in circuit.edges if e[0] in index and e[1] in index), key=lambda e: -abs(e[2]))
    return {"nodes": nodes, "nodes_total": circuit.n_nodes, "edges_total": circuit.n_edges, "texts": texts,
            "edges": [[index[a], index[b], _r(w)] for a, b, w in drawn[:max_edges]]}
