"""What the viewer and the figures show, computed once from a circuit and its model.

`model_view` returns a JSON-ready dict for one (model, circuit): the numbers, the kept nodes with
their ablation effects, weights and activations, the circuit's edges, the component grid and the
information flow over token positions for a few task prompts. Everything is plain numbers and
strings, and the page inserts every string as text, never as HTML.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from ..circuits.circuit import VALIDATION_FILE, Circuit
from ..circuits.nodes import node_site, parse_node
from ..circuits.effects import ablation_effects, circuit_pruner
from ..circuits.pruner import Pruner
from ..circuits.run import circuit_corpus, reference_data
from ..config_io import JSON_ERRORS
from ..errors import UserError
from ..model.config import NODE_LOCATIONS
from ..tasks import get_task
from ..tasks.evaluate import EncodedTask, encode_examples
from .grid import component_grid
from .flow import flow_strengths

QUANTILES = (1.0, 0.99, 0.9, 0.5, 0.1, 0.01, 0.0)
PROMPT_SEED = 0  # the prompts shown are the same for every circuit of a task, whatever its pruning seed


def _r(x: float, digits: int = 4) -> float | None:
    """Round to `digits` significant digits (keeps the page small); None for inf/nan."""
    x = float(x)
    if not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _strings(tokenizer, ids: list[int]) -> list[str]:
    return list(tokenizer.token_strings(ids))


def _prompts(task, tokenizer, block_size: int, n: int) -> tuple[list[dict], EncodedTask]:
    """The first `n` held-out prompts, each with the index of its contrast pair (its twin is the next
    prompt when their answers swap; otherwise it stands alone)."""
    examples = task.examples("test", n, PROMPT_SEED)[:n]
    enc = encode_examples(task, examples, tokenizer, block_size)
    out = []
    for i, e in enumerate(examples):
        prev = out[-1] if out else None
        twin = (prev is not None and e.wrong is not None and (e.correct, e.wrong) == (prev["wrong"], prev["correct"])
                and sum(o["pair"] == prev["pair"] for o in out) == 1)
        pair = prev["pair"] if twin else (prev["pair"] + 1 if prev else 0)
        ids = enc.tokens[i, : int(enc.last[i]) + 1].tolist()
        out.append({"tokens": _strings(tokenizer, ids), "text": e.prompt, "pair": pair, "correct": e.correct,
                    "wrong": e.wrong})
    return out, enc


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
def _site_acts(model, tokens: torch.Tensor, sites: list[str]) -> dict[str, torch.Tensor]:
    _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device), sites)
    return {k: v.float().cpu() for k, v in cache.items()}


def _text_examples(model, circuit: Circuit, names: list[str], sites: list[str], n_windows: int,
                   width: int) -> tuple[list, list]:
    """Pretraining windows (as token strings) and, per node, (window, position, activation) at QUANTILES."""
    try:
        _, data = reference_data(model, circuit_corpus(circuit))
    except UserError:  # a model without its run.json: no pretraining text to show
        return [], [[] for _ in names]
    tokens = data.train_batch(20_000_000, n_windows)[0][:, :width]
    acts = _site_acts(model, tokens, sites)
    texts = [_strings(model.tokenizer, row.tolist()) for row in tokens]
    T = tokens.shape[1]
    out = []
    for name in names:
        site, ch = node_site(name)
        flat = acts[site][..., ch].flatten()
        order = flat.argsort()
        picks = []
        for q in QUANTILES:
            i = int(order[round(q * (len(order) - 1))])
            picks.append([q, i // T, i % T, _r(flat[i])])
        out.append(picks)
    return texts, out


def _finite(obj):
    """JSON-able copy with inf/nan replaced by None (the page's JSON allows neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _validation(circuit: Circuit, circuit_dir: Path | None) -> tuple[dict | None, str]:
    """`validation.json` beside the circuit if it is about this circuit, and a note saying why not."""
    path = None if circuit_dir is None else circuit_dir / VALIDATION_FILE
    if path is None or not path.exists():
        return None, "No validation.json: run `sparsecircuits validate` on the circuit."
    try:
        report = json.loads(path.read_text())
        same = (report["task"], report["nodes"], report["edges"]) == (get_task(circuit.task).name,
                                                                      circuit.n_nodes, circuit.n_edges)
    except (*JSON_ERRORS, KeyError, TypeError):
        return None, f"{path.name} is unreadable: run `sparsecircuits validate` again."
    if not same:
        return None, f"{path.name} is about another circuit: run `sparsecircuits validate` again."
    return _finite(report), ""


def model_view(circuit: Circuit, model, means, label: str, circuit_dir: str | Path | None = None,
               n_prompts: int = 8, max_nodes: int = 4000, max_edges: int = 5000, n_windows: int = 24,
               width: int = 48, details: bool = True) -> dict:
    """The viewer's data for one model and its circuit. `details=False` skips the per-node panel data
    (ablation effects, weights, activations), which views 1, 2 and 4 do not need."""
    task = get_task(circuit.task)
    pruner = circuit_pruner(model, circuit, means)
    prompts, enc = _prompts(task, model.tokenizer, model.cfg.block_size, n_prompts)
    validation, validation_note = _validation(circuit, Path(circuit_dir) if circuit_dir else None)
    c = model.cfg
    view = {
        "label": label, "task": task.name, "description": task.description,
        "model": str(circuit.settings.get("model")),
        "config": {"n_layer": c.n_layer, "n_head": c.n_head, "d_head": c.d_head, "d_model": c.d_model,
                   "d_mlp": c.d_mlp},
        "numbers": {"full_loss": _r(circuit.full_loss), "circuit_loss": _r(circuit.loss), "target": circuit.target,
                    "reached": circuit.reached, "nodes": circuit.n_nodes, "edges": circuit.n_edges,
                    "curve": [[k, _r(v)] for k, v in circuit.curve], "ablation": pruner.cfg.ablation,
                    "trained": circuit.settings.get("trained"),
                    "validation": validation, "validation_note": validation_note},
        "locations": list(NODE_LOCATIONS),
        "prompts": prompts,
        "flow": flow_strengths(model, circuit, pruner, enc.tokens, [len(p["tokens"]) for p in prompts]),
        "grid": component_grid(model.cfg, circuit),
    }
    if details:
        view.update(node_details(model, circuit, pruner, enc.tokens, [len(p["tokens"]) for p in prompts],
                                 max_nodes, max_edges, n_windows, width))
    return view


def node_details(model, circuit: Circuit, pruner: Pruner, prompt_tokens: torch.Tensor, lengths: list[int],
                 max_nodes: int, max_edges: int, n_windows: int, width: int) -> dict:
    """Per kept node: name, ablation effect, strongest input/output weights, activations over the task
    prompts and pretraining text at several quantiles; and the circuit's largest edges."""
    names = _ranked_nodes(circuit, max_nodes)
    index = {n: i for i, n in enumerate(names)}
    sites = sorted({node_site(n)[0] for n in names})
    effects = ablation_effects(pruner, circuit, names)
    prompt_acts = _site_acts(model, prompt_tokens, sites)
    texts, examples = _text_examples(model, circuit, names, sites, n_windows, width)
    inputs, outputs = defaultdict(list), defaultdict(list)
    for a, b, w in circuit.edges:
        outputs[a].append((b, w))
        inputs[b].append((a, w))

    def strongest(pairs):
        return [[n, _r(w)] for n, w in sorted(pairs, key=lambda p: -abs(p[1]))[:12]]

    nodes = []
    for name, effect, text in zip(names, effects, examples):
        layer, loc, ch = parse_node(name)
        acts = prompt_acts[node_site(name)[0]][..., ch]
        nodes.append({"id": name, "layer": layer, "location": loc, "index": ch, "ablation_effect": _r(effect),
                      "in": strongest(inputs[name]), "out": strongest(outputs[name]),
                      "acts": [[_r(v, 3) for v in acts[i, :n].tolist()] for i, n in enumerate(lengths)],
                      "text": text})
    drawn = sorted((e for e in circuit.edges if e[0] in index and e[1] in index), key=lambda e: -abs(e[2]))
    return {"nodes": nodes, "nodes_total": circuit.n_nodes, "edges_total": circuit.n_edges, "texts": texts,
            "edges": [[index[a], index[b], _r(w)] for a, b, w in drawn[:max_edges]]}
