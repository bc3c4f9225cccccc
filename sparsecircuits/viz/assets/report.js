// The circuit report: draws views 1-4 from the JSON in #report-data. Every string from the data
// goes into the page through textContent or an SVG text node, never as HTML.
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const MODELS = DATA.models;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function maxAbs(values) {  // a loop, not Math.max(...values): no argument-count limit
  let m = 1e-9;
  for (const v of values) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
  return m;
}
function fmt(x, d) { return (x === null || x === undefined) ? "-" : Number(x).toFixed(d === undefined ? 4 : d); }
function shown(tok) { return tok.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/ /g, "\u00b7"); }
function panel(parent, title) {
  const p = el("div", {class: "panel"});
  p.appendChild(el("h3", {}, title));
  parent.appendChild(p);
  return p;
}

// ---- information flow over token positions ----------------------------------------------------
function drawFlow() {
  const box = document.getElementById("flow-panels");
  if (!box) return;
  box.replaceChildren();
  const pi = Number(document.getElementById("prompt-picker").value);
  const pos = Number(document.getElementById("position-picker").value);
  const min = Number(document.getElementById("strength-picker").value);
  for (const m of MODELS) {
    const p = panel(box, m.label + " \u2014 " + m.task);
    p.appendChild(flowSvg(m, pi, Math.min(pos, m.prompts[pi].tokens.length - 1), min));
  }
}

function flowSvg(m, pi, pos, min) {
  const prompt = m.prompts[pi], L = m.flow[pi].length;
  const layers = m.flow[pi].map(links => links.filter(link => link[2] >= min));
  const n = prompt.tokens.length, cw = 46, rh = 64, left = 70, top = 40;
  const W = left + n * cw + 20, H = top + (L + 1) * rh + 30;
  const s = sv("svg", {width: W, height: H, class: "flow", "data-model": m.label});
  const x = i => left + i * cw + cw / 2, y = r => top + (L - r) * rh + 10;
  const reach = [];  // reach[r][i]: position i at row r feeds the chosen position at the top
  for (let r = 0; r <= L; r++) reach.push(new Array(n).fill(false));
  reach[L][pos] = true;
  for (let r = L - 1; r >= 0; r--) {
    for (let i = 0; i < n; i++) if (reach[r + 1][i]) reach[r][i] = true;
    for (const [i, j] of layers[r]) if (reach[r + 1][i]) reach[r][j] = true;
  }
  for (let r = 0; r <= L; r++) s.appendChild(sv("text", {x: 4, y: y(r) + 4}, r === 0 ? "input" : "layer " + (r - 1)));
  for (let i = 0; i < n; i++) {
    s.appendChild(sv("line", {x1: x(i), y1: y(0), x2: x(i), y2: y(L), stroke: "#ccc", "stroke-width": 1}));
  }
  let links = 0;
  for (let r = 0; r < L; r++) {
    for (const [i, j, w] of layers[r]) {
      if (!reach[r + 1][i]) continue;
      links++;
      s.appendChild(sv("line", {x1: x(j), y1: y(r), x2: x(i), y2: y(r + 1), stroke: "#2563eb",
        "stroke-width": 0.5 + 4 * w, "stroke-opacity": 0.25 + 0.75 * w, class: "link"}));
    }
  }
  for (let r = 0; r <= L; r++) for (let i = 0; i < n; i++) {
    s.appendChild(sv("circle", {cx: x(i), cy: y(r), r: 4, fill: reach[r][i] ? "#1e3a8a" : "#ddd"}));
  }
  prompt.tokens.forEach((t, i) => s.appendChild(sv("text", {x: x(i), y: y(0) + 22, "text-anchor": "middle",
    class: "tok"}, shown(t))));
  const next = pos + 1 < n ? prompt.tokens[pos + 1] : prompt.correct;
  s.appendChild(sv("text", {x: x(pos), y: top - 14, "text-anchor": "middle", class: "tok"}, "\u2192 " + shown(next)));
  s.appendChild(sv("text", {x: left, y: H - 4}, links + " links reach the prediction at position " + pos));
  return s;
}

