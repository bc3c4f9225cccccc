"""Bridges between a dense model and a sparse one (METHOD 4), and steering the dense model through them."""
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import sparsecircuits as sc
from sparsecircuits.cli import main
from sparsecircuits.tasks import get_task
from sparsecircuits.training.bridges import BRIDGES_FILE, load_bridged, nmse, steer
from sparsecircuits.training.checkpoint import checkpoints


@pytest.fixture(scope="module")
def bridged(adder, tmp_path_factory):
    """A sparse twin of the dense `adder`, finetuned from it jointly with bridges to it."""
    out = tmp_path_factory.mktemp("bridged") / "sparse"
    assert main(["train", "--config", str(adder / "run.json"), "--init-from", str(adder), "--bridge-to", str(adder),
                 "--density", "0.25",
                 "--steps", "250", "--checkpoint-every", "100", "--out", str(out), "--quiet"]) == 0
    return out


def test_bridges_are_trained_saved_and_checkpointed(bridged, adder):
    sparse, dense, bridges = load_bridged(bridged)
    assert (bridged / BRIDGES_FILE).exists()
    assert any(k.startswith("bridges.enc.0") for k in load_file(str(checkpoints(bridged)[-1] / "model.safetensors")))
    x = torch.tensor([sparse.tokenizer.encode(e.prompt) for e in get_task("add2_digit4").examples("test", 64)])
    with torch.no_grad():
        _, hs = sparse.run_with_cache(x, bridges.sites)
        _, hd = dense.run_with_cache(x, bridges.sites)
        for i, s in enumerate(bridges.sites):  # both directions explain most of the other model's stream
            assert nmse(bridges.decode(i, hs[s]), hd[s]) < 0.5, s
            assert nmse(bridges.encode(i, hd[s]), hs[s]) < 0.8, s
    assert sc.evaluate(bridged)["accuracy"] > 0.5


def test_steering_moves_the_dense_model_the_way_it_moves_the_sparse_one(bridged, capsys):
    sparse, dense, bridges = load_bridged(bridged)
    example = get_task("add2_digit4").examples("test", 1)[0]
    tok = sparse.tokenizer
    a, b = tok.single_token(example.correct), tok.single_token(str((int(example.correct) + 5) % 10))
    tokens = torch.tensor([tok.encode(example.prompt)])
    site = "final_resid"
    # the sparse channel that most favours the wrong answer b over a
    h = sparse.run_with_cache(tokens, [site])[1][site].requires_grad_(True)
    logits = sparse.run_with_hooks(tokens, [(site, lambda x, _: h)])
    (logits[0, -1, b] - logits[0, -1, a]).backward()
    channel = int(h.grad[0, -1].abs().argmax())
    value = float((h[0, -1, channel] + 4 * h.grad[0, -1, channel].sign() * h[0].std()).detach())
    r = steer(sparse, dense, bridges, tokens, site, channel, value)
    gap = {s: float(lp[b] - lp[a]) for s, lp in r["dense"].items()}
    assert r["sparse_edited"][b] - r["sparse_edited"][a] > r["sparse"][b] - r["sparse"][a]
    assert gap[1.0] > gap[0.5] > gap[0.0]  # the dense model moves toward b, more with more strength
    api = sc.steer_model(bridged, f"{site}[{channel}]", value, prompt=example.prompt,
                         candidates=(example.correct, tok.decode([b])))
    assert api["sparse_edited"][1] == pytest.approx(float(r["sparse_edited"][b].exp()), rel=1e-5)
    assert api["dense"][1.0] == pytest.approx([float(r["dense"][1.0][i].exp()) for i in (a, b)], rel=1e-5)
    same = sc.steer_model(bridged, f"{site}[{channel}]", np.float32(value), prompt=example.prompt,
                          candidates=(example.correct, tok.decode([b])))  # a numpy number is a number
    assert same["sparse_edited"] == pytest.approx(api["sparse_edited"], rel=1e-5)
    with pytest.raises(sc.UserError, match="steered value"):  # the API checks what the CLI passes it
        sc.steer_model(bridged, f"{site}[{channel}]", float("nan"), prompt=example.prompt,
                       candidates=(example.correct, tok.decode([b])))
    assert main(["steer", str(bridged), "--channel", f"{site}[{channel}]", "--value", str(value),
                 "--prompt", example.prompt, "--tokens", f"{example.correct},{tok.decode([b])}"]) == 0
    assert "dense, strength 1.00" in capsys.readouterr().out
    assert main(["steer", str(bridged), "--channel", "9.resid_mid[0]", "--value", "1", "--prompt", example.prompt,
                 "--tokens", f"{example.correct},{tok.decode([b])}"]) == 2
    assert "no bridge at '9.resid_mid'" in capsys.readouterr().err
    assert main(["steer", str(bridged), "--channel", "final_resid[0]", "--value", "1", "--task", "add2_digit4"]) == 2
    assert main(["steer", str(bridged), "--channel", "final_resid[0]", "--value", "1"]) == 2


def test_steer_needs_a_bridged_model(adder, capsys):
    assert main(["steer", str(adder), "--channel", "0.resid_mid[0]", "--value", "1", "--task", "add2_digit4"]) == 2
    assert "--bridge-to" in capsys.readouterr().err


@pytest.mark.parametrize("channel, value, tamper, words", [
    ("9.mlp.resid_delta[0]", "1", None, "layers 0..1"),
    ("final_resid[" + "9" * 5000 + "]", "1", None, "should look like"),
    ("final_resid[0]", "1e308", None, "--value"),
    ("final_resid[0]", "1", lambda s: s.popitem(), "does not match"),
    ("final_resid[0]", "1", "garbage", "not a readable safetensors"),
], ids=["layer past the model", "5,000-digit channel", "absurd value", "bridges missing a tensor", "bridges garbage"])
def test_bad_steering_input_is_one_line(bridged, tmp_path, capsys, channel, value, tamper, words):
    model = bridged
    if tamper is not None:
        model = tmp_path / "sparse"
        shutil.copytree(bridged, model)
        if tamper == "garbage":
            (model / BRIDGES_FILE).write_bytes(b"not safetensors")
        else:
            state = load_file(str(model / BRIDGES_FILE))
            tamper(state)
            save_file(state, str(model / BRIDGES_FILE))
    code = main(["steer", str(model), "--channel", channel, "--value", value, "--prompt", "12+34=",
                 "--tokens", "0,1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
