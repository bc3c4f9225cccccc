import json
import shutil

import pytest
import torch

import sparsecircuits as sc
from sparsecircuits import RunConfig
from sparsecircuits.circuits import (MEAN_FILE, Circuit, circuit_edges, compute_means, load_or_compute_means,
                                     model_hash, node_sites, prune, validate)
from sparsecircuits.circuits.masks import HeavisideST
from sparsecircuits.cli import main
from sparsecircuits.tasks import get_task

from conftest import small_config

TARGET = 0.3


FAST = dict(steps=100, n_train=256, n_test=128, batch_pairs=32, k_coef=3e-3, progress=False)


def test_heaviside_forward_is_a_step_and_backward_a_sigmoid_slope():
    tau = torch.tensor([-0.5, 0.0, 0.2, 1.0], requires_grad=True)
    out = HeavisideST.apply(tau, 2.0)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    s = torch.sigmoid(tau.detach() / 2.0)
    assert torch.allclose(tau.grad, s * (1 - s) / 2.0)


def test_mean_cache_matches_a_direct_average_and_follows_the_weights(adder):
    model = sc.load(adder)
    batches = [torch.randint(0, 12, (4, 10)) for _ in range(3)]
    means = compute_means(model, batches, progress=False)
    caches = [model.run_with_cache(b)[1] for b in batches]
    direct = torch.cat([c["1.mlp.post_act"].flatten(0, 1) for c in caches]).mean(0)
    assert torch.allclose(means["1.mlp.post_act"], direct, atol=1e-6)
    assert set(means) == set(node_sites(model.cfg))
    data = sc.training.make_data(json_run(adder))
    first = load_or_compute_means(adder, model, data, progress=False)
    assert (adder / MEAN_FILE).exists()
    stamp = (adder / MEAN_FILE).stat().st_mtime_ns
    assert torch.equal(load_or_compute_means(adder, model, data, progress=False)["0.attn.q"], first["0.attn.q"])
    assert (adder / MEAN_FILE).stat().st_mtime_ns == stamp  # reused, not recomputed
    with torch.no_grad():
        model.blocks[0].mlp.c_fc.weight.mul_(2)
    again = load_or_compute_means(adder, model, data, progress=False)  # other weights: recomputed
    assert not torch.equal(again["0.mlp.post_act"], first["0.mlp.post_act"])
    (adder / MEAN_FILE).unlink()


def json_run(path):
    return sc.config_io.from_dict(RunConfig, json.loads((path / "run.json").read_text()))


