"""Checking a circuit honestly (METHOD 6): is it sufficient, is it necessary, does it beat
attribution, do its nodes keep their meaning (patch-back, binarised features), and do the controls
(random weights, nonsense labels, frozen norms) stay far from it?

A control that reaches the target with a circuit close in size to the real one (at most twice its
edges) is flagged: then pruning, not the model, may be making the mechanism.
"""
from __future__ import annotations

import hashlib

import torch

from ..errors import UserError
from ..model.transformer import SparseTransformer
from ..sparsity.projection import sparsified_parameters
from ..tasks.base import Example, Task
from ..tasks.evaluate import task_outputs
from .calibration import Calibration, calibrated_loss, fit_calibration, loss_with
from .circuit import Circuit
from .means import compute_means
from .pruner import PruneConfig, Pruner
from .run import prune, resolve_means

CLOSE = 2.0            # a control within this factor of the real circuit's edges is a warning
BINARISE_STEPS = 300
CONTROLS = ("random_weights", "nonsense_labels", "frozen_norms")


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
    twin.source, twin.tokenizer = None, model.tokenizer
    return twin


def attribution_order(pruner: Pruner) -> list[tuple[str, int]]:
    """Nodes ranked by |activation x gradient| of the task loss, summed over examples and positions."""
    enc = pruner.train
    tokens = enc.tokens.to(pruner.device)
    acts, probes = {}, {}

    def probe(x, name):
        acts[name] = x.detach()
        probes[name] = torch.zeros_like(x, requires_grad=True)  # d loss / d probe = d loss / d activation
        return x + probes[name]

    with torch.enable_grad():
        logits = pruner.model.run_with_hooks(tokens, [(name, probe) for name in pruner.sites], enc.last)
        loss = calibrated_loss(task_outputs(logits, enc), enc, *Calibration().tensors(len(enc.candidates)))
        grads = torch.autograd.grad(loss, [probes[n] for n in pruner.sites])
    scored = []
    for name, g in zip(pruner.sites, grads):
        s = (acts[name] * g).abs().sum(dim=(0, 1))
        scored += [(float(v), name, c) for c, v in enumerate(s.tolist())]
    return [(name, c) for _, name, c in sorted(scored, reverse=True)]


def top_k_gates(pruner: Pruner, order: list[tuple[str, int]], k: int) -> dict[str, torch.Tensor]:
    gates = {name: torch.zeros(w, device=pruner.device) for name, w in pruner.sites.items()}
    for name, ch in order[:k]:
        gates[name][ch] = 1.0
    return gates


def validate(model, task: Task, circuit: Circuit, means, controls: bool = True, progress: bool = True,
             binarise_steps: int = BINARISE_STEPS) -> dict:
    """Every check of METHOD 6 for `circuit` of `model` on `task`; returns a JSON-able report."""
    cfg = PruneConfig.from_settings(circuit.settings)
    pruner = Pruner(model, task, model.tokenizer, means, cfg)
    kept = circuit.gates(model.cfg, pruner.device)
    pruner.calib = circuit.calibration
    report = {"task": task.name, "nodes": circuit.n_nodes, "edges": circuit.n_edges, "target": circuit.target,
              "full_model_loss": circuit.full_loss}
    loss = pruner.loss(pruner.test, kept)
    report["sufficiency"] = {"loss": loss, "reaches_target": loss <= circuit.target}
    removed = {k: 1 - v for k, v in kept.items()}
    report["necessity"] = {"loss_without_circuit": pruner.loss(pruner.test, removed, calibrated=False),
                           "chance": 0.6931 if task.binary else None}
    gates = top_k_gates(pruner, attribution_order(pruner), circuit.n_nodes)
    report["attribution_baseline"] = {"nodes": circuit.n_nodes, "loss": pruner.evaluate(gates)}
    pruner.calib = circuit.calibration
    report["patch_back"] = patch_back(pruner, kept)
    pruner.calib = circuit.calibration
    report["binarised"] = binarised(pruner, kept, binarise_steps)
    report["controls"], report["warnings"] = {}, []
    if controls:
        report["controls"] = control_prunings(model, task, circuit, means, CONTROLS, progress, pruner)
        for name, c in report["controls"].items():
            if name != "frozen_norms" and c["reached"] and c["edges"] <= CLOSE * max(1, circuit.n_edges):
                report["warnings"].append(f"control {name} reaches the target with {c['edges']} edges "
                                          f"(circuit: {circuit.n_edges}): do not trust this circuit's mechanism")
    return report


def control_prunings(model, task: Task, circuit: Circuit, means, names=CONTROLS, progress: bool = True,
                     pruner: Pruner | None = None) -> dict:
    """The circuit's pruning run again, at its target, where no real circuit should be small: on the
    model with its weights reinitialised, on labels that are a coin flip of the prompt, and with the
    norms frozen at their unpruned scale. The twin's means are its own, over the task's prompts (from
    `pruner`, the circuit's own, when given)."""
    settings = {k: v for k, v in circuit.settings.items() if k in PruneConfig.__dataclass_fields__}
    settings.pop("target_loss", None)
    out = {}
    for name in names:
        if name == "random_weights":
            twin = reinitialised(model, settings.get("seed", 0))
            twin_means = (_twin_means(twin, pruner, means) if pruner is not None else
                          resolve_means(twin, "task", task, model.tokenizer, progress=False, seed=settings.get("seed", 0)))
            m, t, s, mu = twin, task, settings, twin_means
        elif name == "nonsense_labels":
            m, t, s, mu = model, nonsense_task(task), settings, means
        elif name == "frozen_norms":
            m, t, s, mu = model, task, {**settings, "freeze_norms": True}, means
        else:
            raise UserError(f"unknown control {name!r} (known: {', '.join(CONTROLS)})")
        c = prune(m, t, circuit.target, means=mu, progress=progress, require_reachable=False, **s)
        out[name] = {"reached": c.reached, "loss": c.loss, "nodes": c.n_nodes, "edges": c.n_edges}
    return out


