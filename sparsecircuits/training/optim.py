"""The optimiser pieces of METHOD 3 around plain Adam: gradient RMS normalisation, decoupled decay."""
from __future__ import annotations

import torch


@torch.no_grad()
def normalize_grad_rms(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """Rescale all gradients together so their global RMS is 1; return the RMS before (a tensor)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    numel = sum(g.numel() for g in grads)
    rms = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) / numel ** 0.5
    torch._foreach_div_(grads, rms.clamp_min(1e-12))
    return rms


@torch.no_grad()
def decay_weights(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> None:
    """w <- w * (1 - lr * wd): after the projection, so zeros stay zero."""
    if params and weight_decay:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)


def make_adam(params, lr: float, betas, eps: float) -> torch.optim.Adam:
    """Fused Adam: one kernel for every tensor, much faster on CPU than the per-tensor loop
    (`benchmarks/code_step.py` measures it)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=0.0, fused=True)
