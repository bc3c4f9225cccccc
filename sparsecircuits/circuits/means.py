"""Per-node mean activations, what mean ablation puts in place of a pruned node (METHOD 6).

Three sources: the model's pretraining data (computed once and cached beside the model, keyed by a
hash of its weights), the task's own training prompts, or a file of prompts (one per line, or JSONL
with a "prompt" or "text" field), so that a model imported without its data can be pruned too.
Averages run over every real token position; padding never counts.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..config_io import JSON_ERRORS
from ..errors import UserError
from .nodes import node_sites

MEAN_FILE = "mean_cache.safetensors"
PROMPT_BATCH = 64


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the weights (names, shapes and float32 bytes), so a circuit knows its model."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def compute_means(model, batches, progress: bool = True) -> dict[str, torch.Tensor]:
    """Mean of every node's activation over the real positions of `batches`: token tensors (every
    position counts) or (tokens, lengths) pairs of right-padded prompts."""
    sites = node_sites(model.cfg)
    sums = {name: torch.zeros(width, dtype=torch.float64) for name, width in sites.items()}
    count = 0
    device = next(model.parameters()).device
    for batch in tqdm(batches, desc="means", disable=not progress, leave=False):
        tokens, lengths = batch if isinstance(batch, tuple) else (batch, None)
        real = (torch.ones(tokens.shape, dtype=torch.bool) if lengths is None else
                torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).to(device)
        _, cache = model.run_with_cache(tokens.to(device), list(sites))
        for name in sites:
            sums[name] += cache[name][real].double().sum(0).cpu()
        count += int(real.sum())
    return {name: (s / count).float() for name, s in sums.items()}


def prompt_batches(prompts: list[list[int]], pad: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded (tokens, lengths) batches of token lists."""
    out = []
    for i in range(0, len(prompts), PROMPT_BATCH):
        chunk = prompts[i:i + PROMPT_BATCH]
        tokens = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long)
        for j, p in enumerate(chunk):
            tokens[j, :len(p)] = torch.tensor(p)
        out.append((tokens, torch.tensor([len(p) for p in chunk])))
    return out


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per non-blank line) or a .jsonl file ("prompt" or "text" field)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"prompt file {path} is not UTF-8 text (byte {e.start})") from None
    prompts = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except JSON_ERRORS as e:
                raise UserError(f"{path} line {lineno}: not valid JSON ({getattr(e, 'msg', e)})") from None
            text = row.get("prompt", row.get("text")) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise UserError(f"{path} line {lineno}: needs a string field \"prompt\" or \"text\"")
            line = text
        prompts.append(line)
    if not any(p for p in prompts):
        raise UserError(f"prompt file {path} has no usable line")
    return prompts


def prompt_means(model, texts: list[str], tokenizer, source: str, progress: bool = False) -> dict[str, torch.Tensor]:
    """Means over the token positions of `texts` (each cut to the model's context, from the end)."""
    block = model.cfg.block_size
    prompts = [ids[-block:] for ids in (tokenizer.encode(t) for t in texts) if ids]
    if not prompts:
        raise UserError(f"{source}: no prompt has a token")
    return compute_means(model, prompt_batches(prompts, getattr(tokenizer, "eot_id", 0)), progress)


def pretraining_batches(data, n_batches: int = 16, batch_size: int = 64):
    """Token batches from the model's own training data, drawn far from the training steps' seeds."""
    return [data.train_batch(10_000_000 + i, batch_size)[0] for i in range(n_batches)]


def _cached(path: Path, digest: str) -> dict[str, torch.Tensor] | None:
    """The saved means if the file is readable and was made from these weights."""
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("model_hash") == digest:
                return {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # an unreadable cache is recomputed, not trusted
        return None
    return None


def load_or_compute_means(model_dir: str | Path, model, data, progress: bool = True) -> dict[str, torch.Tensor]:
    """The pretraining means cached beside the model if they match these weights, else computed and saved."""
    path = Path(model_dir) / MEAN_FILE
    digest = model_hash(model)
    means = _cached(path, digest) if path.exists() else None
    if means is not None:
        return means
    means = compute_means(model, pretraining_batches(data), progress)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in means.items()}, str(tmp), metadata={"model_hash": digest})
    return means
