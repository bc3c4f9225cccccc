"""The node space of a model (METHOD 2): every channel at the 8 prunable locations of every layer.

A node is `{layer}.{location}[{channel}]`; `{layer}.{location}` is also the hook name where the
node's activation lives, so masks are hooks and circuits name the same things the hooks do.
"""
from __future__ import annotations

import re

from ..model.config import NODE_LOCATIONS, ModelConfig

NODE_RE = re.compile(r"^(\d+)\.([a-z_.]+)\[(\d+)\]$")


def node_sites(cfg: ModelConfig) -> dict[str, int]:
    """`{hook name: width}` for every prunable location, in forward order."""
    return {f"{layer}.{loc}": cfg.width(loc) for layer in range(cfg.n_layer) for loc in NODE_LOCATIONS}


def node_name(site: str, channel: int) -> str:
    """`3.attn.q`, 17 -> `3.attn.q[17]`: channel 17 of the hook `3.attn.q`."""
    return f"{site}[{channel}]"


def parse_node(name: str) -> tuple[int, str, int]:
    """`3.attn.q[17]` -> (3, `attn.q`, 17); a ValueError for a name that is no node."""
    m = NODE_RE.match(name)
    if not m or m.group(2) not in NODE_LOCATIONS:
        raise ValueError(f"not a node name: {name!r} (expected e.g. '3.attn.q[17]')")
    return int(m.group(1)), m.group(2), int(m.group(3))


def node_site(name: str) -> tuple[str, int]:
    """`3.attn.q[17]` -> (`3.attn.q`, 17): the hook the node lives in, and its channel."""
    layer, location, channel = parse_node(name)
    return f"{layer}.{location}", channel


def gates_to_nodes(gates) -> dict[str, list[int]]:
    """`{site: kept channels}` of 0/1 gates, sites in forward order, empty sites left out."""
    out = {site: [int(c) for c in g.nonzero().flatten().tolist()] for site, g in gates.items()}
    return {site: chans for site, chans in out.items() if chans}
