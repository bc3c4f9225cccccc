"""Automatic cleanup of a pruned circuit: what the paper's authors did by hand.

In rounds, kept nodes are closed for good while the held-out loss (with the calibration refitted
where that could save it) stays at or under the target. The largest go first: the nodes whose closing
saves the most of `Pruner.size` (a node with many edges saves more). A node whose ablation effect
alone, measured on a slice of the held-out prompts, is well above the headroom left (target minus
loss) is not tried. Nodes are tried in runs that grow while they succeed and fall back to a single
node when they fail, so every other node gets its own try. Each later round starts with a fresh fit
of the calibration and ranks what is left again; rounds go on while they cut the size by 5%.
"""
from __future__ import annotations

import torch

from .calibration import fit_calibration, loss_with
from .effects import node_effects
from .pruner import Pruner

EFFECT_PROMPTS = 64   # held-out prompts the effects are measured on
MAX_RUN = 64
SLACK = 3             # try a node whose effect is up to SLACK x the headroom (effects interact)
REFIT_ABOVE = 1.5     # a refit is tried on a loss up to REFIT_ABOVE x the target
MAX_ROUNDS = 8
MIN_GAIN = 0.05       # another round only after one that cut the size by this fraction


def cleanup(pruner: Pruner, gates: dict[str, torch.Tensor]) -> tuple[dict, float, list]:
    """The cleaned gates, their held-out loss and the (nodes, loss) curve of every accepted drop.
    `pruner.calib` must be the calibration of `gates`; it is left as that of the result."""
    target = pruner.cfg.target_loss
    gates = {site: g.clone() for site, g in gates.items()}
    loss = pruner.loss(pruner.test, gates)
    curve = [(_count(gates), loss)]
    for r in range(MAX_ROUNDS):
        if r:  # the first round starts from the calibration fitted to these gates
            loss = _refit(pruner, gates, loss)
            curve[-1] = (curve[-1][0], loss)
        kept = [(site, int(c)) for site, g in gates.items() for c in torch.nonzero(g).flatten().tolist()]
        effects = node_effects(pruner, gates, kept, pruner.calib, pruner.test.subset(slice(0, EFFECT_PROMPTS)))
        saved = _sizes(pruner, gates)
        ranked = sorted(zip(effects, kept), key=lambda e: -float(saved[e[1][0]][e[1][1]]))
        before, i, run = float(pruner.size(gates)), 0, 1
        while i < len(ranked):
            if ranked[i][0] > SLACK * (target - loss):
                i += 1
                continue
            chunk = [node for effect, node in ranked[i:i + run] if effect <= SLACK * (target - loss)]
            _set(gates, chunk, 0.0)
            ok, new = _on_target(pruner, gates, target)
            if ok:
                loss, i, run = new, i + run, min(2 * run, MAX_RUN)
                curve.append((_count(gates), loss))
            else:
                _set(gates, chunk, 1.0)
                i, run = (i + 1, 1) if run == 1 else (i, 1)
        if float(pruner.size(gates)) > (1 - MIN_GAIN) * before:
            break
    return gates, loss, curve


def _refit(pruner: Pruner, gates, loss: float) -> float:
    """Refit the calibration of `gates`; keep the old one where the new one is worse on held-out prompts."""
    old = pruner.calib
    new = pruner.evaluate(gates)
    if new <= loss:
        return new
    pruner.calib = old
    return loss


@torch.no_grad()
def _on_target(pruner: Pruner, gates, target: float) -> tuple[bool, float]:
    """Is `gates`' held-out loss on target, with the current calibration or, where it is close, a refit?
    A refit is fitted on training prompts, so it is only tried where the calibration that is best for
    the held-out prompts themselves brings them under the target (it cannot do better than that)."""
    old = pruner.calib
    out = pruner.run(pruner.test, gates)
    loss = loss_with(out, pruner.test, old)
    if loss <= target:
        return True, loss
    if loss > REFIT_ABOVE * target or loss_with(out, pruner.test, fit_calibration(out, pruner.test, old)) > target:
        return False, loss
    loss = loss_with(out, pruner.test, pruner.fit(gates))  # the held-out outputs do not change with it
    if loss <= target:
        return True, loss
    pruner.calib = old
    return False, loss


def _sizes(pruner: Pruner, gates) -> dict[str, torch.Tensor]:
    """How much `Pruner.size` falls when each kept node goes: its gradient at these gates."""
    leaves = {site: g.clone().requires_grad_(True) for site, g in gates.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(pruner.size(leaves), list(leaves.values()))
    return dict(zip(leaves, grads))


def _set(gates, nodes, value: float) -> None:
    for site, ch in nodes:
        gates[site][ch] = value


def _count(gates) -> int:
    return int(sum(float(g.sum()) for g in gates.values()))
