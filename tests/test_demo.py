import json

from sparsecircuits.cli import main


def test_quick_demo_writes_an_honest_summary_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("base", "sparse"):
        for field in ("accuracy", "task_loss", "nonzero_weights", "density", "path", "per_tensor"):
            assert field in summary[key], (key, field)
        assert (out / key / "model.safetensors").exists()
    assert summary["base"]["density"] == 1.0
    assert summary["sparse"]["density"] < 1 / 32
    assert summary["sparse"]["nonzero_weights"] < summary["base"]["nonzero_weights"] / 32
    for key in ("base", "sparse"):
        circuit = summary[key]["circuit"]
        assert circuit["nodes"] > 0 and circuit["edges"] > 0
        assert (out / f"{key}_circuit" / "circuit.json").exists()
        assert (out / f"{key}_circuit" / "validation.json").exists()
        assert "sufficiency" in circuit["validation"] and "necessity" in circuit["validation"]
    # a few steps cannot train an adder: every goal it misses is named, and a missed circuit gets no ratio
    goals = {g["goal"]: g for g in summary["goals"]}
    assert not goals["base exact match >= 99%"]["met"]
    reached = summary["base"]["circuit"]["reached"] and summary["sparse"]["circuit"]["reached"]
    printed = capsys.readouterr().out
    if reached:
        assert summary["circuit_edge_ratio"] == summary["base"]["circuit"]["edges"] / summary["sparse"]["circuit"]["edges"]
    else:
        assert summary["circuit_edge_ratio"] is None and "no edge ratio" in printed and "fewer edges" not in printed
    assert "NOT MET: base exact match >= 99%" in printed and "exact match" in printed
    page = (out / "report.html").read_text()
    assert 'id="view-flow"' in page and 'id="view-grid"' in page and 'id="view-numbers"' in page
    assert "<h2>1. Information flow" in page and "<h2>2. Component grid" in page and "<h2>3. Numbers" in page
    assert '"label":"base"' in page and '"label":"sparse"' in page
    for kind in ("flow", "grid"):
        assert (out / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["report"]["html"] == str(out / "report.html")
    # a second run finds both stages finished and only re-evaluates
    before = (out / "sparse" / "model.safetensors").read_bytes()
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    assert (out / "sparse" / "model.safetensors").read_bytes() == before