def test_edges_are_exactly_the_nonzero_weights_between_kept_nodes():
    model = sc.SparseTransformer(small_config(n_layer=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.blocks[0].mlp.c_fc.weight[5, 2] = 0.7      # 0.mlp.act_in[2] -> 0.mlp.post_act[5]
        model.blocks[0].mlp.c_fc.weight[6, 2] = 0.9      # to a dropped neuron: no edge
        model.blocks[0].mlp.c_proj.weight[3, 5] = -1.5   # 0.mlp.post_act[5] -> 0.mlp.resid_delta[3]
        model.blocks[1].attn.c_attn.weight[16 + 4, 3] = 2.0  # 1.attn.act_in[3] -> 1.attn.k[4]
        model.blocks[1].ln_1.weight.fill_(1.0)
        model.blocks[1].ln_1.weight[3] = 0.5             # residual edge weight = reading norm's scale
    nodes = {"0.mlp.act_in": [2], "0.mlp.post_act": [5], "0.mlp.resid_delta": [3], "1.attn.act_in": [3],
             "1.attn.k": [4]}
    edges = circuit_edges(model, nodes)
    assert sorted(edges) == sorted([("0.mlp.act_in[2]", "0.mlp.post_act[5]", pytest.approx(0.7)),
                                    ("0.mlp.post_act[5]", "0.mlp.resid_delta[3]", -1.5),
                                    ("1.attn.act_in[3]", "1.attn.k[4]", 2.0),
                                    ("0.mlp.resid_delta[3]", "1.attn.act_in[3]", 0.5)])


def test_prune_finds_a_small_circuit_that_reaches_the_target(adder, tmp_path):
    model = sc.load(adder)
    circuit = prune(model, "add2_digit4", TARGET, **FAST)
    total = sum(node_sites(model.cfg).values())
    assert circuit.reached and circuit.loss <= TARGET and 0 < circuit.n_nodes < total
    assert circuit.full_loss < circuit.loss + 1
    kept = set(circuit.node_names)
    for src, dst, w in circuit.edges:
        assert src in kept and dst in kept and w != 0
    assert circuit.settings["model_hash"] == model_hash(model) and circuit.settings["ablation"] == "mean"
    assert circuit.curve and all(k >= 0 for k, _ in circuit.curve)
    circuit.save(tmp_path / "c")
    again = Circuit.load(tmp_path / "c")
    assert again.nodes == circuit.nodes and again.n_edges == circuit.n_edges and again.loss == circuit.loss
    # the ablated model keeps circuit nodes and mean-ablates the rest
    means = sc.circuits.model_means(model, progress=False)
    ablated = circuit.ablated_model(model, means)
    tokens = torch.randint(0, 12, (3, 10))
    everything = Circuit({s: list(range(w)) for s, w in node_sites(model.cfg).items()}, [], "t", 0, 0, 1, True,
                         (1, 0), [])
    with torch.no_grad():
        assert torch.allclose(everything.ablated_model(model, means)(tokens), model(tokens), atol=1e-5)
        assert not torch.allclose(ablated(tokens), model(tokens))


def test_validation_reports_every_check(adder):
    model = sc.load(adder)
    circuit = prune(model, "add2_digit4", TARGET, **FAST)
    means = sc.circuits.model_means(model, progress=False)
    report = validate(model, get_task("add2_digit4"), circuit, means, progress=False)
    assert report["sufficiency"]["loss"] == pytest.approx(circuit.loss, abs=1e-4)
    assert report["necessity"]["loss_without_circuit"] > report["sufficiency"]["loss"] + 0.5
    assert report["attribution_baseline"]["nodes"] == circuit.n_nodes
    assert set(report["controls"]) == {"random_weights", "nonsense_labels", "frozen_norms"}
    assert {"circuit_loss", "patched_loss", "change"} <= set(report["patch_back"])
    assert report["binarised_loss"] >= 0


def test_prune_and_validate_cli_with_bad_inputs(adder, tmp_path, capsys):
    out = tmp_path / "circ"
    assert main(["prune", str(adder), "--task", "nope", "--out", str(out)]) == 2
    assert "unknown task" in capsys.readouterr().err and not out.exists()
    assert main(["prune", str(adder), "--task", "add2_digit4", "--target-loss", "0", "--out", str(out)]) == 2
    assert "target loss" in capsys.readouterr().err and not out.exists()
    assert main(["prune", str(adder), "--task", "add2_digit4", "--target-loss", str(TARGET), "--out", str(out),
                 "--steps", "40", "--quiet"]) == 0
    assert (out / "circuit.json").exists() and (adder / MEAN_FILE).exists()
    other = tmp_path / "other"
    shutil.copytree(adder, other)
    sc.load(other).save(other)  # same architecture...
    weights = sc.load(other)
    with torch.no_grad():
        weights.blocks[0].mlp.c_fc.weight.add_(0.01)
    weights.save(other)          # ...other weights
    assert main(["validate", str(out), "--model", str(other), "--quiet"]) == 2
    assert "other weights" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "none")]) == 2


def test_resample_ablation_puts_another_prompts_activation_in_closed_nodes(adder):
    model = sc.load(adder)
    task = get_task("add2_digit4")
    means = sc.circuits.model_means(model, progress=False)
    pruner = sc.circuits.Pruner(model, task, model.tokenizer, means,
                                sc.circuits.PruneConfig(ablation="resample", n_train=32, n_test=32))
    site = "1.mlp.post_act"
    gates = {name: torch.ones(w) for name, w in pruner.sites.items()}
    gates[site] = torch.zeros(pruner.sites[site])
    seen = []
    with torch.no_grad():
        pruner.run(pruner.test, gates, extra_hooks=[(site, lambda x, _: seen.append(x.clone()))])
        _, cache = model.run_with_cache(pruner.test.tokens, [site])
    clean, ablated = cache[site], seen[0]
    # every prompt's closed activation is the clean activation of some prompt of the batch...
    flat_clean, flat_ablated = clean.flatten(1), ablated.flatten(1)
    match = torch.cdist(flat_ablated, flat_clean).argmin(1)
    assert torch.allclose(flat_ablated, flat_clean[match], atol=1e-5)
    assert len(set(match.tolist())) > len(match) // 2          # ...drawn as a permutation...
    assert (match != torch.arange(len(match))).float().mean() > 0.5  # ...mostly of other prompts
    circuit = prune(model, "add2_digit4", TARGET, **{**FAST, "ablation": "resample"})
    assert circuit.settings["ablation"] == "resample" and circuit.n_nodes > 0
