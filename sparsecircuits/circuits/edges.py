"""Edges of a circuit (METHOD 2): nonzero weight entries joining two kept nodes.

Within a layer: `attn.act_in[i] -> attn.q/k/v[j]` through c_attn, `attn.v[j] -> attn.resid_delta[c]`
through attention's c_proj (values are mixed over positions, then projected), `mlp.act_in[i] ->
mlp.post_act[j]` through c_fc and `mlp.post_act[j] -> mlp.resid_delta[c]` through the MLP's c_proj.
Across the residual stream: a write `L.*.resid_delta[c]` reaches every later read `M.*.act_in[c]`
of the same channel, weighted by the reading norm's scale for that channel (an edge where it is
nonzero).

`edge_blocks` lists every place an edge can be; `circuit_edges` reads a circuit's edges from it and
`EdgeCounter` counts them for gates between 0 and 1, so that pruning can weigh a node by its edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .nodes import node_name

Edge = tuple[str, str, float]


@dataclass
class WeightBlock:
    """The weights joining the nodes of two sites: where an edge can be."""

    source: str             # site of the source nodes
    target: str             # site of the target nodes
    weight: torch.Tensor    # (target width, source width), or (width,) for a residual link (channel c -> c)


@torch.no_grad()
def edge_blocks(model) -> list[WeightBlock]:
    cfg, out = model.cfg, []
    A = cfg.d_attn
    for L, block in enumerate(model.blocks):
        w_qkv = block.attn.c_attn.weight
        for i, part in enumerate(("q", "k", "v")):
            out.append(WeightBlock(f"{L}.attn.act_in", f"{L}.attn.{part}", w_qkv[i * A:(i + 1) * A]))
        out.append(WeightBlock(f"{L}.attn.v", f"{L}.attn.resid_delta", block.attn.c_proj.weight))
        out.append(WeightBlock(f"{L}.mlp.act_in", f"{L}.mlp.post_act", block.mlp.c_fc.weight))
        out.append(WeightBlock(f"{L}.mlp.post_act", f"{L}.mlp.resid_delta", block.mlp.c_proj.weight))
    # residual stream: writes in forward order reach every later read of the same channel
    order = [(L, part) for L in range(cfg.n_layer) for part in ("attn", "mlp")]
    for w_i, (wl, wp) in enumerate(order):
        for rl, rp in order[w_i + 1:]:
            norm = getattr(model.blocks[rl], "ln_1" if rp == "attn" else "ln_2")
            scale = getattr(norm, "weight", None)
            out.append(WeightBlock(f"{wl}.{wp}.resid_delta", f"{rl}.{rp}.act_in",
                                    torch.ones(cfg.d_model) if scale is None else scale.detach()))
    return out


@torch.no_grad()
def circuit_edges(model, nodes: dict[str, list[int]]) -> list[Edge]:
    out = []
    for b in edge_blocks(model):
        src, dst = nodes.get(b.source, []), nodes.get(b.target, [])
        if not src or not dst:
            continue
        if b.weight.dim() == 1:
            for c in sorted(set(src) & set(dst)):
                if b.weight[c] != 0:
                    out.append((node_name(b.source, c), node_name(b.target, c), float(b.weight[c])))
            continue
        sub = b.weight[dst][:, src]
        rows, cols = torch.nonzero(sub, as_tuple=True)
        out += [(node_name(b.source, src[c]), node_name(b.target, dst[r]), float(sub[r, c]))
                for r, c in zip(rows.tolist(), cols.tolist())]
    return out


class EdgeCounter:
    """The number of edges among gated nodes, `sum over blocks of g_target . [W != 0] . g_source`:
    exactly the circuit's edge count for 0/1 gates, and differentiable in between."""

    def __init__(self, model, device="cpu"):
        self.blocks = [(b.source, b.target, (b.weight != 0).float().to(device)) for b in edge_blocks(model)]

    def __call__(self, gates: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0
        for src, dst, pattern in self.blocks:
            if pattern.dim() == 1:
                total = total + (gates[src] * gates[dst] * pattern).sum()
            else:
                total = total + gates[dst] @ (pattern @ gates[src])
        return total
