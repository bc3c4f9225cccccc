"""`prune` and `search`: from a model, a task and a target loss to a Circuit."""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import torch

from ..config_io import load_json
from ..errors import UserError
from ..tasks import get_task
from ..tasks.base import Task
from ..training.config import RUN_FILE, DataConfig, RunConfig
from ..training.trainer import make_data
from .calibration import Calibration
from .circuit import Circuit
from .cleanup import cleanup
from .edges import circuit_edges
from .means import load_or_compute_means, model_hash, prompt_means, read_prompt_file
from .nodes import gates_to_nodes
from .pruner import PruneConfig, Pruner

MEAN_PROMPTS = 512  # task prompts averaged by `means="task"`


class UnreachableTarget(UserError):
    """A target loss that even the whole model, with its logits calibrated, misses."""


def reference_data(model, corpus: str | Path | None = None):
    """The model's own pretraining data (named by its run.json), or the corpus `corpus` for a model
    from elsewhere (e.g. a Hugging Face GPT-2)."""
    if corpus is not None:
        run = RunConfig(model=model.cfg, data=DataConfig(kind="corpus", path=str(Path(corpus).resolve())))
        return run.data, make_data(run)
    if model.source is None or not (Path(model.source) / RUN_FILE).exists():
        raise UserError(f"mean ablation over pretraining data needs the data: this model has no {RUN_FILE}, so give "
                        "--data CORPUS, or average the task's prompts (--means task) or a prompt file (--means FILE), "
                        "or use --ablation zero")
    run = load_json(RunConfig, Path(model.source) / RUN_FILE)
    return run.data, make_data(run)


def resolve_means(model, source: str, task: Task, tokenizer, corpus: str | Path | None = None,
                  progress: bool = True, seed: int = 0) -> dict:
    """The means for `source`: 'pretraining' (the model's data or `corpus`), 'task' or a prompt file."""
    if source == "pretraining":
        return load_or_compute_means(model.source, model, reference_data(model, corpus)[1], progress)
    if source == "task":
        texts = [e.prompt for e in task.examples("train", MEAN_PROMPTS, seed)]
        return prompt_means(model, texts, tokenizer, f"task {task.name}")
    return prompt_means(model, read_prompt_file(source), tokenizer, str(Path(source).resolve()))


def describe_means(model, source: str, task: Task, corpus: str | Path | None = None):
    """What `resolve_means(source)` averages over, as a circuit records it."""
    if source == "pretraining":
        return {**asdict(reference_data(model, corpus)[0]), "explicit": corpus is not None}
    if source == "task":
        return {"task_prompts": task.name}
    return {"prompt_file": str(Path(source).resolve())}


def circuit_corpus(circuit: Circuit) -> str | None:
    """The corpus a circuit's pretraining means came from, when it was given explicitly (--data)."""
    ref = circuit.settings.get("reference_data")
    return ref.get("path") if isinstance(ref, dict) and ref.get("explicit") else None


def circuit_means(model, circuit: Circuit, progress: bool = True):
    """The means a circuit was pruned with (None for zero or resample ablation)."""
    s = circuit.settings
    if s.get("ablation", "mean") != "mean":
        return None
    return resolve_means(model, s.get("means_from", "pretraining"), get_task(circuit.task), model.tokenizer,
                         circuit_corpus(circuit), progress, int(s.get("seed", 0)))


def _task_spec(task: Task | str) -> tuple[Task, str]:
    """The task and the name a circuit records for it (a JSONL task by its absolute path)."""
    if not isinstance(task, str):
        return task, task.name
    spec = str(Path(task).resolve()) if task.endswith(".jsonl") else task
    return get_task(spec), spec


