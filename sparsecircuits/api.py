"""The Python API in a few calls: load, train, sparsify, evaluate."""
from __future__ import annotations

from pathlib import Path

from .config_io import load_json
from .errors import UserError
from .model.io import load_model
from .model.transformer import SparseTransformer
from .training.config import RunConfig
from .training.evaluate import addition_report, sparsity_report
from .training.sparsify import sparsify_trainer
from .training.distributed import resolve_device
from .training.trainer import RUN_FILE, Trainer, make_data


def load(path: str | Path, device: str = "cpu") -> SparseTransformer:
    """A ready model from a model directory (`config.json` + `model.safetensors`)."""
    return load_model(path, device)


def train(run: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          init: SparseTransformer | None = None) -> SparseTransformer:
    """Train `run` into `out`; with `resume`, continue from `out/checkpoint` when there is one."""
    trainer = Trainer(run, out, init=init, progress=progress)
    if resume:
        trainer.resume()
    return trainer.fit()


def sparsify(base: str | Path, density: float, out: str | Path, resume: bool = False, progress: bool = True,
             **train_overrides) -> SparseTransformer:
    """Sparsity-regularised finetuning of the model in `base` down to `density` (METHOD 4)."""
    trainer = sparsify_trainer(base, density, out, progress=progress, **train_overrides)
    if resume:
        trainer.resume()
    return trainer.fit()


def evaluate(path: str | Path, device: str = "cpu") -> dict:
    """Sparsity of a model directory and, when it was trained on a task we know, its accuracy."""
    path, device = Path(path), resolve_device(device)
    model = load_model(path, device)
    report = {"model": str(path), **sparsity_report(model)}
    if (path / RUN_FILE).exists():
        run = load_json(RunConfig, path / RUN_FILE)
        if run.model != model.cfg:
            raise UserError(f"{path}/{RUN_FILE} does not describe the model in {path}")
        report.update(addition_report(model, make_data(run), device))
    return report
