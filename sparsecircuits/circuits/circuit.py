"""A circuit: the kept nodes of one (model, task), its edges, its loss and how it was found.

Saved as `circuit.json`, a file a person can read: nodes by site, edges as
`[source, target, weight]`, counts, losses, the calibration, the cleanup's loss-vs-size curve,
every node's final score (kept or not) and every setting that produced it (ablation, means,
target, seed, the model's path and weight hash).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..atomic import atomic_write_json
from ..errors import UserError, check_seed
from .calibration import Calibration
from .edges import Edge
from .masks import ablation_hooks
from .nodes import node_name, node_sites, parse_node

CIRCUIT_FILE = "circuit.json"
VALIDATION_FILE = "validation.json"  # `validate`'s report, beside the circuit


@dataclass
class Circuit:
    nodes: dict[str, list[int]]
    edges: list[Edge]
    task: str
    loss: float                      # held-out task loss of the circuit alone (calibrated)
    full_loss: float                 # the unpruned model's held-out task loss
    target: float
    reached: bool
    calibration: Calibration
    curve: list[tuple[int, float]]   # (nodes kept, held-out loss): the trained set, then each cleanup drop
    settings: dict = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)  # every node's final score, by site

    @property
    def n_nodes(self) -> int:
        return sum(len(v) for v in self.nodes.values())

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def node_names(self) -> list[str]:
        return [node_name(site, c) for site, chans in self.nodes.items() for c in chans]

    def gates(self, cfg, device="cpu") -> dict[str, torch.Tensor]:
        gates = {name: torch.zeros(w, device=device) for name, w in node_sites(cfg).items()}
        for site, chans in self.nodes.items():
            gates[site][chans] = 1.0
        return gates

    def to_json(self) -> dict:
        return {"task": self.task, "n_nodes": self.n_nodes, "n_edges": self.n_edges, "loss": self.loss,
                "full_loss": self.full_loss, "target": self.target, "reached": self.reached,
                "calibration": self.calibration.to_json(), "settings": self.settings,
                "nodes": self.nodes, "edges": [list(e) for e in self.edges],
                "curve": [list(p) for p in self.curve], "scores": self.scores}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / CIRCUIT_FILE, self.to_json(), indent=1)

    @classmethod
    def load(cls, directory: str | Path) -> "Circuit":
        path = Path(directory) / CIRCUIT_FILE
        if not path.exists():
            raise UserError(f"{directory} holds no {CIRCUIT_FILE} (make one with `sparsecircuits prune`)")
        try:
            d = json.loads(path.read_text())
            json.dumps(d["settings"].get("trained"), allow_nan=False)  # the viewer shows it: a NaN is a ValueError
            return cls(nodes={k: [int(c) for c in v] for k, v in d["nodes"].items()},
                       edges=[(str(a), str(b), float(w)) for a, b, w in d["edges"]], task=d["task"],
                       loss=float(d["loss"]), full_loss=float(d["full_loss"]), target=float(d["target"]),
                       reached=bool(d["reached"]), calibration=Calibration.from_json(d["calibration"]),
                       curve=[(int(k), float(v)) for k, v in d["curve"]], settings=d["settings"],
                       scores={k: [float(x) for x in v] for k, v in d.get("scores", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
            raise UserError(f"{path} is corrupt ({type(e).__name__}: {e})") from None

    def __post_init__(self):
        """Refuse a circuit no pruning could have written (a tampered or hand-edited file)."""
        if not isinstance(self.settings, dict) or not isinstance(self.task, str):
            raise TypeError("settings must be an object and task a name")
        for key in ("model", "tokenizer", "means_from", "model_hash", "ablation"):
            if not isinstance(self.settings.get(key, ""), (str, type(None))):
                raise TypeError(f"settings '{key}' must be a string, not {type(self.settings[key]).__name__}")
        ref = self.settings.get("reference_data", "")
        if not (isinstance(ref, str) or isinstance(ref, dict) and isinstance(ref.get("path", ""), str)):
            raise TypeError("settings 'reference_data' must be a text or an object whose path is a string")
        check_seed("circuit settings 'seed'", self.settings.get("seed", 0))
        for name in {n for a, b, _ in self.edges for n in (a, b)}:
            parse_node(name)  # a ValueError for a name that is no node
        for a, b, w in self.edges:
            if not math.isfinite(w):
                raise UserError(f"circuit edge {a} -> {b} has weight {w}")
        for name in ("loss", "full_loss", "target"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"circuit {name} must be a finite number, got {getattr(self, name)}")
        negative = next((node_name(site, c) for site, chans in self.nodes.items() for c in chans if c < 0), None)
        if negative:
            raise UserError(f"circuit node {negative} is out of range")

    def check_model(self, cfg, source: str) -> None:
        """Every node names a site and channel of the model `cfg` (the circuit and its model agree)."""
        sites = node_sites(cfg)
        for site, chans in self.nodes.items():
            if site not in sites:
                raise UserError(f"{source}: node site {site!r} is not one of this model's sites")
            beyond = [c for c in chans if c >= sites[site]]
            if beyond:
                raise UserError(f"{source}: node {node_name(site, beyond[0])} is out of range "
                                f"(the site has {sites[site]} channels)")

    def ablated_model(self, model, means: dict[str, torch.Tensor] | None = None) -> "AblatedModel":
        """`model` running with every node outside the circuit ablated (mean, or zero without means)."""
        return AblatedModel(model, self.gates(model.cfg, next(model.parameters()).device), means)


class AblatedModel(nn.Module):
    """Calls the wrapped model with fixed gates: kept nodes pass, the rest become their mean (or 0)."""

    def __init__(self, model, gates: dict[str, torch.Tensor], means: dict[str, torch.Tensor] | None):
        super().__init__()
        self.model, self.gates = model, gates
        self.replacement = {k: (means[k].to(v.device) if means is not None else None) for k, v in gates.items()}

    @property
    def cfg(self):
        return self.model.cfg

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.run_with_hooks(idx, ablation_hooks(self.gates, self.replacement))
