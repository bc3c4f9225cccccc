"""Per-node mean activations over the model's pretraining data, computed once and kept beside it.

Mean ablation replaces a pruned node by this mean (METHOD 6). The cache file records the hash of
the weights it was computed from, so a cache of other weights is never used.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..atomic import atomic_path
from .nodes import node_sites

MEAN_FILE = "mean_cache.safetensors"


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
    """Mean of every node's activation over all positions of `batches` (an iterable of token tensors)."""
    sites = node_sites(model.cfg)
    sums = {name: torch.zeros(width, dtype=torch.float64) for name, width in sites.items()}
    count = 0
    device = next(model.parameters()).device
    for tokens in tqdm(batches, desc="mean cache", disable=not progress, leave=False):
        _, cache = model.run_with_cache(tokens.to(device), list(sites))
        for name in sites:
            sums[name] += cache[name].double().sum(dim=(0, 1)).cpu()
        count += tokens.numel()
    return {name: (s / count).float() for name, s in sums.items()}


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
    """The cache beside the model if it matches these weights, else computed now and saved."""
    path = Path(model_dir) / MEAN_FILE
    digest = model_hash(model)
    means = _cached(path, digest) if path.exists() else None
    if means is not None:
        return means
    means = compute_means(model, pretraining_batches(data), progress)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in means.items()}, str(tmp), metadata={"model_hash": digest})
    return means
