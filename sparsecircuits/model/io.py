"""A model directory is `config.json` + `model.safetensors`; save atomically, load with clear errors
(and load the other formats `formats` converts)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..atomic import atomic_path, atomic_write_json
from ..config_io import load_json, to_dict
from ..data.tokenizer import load_any_tokenizer
from ..errors import UserError
from .config import ModelConfig
from .formats import detect_format, load_state, read_hf_gpt2, read_release
from .transformer import SparseTransformer

CONFIG, WEIGHTS = "config.json", "model.safetensors"


def save_model(model: SparseTransformer, path: str | Path, extra: dict | None = None) -> None:
    """Write weights, config and any `extra` {filename: JSON-able} into directory `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "sparsecircuits"})
    for name, obj in (extra or {}).items():
        atomic_write_json(path / name, obj)
    atomic_write_json(path / CONFIG, to_dict(model.cfg))


def load_model(path: str | Path, device: str | torch.device = "cpu", tokenizer: str | Path | None = None,
               causal: bool | None = None) -> SparseTransformer:
    """Load a model directory: ours (`save_model`), a Hugging Face GPT-2 or the authors' release
    (`formats`); raise UserError naming what is wrong. `tokenizer`: a directory with `tokenizer.json`
    or GPT-2-style `encoder.json` + `vocab.bpe`, for models whose folder has none. `causal=False`
    lets every position attend to every other (a bidirectional model imported as ours)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model directory {path} does not exist")
    kind = detect_format(path)
    if kind == "hf-gpt2":
        cfg, state, source = read_hf_gpt2(path)
    elif kind == "release":
        cfg, state, source = read_release(path)
    else:
        cfg, state, source = load_json(ModelConfig, path / CONFIG), load_state(path / WEIGHTS), str(path / WEIGHTS)
    if causal is not None:
        cfg = replace(cfg, causal=causal)
    model = SparseTransformer(cfg)
    assign_state(model, state, source=source)
    model.source = str(path.resolve())  # its tokenizer, run config and mean cache live there; circuits name it
    model.tokenizer = load_any_tokenizer(tokenizer or path, cfg.vocab_size)
    return model.to(device).eval()


def assign_state(model: SparseTransformer, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, naming missing, unexpected and mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else ""))
    if shaped:
        problems.append("mis-shaped " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in shaped[:5]))
    if problems:
        raise UserError(f"{source} does not match its config: " + "; ".join(problems))
    for k, v in state.items():
        if not v.is_floating_point():
            raise UserError(f"{source}: tensor {k} is {v.dtype}, not floating point")
        if not torch.isfinite(v).all():
            raise UserError(f"{source}: tensor {k} holds NaN or inf")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