function setupFlow() {
  const pick = document.getElementById("prompt-picker"), posPick = document.getElementById("position-picker");
  MODELS[0].prompts.forEach((p, i) => pick.appendChild(el("option", {value: i}, p.tokens.join(""))));
  const positions = () => {
    const toks = MODELS[0].prompts[Number(pick.value)].tokens;
    posPick.replaceChildren();
    toks.forEach((t, i) => posPick.appendChild(el("option", {value: i}, i + ": " + shown(t))));
    posPick.value = String(toks.length - 1);
  };
  pick.addEventListener("change", () => { positions(); drawFlow(); });
  posPick.addEventListener("change", drawFlow);
  document.getElementById("strength-picker").addEventListener("change", drawFlow);
  positions();
  drawFlow();
}

// ---- component grid ------------------------------------------------------------------------------
function drawGrid() {
  const box = document.getElementById("grid-panels");
  for (const m of MODELS) {
    const g = m.grid, C = g.columns.length, cs = 34, left = 60, top = 30;
    const s = sv("svg", {width: left + C * cs + 10, height: top + g.n_layer * cs + 20, class: "grid"});
    const cx = c => left + c * cs + cs / 2, cy = l => top + l * cs + cs / 2;
    g.columns.forEach((name, c) => s.appendChild(sv("text", {x: cx(c), y: top - 8, "text-anchor": "middle"}, name)));
    for (let l = 0; l < g.n_layer; l++) s.appendChild(sv("text", {x: 4, y: cy(l) + 4}, "layer " + l));
    for (const [l1, c1, l2, c2, w] of g.links) {
      s.appendChild(sv("line", {x1: cx(c1), y1: cy(l1), x2: cx(c2), y2: cy(l2), stroke: "#555",
        "stroke-width": 0.4 + 3 * w, "stroke-opacity": 0.3 + 0.7 * w}));
    }
    const lit = new Map(g.cells.map(([l, c, k]) => [l + "," + c, k]));
    for (let l = 0; l < g.n_layer; l++) for (let c = 0; c < C; c++) {
      const k = lit.get(l + "," + c);
      const circle = sv("circle", {cx: cx(c), cy: cy(l), r: 8, fill: k ? "#fff" : "#e5e7eb",
        stroke: k ? "#111" : "none", "stroke-width": 1.5, class: k ? "cell lit" : "cell"});
      circle.appendChild(sv("title", {}, "layer " + l + " " + g.columns[c] + ": " + (k || 0) + " nodes kept"));
      s.appendChild(circle);
    }
    const p = panel(box, m.label + ": " + g.cells.length + " components lit, " + g.links_total + " links");
    p.appendChild(s);
  }
}

// ---- node graph ------------------------------------------------------------------------------
function drawGraph() {
  const box = document.getElementById("graph");
  if (!box) return;
  const m = MODELS[Number(document.getElementById("graph-model").value)];
  box.replaceChildren();
  document.getElementById("node-panel").replaceChildren(el("p", {class: "note"}, "Click a node to see it."));
  if (!m.nodes) { box.appendChild(el("p", {class: "note"}, "Node details were not computed for this report.")); return; }
  const L = m.config.n_layer, rh = 22, left = 180, W = 1000, top = 10;
  const rows = new Map();
  m.nodes.forEach((nd, k) => {
    const key = nd.layer + "." + nd.location;
    if (!rows.has(key)) rows.set(key, []);
    rows.get(key).push(k);
  });
  const pos = new Array(m.nodes.length);
  const s = sv("svg", {width: left + W + 20, height: top + L * m.locations.length * rh + 20, id: "graph-svg"});
  let r = 0;
  for (let l = 0; l < L; l++) for (const loc of m.locations) {
    const y = top + r * rh + rh / 2, ks = rows.get(l + "." + loc) || [];
    s.appendChild(sv("text", {x: 4, y: y + 4}, l + "." + loc + " (" + ks.length + ")"));
    ks.forEach((k, i) => { pos[k] = [left + (i + 0.5) * W / ks.length, y]; });
    r++;
  }
  const maxW = maxAbs(m.edges.map(e => e[2]));
  const edgeLayer = sv("g", {});
  for (const [a, b, w] of m.edges) {
    edgeLayer.appendChild(sv("line", {x1: pos[a][0], y1: pos[a][1], x2: pos[b][0], y2: pos[b][1],
      stroke: w > 0 ? "#2563eb" : "#dc2626", "stroke-width": 0.3 + 2.5 * Math.abs(w) / maxW, "stroke-opacity": 0.5}));
  }
  s.appendChild(edgeLayer);
  const maxE = maxAbs(m.nodes.map(nd => nd.ablation_effect));
  m.nodes.forEach((nd, k) => {
    const shade = Math.round(230 - 200 * Math.min(1, Math.abs(nd.ablation_effect) / maxE));
    const c = sv("circle", {cx: pos[k][0], cy: pos[k][1], r: 4, fill: `rgb(${shade + 25},${shade},${shade})`,
      stroke: "#333", "stroke-width": 0.5, class: "node", "data-id": nd.id});
    c.addEventListener("click", () => showNode(m, k, c));
    c.appendChild(sv("title", {}, nd.id));
    s.appendChild(c);
  });
  box.appendChild(el("p", {class: "note"}, m.nodes.length + " of " + m.nodes_total + " nodes, " + m.edges.length +
    " of " + m.edges_total + " edges (largest |w|) drawn; blue = positive weight, red = negative; " +
    "the darker a node, the more the task loss changes when it is ablated too."));
  box.appendChild(s);
}

