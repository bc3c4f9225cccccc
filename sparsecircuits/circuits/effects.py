"""Ablation effect of each node of a circuit: how much the circuit's held-out task loss rises when
that one node is ablated as well (the number the viewer and the exported graphs show per node)."""
from __future__ import annotations

import torch

from ..tasks.evaluate import EncodedTask
from .circuit import Circuit
from .nodes import parse_node
from ..tasks import get_task
from .prune import PruneConfig, Pruner, calibrated_loss


def circuit_pruner(model, circuit: Circuit, means, n_test: int = 32) -> Pruner:
    """A Pruner set up as the circuit's own pruning was (task, ablation, seed, frozen norms,
    calibration), over `n_test` held-out prompts: to re-run the circuit, not to prune again."""
    s = circuit.settings
    cfg = PruneConfig(ablation=s.get("ablation", "mean"), n_train=2, n_test=n_test, seed=int(s.get("seed", 0)),
                      freeze_norms=bool(s.get("freeze_norms", False)))
    pruner = Pruner(model, get_task(circuit.task), model.tokenizer, means, cfg)
    pruner.calib = tuple(circuit.calibration)
    return pruner


@torch.no_grad()
def ablation_effects(pruner: Pruner, circuit: Circuit, names: list[str], batch: int = 16) -> list[float]:
    """The rise in the circuit's task loss when each node of `names` is ablated as well; `batch`
    nodes at a time, each against its own copy of the test prompts."""
    gates = circuit.gates(pruner.model.cfg, pruner.device)
    enc, n = pruner.test, len(pruner.test.last)
    scale, shift = (torch.tensor(float(v)) for v in pruner.calib)
    fixed = pruner.replacement(enc.tokens.to(pruner.device))  # resample: the same draw for every copy
    base = float(calibrated_loss(pruner.run(enc, gates, replacement=fixed), enc, scale, shift))
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
        tiled = {site: None if r is None else r if r.dim() == 1 else r.repeat(K, *[1] * (r.dim() - 1))
                 for site, r in fixed.items()}
        out = pruner.run(rep, copies, replacement=tiled).cpu()
        effects += [float(calibrated_loss(out[k * n:(k + 1) * n], enc, scale, shift)) - base for k in range(K)]
    return effects
