"""One self-contained HTML page (no network: styles, script and data inlined) for 1+ circuits."""
from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from ..atomic import atomic_write_text

VIEWS = ("flow", "grid", "graph", "numbers")

_SECTIONS = {
    "flow": """<section id="view-flow"><h2>{n}. Information flow over token positions</h2>
<p class="note">Columns are tokens, rows the input and each layer. A blue line is information that moves
from one position to a later one through the circuit's attention heads (attention weight x the size of the
kept value channels' write); only links that reach the chosen position are drawn. Grey: the residual
stream.</p>
<div class="controls"><label>prompt <select id="prompt-picker"></select></label>
<label>position <select id="position-picker"></select></label>
<label>weakest link drawn <select id="strength-picker"><option value="0.02">2%</option>
<option value="0.05" selected>5%</option><option value="0.1">10%</option><option value="0.2">20%</option></select>
</label></div>
<div class="panels" id="flow-panels"></div></section>""",
    "grid": """<section id="view-grid"><h2>{n}. Component grid</h2>
<p class="note">Layers x components (attention heads, MLP). A cell is lit when the circuit keeps any of its
nodes; lines join components through the residual channels they write and read, width by the circuit's
weights.</p>
<div class="panels" id="grid-panels"></div></section>""",
    "graph": """<section id="view-graph"><h2>{n}. Node graph</h2>
<div class="controls"><label>model <select id="graph-model"></select></label></div>
<div id="graph-wrap"><div id="graph" class="panel"></div><aside id="node-panel"></aside></div></section>""",
    "numbers": """<section id="view-numbers"><h2>{n}. Numbers</h2>
<div class="panels" id="numbers-panels"></div></section>""",
}

_TITLES = {"flow": "Flow", "grid": "Grid", "graph": "Graph", "numbers": "Numbers"}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(data) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' survive, so no '</script>' either."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(models: list[dict], title: str, views=VIEWS) -> str:
    views = [v for v in VIEWS if v in views]
    nav = " ".join(f'<a href="#view-{v}">{_TITLES[v]}</a>' for v in views)
    body = "\n".join(_SECTIONS[v].replace("{n}", str(i)) for i, v in enumerate(views, start=1))  # numbered as shown
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{html.escape(title)}</title>
<style>{_asset("report.css")}</style></head>
<body><header><h1>{html.escape(title)}</h1><nav>{nav}</nav></header>
{body}
<script type="application/json" id="report-data">{_script_json({"models": models})}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""


def write_report(models: list[dict], out: str | Path, title: str, views=VIEWS) -> Path:
    out = Path(out)
    atomic_write_text(out, render(models, title, views))
    return out
