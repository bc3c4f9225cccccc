"""Training checkpoints: model, Adam state and progress in `OUT/checkpoint-STEP/`.

Each checkpoint is written into a temp folder that becomes `checkpoint-STEP` by one rename, and
only then are the older ones removed; so at any instant of a kill the newest complete checkpoint is
on disk, and `resume` takes it. A full disk while writing ends in a one-line error with the previous
checkpoint untouched.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..atomic import new_dir, remove_stale
from ..config_io import JSON_ERRORS
from ..errors import UserError
from ..model.formats import load_state

CHECKPOINT = "checkpoint"
_NAME = re.compile(rf"^{CHECKPOINT}-(\d+)$")


def checkpoints(out: Path) -> list[Path]:
    """The complete checkpoints in `out`, oldest first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_step(out: Path) -> int:
    """The step of the newest complete checkpoint in `out` (0 when there is none)."""
    found = checkpoints(out)
    return int(_NAME.match(found[-1].name).group(1)) if found else 0


def save_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> Path:
    names = {id(p): n for n, p in model.named_parameters()}
    optim = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                optim[f"{names[id(p)]}/{key}"] = value.detach().to("cpu").reshape(value.shape).contiguous()
    remove_stale_checkpoints(out)
    path = out / f"{CHECKPOINT}-{state['step']:08d}"
    older = [p for p in checkpoints(out) if p != path]
    if not path.exists():
        try:
            with new_dir(path) as tmp:
                save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()},
                          str(tmp / "model.safetensors"))
                save_file(optim, str(tmp / "optimizer.safetensors"))
                (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        except (OSError, SafetensorError) as e:
            raise UserError(f"cannot write a checkpoint into {out} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            f"the previous one is kept") from None
    for p in older:
        shutil.rmtree(p, ignore_errors=True)
    return path


def load_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """Restore model and optimiser from the newest checkpoint in `out`; its state, or None if none."""
    remove_stale_checkpoints(out)
    found = checkpoints(out)
    if not found:
        return None
    path = found[-1]
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, *JSON_ERRORS) as e:
        raise UserError(f"checkpoint {path} is unreadable ({e})") from None
    step = int(_NAME.match(path.name).group(1))
    history = state.get("history") if isinstance(state, dict) else None
    if (not isinstance(state, dict) or type(state.get("step")) is not int or state["step"] != step
            or not isinstance(history, list) or not all(isinstance(h, dict) for h in history)):
        raise UserError(f"checkpoint {path} is corrupt: its state.json is not that of step {step}")
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


def remove_stale_checkpoints(out: Path) -> None:
    """Temp folders of checkpoints whose writer was killed."""
    if out.is_dir():
        for p in out.iterdir():
            if p.name.startswith(f".{CHECKPOINT}-") and p.name.endswith(".tmp"):
                remove_stale(out / p.name.split(".")[1])
