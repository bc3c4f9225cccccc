"""The next-token training loss without the whole (tokens x vocab) logits.

Unembedding, bigram rows and cross-entropy are computed a chunk of tokens at a time, and each
chunk's gradients in the same pass (the fused linear cross-entropy of large-vocabulary training):
a chunk's logits (about 8 MB) are made, turned into their gradient in place and dropped while they
are still in cache, and the bigram table's gradient is one dense tensor filled by `index_add_`
rather than a fresh vocab x vocab tensor per chunk. It holds one chunk of logits at a time in the
backward pass too, so its peak memory stays well under autograd's, whole or chunked
(benchmarks/loss_memory.py measures both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2 ** 21  # logits per chunk (8 MB in fp32)


class _UnembedCrossEntropy(torch.autograd.Function):
    """mean CE(x W^T + bigram[idx] + bias, targets) over targets != -1; the gradients come from forward."""

    @staticmethod
    def forward(ctx, x, weight, bigram, idx, targets, bias, grad_enabled):
        scored = targets != -1
        n = scored.sum().clamp_min(1)
        want_x, want_w, want_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        grad_x = torch.empty_like(x) if want_x else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
        grad_b = torch.zeros_like(bigram) if want_b else None
        total = x.new_zeros((), dtype=torch.float32)
        device = x.device.type  # the matmuls' dtype: cast each chunk's gradient to it once, not per matmul
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        chunk = max(256, CHUNK_ELEMENTS // weight.shape[0])
        for s in range(0, len(targets), chunk):
            part = slice(s, s + chunk)
            xs, t, keep = x[part], targets[part].clamp_min(0), scored[part]
            logits = F.linear(xs, weight).float()
            if bigram is not None:
                logits += bigram[idx[part]]
            if bias is not None:
                logits += bias
            lse = logits.logsumexp(-1)
            total += ((lse - logits.gather(1, t[:, None]).squeeze(1)) * keep).sum()
            if not (want_x or want_w or want_b):
                continue
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place; minus the one-hot target:
            grad[torch.arange(len(t)), t] -= 1
            grad *= (keep / n)[:, None]
            grad_low = grad.to(low)
            if want_x:
                grad_x[part] = grad_low @ weight
            if want_w:
                grad_w += grad_low.T @ xs
            if want_b:
                grad_b.index_add_(0, idx[part], grad.to(bigram.dtype))
        ctx.grads = (grad_x, grad_w, grad_b)
        return total / n

    @staticmethod
    def backward(ctx, grad_loss):
        grad_x, grad_w, grad_b = (None if g is None else g * grad_loss for g in ctx.grads)
        return grad_x, grad_w, grad_b, None, None, None, None


def unembed_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bigram: torch.Tensor | None, idx: torch.Tensor,
                          targets: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the logits `x @ weight.T + bigram[idx] + bias` for flat `targets` (-1: unscored)."""
    # Under no_grad the inputs may still require grad: the flag keeps it from computing gradients.
    return _UnembedCrossEntropy.apply(x, weight, bigram, idx, targets, bias, torch.is_grad_enabled())
