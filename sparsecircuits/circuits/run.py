"""`prune` and `search`: from a model and a task to a Circuit."""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import torch

from ..config_io import load_json
from ..errors import UserError
from ..tasks import get_task
from ..tasks.base import Task
from ..training.config import DataConfig, RunConfig
from ..training.trainer import RUN_FILE, make_data
from .circuit import Circuit
from .edges import circuit_edges
from .mean_cache import load_or_compute_means, model_hash
from .nodes import node_sites
from .prune import PruneConfig, Pruner


def reference_data(model, corpus: str | Path | None = None):
    """The model's own pretraining data (named by its run.json), or the corpus `corpus` for a model
    from elsewhere (e.g. a Hugging Face GPT-2): what mean ablation averages over."""
    if corpus is not None:
        run = RunConfig(model=model.cfg, data=DataConfig(kind="corpus", path=str(Path(corpus).resolve())))
        return run.data, make_data(run)
    if model.source is None or not (Path(model.source) / RUN_FILE).exists():
        raise UserError("mean ablation needs pretraining data: give a corpus (--data CORPUS) for a model without "
                        f"{RUN_FILE}, pass means=..., or use ablation='zero'")
    run = load_json(RunConfig, Path(model.source) / RUN_FILE)
    return run.data, make_data(run)


def circuit_corpus(circuit: Circuit) -> str | None:
    """The corpus a circuit's means came from, when it was given explicitly (a model without run.json)."""
    ref = circuit.settings.get("reference_data")
    return ref.get("path") if isinstance(ref, dict) and ref.get("explicit") else None


def model_means(model, progress: bool = True, corpus: str | Path | None = None) -> dict[str, torch.Tensor]:
    _, data = reference_data(model, corpus)
    return load_or_compute_means(model.source, model, data, progress)


def prune(model, task: Task | str, target_loss: float = 0.15, tokenizer=None, means=None, progress: bool = True,
          corpus: str | Path | None = None, **config) -> Circuit:
    """Prune `model` to the smallest circuit reaching `target_loss` on `task` (METHOD 6)."""
    cfg = PruneConfig(target_loss=target_loss, **config)
    # a circuit names its task so that `get_task` finds it again: a JSONL task by its absolute path
    spec = task if not isinstance(task, str) else str(Path(task).resolve()) if task.endswith(".jsonl") else task
    task = get_task(spec) if isinstance(spec, str) else spec
    tokenizer = tokenizer or model.tokenizer
    if tokenizer is None:
        raise UserError("the model has no tokenizer: load it from its directory or pass tokenizer=...")
    data_desc = f"none ({cfg.ablation} ablation)"
    if cfg.ablation == "mean":
        try:
            data_cfg, _ = reference_data(model, corpus)
            data_desc = {**asdict(data_cfg), "explicit": corpus is not None}
        except UserError:
            if means is None:
                raise
            data_desc = "means given by the caller"
        means = means if means is not None else model_means(model, progress, corpus)
    pruner = Pruner(model, task, tokenizer, means, cfg)
    full = {name: torch.ones(w, device=pruner.device) for name, w in node_sites(model.cfg).items()}
    full_loss = pruner.loss(pruner.test, full, calibrated=False)
    masks = pruner.learn_masks(progress)
    found = pruner.discretise(masks)
    nodes: dict[str, list[int]] = {}
    for site, ch in found["order"][:found["k"]]:
        nodes.setdefault(site, []).append(ch)
    nodes = {site: sorted(nodes[site]) for site in node_sites(model.cfg) if site in nodes}
    settings = {**asdict(cfg), "model": model.source, "model_hash": model_hash(model), "reference_data": data_desc,
                "tokenizer": getattr(tokenizer, "source", None),
                "nodes_open_after_training": found["n_open"]}
    circuit = Circuit(nodes=nodes, edges=circuit_edges(model, nodes), task=spec if isinstance(spec, str) else task.name, loss=found["loss"],
                      full_loss=full_loss, target=target_loss, reached=found["reached"],
                      calibration=found["calibration"], curve=found["curve"], settings=settings)
    if not circuit.reached and progress:
        print(f"target loss {target_loss} not reached on {task.name}: best circuit has loss {circuit.loss:.4f} "
              f"with {circuit.n_nodes} nodes")
    return circuit


SEARCH_SPACE = {"k_coef": [3e-5, 1e-4, 3e-4, 1e-3], "lr": [1e-3, 3e-3, 1e-2], "init_mean": [0.05, 0.1, 0.3],
                "temperature": [0.5, 1.0, 2.0]}


def search(model, task: Task | str, target_loss: float = 0.15, budget: int = 8, seed: int = 0, progress: bool = True,
           corpus: str | Path | None = None, **config) -> tuple[Circuit, list[dict]]:
    """A few pruning runs over k_coef, lr, init and temperature (the first with the defaults); keep the
    smallest circuit (edges) that reaches the target, else the lowest-loss one."""
    if budget < 1:
        raise UserError(f"search budget must be >= 1, got {budget}")
    means = model_means(model, progress, corpus) if config.get("ablation", "mean") == "mean" else None
    rng = random.Random(seed)
    trials, best = [], None
    for i in range(budget):
        params = {} if i == 0 else {k: rng.choice(v) for k, v in SEARCH_SPACE.items()}
        c = prune(model, task, target_loss, means=means, progress=progress, corpus=corpus,
                  **{**config, **params, "seed": seed + i})
        trials.append({**params, "seed": seed + i, "nodes": c.n_nodes, "edges": c.n_edges, "loss": c.loss,
                       "reached": c.reached})
        key = (not c.reached, c.n_edges if c.reached else c.loss)
        if best is None or key < best[0]:
            best = (key, c)
    circuit = best[1]
    circuit.settings["search"] = trials
    return circuit, trials


__all__ = ["circuit_corpus", "prune", "search", "model_means", "reference_data"]