def prune(model, task: Task | str, target_loss: float = 0.15, tokenizer=None, means=None, progress: bool = True,
          corpus: str | Path | None = None, require_reachable: bool = True, **config) -> Circuit:
    """The smallest circuit of `model` we can find whose held-out loss on `task` is <= `target_loss`.
    A target the whole (calibrated) model misses is an error, unless not `require_reachable` (the
    controls of `validate`, where pruning may make a mechanism the model lacks)."""
    cfg = PruneConfig(target_loss=target_loss, **config)
    task, spec = _task_spec(task)
    tokenizer = tokenizer or model.tokenizer
    if tokenizer is None:
        raise UserError("the model has no tokenizer: load it from its directory or pass tokenizer=...")
    described = f"none ({cfg.ablation} ablation)"
    if cfg.ablation == "mean":
        if cfg.means_from not in ("pretraining", "task"):
            cfg.means_from = str(Path(cfg.means_from).resolve())
        try:
            described = describe_means(model, cfg.means_from, task, corpus)
        except UserError:
            if means is None:
                raise
            described = "given by the caller"
        if means is None:
            means = resolve_means(model, cfg.means_from, task, tokenizer, corpus, progress, cfg.seed)
    pruner = Pruner(model, task, tokenizer, means, cfg)
    full = pruner.all_open()
    full_loss = pruner.loss(pruner.test, full, calibrated=False)
    best = pruner.evaluate(full)
    if require_reachable and best > target_loss:
        raise UnreachableTarget(f"even the whole model, calibrated, has loss {best:.4f} on {task.name}: the target "
                        f"{target_loss} cannot be reached (choose a larger --target-loss)")
    pruner.calib = Calibration()
    training = pruner.learn(progress)
    found = pruner.discretise(training, progress)
    scores = training.best_scores()
    gates, loss = found["gates"], found["loss"]
    trained = gates_to_nodes(gates)
    curve = [(sum(map(len, trained.values())), loss)]
    reached = loss <= target_loss
    if reached and cfg.cleanup:
        gates, loss, curve = cleanup(pruner, gates)
    nodes = gates_to_nodes(gates)
    settings = {**asdict(cfg), "model": model.source, "model_hash": model_hash(model),
                "reference_data": described,
                "tokenizer": getattr(tokenizer, "source", None), "causal": model.cfg.causal,
                "trained": {"nodes": curve[0][0], "edges": len(circuit_edges(model, trained)), "loss": curve[0][1]},
                "repairs": found["repairs"], "restores": training.restores, "training_log": training.history,
                "threads": torch.get_num_threads(), "torch": torch.__version__}
    circuit = Circuit(nodes=nodes, edges=circuit_edges(model, nodes), task=spec, loss=loss, full_loss=full_loss,
                      target=target_loss, reached=reached, calibration=pruner.calib, curve=curve, settings=settings,
                      scores={site: [float(f"{v:.5g}") for v in s.tolist()] for site, s in scores.items()})
    if not reached and progress:
        print(f"target loss {target_loss} not reached on {task.name}: the trained circuit has loss {loss:.4f} "
              f"with {circuit.n_nodes} nodes")
    return circuit


SEARCH_SPACE = {"lr": [0.02, 0.05, 0.1], "margin": [0.6, 0.7, 0.8, 0.9], "temperature_start": [0.1, 0.25, 0.5],
                "grad_temperature": [0.1, 0.3, 1.0], "penalty_rate": [0.01, 0.02, 0.05]}


def search(model, task: Task | str, target_loss: float = 0.15, budget: int = 8, seed: int = 0, progress: bool = True,
           corpus: str | Path | None = None, means=None, **config) -> tuple[Circuit, list[dict]]:
    """`budget` pruning runs (the first with the defaults, the rest over SEARCH_SPACE), all with the same
    means; keep the smallest circuit (edges) that reaches the target, else the lowest-loss one."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserError(f"search budget must be an integer >= 1, got {budget!r}")
    task, spec = _task_spec(task)
    cfg = PruneConfig(target_loss=target_loss, **config)
    if cfg.ablation == "mean" and means is None:
        means = resolve_means(model, cfg.means_from, task, model.tokenizer, corpus, progress, cfg.seed)
    rng = random.Random(seed)
    trials, best = [], None
    for i in range(budget):
        params = {} if i == 0 else {k: rng.choice(v) for k, v in SEARCH_SPACE.items()}
        c = prune(model, spec, target_loss, means=means, progress=progress, corpus=corpus,
                  **{**config, **params, "seed": seed + i})
        trials.append({**params, "seed": seed + i, "nodes": c.n_nodes, "edges": c.n_edges, "loss": c.loss,
                       "reached": c.reached})
        key = (not c.reached, c.n_edges if c.reached else c.loss)
        if best is None or key < best[0]:
            best = (key, c)
    circuit = best[1]
    circuit.settings["search"] = trials
    return circuit, trials


__all__ = ["circuit_corpus", "circuit_means", "describe_means", "prune", "reference_data", "resolve_means", "search"]
