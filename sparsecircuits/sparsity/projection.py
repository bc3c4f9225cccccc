"""The exact top-k weight projection of weight-sparse training (METHOD 3).

After every optimiser step each sparsified tensor keeps its k = round(density * numel) entries of
largest |w|; every other entry becomes exactly 0. Linear weights (width^2 entries) use `density`;
embeddings, unembedding and biases (width entries) use sqrt(density) unless told otherwise, so that
all of them keep a fixed number of nonzeros as width grows (METHOD 3). In linear weights each
output row (an MLP neuron, an attention channel, a residual channel) first gets its top-j entries
reserved (j = 4 by default); where k cannot give every row j entries the rule gives way and the
matrix takes a plain top-k.

Speed: a full selection (`topk`, `kthvalue`, sort) per matrix per step costs several times the rest
of a small model's step. Weights move little between steps, so each group of same-shaped tensors
(the same matrix in every layer, stacked) remembers last step's thresholds and finds the new exact
ones among the few entries in a narrow band around them, using only elementwise passes and a
selection over that band. Whenever the band misses, or ties make the count inexact, the group falls
back to a full `topk` for that step. The result is always the exact top-k set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import UserError


_BIG = 1e30
SMALL = 4096  # tensors below this many entries are cheapest to select in full


def sparsified_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Weights, embeddings, unembedding and biases; never norm scales, sink logits or the bigram table."""
    return [(n, p) for n, p in model.named_parameters()
            if not (n == "bigram" or n.endswith("sink_logit") or ".ln_" in f".{n}")]


def is_row_structured(name: str) -> bool:
    """Linear weights, whose rows are neurons / channels that get the min-per-neuron reserve."""
    return name.endswith(".weight") and ("c_attn" in name or "c_fc" in name or "c_proj" in name)


def check_density(density: float) -> float:
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise UserError(f"density must be in (0, 1], got {density}")
    return float(density)


def kept_count(numel: int, density: float) -> int:
    return max(1, min(numel, int(round(density * numel))))


@dataclass
class _Group:
    """Same-shaped tensors projected together, with the thresholds remembered from the last step."""
    names: list[str]
    params: list[nn.Parameter]
    rows: bool                                  # a linear weight: min-per-neuron reserve on dim 0
    thr: torch.Tensor | None = None             # (G,) global threshold over non-reserved entries
    row_thr: torch.Tensor | None = None         # (G, R) midpoint of each row's j-th and (j+1)-th |w|
    band: float = 0.05                          # relative half-width of the search band


