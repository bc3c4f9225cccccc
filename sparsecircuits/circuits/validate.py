"""Checking a circuit honestly (METHOD 6): is it sufficient, is it necessary, does it beat
attribution, and do the controls (random weights, nonsense labels, frozen norms) stay far from it?

A control that reaches the target with a circuit close in size to the real one (at most twice its
edges) is flagged: then pruning, not the model, may be making the mechanism.
"""
from __future__ import annotations

import hashlib
import torch

from ..model.transformer import SparseTransformer
from ..sparsity.projection import sparsified_parameters
from ..tasks.base import Example, Task
from .circuit import Circuit
from .masks import ablation_hooks
from .prune import PruneConfig, Pruner, calibrated_loss, logit_margin
from .run import prune

CLOSE = 2.0  # a control within this factor of the real circuit's edges is a warning


def _coin(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] & 1 == 1


def nonsense_task(task: Task) -> Task:
    """The same prompts with labels that ignore them: each pair's answers flipped by a coin on its
    prompt (binary tasks), or a digit chosen by a hash of the prompt (vocabulary tasks)."""
    def make(rng):
        group = task.make(rng)
        if task.binary:
            flip = _coin(group[0].prompt)
            return tuple(Example(e.prompt, e.wrong, e.correct) if flip else e for e in group)
        return tuple(Example(e.prompt, task.candidates[hashlib.sha256(e.prompt.encode()).digest()[0]
                                                       % len(task.candidates)]) for e in group)
    return Task(name=f"{task.name}_nonsense", description=f"{task.name} with labels unrelated to the prompt",
                make=make, candidates=task.candidates, binary=task.binary)


@torch.no_grad()
def reinitialised(model: SparseTransformer, seed: int = 0) -> SparseTransformer:
    """Fresh N(0, std) weights in the same sparsity pattern (std of each tensor's nonzeros)."""
    twin = SparseTransformer(model.cfg).to(next(model.parameters()).device).eval()
    twin.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    sparse = {id(p) for _, p in sparsified_parameters(twin)}
    for p in twin.parameters():
        if id(p) in sparse:
            nz = p != 0
            std = float(p[nz].std()) if int(nz.sum()) > 1 else 0.02
            p.copy_(torch.randn(p.shape, generator=g).to(p.device) * std * nz)
    twin.source, twin.tokenizer = model.source, model.tokenizer
    return twin


def attribution_scores(pruner: Pruner) -> list[tuple[str, int]]:
    """Nodes ranked by |activation x gradient| of the task loss, summed over examples and positions."""
    enc = pruner.train
    tokens = enc.tokens.to(pruner.device)
    acts, probes = {}, {}

    def probe(x, name):
        acts[name] = x.detach()
        probes[name] = torch.zeros_like(x, requires_grad=True)  # d loss / d probe = d loss / d activation
        return x + probes[name]

    with torch.enable_grad():
        logits = pruner.model.run_with_hooks(tokens, [(name, probe) for name in pruner.sites])
        loss = calibrated_loss(logit_margin(logits, enc), enc, torch.tensor(1.0), torch.tensor(0.0))
        grads = torch.autograd.grad(loss, [probes[n] for n in pruner.sites])
    scored = []
    for (name, a), g in zip(((n, acts[n]) for n in pruner.sites), grads):
        s = (a * g).abs().sum(dim=(0, 1))
        scored += [(float(v), name, c) for c, v in enumerate(s.tolist())]
    return [(name, c) for _, name, c in sorted(scored, reverse=True)]


