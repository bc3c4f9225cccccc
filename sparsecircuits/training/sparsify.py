"""Sparsity-regularised finetuning (METHOD 4): a dense model becomes a weight-sparse twin.

The base model's own weights are the start, its own data the training set, and the base itself the
teacher of an optional distillation term; density anneals from 1 to the target with the exact
top-k projection, as in sparse training from scratch.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config_io import from_dict, load_json
from ..errors import UserError
from ..model.io import load_model
from ..sparsity.projection import check_density
from .config import RUN_FILE, DataConfig, RunConfig, TrainConfig
from .trainer import Trainer

# Finetuning starts from a trained model: annealing starts at once; the second half recovers.
FINETUNE_DEFAULTS = {"lr": 1e-2, "warmup_frac": 0.01, "anneal_start": 0.0, "anneal_end": 0.5,
                     "distill_weight": 1.0, "steps": 3000}


def sparsify_trainer(base: str | Path, density: float, out: str | Path, progress: bool = True,
                     data: str | Path | None = None, **train_overrides) -> Trainer:
    """A Trainer that finetunes the model in `base` to `density`, writing into `out`: on the base's
    own data, or on the corpus `data` (needed for a model from elsewhere, e.g. a GPT-2)."""
    check_density(density)
    base = Path(base)
    model = load_model(base)
    base_run = load_json(RunConfig, base / RUN_FILE) if (base / RUN_FILE).exists() else None
    if base_run is None and data is None:
        raise UserError(f"{base} has no {RUN_FILE}: give the data to finetune on (--data CORPUS)")
    data_cfg = DataConfig(kind="corpus", path=str(Path(data).resolve())) if data is not None else base_run.data
    train = {**FINETUNE_DEFAULTS, **{k: v for k, v in train_overrides.items() if v is not None}, "density": density}
    try:
        train_cfg = replace(base_run.train if base_run else TrainConfig(), **train)
    except TypeError as e:
        raise UserError(f"bad sparsify option: {e}") from None
    train_cfg = from_dict(type(train_cfg), {**vars(train_cfg)})  # re-validate the merged values
    run = RunConfig(model=model.cfg, data=data_cfg, train=train_cfg, init_from=str(base.resolve()))
    return Trainer(run, out, init=model, teacher=load_model(base) if train_cfg.distill_weight > 0 else None,
                   progress=progress)
