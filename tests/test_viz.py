"""The circuit report: its data, the HTML page in headless Chromium, the server and static figures."""
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
import torch

import sparsecircuits as sc
from sparsecircuits import DataConfig, RunConfig, TrainConfig, viz
from sparsecircuits.circuits import prune, validate
from sparsecircuits.circuits.edges import circuit_edges
from sparsecircuits.cli import main
from sparsecircuits.tasks import get_task

from conftest import small_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = "</script><img src=x onerror=alert(1)>"
FAST = dict(steps=60, n_train=128, n_test=64, batch_pairs=32, progress=False)


@pytest.fixture(scope="module")
def adder_circuits(adder, tmp_path_factory):
    """Two circuits of the addition model (two pruning seeds), the first validated."""
    root = tmp_path_factory.mktemp("circuits")
    model = sc.load(adder)
    dirs = []
    for seed in (0, 1):
        circuit = prune(model, "add2_digit4", 0.5, seed=seed, **FAST)
        circuit.save(root / f"c{seed}")
        dirs.append(root / f"c{seed}")
    circuit = sc.Circuit.load(dirs[0])
    report = validate(model, get_task("add2_digit4"), circuit, sc.circuits.circuit_means(model, circuit),
                      controls=False, progress=False)
    (dirs[0] / "validation.json").write_text(json.dumps(report))
    return dirs


@pytest.fixture(scope="module")
def xss_circuit(stdlib_corpus, tmp_path_factory):
    """A code model briefly trained on the corpus, pruned on a JSONL task whose prompts hold markup."""
    root = tmp_path_factory.mktemp("xss")
    run = RunConfig(model=small_config(vocab_size=2048, block_size=64, pos_emb="none"),
                    data=DataConfig(kind="corpus", path=str(stdlib_corpus)),
                    train=TrainConfig(steps=30, batch_size=8, lr=1e-2, density=0.5, autocast="none"))
    sc.train(run, root / "model", progress=False)
    lines = []
    for i in range(40):
        for q, other in (("'", '"'), ('"', "'")):
            lines.append({"prompt": f"value_{i} = ({q}{XSS} item {i}", "correct": f"{q})", "wrong": f"{other})"})
    task_file = root / "markup.jsonl"
    task_file.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    model = sc.load(root / "model")
    circuit = prune(model, str(task_file), 0.3, require_reachable=False, **{**FAST, "n_train": 48, "n_test": 16})
    # a model this briefly trained is worse than chance, so the pruner rightly keeps nothing; the viewer
    # needs nodes to show, so the fixture keeps the 8 nodes the pruner scored highest
    best = sorted(((v, site, c) for site, vals in circuit.scores.items() for c, v in enumerate(vals)), reverse=True)[:8]
    nodes = {}
    for _, site, c in best:
        nodes.setdefault(site, []).append(c)
    replace(circuit, nodes=nodes, edges=circuit_edges(model, nodes)).save(root / "circ")
    return root / "circ"


