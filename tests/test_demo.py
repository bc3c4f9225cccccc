import json

from sparsecircuits.cli import main


def test_quick_demo_writes_a_complete_summary_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("base", "sparse"):
        for field in ("accuracy", "nonzero_weights", "density", "path", "per_tensor"):
            assert field in summary[key], (key, field)
        assert (out / key / "model.safetensors").exists()
    assert summary["base"]["density"] == 1.0
    assert summary["sparse"]["density"] < 1 / 32
    assert summary["sparse"]["nonzero_weights"] < summary["base"]["nonzero_weights"] / 32
    for key in ("base", "sparse"):
        circuit = summary[key]["circuit"]
        assert circuit["nodes"] > 0 and circuit["edges"] >= 0
        assert (out / f"{key}_circuit" / "circuit.json").exists()
        assert (out / f"{key}_circuit" / "validation.json").exists()
        assert "sufficiency" in circuit["validation"] and "necessity" in circuit["validation"]
    assert summary["circuit_edge_ratio"] == summary["base"]["circuit"]["edges"] / max(1, summary["sparse"]["circuit"]["edges"])
    page = (out / "report.html").read_text()
    assert 'id="view-flow"' in page and 'id="view-grid"' in page and 'id="view-numbers"' in page
    assert '"label":"base"' in page and '"label":"sparse"' in page
    for kind in ("flow", "grid"):
        assert (out / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["report"]["html"] == str(out / "report.html")
    assert "exact match" in capsys.readouterr().out
    # a second run finds both stages finished and only re-evaluates
    before = (out / "sparse" / "model.safetensors").read_bytes()
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    assert (out / "sparse" / "model.safetensors").read_bytes() == before
