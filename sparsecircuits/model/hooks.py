"""Named hook points (METHOD 2): record or replace any activation during a forward pass.

Every activation the model computes passes through `HookPoints.__call__(name, x)`. With no hook
registered that call is one empty-dict test, so unused hooks cost nothing measurable.
A hook is `fn(x, name) -> tensor | None`; returning a tensor replaces the activation.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from ..errors import UserError

LAYER_HOOKS = ("resid_in", "attn.norm_scale", "attn.act_in", "attn.q", "attn.k", "attn.v", "attn.pattern", "attn.y",
               "attn.resid_delta", "resid_mid", "mlp.norm_scale", "mlp.act_in", "mlp.post_act", "mlp.resid_delta")

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


def hook_names(n_layer: int) -> list[str]:
    """All hook names of a model with `n_layer` layers, in forward order (a model without norms never
    calls the `norm_scale` ones)."""
    return [f"{i}.{h}" for i in range(n_layer) for h in LAYER_HOOKS] + ["final_resid", "final_norm_scale"]


class HookPoints:
    """The registry a model and its blocks share; not a Module, so it holds no state dict."""

    def __init__(self, names: list[str]):
        self.names = names
        self._known = frozenset(names)
        self.fns: dict[str, list[HookFn]] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.fns:
            for fn in self.fns.get(name, ()):
                out = fn(x, name)
                if out is not None:
                    x = out
        return x

    def add(self, name: str, fn: HookFn) -> None:
        if name not in self._known:
            raise UserError(f"unknown hook name '{name}' (e.g. '0.attn.q', '1.mlp.post_act', 'final_resid')")
        self.fns.setdefault(name, []).append(fn)

    def remove(self, name: str, fn: HookFn) -> None:
        fns = self.fns.get(name, [])
        if fn in fns:
            fns.remove(fn)
        if not fns:
            self.fns.pop(name, None)


class Hooked:
    """The hook methods of a model whose activations pass through `self.hooks` (a HookPoints), as
    TransformerLens names them."""

    @property
    def hook_names(self) -> list[str]:
        return self.hooks.names

    @contextmanager
    def hooked(self, hooks):
        """Register `{name: fn}` or `[(name, fn), ...]` for the duration of a `with` block."""
        pairs = list(hooks.items()) if isinstance(hooks, dict) else list(hooks)
        added = []
        try:
            for name, fn in pairs:
                self.hooks.add(name, fn)
                added.append((name, fn))
            yield self
        finally:
            for name, fn in added:
                self.hooks.remove(name, fn)

    def run_with_hooks(self, idx: torch.Tensor, fwd_hooks, last: torch.Tensor | None = None) -> torch.Tensor:
        with self.hooked(fwd_hooks):
            return self(idx, last=last)

    def run_with_cache(self, idx: torch.Tensor, names=None, detach: bool = True):
        """Forward pass that also returns `{hook name: activation}` for `names` (default: all)."""
        cache: dict[str, torch.Tensor] = {}

        def record(x, name):
            cache[name] = x.detach() if detach else x

        with self.hooked([(n, record) for n in (names if names is not None else self.hook_names)]):
            logits = self(idx)
        return logits, cache
