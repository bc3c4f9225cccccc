"""Training checkpoints: model, Adam state and progress in `OUT/checkpoint/`, replaced atomically."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..atomic import atomic_dir
from ..errors import UserError
from ..model.io import load_state

CHECKPOINT = "checkpoint"


def save_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    names = {id(p): n for n, p in model.named_parameters()}
    optim = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                optim[f"{names[id(p)]}/{key}"] = value.detach().to("cpu").reshape(value.shape).contiguous()
    with atomic_dir(out / CHECKPOINT) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file(optim, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """Restore model and optimiser from `out/checkpoint`; return its state dict, or None if absent."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"checkpoint {path} is unreadable ({e})") from None
    weights = load_state(path / "model.safetensors")
    optim = load_state(path / "optimizer.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not match the model ({str(e).splitlines()[0]})") from None
    params = dict(model.named_parameters())
    for key, value in optim.items():
        name, _, slot = key.rpartition("/")
        if name not in params:
            raise UserError(f"checkpoint {path} has optimiser state for unknown parameter {name}")
        p = params[name]
        opt.state[p][slot] = value.to(p.device) if slot != "step" else value
    return state
