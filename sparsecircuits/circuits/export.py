"""A circuit as a graph other tools read: GraphML, or node-link JSON ("json-graph").

Nodes carry layer, location, index (channel) and ablation effect; edges their weight. The JSON graph
uses the node/link layout of public circuit viewers (circuit-tracer / Neuronpedia graph files:
`metadata`, `nodes` with `node_id`, `layer`, `feature`, `ctx_idx`, `feature_type`, and `links` with
`source`, `target`, `weight`) and is also networkx's node-link format (`id`, `directed`).
Our nodes are channels, not (channel, position) pairs, so `ctx_idx` is the prediction's position
in the task's first held-out prompt.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError
from .circuit import Circuit
from .nodes import parse_node

FORMATS = ("graphml", "json-graph")


def graph_nodes(circuit: Circuit, effects: dict[str, float]) -> list[dict]:
    out = []
    for name in circuit.node_names:
        layer, loc, ch = parse_node(name)
        out.append({"id": name, "layer": layer, "location": loc, "index": ch, "ablation_effect": effects.get(name)})
    return out


def to_json_graph(circuit: Circuit, effects: dict[str, float], prompt_tokens: list[str]) -> dict:
    last = len(prompt_tokens) - 1
    nodes = [{"node_id": n["id"], "jsNodeId": n["id"], "id": n["id"], "layer": n["layer"], "feature": n["index"],
              "ctx_idx": last, "feature_type": n["location"], "location": n["location"], "index": n["index"],
              "ablation_effect": n["ablation_effect"], "influence": n["ablation_effect"], "clerp": n["id"]}
             for n in graph_nodes(circuit, effects)]
    links = [{"source": a, "target": b, "weight": w} for a, b, w in circuit.edges]
    meta = {"slug": f"{circuit.task}-circuit", "scan": "sparsecircuits", "prompt_tokens": prompt_tokens,
            "prompt": "".join(prompt_tokens), "task": circuit.task, "target_loss": circuit.target,
            "circuit_loss": circuit.loss, "full_model_loss": circuit.full_loss, "n_nodes": circuit.n_nodes,
            "n_edges": circuit.n_edges, "model": circuit.settings.get("model"),
            "model_hash": circuit.settings.get("model_hash"), "ablation": circuit.settings.get("ablation")}
    return {"directed": True, "multigraph": False, "graph": {}, "metadata": meta, "nodes": nodes, "links": links}


def to_graphml(circuit: Circuit, effects: dict[str, float]) -> str:
    ns = "http://graphml.graphdrawing.org/xmlns"
    root = ET.Element("graphml", xmlns=ns)
    keys = [("layer", "node", "int"), ("location", "node", "string"), ("index", "node", "int"),
            ("ablation_effect", "node", "double"), ("weight", "edge", "double")]
    for name, kind, typ in keys:
        ET.SubElement(root, "key", id=name, attrib={"for": kind, "attr.name": name, "attr.type": typ})
    graph = ET.SubElement(root, "graph", id=circuit.task, edgedefault="directed")
    for n in graph_nodes(circuit, effects):
        node = ET.SubElement(graph, "node", id=n["id"])
        for key in ("layer", "location", "index", "ablation_effect"):
            if n[key] is not None:
                ET.SubElement(node, "data", key=key).text = str(n[key])
    for i, (a, b, w) in enumerate(circuit.edges):
        edge = ET.SubElement(graph, "edge", id=f"e{i}", source=a, target=b)
        ET.SubElement(edge, "data", key="weight").text = repr(float(w))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_export(circuit: Circuit, effects: dict[str, float], prompt_tokens: list[str], fmt: str,
                 out: str | Path) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    text = to_graphml(circuit, effects) if fmt == "graphml" else json.dumps(
        to_json_graph(circuit, effects, prompt_tokens), indent=1) + "\n"
    atomic_write_text(out, text)
    return out
