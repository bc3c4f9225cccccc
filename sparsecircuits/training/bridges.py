"""Bridges between a dense model and a weight-sparse one (METHOD 4), and steering through them.

After every sublayer (attention, MLP) of both models, an encoder maps the dense residual stream to
the sparse one (linear + AbsTopK) and a decoder maps it back (linear). They train jointly with the
sparse model: NMSE both ways at every site, plus, at one site per step (in turn), the KL from the
dense model's output to the output when a bridged activation is spliced into the other model and
the rest of that model runs (dense -> sparse, and sparse -> dense). Steering edits one sparse channel
and adds the decoded edit to the dense model's residual stream.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config_io import load_json
from ..errors import UserError
from ..model.formats import load_state
from ..model.io import load_model
from ..model.transformer import abs_topk
from .config import RUN_FILE, RunConfig

BRIDGES_FILE = "bridges.safetensors"


def bridge_sites(n_layer: int) -> list[str]:
    """Hook names of the residual stream after each sublayer, in forward order."""
    sites = []
    for layer in range(n_layer):
        sites += [f"{layer}.resid_mid", f"{layer + 1}.resid_in" if layer + 1 < n_layer else "final_resid"]
    return sites


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error over the target's own energy: 1 means as bad as predicting zero. The energy is a
    constant scale (detached), so no model can lower the loss by inflating its own activations."""
    return (pred - target).pow(2).sum() / target.detach().pow(2).sum().clamp_min(1e-8)


class Bridges(nn.Module):
    """One encoder (dense -> sparse, linear + AbsTopK) and decoder (sparse -> dense) per site."""

    def __init__(self, dense_cfg, sparse_cfg, afrac: float = 0.25):
        super().__init__()
        if dense_cfg.n_layer != sparse_cfg.n_layer:
            raise UserError(f"bridges join models of equal depth: dense has {dense_cfg.n_layer} layers, "
                            f"sparse {sparse_cfg.n_layer}")
        self.sites = bridge_sites(sparse_cfg.n_layer)
        self.k = max(1, round(afrac * sparse_cfg.d_model))
        self.enc = nn.ModuleList(nn.Linear(dense_cfg.d_model, sparse_cfg.d_model) for _ in self.sites)
        self.dec = nn.ModuleList(nn.Linear(sparse_cfg.d_model, dense_cfg.d_model) for _ in self.sites)
        if dense_cfg.d_model == sparse_cfg.d_model:  # a sparse twin starts as a copy: start at the identity
            with torch.no_grad():
                for layer in [*self.enc, *self.dec]:
                    layer.weight.copy_(torch.eye(sparse_cfg.d_model))
                    layer.bias.zero_()

    def encode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return abs_topk(self.enc[i](h), self.k)

    def decode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.dec[i](h)


def _kl(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(target_logits.float(), -1), log_target=True,
                    reduction="batchmean")


def bridge_loss(bridges: Bridges, sparse, dense, x: torch.Tensor, scored: torch.Tensor, step: int) -> tuple:
    """(sparse logits, bridge loss): NMSE both ways at every site + the two spliced KLs at one site."""
    logits, hs = sparse.run_with_cache(x, bridges.sites, detach=False)
    with torch.no_grad():
        dense_logits, hd = dense.run_with_cache(x, bridges.sites)
    loss = sum(nmse(bridges.encode(i, hd[s]), hs[s]) + nmse(bridges.decode(i, hs[s]), hd[s])
               for i, s in enumerate(bridges.sites)) / len(bridges.sites)
    i = step % len(bridges.sites)
    site = bridges.sites[i]
    to_sparse = sparse.run_with_hooks(x, [(site, lambda h, _: bridges.encode(i, hd[site]).to(h.dtype))])
    to_dense = dense.run_with_hooks(x, [(site, lambda h, _: bridges.decode(i, hs[site]).to(h.dtype))])
    target = dense_logits[scored]
    loss = loss + _kl(target, to_sparse[scored]) + _kl(target, to_dense[scored])
    return logits, loss


@torch.no_grad()
def steer(sparse, dense, bridges: Bridges, tokens: torch.Tensor, site: str, channel: int, value: float,
          strengths=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """Set sparse channel `site[channel]` to `value` at every position of `tokens` (1, T); the edit
    reaches the dense model as `strength` x decoder(edit), added at the same site. Returns the last
    position's log-probabilities: sparse before/after, and dense at each strength."""
    if site not in bridges.sites:
        raise UserError(f"no bridge at {site!r}; bridged sites: {', '.join(bridges.sites)}")
    i = bridges.sites.index(site)
    width = bridges.enc[i].out_features
    if not 0 <= channel < width:
        raise UserError(f"channel {channel} is outside 0..{width - 1}")
    _, cache = sparse.run_with_cache(tokens, [site])
    h = cache[site]
    edit = torch.zeros_like(h)
    edit[..., channel] = value - h[..., channel]

    def last(logits):
        return F.log_softmax(logits[0, -1].float(), -1)

    out = {"sparse": last(sparse(tokens)), "sparse_edited": last(sparse.run_with_hooks(tokens, [(site, lambda x, _: x + edit)]))}
    delta = bridges.decode(i, h + edit) - bridges.decode(i, h)  # the decoder is linear: the edit alone
    out["dense"] = {s: last(dense.run_with_hooks(tokens, [(site, lambda x, _, s=s: x + s * delta.to(x.dtype))]))
                    for s in strengths}
    return out


def load_bridged(sparse_dir) -> tuple:
    """(sparse model, dense model, bridges) of a model trained with `--bridge-to`."""

    sparse_dir = Path(sparse_dir)
    sparse = load_model(sparse_dir)
    run = load_json(RunConfig, sparse_dir / RUN_FILE) if (sparse_dir / RUN_FILE).exists() else None
    if run is None or not run.bridge_to or not (sparse_dir / BRIDGES_FILE).exists():
        raise UserError(f"{sparse_dir} was not trained with bridges (train it with --bridge-to DENSE_MODEL)")
    dense = load_model(run.bridge_to)
    bridges = Bridges(dense.cfg, sparse.cfg, run.train.bridge_afrac)
    try:
        bridges.load_state_dict(load_state(sparse_dir / BRIDGES_FILE))
    except RuntimeError as e:
        raise UserError(f"{sparse_dir / BRIDGES_FILE} does not match the models ({str(e).splitlines()[0]})") from None
    return sparse, dense, bridges.eval()


def site_of(name: str, n_layer: int) -> tuple[str, int]:
    """A sparse channel as (bridge site, channel): `1.resid_mid[5]`, or a residual write node such as
    `1.attn.resid_delta[5]` / `1.mlp.resid_delta[5]` (the site just after that sublayer)."""
    m = re.fullmatch(r"(.+)\[(\d{1,9})\]", name.strip())
    if not m:
        raise UserError(f"channel {name!r} should look like '1.resid_mid[5]' or '1.mlp.resid_delta[5]'")
    where, channel = m.group(1), int(m.group(2))
    layer_part, _, rest = where.partition(".")
    if rest in ("attn.resid_delta", "mlp.resid_delta") and layer_part.isdigit() and len(layer_part) < 10:
        layer = int(layer_part)
        if layer >= n_layer:
            raise UserError(f"channel {name!r}: the model has layers 0..{n_layer - 1}")
        sites = bridge_sites(n_layer)
        return sites[2 * layer + (rest == "mlp.resid_delta")], channel
    return where, channel