function colored(tokens, acts, scale, target) {
  const line = el("div", {class: "prompt"});
  tokens.forEach((t, i) => {
    const a = acts[i] / scale, alpha = Math.min(1, Math.abs(a)).toFixed(2);
    const span = el("span", {title: fmt(acts[i], 3)}, shown(t));
    span.style.background = a >= 0 ? `rgba(220,38,38,${alpha})` : `rgba(37,99,235,${alpha})`;
    if (i === target) span.classList.add("target");
    line.appendChild(span);
  });
  return line;
}

function weightTable(title, rows) {
  const t = el("table");
  t.appendChild(el("tr")).appendChild(el("th", {colspan: 2}, title + " (" + rows.length + " strongest)"));
  for (const [name, w] of rows) {
    const tr = t.appendChild(el("tr"));
    tr.appendChild(el("td", {}, name));
    tr.appendChild(el("td", {class: "num"}, fmt(w)));
  }
  return t;
}

function showNode(m, k, circle) {
  document.querySelectorAll("#graph-svg .node.selected").forEach(c => c.classList.remove("selected"));
  circle.classList.add("selected");
  const nd = m.nodes[k], box = document.getElementById("node-panel");
  box.replaceChildren(el("h3", {id: "node-name"}, nd.id));
  box.appendChild(el("p", {}, "layer " + nd.layer + ", " + nd.location + ", channel " + nd.index +
    (["attn.q", "attn.k", "attn.v"].includes(nd.location) ?
      " (head " + Math.floor(nd.index / m.config.d_head) + ")" : "")));
  const effect = nd.ablation_effect;
  box.appendChild(el("p", {id: "node-effect"}, "ablation effect on the task loss: " + (effect >= 0 ? "+" : "") +
    fmt(effect)));
  box.appendChild(weightTable("input weights", nd.in));
  box.appendChild(weightTable("output weights", nd.out));
  const scale = maxAbs(nd.acts.flat());
  box.appendChild(el("h4", {}, "activation in the full model over task prompts (red +, blue \u2212; max |a| = " +
    fmt(scale, 3) + ")"));
  const byPair = new Map();
  m.prompts.forEach((p, i) => { if (!byPair.has(p.pair)) byPair.set(p.pair, []); byPair.get(p.pair).push(i); });
  for (const members of byPair.values()) {
    const row = el("div", {class: "pair"});
    for (const i of members) row.appendChild(colored(m.prompts[i].tokens, nd.acts[i], scale, m.prompts[i].tokens.length - 1));
    box.appendChild(row);
  }
  if (m.texts && m.texts.length && nd.text.length) {
    box.appendChild(el("h4", {}, "pretraining text, by quantile of the activation"));
    for (const [q, w, p, v] of nd.text) {
      const start = Math.max(0, p - 12), toks = m.texts[w].slice(start, p + 1);
      const acts = toks.map((_, i) => (i === toks.length - 1 ? v : 0));
      const line = colored(toks, acts, Math.max(1e-9, Math.abs(v)), toks.length - 1);
      line.prepend(el("b", {}, "q" + q + " " + fmt(v, 3) + "  "));
      box.appendChild(line);
    }
  }
}

function setupGraph() {
  const pick = document.getElementById("graph-model");
  MODELS.forEach((m, i) => pick.appendChild(el("option", {value: i}, m.label)));
  pick.addEventListener("change", drawGraph);
  drawGraph();
}

