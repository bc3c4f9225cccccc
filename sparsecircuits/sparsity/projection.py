"""The exact top-k weight projection of weight-sparse training (METHOD 3).

After every optimiser step each sparsified tensor keeps its k = round(density * numel) entries of
largest |w|; every other entry becomes exactly 0. Linear weights (width^2 entries) use `density`;
embeddings, unembedding and biases (width entries) use sqrt(density) unless told otherwise, so that
all of them keep a fixed number of nonzeros as width grows (METHOD 3). In linear weights each
output row (an MLP neuron, an attention channel, a residual channel) first gets its top-j entries
reserved (j = 4 by default); where k cannot give every row j entries the rule gives way and the
matrix takes a plain top-k.

Speed: a full selection (`topk`, `kthvalue`) over every matrix every step costs more than all the
elementwise work of the step together. Weights move little between steps, so each tensor remembers
its last threshold, gathers the entries above a slightly lower bound (a few more than k), and
selects the exact k-th largest among those, counting from whichever end is shorter. If fewer than
k entries lie above the bound it widens the band and selects over the whole tensor that step; if
ties make the count inexact it settles them by index. The result is always the exact top-k set.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError

SMALL = 4096  # below this many entries a full selection is as cheap as the band search


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


def kth_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry of a flat tensor, selecting from whichever end is shorter."""
    rest = x.numel() - k + 1
    if rest < k:
        return x.topk(rest, largest=False, sorted=False).values.max()
    return x.topk(k, sorted=False).values.min()


class _Slot:
    """One sparsified tensor and the threshold it kept last step."""

    def __init__(self, name: str, param: nn.Parameter):
        self.name, self.param, self.rows = name, param, is_row_structured(name)
        self.thr: float | None = None
        self.band = 0.05  # relative distance of the candidate bound below the last threshold

    def threshold(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Exact k-th largest entry of the flat tensor `x`, searched above last step's threshold."""
        if self.thr is not None and self.thr > 0 and x.numel() >= SMALL:
            candidates = x[x >= self.thr * (1 - self.band)]
            if candidates.numel() >= k:
                if candidates.numel() > 2 * k:
                    self.band *= 0.7
                return kth_largest(candidates, k)
            self.band = min(2 * self.band, 0.5)
        return kth_largest(x, k)

    @torch.no_grad()
    def project(self, k: int, j: int) -> None:
        p = self.param
        if k >= p.numel():
            self.thr = None
            return
        a = p.abs()
        if j == 0:
            thr = self.threshold(a.view(-1), k)
            self.thr = float(thr)
            below = float(torch.nextafter(thr, torch.zeros_like(thr)))  # hardshrink keeps |w| > below
            p.copy_(F.hardshrink(p, below) if self.thr > 0 else p)
            if self.thr == 0 or int(torch.count_nonzero(p)) == k:
                return
            keep = self.exact_mask(a, k, 0)  # ties at the threshold: settle them by index
        else:
            row_jth = a.topk(j, dim=1, sorted=False).values.amin(1, keepdim=True)
            reserved = (a >= row_jth).to(a.dtype)
            free = a * (1 - reserved) - reserved  # reserved entries (-1) never compete
            k_free = k - j * a.shape[0]
            keep = reserved
            if k_free > 0:
                thr = self.threshold(free.view(-1), k_free)
                self.thr = float(thr)
                keep = keep + (free >= thr).to(a.dtype)
            if int(keep.sum()) != k:
                keep = self.exact_mask(a, k, j)
        p.mul_(keep)

    @staticmethod
    def exact_mask(a: torch.Tensor, k: int, j: int) -> torch.Tensor:
        """The reference projection by full selection over indices (exact even with ties)."""
        score = a.scatter(1, a.topk(j, dim=1, sorted=False).indices, float("inf")) if j else a
        keep = torch.zeros(a.numel(), dtype=a.dtype, device=a.device)
        keep[score.view(-1).topk(k, sorted=False).indices] = 1
        return keep.view_as(a)


class TopKProjector:
    """Projects a fixed list of parameters onto their top-k sets at a given density, in place."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], min_per_neuron: int = 4,
                 vector_density: str = "sqrt"):
        if vector_density not in ("sqrt", "same"):
            raise UserError(f"vector_density must be sqrt or same, got {vector_density!r}")
        self.min_per_neuron, self.vector_density = min_per_neuron, vector_density
        self.slots = [_Slot(name, p) for name, p in named_params]

    def budget(self, slot: _Slot, density: float) -> tuple[int, int]:
        """(k, j): entries kept, and entries reserved per row (0 where the reserve cannot fit)."""
        p = slot.param
        k = kept_count(p.numel(), density if slot.rows or self.vector_density == "same" else density ** 0.5)
        fits = slot.rows and self.min_per_neuron * p.shape[0] <= k
        return k, min(self.min_per_neuron, p.shape[1] - 1) if fits else 0

    @torch.no_grad()
    def project(self, density: float) -> int:
        """Zero all but the top-k entries of every tensor; return the number of kept entries."""
        kept = 0
        for slot in self.slots:
            k, j = self.budget(slot, density)
            slot.project(k, j)
            kept += k
        return kept