def validate(model, task: Task, circuit: Circuit, means, controls: bool = True, progress: bool = True) -> dict:
    """Every check of METHOD 6 for `circuit` of `model` on `task`; returns a JSON-able report."""
    cfg = PruneConfig(**{k: v for k, v in circuit.settings.items() if k in PruneConfig.__dataclass_fields__})
    pruner = Pruner(model, task, model.tokenizer, means, cfg)
    pruner.calib = tuple(circuit.calibration)
    device = pruner.device
    kept = circuit.gates(model.cfg, device)
    report = {"task": task.name, "nodes": circuit.n_nodes, "edges": circuit.n_edges, "target": circuit.target,
              "full_model_loss": circuit.full_loss}
    report["sufficiency"] = {"loss": pruner.loss(pruner.test, kept), "reaches_target": None}
    report["sufficiency"]["reaches_target"] = report["sufficiency"]["loss"] <= circuit.target
    removed = {k: 1 - v for k, v in kept.items()}
    report["necessity"] = {"loss_without_circuit": pruner.loss(pruner.test, removed, calibrated=False),
                           "chance": 0.6931 if task.binary else None}
    order = attribution_scores(pruner)
    report["attribution_baseline"] = {"nodes": circuit.n_nodes, "loss": pruner.evaluate_k(order, circuit.n_nodes)}
    pruner.calib = tuple(circuit.calibration)
    report["patch_back"] = patch_back(pruner, kept)
    report["binarised_loss"] = binarised_loss(pruner, kept)
    report["controls"], report["warnings"] = {}, []
    if controls:
        settings = {k: v for k, v in circuit.settings.items() if k in PruneConfig.__dataclass_fields__}
        settings.pop("target_loss", None)
        runs = {"random_weights": (reinitialised(model, cfg.seed), task, settings),
                "nonsense_labels": (model, nonsense_task(task), settings),
                "frozen_norms": (model, task, {**settings, "freeze_norms": True})}
        for name, (m, t, s) in runs.items():
            c = prune(m, t, circuit.target, means=means if m is model else None, progress=progress,
                      **({**s, "ablation": "zero"} if m is not model and s.get("ablation") == "mean" else s))
            report["controls"][name] = {"reached": c.reached, "loss": c.loss, "nodes": c.n_nodes, "edges": c.n_edges}
            if name != "frozen_norms" and c.reached and c.n_edges <= CLOSE * max(1, circuit.n_edges):
                report["warnings"].append(f"control {name} reaches the target with {c.n_edges} edges "
                                          f"(circuit: {circuit.n_edges}): do not trust this circuit's mechanism")
    return report


def patch_back(pruner: Pruner, kept: dict[str, torch.Tensor]) -> dict:
    """Copy the unpruned model's activations into the kept nodes; how much does the loss move?"""
    tokens = pruner.test.tokens.to(pruner.device)
    with torch.no_grad():
        _, clean = pruner.model.run_with_cache(tokens, list(pruner.sites))
    base = pruner.loss(pruner.test, kept)
    patched_hooks = ablation_hooks(kept, {k: pruner.means.get(k) if pruner.means else None for k in kept})

    def restore(name):
        m = kept[name]
        return lambda x, _: m * clean[name] + (1 - m) * x
    hooks = [(n, h) for n, h in patched_hooks] + [(n, restore(n)) for n in kept]
    with torch.no_grad():
        out = logit_margin(pruner.model.run_with_hooks(tokens, hooks), pruner.test)
        patched = float(calibrated_loss(out, pruner.test, torch.tensor(pruner.calib[0]), torch.tensor(pruner.calib[1])))
    return {"circuit_loss": base, "patched_loss": patched, "change": patched - base}


def binarised_loss(pruner: Pruner, kept: dict[str, torch.Tensor]) -> float:
    """Each kept node replaced by a two-level step: above/below its mean on the task prompts, each
    level the mean of the activations on that side."""
    tokens = pruner.test.tokens.to(pruner.device)
    with torch.no_grad():
        _, acts = pruner.model.run_with_cache(tokens, list(pruner.sites))
    levels = {}
    for name, m in kept.items():
        a = acts[name].flatten(0, 1)
        t = a.mean(0)
        above = a > t
        hi = torch.where(above, a, 0).sum(0) / above.sum(0).clamp_min(1)
        lo = torch.where(~above, a, 0).sum(0) / (~above).sum(0).clamp_min(1)
        levels[name] = (t, lo, hi, m)

    def step(name):
        t, lo, hi, m = levels[name]
        return lambda x, _: m * torch.where(x > t, hi, lo) + (1 - m) * x
    return pruner.loss(pruner.test, kept, extra_hooks=[(n, step(n)) for n in kept])


__all__ = ["validate", "nonsense_task", "reinitialised"]