def test_report_data_matches_the_circuit(adder_circuits):
    circuit, model, means = sc.api.load_circuit(adder_circuits[0], progress=False)
    [m] = viz.report_models([adder_circuits[0]], labels=["a"], progress=False)
    assert m["numbers"]["nodes"] == circuit.n_nodes and m["numbers"]["edges"] == circuit.n_edges
    assert m["numbers"]["validation"]["sufficiency"]["loss"] == pytest.approx(circuit.loss, abs=1e-4)
    assert {n["id"] for n in m["nodes"]} == set(circuit.node_names)
    # the page's edges are the circuit's largest, by index into its node list
    ids = [n["id"] for n in m["nodes"]]
    drawn = {(ids[a], ids[b]) for a, b, _ in m["edges"]}
    largest = sorted(circuit.edges, key=lambda e: -abs(e[2]))[:len(m["edges"])]
    assert len(m["edges"]) == min(circuit.n_edges, 5000) and m["edges_total"] == circuit.n_edges
    assert drawn == {(a, b) for a, b, _ in largest}
    # a node's ablation effect is the circuit's loss rise when that node is ablated too
    node = max(m["nodes"], key=lambda n: abs(n["ablation_effect"]))
    pruner = sc.circuits.Pruner(model, get_task(circuit.task), model.tokenizer, means,
                                sc.PruneConfig(n_train=2, n_test=32, seed=0))
    pruner.calib = circuit.calibration
    gates = circuit.gates(model.cfg)
    base = pruner.loss(pruner.test, gates)
    site = f"{node['layer']}.{node['location']}"
    gates[site][node["index"]] = 0
    assert node["ablation_effect"] == pytest.approx(pruner.loss(pruner.test, gates) - base, rel=1e-3, abs=1e-4)
    # activations over the task prompts are the full model's own
    tokens = torch.tensor([model.tokenizer.encode("".join(m["prompts"][0]["tokens"]))])
    _, cache = model.run_with_cache(tokens, [site])
    got = torch.tensor(node["acts"][0])
    assert torch.allclose(got, cache[site][0, :, node["index"]], rtol=6e-3, atol=1e-3)  # 3 digits kept
    # flow links go from earlier to later positions and the grid lights only components with kept nodes
    for layer in m["flow"][0]:
        assert all(j < i and 0 < w <= 1 for i, j, w in layer)
    assert max(w for layer in m["flow"][0] for _, _, w in layer) == pytest.approx(1.0)
    lit_heads = {(int(s.split(".")[0]), c // model.cfg.d_head) for s, chans in circuit.nodes.items()
                 for c in chans if s.split(".", 1)[1] in ("attn.q", "attn.k", "attn.v")}
    assert {(l, c) for l, c, _ in m["grid"]["cells"] if c < model.cfg.n_head} == lit_heads


def test_flow_strength_follows_attention_through_kept_value_channels(adder_circuits):
    circuit, model, means = sc.api.load_circuit(adder_circuits[0], progress=False)
    [m] = viz.report_models([adder_circuits[0]], details=False, progress=False)
    assert "nodes" not in m
    # with every value channel of layer 0 dropped, nothing moves between positions at layer 0
    circuit.nodes.pop("0.attn.v", None)
    cfg = sc.PruneConfig(n_train=2, n_test=8)
    pruner = sc.circuits.Pruner(model, get_task(circuit.task), model.tokenizer, means, cfg)
    flows = viz.flow.flow_strengths(model, circuit, pruner, pruner.test.tokens[:4],
                                    [int(n) + 1 for n in pruner.test.last[:4]])
    assert all(flow[0] == [] for flow in flows)


def _sync_playwright():
    """Playwright and Chromium, or a skip; a failure where .ci/run demands the browser tests."""
    required = os.environ.get("SPARSECIRCUITS_BROWSER_TESTS") == "required"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        (pytest.fail if required else pytest.skip)("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        (pytest.fail if required else pytest.skip)(f"no Chromium at {CHROMIUM} (.ci/run installs it)")
    return sync_playwright()


def _browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def _open(browser, url):
    page = browser.new_page()
    errors, dialogs = [], []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", state="attached")
    return page, errors, dialogs


def test_report_in_chromium_side_by_side_click_and_prompt_picker(adder_circuits, tmp_path):
    out = tmp_path / "report.html"
    assert main(["viz", str(adder_circuits[0]), str(adder_circuits[1]), "--labels", "seed 0,seed 1",
                 "--out", str(out), "--quiet"]) == 0
    with _sync_playwright() as p:
        browser = _browser(p)
        page, errors, _ = _open(browser, out.as_uri())
        assert page.locator("#flow-panels svg.flow").count() == 2
        assert page.locator("#grid-panels svg.grid").count() == 2
        first = page.locator("#flow-panels svg.flow").first.text_content()
        page.select_option("#prompt-picker", index=3)
        assert page.locator("#flow-panels svg.flow").first.text_content() != first  # view 1 redrawn
        node = page.locator("#graph-svg circle.node").first
        name = node.get_attribute("data-id")
        node.click()
        assert page.text_content("#node-name") == name
        assert "ablation effect" in page.text_content("#node-effect")
        assert page.locator("#node-panel .prompt").count() >= 2
        numbers = page.text_content("#numbers-panels")
        assert "sufficiency" in numbers and "No validation.json" in numbers  # seed 1 was not validated
        assert errors == []
        browser.close()


def test_markup_in_prompts_is_shown_as_text_and_served(xss_circuit):
    models = viz.report_models([xss_circuit], progress=False)
    prompts = models[0]["prompts"]
    for pair in {p["pair"] for p in prompts}:  # side by side only where the answers swap
        members = [p for p in prompts if p["pair"] == pair]
        assert len(members) == 1 or (members[0]["correct"], members[0]["wrong"]) == (members[1]["wrong"],
                                                                                    members[1]["correct"])
    page_html = viz.render(models, "markup <test>")
    assert XSS not in page_html and "<img" not in page_html
    server = viz.make_server(page_html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        assert urllib.request.urlopen(url).read().decode() == page_html
        with pytest.raises(urllib.error.HTTPError, match="403"):  # a page from another host name is refused
            urllib.request.urlopen(urllib.request.Request(url, headers={"Host": f"evil.example:{server.server_address[1]}"}))
        with _sync_playwright() as p:
            browser = _browser(p)
            page, errors, dialogs = _open(browser, url)
            assert page.title() == "markup <test>"
            assert XSS in page.text_content("#prompt-picker")
            assert page.evaluate("document.querySelectorAll('img').length") == 0
            page.locator("#graph-svg circle.node").first.click()
            assert "onerror" in page.text_content("#node-panel")   # the prompt tokens, as text
            assert page.evaluate("document.querySelectorAll('img').length") == 0
            assert dialogs == [] and errors == []
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_figures_and_cli_errors(adder_circuits, adder, tmp_path, capsys):
    for kind, name in (("flow", "f.png"), ("grid", "g.svg"), ("graph", "h.png")):
        assert main(["figure", *map(str, adder_circuits), "--kind", kind, "--out", str(tmp_path / name),
                     "--quiet"]) == 0
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "h.png").stat().st_size > 10_000
    assert "<svg" in (tmp_path / "g.svg").read_text()
    assert main(["viz", str(adder_circuits[0])]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["viz", str(adder_circuits[0]), "--out", str(tmp_path / "r.txt")]) == 2
    assert main(["figure", str(adder_circuits[0]), "--out", str(tmp_path / "x.gif")]) == 2
    assert main(["viz", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")]) == 2
    assert "circuit.json" in capsys.readouterr().err
    assert main(["viz", str(adder_circuits[0]), "--labels", "a,b", "--out", str(tmp_path / "r.html")]) == 2
    other = prune(sc.load(adder), "add2_digit3", 0.5, **FAST)
    other.save(tmp_path / "other")
    assert main(["viz", str(adder_circuits[0]), str(tmp_path / "other"), "--out", str(tmp_path / "r.html")]) == 2
    assert "different tasks" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*.tmp"))


def test_export_graphml_and_json_graph_read_back(adder_circuits, tmp_path, capsys):
    import xml.etree.ElementTree as ET
    circuit = sc.Circuit.load(adder_circuits[0])
    assert main(["export", str(adder_circuits[0]), "--format", "json-graph", "--out", str(tmp_path / "g.json"),
                 "--quiet"]) == 0
    assert main(["export", str(adder_circuits[0]), "--format", "graphml", "--out", str(tmp_path / "g.graphml"),
                 "--quiet"]) == 0
    graph = json.loads((tmp_path / "g.json").read_text())
    assert [n["node_id"] for n in graph["nodes"]] == circuit.node_names
    assert [(l["source"], l["target"], l["weight"]) for l in graph["links"]] == [tuple(e) for e in circuit.edges]
    assert graph["metadata"]["n_edges"] == circuit.n_edges and graph["directed"] is True
    [m] = viz.report_models([adder_circuits[0]], progress=False)
    effects = {n["id"]: n["ablation_effect"] for n in m["nodes"]}
    for node in graph["nodes"]:   # the same ablation effects the viewer shows
        assert node["ablation_effect"] == pytest.approx(effects[node["node_id"]], rel=2e-3, abs=1e-4)
        assert f"{node['layer']}.{node['location']}[{node['feature']}]" == node["node_id"]
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    root = ET.parse(tmp_path / "g.graphml").getroot()
    nodes = root.findall("g:graph/g:node", ns)
    edges = root.findall("g:graph/g:edge", ns)
    assert [n.get("id") for n in nodes] == circuit.node_names and len(edges) == circuit.n_edges
    first = edges[0]
    assert (first.get("source"), first.get("target")) == circuit.edges[0][:2]
    assert float(first.find("g:data", ns).text) == circuit.edges[0][2]
    assert main(["export", str(adder_circuits[0]), "--format", "dot", "--out", str(tmp_path / "x")]) == 2
    assert main(["export", str(tmp_path / "nothing"), "--format", "graphml", "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
