"""Static figures (matplotlib) of the viewer's data: flow, grid or graph, one panel per model."""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path, refuse_dirs
from ..errors import UserError

KINDS = ("flow", "grid", "graph")


def _shown(tok: str) -> str:
    return tok.replace("\n", "\u21b5").replace("\t", "\u21e5").replace("$", r"\$")


def _reach(layers: list, n: int, pos: int) -> list[list[bool]]:
    L = len(layers)
    reach = [[False] * n for _ in range(L + 1)]
    reach[L][pos] = True
    for r in range(L - 1, -1, -1):
        reach[r] = list(reach[r + 1])
        for i, j, _ in layers[r]:
            if reach[r + 1][i]:
                reach[r][j] = True
    return reach


def draw_flow(ax, m: dict, prompt: int = 0, pos: int | None = None, min_strength: float = 0.05) -> None:
    """Seeds 000/001: tokens x (input, layers), links that reach the prediction at `pos`."""
    p = m["prompts"][prompt]
    layers = [[link for link in links if link[2] >= min_strength] for links in m["flow"][prompt]]
    n, L = len(p["tokens"]), len(layers)
    pos = n - 1 if pos is None else pos
    reach = _reach(layers, n, pos)
    for i in range(n):
        ax.plot([i, i], [0, L], color="#cccccc", lw=0.8, zorder=1)
    for r, links in enumerate(layers):
        for i, j, w in links:
            if reach[r + 1][i]:
                ax.plot([j, i], [r, r + 1], color="#2563eb", lw=0.4 + 3 * w, alpha=0.25 + 0.75 * w, zorder=2)
    for r in range(L + 1):
        ax.scatter(range(n), [r] * n, s=14, zorder=3, c=["#1e3a8a" if reach[r][i] else "#dddddd" for i in range(n)])
    ax.set_xticks(range(n), [_shown(t) for t in p["tokens"]], fontsize=8, family="monospace")
    ax.set_yticks(range(L + 1), ["input"] + [f"layer {r}" for r in range(L)], fontsize=8)
    nxt = p["tokens"][pos + 1] if pos + 1 < n else p["correct"]
    ax.annotate(f"\u2192 {_shown(nxt)}", (pos, L + 0.35), ha="center", fontsize=9, family="monospace")
    ax.set_ylim(-0.5, L + 0.8)
    ax.set_title(_shown(f"{m['label']}: {m['task']}"), fontsize=10)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)


def draw_grid(ax, m: dict) -> None:
    """Seed 002: layers (down) x components, lit cells and the links between them."""
    g = m["grid"]
    C = len(g["columns"])
    for l1, c1, l2, c2, w in g["links"]:
        ax.plot([c1, c2], [l1, l2], color="#555555", lw=0.3 + 2.5 * w, alpha=0.3 + 0.7 * w, zorder=1)
    lit = {(l, c) for l, c, _ in g["cells"]}
    cells = [(l, c) for l in range(g["n_layer"]) for c in range(C)]
    ax.scatter([c for _, c in cells], [l for l, _ in cells], s=60, zorder=2,
               c=["white" if cell in lit else "#e5e7eb" for cell in cells],
               edgecolors=["black" if cell in lit else "none" for cell in cells])
    ax.set_xticks(range(C), g["columns"], fontsize=7)
    ax.set_yticks(range(g["n_layer"]), [f"layer {i}" for i in range(g["n_layer"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(_shown(f"{m['label']}: {len(g['cells'])} components lit"), fontsize=10)
    ax.set_frame_on(False)


def draw_graph(ax, m: dict) -> None:
    """The kept nodes by layer and location; edges coloured by sign, width by |w|."""
    if "nodes" not in m:
        raise UserError("this report data has no node details (computed without them)")
    rows = {}
    for k, nd in enumerate(m["nodes"]):
        rows.setdefault((nd["layer"], nd["location"]), []).append(k)
    order = [(l, loc) for l in range(m["config"]["n_layer"]) for loc in m["locations"]]
    xy = {}
    for r, key in enumerate(order):
        ks = rows.get(key, [])
        for i, k in enumerate(ks):
            xy[k] = ((i + 0.5) / len(ks), r)
    top = max((abs(w) for _, _, w in m["edges"]), default=1.0) or 1.0
    for a, b, w in m["edges"]:
        ax.plot([xy[a][0], xy[b][0]], [xy[a][1], xy[b][1]], color="#2563eb" if w > 0 else "#dc2626",
                lw=0.2 + 2 * abs(w) / top, alpha=0.5, zorder=1)
    ax.scatter([p[0] for p in xy.values()], [p[1] for p in xy.values()], s=8, c="#111111", zorder=2)
    ax.set_yticks(range(len(order)), [f"{l}.{loc}" for l, loc in order], fontsize=6)
    ax.set_xticks([])
    ax.invert_yaxis()
    ax.set_title(_shown(f"{m['label']}: {m['nodes_total']} nodes, {m['edges_total']} edges"), fontsize=10)
    ax.set_frame_on(False)


def write_figure(models: list[dict], kind: str, out: str | Path, prompt: int = 0, pos: int | None = None) -> Path:
    """One figure with a panel per model; the format follows `out`'s suffix (.png, .svg, .pdf)."""
    check_figure_args(kind, out)
    from matplotlib.figure import Figure  # here, so that `import sparsecircuits` does not load matplotlib

    out = Path(out)
    width = 7.0 if kind == "graph" else 5.0
    if kind == "flow":
        width = max(6.0, 0.45 * len(models[0]["prompts"][prompt]["tokens"]) + 1.5)
    fig = Figure(figsize=(width * len(models), 4.5 if kind != "graph" else 9))  # no pyplot: no global state
    axes = fig.subplots(1, len(models), squeeze=False)
    for ax, m in zip(axes[0], models):
        if kind == "flow":
            draw_flow(ax, m, prompt, pos)
        elif kind == "grid":
            draw_grid(ax, m)
        else:
            draw_graph(ax, m)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".").lower(), dpi=150)
    return out


def check_figure_args(kind: str, out: str | Path) -> None:
    if kind not in KINDS:
        raise UserError(f"figure kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if Path(out).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"figure file must end in .png, .svg or .pdf, got {Path(out).name!r}")
    refuse_dirs(out)