def _ge(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(x >= t) as 0/1 floats: on CPU, float masks are several times faster than bool ones."""
    return (x >= t).to(x.dtype)


def _kth_largest_near(x: torch.Tensor, k: int, guess: torch.Tensor, band: float) -> torch.Tensor | None:
    """Exact k-th largest of each row of `x` (G, n), searched in a band around `guess`; None if missed."""
    lo, hi = (guess * (1 - band)).unsqueeze(1), (guess * (1 + band)).unsqueeze(1)
    above = (x > hi).sum(1, dtype=torch.int32)
    inside = (x >= lo) & (x <= hi)
    count = inside.sum(1, dtype=torch.int32)
    need = k - above
    if not bool(((need >= 1) & (need <= count)).all()):
        return None
    values = x[inside].split(count.tolist())
    return torch.stack([v.topk(int(n)).values[-1] for v, n in zip(values, need.tolist())])


def _row_jth_largest(a: torch.Tensor, j: int, guess: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `a` (G, R, C), a >= 0: the j-th largest entry, and a separator for next step's guess.

    A row whose guess still has exactly j entries above it needs only a masked min and max; the
    other rows get a `topk`.
    """
    if guess is None:
        top = a.topk(j + 1, dim=-1).values
        return top[..., j - 1], (top[..., j - 1] + top[..., j]) / 2
    over = _ge(a, guess.unsqueeze(-1))
    vj = (a + (1 - over) * _BIG).amin(-1)
    vnext = (a * (1 - over)).amax(-1)
    missed = (over.sum(-1) != j).nonzero(as_tuple=True)
    if missed[0].numel():
        top = a[missed].topk(j + 1, dim=-1).values
        vj[missed], vnext[missed] = top[:, j - 1], top[:, j]
    return vj, (vj + vnext) / 2


class TopKProjector:
    """Projects a fixed list of parameters onto the top-k set at a given density, in place."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], min_per_neuron: int = 4,
                 vector_density: str = "sqrt"):
        if vector_density not in ("sqrt", "same"):
            raise UserError(f"vector_density must be sqrt or same, got {vector_density!r}")
        self.min_per_neuron, self.vector_density = min_per_neuron, vector_density
        groups: dict[tuple, _Group] = {}
        for name, p in named_params:
            key = (tuple(p.shape), is_row_structured(name), p.dtype, p.device)
            g = groups.setdefault(key, _Group([], [], is_row_structured(name)))
            g.names.append(name)
            g.params.append(p)
        self.groups = list(groups.values())
        self.numel = sum(p.numel() for g in self.groups for p in g.params)

    @torch.no_grad()
    def project(self, density: float) -> int:
        """Zero all but the top-k entries of every tensor; return the number of kept entries."""
        kept = 0
        for g in self.groups:
            shape, n, G = g.params[0].shape, g.params[0].numel(), len(g.params)
            k = kept_count(n, density if g.rows or self.vector_density == "same" else density ** 0.5)
            kept += k * G
            if k == n:
                g.thr = g.row_thr = None
                continue
            w = torch.stack(g.params) if G > 1 else g.params[0].unsqueeze(0)
            mask = self._mask(g, w.abs().view(G, shape[0] if g.rows else 1, -1), k)
            torch._foreach_mul_(g.params, list(mask.view(G, *shape).unbind(0)))
        return kept

    def _mask(self, g: _Group, a: torch.Tensor, k: int) -> torch.Tensor:
        """0/1 mask (G, R, C) of the exact top-k entries of each tensor, with the per-row reserve."""
        G, R, C = a.shape
        j = min(self.min_per_neuron, C - 1) if g.rows and self.min_per_neuron * R <= k else 0
        reserved = None
        free = a
        if j > 0:
            row_jth, g.row_thr = _row_jth_largest(a, j, g.row_thr)
            reserved = _ge(a, row_jth.unsqueeze(-1))
            free = a * (1 - reserved) - reserved  # reserved entries (-1) never compete
        mask = reserved
        k_free = k - j * R
        if k_free > 0:
            flat = free.view(G, -1)
            near = g.thr is not None and flat.shape[1] >= SMALL
            thr = _kth_largest_near(flat, k_free, g.thr, g.band) if near else None
            if thr is None:
                g.band = min(g.band * 2, 0.5) if near else g.band
                thr = flat.topk(k_free, dim=1, sorted=False).values.amin(1)
            else:
                g.band = max(g.band * 0.9, 1e-3)
            g.thr = thr
            chosen = _ge(free, thr.view(G, 1, 1))
            mask = chosen if mask is None else mask + chosen
        if bool((mask.view(G, -1).sum(1) == k).all()):
            return mask
        return self._exact_mask(a, k, j)  # ties at a threshold: settle them by index

    @staticmethod
    def _exact_mask(a: torch.Tensor, k: int, j: int) -> torch.Tensor:
        """Reference projection by full selection; used when the fast path cannot be exact."""
        G, score = a.shape[0], a
        if j > 0:
            reserve = a.topk(j, dim=-1, sorted=False).indices
            score = a.scatter(-1, reserve, float("inf"))
        keep = score.reshape(G, -1).topk(k, dim=1, sorted=False).indices
        return torch.zeros(G, a[0].numel(), dtype=a.dtype).scatter_(1, keep, 1.0).view_as(a)

    @torch.no_grad()
    def nonzero(self) -> int:
        return int(sum(int((p != 0).sum()) for g in self.groups for p in g.params))
