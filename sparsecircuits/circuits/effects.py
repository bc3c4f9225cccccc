"""Ablation effect of nodes: how much a circuit's held-out task loss rises when one more node is
ablated. The cleanup skips nodes whose effect is well above the headroom left; the viewer and the
exported graphs show it per node."""
from __future__ import annotations

import torch

from ..tasks import get_task
from ..tasks.evaluate import EncodedTask
from .calibration import Calibration, calibrated_loss
from .circuit import Circuit
from .nodes import node_site
from .pruner import PruneConfig, Pruner


def circuit_pruner(model, circuit: Circuit, means, n_test: int = 32) -> Pruner:
    """A Pruner set up as the circuit's own pruning was (task, ablation, seed, frozen norms,
    calibration), over `n_test` held-out prompts: to re-run the circuit, not to prune again."""
    cfg = PruneConfig.from_settings(circuit.settings, n_train=max(2, n_test), n_test=n_test)
    pruner = Pruner(model, get_task(circuit.task), model.tokenizer, means, cfg)
    pruner.calib = circuit.calibration
    return pruner


@torch.no_grad()
def node_effects(pruner: Pruner, gates: dict[str, torch.Tensor], nodes: list[tuple[str, int]],
                 calib: Calibration, enc: EncodedTask | None = None, batch: int = 16) -> list[float]:
    """The rise in the loss of `gates` on `enc` (default: the held-out prompts) when each of `nodes`
    ((site, channel) pairs) is closed as well; `batch` nodes at a time, each on its own copy of the prompts."""
    enc = enc if enc is not None else pruner.test
    n = len(enc)
    scale, bias = calib.tensors(len(enc.candidates))
    fixed = pruner.replacement(enc.tokens.to(pruner.device))  # resample: the same draw for every copy
    base = float(calibrated_loss(pruner.run(enc, gates, replacement=fixed), enc, scale, bias))
    effects = []
    for start in range(0, len(nodes), batch):
        chunk = nodes[start:start + batch]
        K = len(chunk)
        per_copy = {site: g.expand(K, -1).clone() for site, g in gates.items()}
        for k, (site, ch) in enumerate(chunk):
            per_copy[site][k, ch] = 0.0
        copies = {site: g.repeat_interleave(n, 0)[:, None, :] for site, g in per_copy.items()}
        tiled = {site: None if r is None else r if r.dim() == 1 else r.repeat(K, *[1] * (r.dim() - 1))
                 for site, r in fixed.items()}
        out = pruner.run(enc.repeat(K), copies, replacement=tiled).cpu()
        effects += [float(calibrated_loss(out[k * n:(k + 1) * n], enc, scale, bias)) - base for k in range(K)]
    return effects


def ablation_effects(pruner: Pruner, circuit: Circuit, names: list[str], batch: int = 16) -> list[float]:
    """`node_effects` of a saved circuit's nodes, given by name."""
    nodes = [node_site(name) for name in names]
    return node_effects(pruner, circuit.gates(pruner.model.cfg, pruner.device), nodes, circuit.calibration,
                        batch=batch)
