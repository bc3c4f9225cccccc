"""Node masks (METHOD 6): a learnable score per node and the ablation of closed nodes.

A score s lives in [-1, 1]; the node is open when s > 0. During training the gate is
sigmoid(s / T): soft at first, so that a gradient reaches nodes whose effect passes through a
saturated softmax or a step-like neuron, and sharper as T falls. Near the end each gate is the hard
1[s > 0] with a probability that rises to 1, so the loss being minimised is the loss of the set that
will be kept. The backward pass always uses the slope of sigmoid(s / max(T, T_grad)): a closed node
still hears how much the loss wants it back.

Closed nodes become their mean activation (mean ablation), zero, or another prompt's activation
(resample ablation).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .nodes import node_sites

ABLATIONS = ("mean", "zero", "resample")


class Gate(torch.autograd.Function):
    """Forward: sigmoid(s / T), or 1[s > 0] where `hard`. Backward: the slope of sigmoid(s / T_grad)."""

    @staticmethod
    def forward(ctx, s, temperature: float, grad_temperature: float, hard):
        ctx.save_for_backward(s)
        ctx.grad_temperature = grad_temperature
        soft = torch.sigmoid(s / temperature)
        return soft if hard is None else torch.where(hard, (s > 0).to(s.dtype), soft)

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        p = torch.sigmoid(s / ctx.grad_temperature)
        return grad * p * (1 - p) / ctx.grad_temperature, None, None, None


class NodeScores(nn.Module):
    """One score per node of every prunable site."""

    def __init__(self, cfg, init: float = 1.0, init_std: float = 0.01, generator: torch.Generator | None = None):
        super().__init__()
        self.sites = node_sites(cfg)
        self.score = nn.ParameterList(
            nn.Parameter(init + init_std * torch.randn(w, generator=generator)) for w in self.sites.values())

    def scores(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.sites, self.score))

    def gates(self, temperature: float, grad_temperature: float, hard_fraction: float = 0.0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training gates; each is hard with probability `hard_fraction`."""
        out = {}
        for name, s in self.scores().items():
            hard = None if hard_fraction <= 0 else torch.rand(s.shape, generator=generator).to(s.device) < hard_fraction
            out[name] = Gate.apply(s, temperature, max(temperature, grad_temperature), hard)
        return out

    @torch.no_grad()
    def open(self) -> dict[str, torch.Tensor]:
        """The hard gates 1[s > 0]: the set training settled on."""
        return {name: (s > 0).float() for name, s in self.scores().items()}

    @torch.no_grad()
    def clamp_(self) -> None:
        for s in self.score:
            s.clamp_(-1.0, 1.0)


def ablation_hooks(gates: dict[str, torch.Tensor], replacement: dict[str, torch.Tensor | None]):
    """Hooks computing m * x + (1 - m) * r at each site: r is a mean vector, a resampled activation
    of the same shape as x, or None (zero)."""
    def make(name):
        m = gates[name]
        r = replacement.get(name)

        def hook(x, _):
            m_ = m.to(x.dtype)
            return m_ * x if r is None else torch.addcmul((1 - m_) * r.to(x.dtype), m_, x)
        return hook
    return [(name, make(name)) for name in gates]
