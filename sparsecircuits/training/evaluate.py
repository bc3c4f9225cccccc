"""What a user asks of a trained model: task accuracy and how sparse it is."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..sparsity.projection import sparsified_parameters


@torch.no_grad()
def sparsity_report(model: torch.nn.Module) -> dict:
    """Nonzero entries per sparsified tensor, in total, and the density they make."""
    per = {n: {"nonzero": int((p != 0).sum()), "numel": p.numel()} for n, p in sparsified_parameters(model)}
    nonzero = sum(v["nonzero"] for v in per.values())
    numel = sum(v["numel"] for v in per.values())
    return {"nonzero_weights": nonzero, "sparsified_weights": numel, "density": nonzero / numel, "per_tensor": per}


@torch.no_grad()
def answer_report(model: torch.nn.Module, data, device="cpu") -> dict:
    """Exact match (every answer character right under greedy decoding: the digits of a sum, the
    closing characters of a bracket word) and answer loss on held-out problems.

    For a fixed-length answer, greedy decoding is right exactly when every teacher-forced argmax is
    right (the first wrong digit is the same in both), so one forward pass per batch suffices.
    """
    model.eval()
    correct, total, loss_sum, tokens = 0, 0, 0.0, 0
    for x, y in data.test_batches():
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        scored = y != -1
        right = (logits.argmax(-1) == y) | ~scored
        correct += int(right.all(dim=1).sum())
        total += x.shape[0]
        loss_sum += float(F.cross_entropy(logits[scored], y[scored], reduction="sum"))
        tokens += int(scored.sum())
    return {"accuracy": correct / total, "answer_loss": loss_sum / tokens, "n_problems": total}


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data, device="cpu") -> dict:
    """Mean next-token loss (nats/token) over the corpus's fixed validation windows."""
    model.eval()
    total, tokens = 0.0, 0
    for x, y in data.val_batches():
        logits = model(x.to(device)).float()
        total += float(F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten(), reduction="sum"))
        tokens += y.numel()
    return {"val_loss": total / tokens if tokens else float("nan"), "val_tokens": tokens}