def _twin_means(twin, pruner: Pruner, means):
    """The random-weights twin's own means, over the task's prompts (its weights make other means)."""
    if means is None:
        return None
    return compute_means(twin, [pruner.train.tokens[i:i + 64] for i in range(0, len(pruner.train), 64)], progress=False)


@torch.no_grad()
def patch_back(pruner: Pruner, kept: dict[str, torch.Tensor]) -> dict:
    """Copy the unpruned model's activations into the kept nodes: how much does the loss move?
    The patched circuit gets its own calibration, so only what the nodes carry counts."""
    _, clean = pruner.model.run_with_cache(pruner.test.tokens.to(pruner.device), list(pruner.sites))
    _, clean_fit = pruner.model.run_with_cache(pruner.fit_set.tokens.to(pruner.device), list(pruner.sites))
    base = pruner.loss(pruner.test, kept)

    def restore(name, cache):
        m = kept[name]
        return lambda x, _: m * cache[name] + (1 - m) * x

    def outputs(enc, cache):
        hooks = [(n, restore(n, cache)) for n in kept]
        return pruner.run(enc, kept, extra_hooks=hooks)

    calib = fit_calibration(outputs(pruner.fit_set, clean_fit), pruner.fit_set, pruner.calib)
    patched = loss_with(outputs(pruner.test, clean), pruner.test, calib)
    return {"circuit_loss": base, "patched_loss": patched, "change": patched - base}


def binarised(pruner: Pruner, kept: dict[str, torch.Tensor], steps: int = BINARISE_STEPS, sites=None) -> dict:
    """Each kept node replaced by a two-level step, lo below a threshold t and hi above.

    t, lo and hi start at the best two-level split of the node's activations in the circuit over the
    training prompts; they are then trained on those prompts (with the calibration) while the step is
    blended in from the identity, x -> (1 - a) x + a step(x), a rising from 0 to 1 and the step
    sharpening. Reported: the held-out loss with the exact step."""
    sites = sites or [n for n, m in kept.items() if m.any()]
    chans = {n: kept[n].nonzero().flatten() for n in sites}
    acts = {}

    def record(x, name):
        acts[name] = x.detach().float()
    with torch.no_grad():
        pruner.forward(pruner.train.tokens, kept, [(n, record) for n in sites])
    params = {n: [p.requires_grad_(True) for p in _two_means(acts[n].flatten(0, 1)[:, chans[n]])] for n in sites}
    spread = {n: acts[n].flatten(0, 1)[:, chans[n]].std(0).clamp_min(1e-6) for n in sites}
    scale = torch.tensor(float(pruner.calib.scale)).log().requires_grad_(True)
    bias = torch.tensor(pruner.calib.bias or [0.0] * len(pruner.train.candidates)).requires_grad_(True)
    opt = torch.optim.Adam([p for ps in params.values() for p in ps] + [scale, bias], lr=0.02)
    g = torch.Generator().manual_seed(pruner.cfg.seed)

    def hooks(blend: float | None, sharp: float):
        def make(n):
            t, lo, hi = params[n]
            c = chans[n]

            def hook(x, _):
                x = x.clone()
                v = x[..., c]
                if blend is None:
                    step = torch.where(v > t, hi, lo)
                    x[..., c] = step.to(x.dtype)
                else:
                    step = lo + (hi - lo) * torch.sigmoid((v - t) / (spread[n] * sharp))
                    x[..., c] = ((1 - blend) * v + blend * step).to(x.dtype)
                return x
            return hook
        return [(n, make(n)) for n in sites]

    per_batch = pruner.cfg.batch_pairs * (2 if pruner.task.binary else 1)
    for i in range(steps):
        frac = i / max(1, steps - 1)
        enc = pruner.train.subset(torch.randint(0, len(pruner.train), (per_batch,), generator=g))
        out = pruner.run(enc, kept, extra_hooks=hooks(min(1.0, 2 * frac), 0.3 * (0.01 / 0.3) ** frac))
        loss = calibrated_loss(out, enc, scale.exp(), bias)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        calib = fit_calibration(pruner.run(pruner.fit_set, kept, extra_hooks=hooks(None, 0)), pruner.fit_set,
                     Calibration(float(scale.exp()), tuple(bias.tolist())))
        loss = loss_with(pruner.run(pruner.test, kept, extra_hooks=hooks(None, 0)), pruner.test, calib)
    return {"loss": loss, "circuit_loss": pruner.loss(pruner.test, kept), "steps": steps}


@torch.no_grad()
def _two_means(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per column of `a` (positions x channels): the threshold and the two level means of the split
    with the least squared error."""
    v, _ = a.float().sort(0)
    n = v.shape[0]
    csum, csq = v.cumsum(0), (v * v).cumsum(0)
    total, total_sq = csum[-1], csq[-1]
    left = torch.arange(1, n, dtype=v.dtype)[:, None]                      # split after row i
    sse = (csq[:-1] - csum[:-1] ** 2 / left) + ((total_sq - csq[:-1]) - (total - csum[:-1]) ** 2 / (n - left))
    best = sse.argmin(0)
    cols = torch.arange(v.shape[1])
    t = (v[best, cols] + v[best + 1, cols]) / 2
    lo = csum[best, cols] / (best + 1)
    hi = (total - csum[best, cols]) / (n - best - 1)
    return t.clone(), lo.clone(), hi.clone()


__all__ = ["validate", "nonsense_task", "reinitialised"]
