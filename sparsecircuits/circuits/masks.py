"""Node masks (METHOD 6): a learnable score tau per node, a Heaviside gate with a sigmoid
straight-through gradient, and the ablation of closed nodes (mean, zero or resample)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .nodes import node_sites

ABLATIONS = ("mean", "zero", "resample")


class HeavisideST(torch.autograd.Function):
    """Forward: 1[tau > 0]. Backward: the derivative of sigmoid(tau / T)."""

    @staticmethod
    def forward(ctx, tau, temperature: float):
        ctx.save_for_backward(tau)
        ctx.temperature = temperature
        return (tau > 0).to(tau.dtype)

    @staticmethod
    def backward(ctx, grad):
        (tau,) = ctx.saved_tensors
        s = torch.sigmoid(tau / ctx.temperature)
        return grad * s * (1 - s) / ctx.temperature, None


class NodeMasks(nn.Module):
    """One tau per node. `hooks(...)` gives the model hooks that gate and ablate the nodes."""

    def __init__(self, cfg, init_mean: float = 0.1, init_std: float = 0.01, temperature: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.sites = node_sites(cfg)
        self.temperature = temperature
        self.tau = nn.ParameterDict({
            name.replace(".", "_"): nn.Parameter(init_mean + init_std * torch.randn(w, generator=generator))
            for name, w in self.sites.items()})

    def taus(self) -> dict[str, torch.Tensor]:
        return {name: self.tau[name.replace(".", "_")] for name in self.sites}

    def gates(self) -> dict[str, torch.Tensor]:
        return {name: HeavisideST.apply(t, self.temperature) for name, t in self.taus().items()}

    @torch.no_grad()
    def clamp_(self) -> None:
        for t in self.tau.values():
            t.clamp_(-1.0, 1.0)


def ablation_hooks(gates: dict[str, torch.Tensor], replacement: dict[str, torch.Tensor | None]):
    """Hooks computing m * x + (1 - m) * r at each site: r is a mean vector, a resampled activation
    of the same shape as x, or None (zero)."""
    def make(name):
        m = gates[name]
        r = replacement.get(name)

        def hook(x, _):
            m_ = m.to(x.dtype)
            return m_ * x if r is None else m_ * x + (1 - m_) * r.to(x.dtype)
        return hook
    return [(name, make(name)) for name in gates]