// ---- numbers -----------------------------------------------------------------------------------
function curveSvg(m) {
  const pts = m.numbers.curve.filter(p => p[0] > 0).sort((a, b) => a[0] - b[0]);
  const W = 320, H = 180, pad = 36, s = sv("svg", {width: W, height: H});
  if (!pts.length) return s;
  const xs = pts.map(p => Math.log10(p[0])), ys = pts.map(p => Math.min(p[1] === null ? 10 : p[1], 10));
  const x0 = xs[0], x1 = xs[xs.length - 1] + 1e-9, y1 = maxAbs(ys.concat([m.numbers.target])) * 1.05;
  const X = v => pad + (v - x0) / (x1 - x0) * (W - pad - 10), Y = v => H - pad + 10 - v / y1 * (H - pad - 10);
  s.appendChild(sv("polyline", {points: pts.map((p, i) => X(xs[i]) + "," + Y(ys[i])).join(" "), fill: "none",
    stroke: "#2563eb", "stroke-width": 1.5}));
  pts.forEach((p, i) => s.appendChild(sv("circle", {cx: X(xs[i]), cy: Y(ys[i]), r: 2.5, fill: "#2563eb"})));
  s.appendChild(sv("line", {x1: pad, x2: W - 10, y1: Y(m.numbers.target), y2: Y(m.numbers.target), stroke: "#b45309",
    "stroke-dasharray": "4 3"}));
  s.appendChild(sv("text", {x: pad, y: H - 6}, "nodes kept (log), trained set then cleanup: " + pts[0][0] + " \u2026 " +
    pts[pts.length - 1][0]));
  s.appendChild(sv("text", {x: 2, y: 12}, "task loss (dashed: target " + m.numbers.target + ")"));
  s.appendChild(sv("text", {x: 2, y: Y(y1) + 14}, fmt(y1, 2)));
  s.appendChild(sv("text", {x: 2, y: Y(0)}, "0"));
  return s;
}

function drawNumbers() {
  const box = document.getElementById("numbers-panels");
  for (const m of MODELS) {
    const p = panel(box, m.label), n = m.numbers, t = el("table", {class: "numbers"});
    const rows = [["task", m.task], ["full model task loss", fmt(n.full_loss)], ["circuit task loss", fmt(n.circuit_loss)],
      ["target loss", n.target + (n.reached ? " (reached)" : " (NOT reached)")], ["nodes", n.nodes],
      ["edges", n.edges], ["trained set before cleanup", n.trained ? n.trained.nodes + " nodes, " + n.trained.edges + " edges" : "-"],
      ["ablation", n.ablation]];
    for (const [k, v] of rows) {
      const tr = t.appendChild(el("tr"));
      tr.appendChild(el("td", {}, k));
      tr.appendChild(el("td", {class: "num"}, String(v)));
    }
    p.appendChild(t);
    p.appendChild(curveSvg(m));
    const v = n.validation;
    if (!v) { p.appendChild(el("p", {class: "note"}, n.validation_note)); continue; }
    const vt = el("table", {class: "validation"});
    const checks = [["sufficiency (circuit alone)", v.sufficiency.loss], ["necessity (circuit removed)",
      v.necessity.loss_without_circuit], ["attribution baseline, same size", v.attribution_baseline.loss],
      ["patch-back", v.patch_back.patched_loss], ["binarised features", v.binarised.loss]];
    for (const [name, c] of Object.entries(v.controls || {})) {
      checks.push(["control: " + name.replace(/_/g, " ") + " (" + c.edges + " edges)", c.loss]);
    }
    for (const [k, val] of checks) {
      const tr = vt.appendChild(el("tr"));
      tr.appendChild(el("td", {}, k));
      tr.appendChild(el("td", {class: "num"}, fmt(val)));
    }
    p.appendChild(vt);
    for (const w of v.warnings || []) p.appendChild(el("p", {class: "warning"}, "\u26a0 " + w));
  }
}

window.addEventListener("DOMContentLoaded", () => {
  // each view on its own: one that fails says so in its section and the others still draw
  for (const [id, setup] of [["flow-panels", setupFlow], ["grid-panels", drawGrid], ["graph", setupGraph],
                             ["numbers-panels", drawNumbers]]) {
    const box = document.getElementById(id);
    if (!box) continue;
    try { setup(); } catch (err) {
      console.error(err);
      box.appendChild(el("p", {class: "warning"}, "This view could not be drawn: " + err));
    }
  }
  document.body.dataset.ready = "1";
});
