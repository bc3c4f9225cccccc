"""The component grid (the sparse vs dense GPT-2 picture): layers x components (heads, then the MLP).

A cell is lit when the circuit keeps any of its nodes (q/k/v channels belong to their head, every
MLP node to the MLP). Lit cells are linked through the residual stream: a component writes a
residual channel (v -> attn.resid_delta, post_act -> mlp.resid_delta), a later component reads it
(act_in -> q/k/v or post_act); the link's weight is the sum over such channels of
|write| x |residual edge| x |read|, all from the circuit's own edges.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from ..circuits.nodes import parse_node

MAX_LINKS = 500


def component_of(cfg, layer: int, loc: str, ch: int) -> tuple[int, int] | None:
    """(layer, column) of a node: its head for q/k/v, column n_head for the MLP; None on the attention's
    residual side (act_in, resid_delta), which belongs to whichever heads read or write it."""
    if loc in ("attn.q", "attn.k", "attn.v"):
        return layer, ch // cfg.d_head
    return (layer, cfg.n_head) if loc.startswith("mlp.") else None


def component_grid(cfg, circuit) -> dict:
    cells: Counter = Counter()
    for name in circuit.node_names:
        comp = component_of(cfg, *parse_node(name))
        if comp is not None:
            cells[comp] += 1
    writers: dict[str, Counter] = defaultdict(Counter)   # residual write node -> {component: sum |w|}
    readers: dict[str, Counter] = defaultdict(Counter)   # residual read node -> {component: sum |w|}
    residual = []
    for a, b, w in circuit.edges:
        la, loc_a, ca = parse_node(a)
        lb, loc_b, cb = parse_node(b)
        if loc_a.endswith("resid_delta") and loc_b.endswith("act_in"):
            residual.append((a, b, abs(w)))
        elif loc_b.endswith("resid_delta"):
            writers[b][component_of(cfg, la, loc_a, ca)] += abs(w)
        elif loc_a.endswith("act_in"):
            readers[a][component_of(cfg, lb, loc_b, cb)] += abs(w)
    links: Counter = Counter()
    for a, b, w in residual:
        for src, w_src in writers[a].items():
            for dst, w_dst in readers[b].items():
                links[(src, dst)] += w_src * w * w_dst
    strongest = links.most_common(MAX_LINKS)
    top = strongest[0][1] if strongest else 1.0
    return {"n_layer": cfg.n_layer, "columns": [f"h{h}" for h in range(cfg.n_head)] + ["MLP"],
            "cells": [[layer, col, n] for (layer, col), n in sorted(cells.items())],
            "links": [[s[0], s[1], d[0], d[1], round(w / top, 4)] for (s, d), w in strongest],
            "links_total": len(links)}
