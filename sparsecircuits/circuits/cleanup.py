"""Automatic cleanup of a pruned circuit: what the paper's authors did by hand.

Kept nodes are ranked by their ablation effect on a slice of the held-out prompts per unit of the
size they take (`Pruner.size`: a node with many edges saves more); then, cheapest first, they are
closed for good while the held-out loss (with the calibration refitted where that
could save it) stays at or under the target. Nodes are tried in runs that grow while they succeed
and shrink to one node when they fail; a node whose effect alone is well above the headroom left
(target minus loss) is not tried at all, and a round ends after PATIENCE single nodes in a row fail
(the ranking puts the likeliest drops first, so what follows rarely goes). A second round ranks what
is left again.
"""
from __future__ import annotations

import torch

from .effects import node_effects
from .pruner import Pruner

EFFECT_PROMPTS = 64   # held-out prompts the ranking is measured on
MAX_RUN = 64
SLACK = 3             # try a node whose effect is up to SLACK x the headroom (effects interact)
PATIENCE = 32         # single-node failures in a row that end a round


def cleanup(pruner: Pruner, gates: dict[str, torch.Tensor], rounds: int = 2) -> tuple[dict, float, list]:
    """The cleaned gates, their held-out loss and the (nodes, loss) curve of every accepted drop.
    `pruner.calib` must be the calibration of `gates`; it is left as that of the result."""
    target = pruner.cfg.target_loss
    gates = {site: g.clone() for site, g in gates.items()}
    loss = pruner.loss(pruner.test, gates)
    curve = [(_count(gates), loss)]
    for _ in range(rounds):
        kept = [(site, int(c)) for site, g in gates.items() for c in torch.nonzero(g).flatten().tolist()]
        effects = node_effects(pruner, gates, kept, pruner.calib, pruner.test.subset(slice(0, EFFECT_PROMPTS)))
        cost = _sizes(pruner, gates)
        ranked = sorted(zip(effects, kept), key=lambda e: e[0] / float(cost[e[1][0]][e[1][1]]))
        before, i, run, failed = len(kept), 0, 8, 0
        while i < len(ranked) and failed < PATIENCE:
            if ranked[i][0] > SLACK * (target - loss):
                i += 1
                continue
            chunk = [node for _, node in ranked[i:i + run]]
            _set(gates, chunk, 0.0)
            ok, new = _on_target(pruner, gates, target)
            if ok:
                loss, i, run, failed = new, i + len(chunk), min(2 * run, MAX_RUN), 0
                curve.append((_count(gates), loss))
            else:
                _set(gates, chunk, 1.0)
                failed += run == 1
                i, run = (i + 1, 1) if run == 1 else (i, max(1, run // 4))
        if _count(gates) > 0.95 * before:
            break
    return gates, loss, curve


def _on_target(pruner: Pruner, gates, target: float) -> tuple[bool, float]:
    """Is `gates`' held-out loss on target, with the current calibration or, where it is close, a refit?"""
    old = pruner.calib
    loss = pruner.loss(pruner.test, gates)
    if loss <= target:
        return True, loss
    if loss > SLACK * target:
        return False, loss
    loss = pruner.evaluate(gates)
    if loss <= target:
        return True, loss
    pruner.calib = old
    return False, loss


def _sizes(pruner: Pruner, gates) -> dict[str, torch.Tensor]:
    """How much `Pruner.size` falls when each kept node goes: its gradient at these gates."""
    leaves = {site: g.clone().requires_grad_(True) for site, g in gates.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(pruner.size(leaves), list(leaves.values()))
    return {site: g.clamp_min(0.5) for site, g in zip(leaves, grads)}


def _set(gates, nodes, value: float) -> None:
    for site, ch in nodes:
        gates[site][ch] = value


def _count(gates) -> int:
    return int(sum(float(g.sum()) for g in gates.values()))
