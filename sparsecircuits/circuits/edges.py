"""Edges of a circuit (METHOD 2): nonzero weight entries joining two kept nodes.

Within a layer: `attn.act_in[i] -> attn.q/k/v[j]` through c_attn, `attn.v[j] -> attn.resid_delta[c]`
through attention's c_proj (values are mixed over positions, then projected), `mlp.act_in[i] ->
mlp.post_act[j]` through c_fc and `mlp.post_act[j] -> mlp.resid_delta[c]` through the MLP's c_proj.
Across the residual stream: a write `L.*.resid_delta[c]` reaches every later read `M.*.act_in[c]`
of the same channel, weighted by the reading norm's scale for that channel (an edge where it is
nonzero).
"""
from __future__ import annotations

import torch

Edge = tuple[str, str, float]


def _node(site: str, ch: int) -> str:
    return f"{site}[{ch}]"


def _matrix_edges(weight: torch.Tensor, src_site: str, src: list[int], dst_site: str, dst: list[int]) -> list[Edge]:
    """Nonzero entries weight[dst, src] between kept channels (weight is (out, in) as in nn.Linear)."""
    if not src or not dst:
        return []
    sub = weight[dst][:, src]
    rows, cols = torch.nonzero(sub, as_tuple=True)
    return [(_node(src_site, src[c]), _node(dst_site, dst[r]), float(sub[r, c]))
            for r, c in zip(rows.tolist(), cols.tolist())]


@torch.no_grad()
def circuit_edges(model, nodes: dict[str, list[int]]) -> list[Edge]:
    cfg, out = model.cfg, []

    def get(site: str) -> list[int]:
        return nodes.get(site, [])

    A = cfg.d_attn
    for L, block in enumerate(model.blocks):
        w_qkv = block.attn.c_attn.weight
        for i, part in enumerate(("q", "k", "v")):
            out += _matrix_edges(w_qkv[i * A:(i + 1) * A], f"{L}.attn.act_in", get(f"{L}.attn.act_in"),
                                 f"{L}.attn.{part}", get(f"{L}.attn.{part}"))
        out += _matrix_edges(block.attn.c_proj.weight, f"{L}.attn.v", get(f"{L}.attn.v"),
                             f"{L}.attn.resid_delta", get(f"{L}.attn.resid_delta"))
        out += _matrix_edges(block.mlp.c_fc.weight, f"{L}.mlp.act_in", get(f"{L}.mlp.act_in"),
                             f"{L}.mlp.post_act", get(f"{L}.mlp.post_act"))
        out += _matrix_edges(block.mlp.c_proj.weight, f"{L}.mlp.post_act", get(f"{L}.mlp.post_act"),
                             f"{L}.mlp.resid_delta", get(f"{L}.mlp.resid_delta"))
    # residual stream: writes in forward order reach every later read of the same channel
    order = [(L, part) for L in range(cfg.n_layer) for part in ("attn", "mlp")]
    for w_i, (wl, wp) in enumerate(order):
        writes = set(get(f"{wl}.{wp}.resid_delta"))
        for rl, rp in order[w_i + 1:]:
            norm = getattr(model.blocks[rl], "ln_1" if rp == "attn" else "ln_2")
            scale = getattr(norm, "weight", None)
            for c in sorted(writes & set(get(f"{rl}.{rp}.act_in"))):
                w = 1.0 if scale is None else float(scale[c])
                if w != 0:
                    out.append((_node(f"{wl}.{wp}.resid_delta", c), _node(f"{rl}.{rp}.act_in", c), w))
    return out
