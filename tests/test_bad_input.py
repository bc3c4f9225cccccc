"""Bad input across every subcommand, one case of each kind a user mistypes or a file can be broken:
each ends in one line on stderr starting with `error:`, exit code 2, and nothing half-written."""
import json
import math
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

import sparsecircuits as sc
from sparsecircuits import DataConfig, RunConfig, TrainConfig
from sparsecircuits.cli import main
from sparsecircuits.config_io import to_dict
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.frontier import sweep_preset

from conftest import small_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small trained adder, a circuit of it, a tiny code corpus and a few task files."""
    root = tmp_path_factory.mktemp("bad")
    run = RunConfig(model=small_config(d_model=48, d_mlp=128, n_head=4), data=DataConfig(n_digits=2),
                    train=TrainConfig(steps=300, batch_size=128, lr=1e-2, density=1.0, autocast="none"))
    sc.train(run, root / "model", progress=False)
    model = sc.load(root / "model")
    sc.prune(model, "add2_digit4", 1.0, progress=False, steps=40, n_train=128, n_test=64,
             require_reachable=False).save(root / "circuit")
    src = root / "src"
    src.mkdir()
    for i in range(6):
        (src / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n\nprint(f{i}('a'), \"b\")\n" * 20)
    build_corpus(root / "corpus", [src], vocab_size=300, val_percent=20, progress=lambda m: None)
    (root / "task.jsonl").write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "correct": str((a + b) % 10)}) + "\n"
                                             for a in range(10) for b in range(10)))
    return root


def copy(world, tmp_path, name):
    shutil.copytree(world / name, tmp_path / name)
    return tmp_path / name


def edit_json(path, fn):
    data = json.loads(path.read_text())
    path.write_text(json.dumps(fn(data)))


def tampered_circuit(world, tmp_path, fn):
    c = copy(world, tmp_path, "circuit")
    edit_json(c / "circuit.json", fn)
    return c


def with_weights(world, tmp_path, fn):
    m = copy(world, tmp_path, "model")
    state = load_file(str(m / "model.safetensors"))
    fn(state)
    save_file(state, str(m / "model.safetensors"))
    return m


def config_file(tmp_path, **sections):
    data = to_dict(RunConfig(model=small_config(), train=TrainConfig(steps=4, batch_size=8)))
    for section, values in sections.items():
        data[section].update(values)
    (tmp_path / "run.json").write_text(json.dumps(data))
    return tmp_path / "run.json"


def bad_utf8(tmp_path):
    (tmp_path / "t.jsonl").write_bytes(b'{"prompt": "1+2=\xff", "correct": "3"}\n')
    return tmp_path / "t.jsonl"


def lines(tmp_path, text, name="t.jsonl"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def folder(tmp_path, name):
    (tmp_path / name).mkdir(parents=True)
    return tmp_path / name


def tampered_checkpoint(tmp_path, fn):
    """`train --resume` of a run whose newest checkpoint's state.json `fn` rewrites."""
    run = RunConfig(model=small_config(), train=TrainConfig(steps=4, batch_size=8, checkpoint_every=2, autocast="none"))
    sc.train(run, tmp_path / "run", progress=False)
    (tmp_path / "run.json").write_text(json.dumps(to_dict(run)))
    state = next((tmp_path / "run").glob("checkpoint-*")) / "state.json"
    edit_json(state, fn)
    return ["train", "--config", tmp_path / "run.json", "--out", tmp_path / "run", "--resume"]


def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


OUT = "OUT"  # stands for tmp_path / "out", which must not exist afterwards

CASES = {
    # --- data loss ---
    "corpus onto a model": (lambda w, t: ["corpus", "build", "--out", copy(w, t, "model")], ["already exists"]),
    "corpus onto a file": (lambda w, t: ["corpus", "build", "--out", lines(t, "keep me", "f.txt")], ["already exists"]),
    "corpus onto a corpus": (lambda w, t: ["corpus", "build", "--out", copy(w, t, "corpus")], ["already exists"]),
    "corpus vocab 0": (lambda w, t: ["corpus", "build", "--out", OUT, "--vocab-size", "0"], ["vocab_size"]),
    "corpus vocab beyond uint16": (lambda w, t: ["corpus", "build", "--out", OUT, "--vocab-size", "100000"], ["vocab_size"]),
    # --- configs with absurd or ill-typed values ---
    "n_layer 10^9": (lambda w, t: ["train", "--config", config_file(t, model={"n_layer": 10 ** 9}), "--out", OUT],
                     ["too large"]),
    "n_head 10^6": (lambda w, t: ["train", "--config", config_file(t, model={"n_head": 10 ** 6}), "--out", OUT],
                    ["too large"]),
    "betas of length 3": (lambda w, t: ["train", "--config", config_file(t, train={"betas": [0.9, 0.9, 0.9]}),
                                        "--out", OUT], ["betas"]),
    "betas out of range": (lambda w, t: ["train", "--config", config_file(t, train={"betas": [0.9, 1.5]}),
                                         "--out", OUT], ["betas"]),
    "negative min_per_neuron": (lambda w, t: ["train", "--config", config_file(t, train={"min_per_neuron": -1}),
                                              "--out", OUT], ["min_per_neuron"]),
    "negative warm-up": (lambda w, t: ["train", "--config", config_file(t, train={"warmup_frac": -0.1}),
                                       "--out", OUT], ["warmup_frac"]),
    "steps 10^400": (lambda w, t: ["train", "--config", config_file(t), "--steps", "1" + "0" * 400, "--out", OUT],
                     ["steps", "too large"]),
    "d_model 10^400": (lambda w, t: ["train", "--config", config_file(t, model={"d_model": 10 ** 400}), "--out", OUT],
                       ["d_model", "too large"]),
    "seed 2^64 (train)": (lambda w, t: ["train", "--config", config_file(t), "--seed", str(2 ** 64), "--out", OUT],
                          ["seed"]),
    "data seed 2^40": (lambda w, t: ["train", "--config", config_file(t, data={"seed": 2 ** 40}), "--out", OUT],
                       ["seed"]),
    "data seed negative": (lambda w, t: ["train", "--config", config_file(t, data={"seed": -1}), "--out", OUT],
                           ["seed"]),
    "batch size 10^8": (lambda w, t: ["train", "--config", config_file(t), "--batch-size", "100000000", "--out", OUT],
                        ["batch_size"]),
    "lr nan (train)": (lambda w, t: ["train", "--config", config_file(t), "--lr", "nan", "--out", OUT], ["lr"]),
    "lr inf (train)": (lambda w, t: ["train", "--config", config_file(t), "--lr", "inf", "--out", OUT], ["lr"]),
    "steps 0": (lambda w, t: ["train", "--config", config_file(t), "--steps", "0", "--out", OUT], ["steps"]),
    "density nan": (lambda w, t: ["train", "--config", config_file(t), "--density", "nan", "--out", OUT], ["density"]),
    "unknown preset, before any corpus": (lambda w, t: ["train", "--preset", "nope", "--corpus", t / "c", "--out", OUT],
                                          ["unknown preset"]),
    "lr nan (sparsify)": (lambda w, t: ["sparsify", w / "model", "--density", "0.5", "--lr", "nan", "--out", OUT],
                          ["lr"]),
    "distill weight nan": (lambda w, t: ["sparsify", w / "model", "--density", "0.5", "--distill-weight", "nan",
                                         "--out", OUT], ["distill_weight"]),
    "sparsify without data": (lambda w, t: ["sparsify", w / "model_norun", "--density", "0.5", "--out", OUT],
                              ["--data"]),
    # --- tampered checkpoints: resuming refuses them before any step ---
    "checkpoint state a list": (lambda w, t: tampered_checkpoint(t, lambda d: [1]), ["corrupt"]),
    "checkpoint state without its step": (lambda w, t: tampered_checkpoint(t, lambda d: {
        k: v for k, v in d.items() if k != "step"}), ["corrupt"]),
    "checkpoint step of another checkpoint": (lambda w, t: tampered_checkpoint(t, lambda d: {**d, "step": -3}),
                                              ["corrupt"]),
    "checkpoint step a fraction": (lambda w, t: tampered_checkpoint(t, lambda d: {**d, "step": 2.5}), ["corrupt"]),
    "checkpoint history a number": (lambda w, t: tampered_checkpoint(t, lambda d: {**d, "history": 5}), ["corrupt"]),
    # --- model files ---
    "NaN weights": (lambda w, t: ["eval", with_weights(w, t, lambda s: s["blocks.0.mlp.c_fc.weight"].__setitem__(
        (0, 0), math.nan)), "--json", t / "r.json"], ["NaN or inf"]),
    "integer weights": (lambda w, t: ["eval", with_weights(w, t, lambda s: s.__setitem__(
        "wte.weight", s["wte.weight"].to(torch.int32)))], ["floating"]),
    "NaN weights (prune)": (lambda w, t: ["prune", with_weights(w, t, lambda s: s["wte.weight"].fill_(math.inf)),
                                          "--task", "add2_digit4", "--out", OUT], ["NaN or inf"]),
    "tokenizer.json missing a key": (lambda w, t: ["eval", (lambda m: (edit_json(m / "tokenizer.json", lambda d: {
        "type": "char"}), m)[1])(copy(w, t, "model"))], ["tokenizer.json"]),
    "tokenizer.json of the wrong type": (lambda w, t: ["eval", (lambda m: (edit_json(m / "tokenizer.json", lambda d: {
        "type": "char", "chars": 12}), m)[1])(copy(w, t, "model"))], ["tokenizer.json"]),
    "config with a string size": (lambda w, t: ["eval", (lambda m: (edit_json(m / "config.json", lambda d: {
        **d, "n_layer": "two"}), m)[1])(copy(w, t, "model"))], ["n_layer"]),
    "HF config with n_head 0": (lambda w, t: ["eval", hf_dir(t, n_head=0)], ["n_head"]),
    "HF config with a string eps": (lambda w, t: ["eval", hf_dir(t, layer_norm_epsilon="small")],
                                    ["layer_norm_epsilon"]),
    "HF config with a numeric architecture": (lambda w, t: ["eval", hf_dir(t, model_type=None, architectures=5)],
                                              ["not converted"]),
    "HF config with a numeric model_type": (lambda w, t: ["eval", hf_dir(t, model_type=5)], ["not converted"]),
    "HF config with a list activation": (lambda w, t: ["eval", hf_dir(t, activation_function=[1])],
                                         ["not converted"]),
    "HF config with a string n_layer": (lambda w, t: ["eval", hf_dir(t, n_layer="2")], ["n_layer"]),
    "release config that is a list": (lambda w, t: ["eval", release_dir(t, [1, 2])], ["beeg_config.json"]),
    "release config with string sizes": (lambda w, t: ["eval", release_dir(t, {"n_layer": "2", "d_model": 8,
                                                                                "n_head": 2, "vocab_size": 5,
                                                                                "block_size": 4})], ["n_layer"]),
    "release config with numeric AbsTopK locations": (lambda w, t: ["eval", release_dir(t, {
        "n_layer": 1, "d_model": 8, "n_head": 2, "vocab_size": 5, "block_size": 4, "afrac_loctypes": 5})],
        ["afrac_loctypes"]),
    # --- eval and tasks ---
    "eval --json onto a folder": (lambda w, t: ["eval", w / "model", "--tasks", "add2_digit4", "-n", "4",
                                                "--json", folder(t, "rdir")], ["rdir", "is a directory"]),
    "eval -n 0": (lambda w, t: ["eval", w / "model", "--tasks", "add2_digit4", "-n", "0"], ["-n"]),
    "eval -n -5": (lambda w, t: ["eval", w / "model", "--tasks", "add2_digit4", "-n", "-5"], ["-n"]),
    "JSONL task not UTF-8 (eval)": (lambda w, t: ["eval", w / "model", "--tasks", bad_utf8(t)], ["UTF-8"]),
    "JSONL task not UTF-8 (tasks show)": (lambda w, t: ["tasks", "show", bad_utf8(t)], ["UTF-8"]),
    "JSONL task not UTF-8 (prune)": (lambda w, t: ["prune", w / "model", "--task", bad_utf8(t), "--out", OUT],
                                     ["UTF-8"]),
    "JSONL task with an empty prompt": (lambda w, t: ["tasks", "show", lines(
        t, json.dumps({"prompt": "", "correct": "3"}) + "\n")], ["empty prompt"]),
    "JSONL task of one line": (lambda w, t: ["prune", w / "model", "--task", lines(
        t, json.dumps({"prompt": "1+2=", "correct": "3"}) + "\n"), "--out", OUT], ["examples"]),
    "JSONL task with a 5,000-digit number": (lambda w, t: ["tasks", "show", lines(
        t, '{"prompt": "1+2=", "correct": "3", "n": ' + "9" * 5000 + "}\n")], ["not valid JSON"]),
    "JSONL task with a lone surrogate": (lambda w, t: ["tasks", "show", lines(
        t, '{"prompt": "1+\\ud800=", "correct": "3"}\n')], ["surrogate"]),
    "sweep file nested 50,000 deep": (lambda w, t: ["frontier", lines(t, "[" * 50000, "s.json"), "--out", OUT],
                                      ["not valid JSON"]),
    "corpus manifest of the wrong types": (lambda w, t: ["eval", w / "model", "--corpus", (lambda c: (edit_json(
        c / "manifest.json", lambda d: {**d, "splits": {"train": "x"}}), c)[1])(copy(w, t, "corpus"))], ["corrupt"]),
    "tasks show -n -1": (lambda w, t: ["tasks", "show", "add2_digit4", "-n", "-1"], ["-n"]),
    "tasks show -n 10^8": (lambda w, t: ["tasks", "show", "add2_digit4", "-n", "100000000"], ["-n"]),
    # --- prune ---
    "target loss inf": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--target-loss", "inf",
                                      "--out", OUT], ["target loss"]),
    "target loss nan": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--target-loss", "nan",
                                      "--out", OUT], ["target loss"]),
    "lr nan (prune)": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--lr", "nan", "--out", OUT],
                       ["lr"]),
    "search 0": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--search", "0", "--out", OUT],
                 ["search"]),
    "search -3": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--search", "-3", "--out", OUT],
                  ["search"]),
    "prune steps -1": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--steps", "-1", "--out", OUT],
                       ["steps"]),
    "prune seed 2^64": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--seed", str(2 ** 64),
                                      "--out", OUT], ["seed", "too large"]),
    "prune onto a folder named circuit.json": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4", "--out",
                                                            folder(t, "c/circuit.json").parent], ["is a directory"]),
    "out is a file": (lambda w, t: ["prune", w / "model", "--task", "add2_digit4",
                                    "--out", lines(t, "x", "f.txt")], ["not a directory"]),
    # --- tampered circuits ---
    "circuit node out of range": (lambda w, t: ["validate", tampered_circuit(w, t, lambda d: {
        **d, "nodes": {"0.attn.q": [10 ** 6]}})], ["out of range"]),
    "circuit node negative": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "nodes": {"0.attn.q": [-1]}}), "--out", t / "r.html"], ["out of range"]),
    "circuit unknown site": (lambda w, t: ["validate", tampered_circuit(w, t, lambda d: {
        **d, "nodes": {"0.attn.z": [1]}})], ["site"]),
    "circuit nodes of the wrong type": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "nodes": [1, 2]}), "--out", t / "r.html"], ["corrupt"]),
    "circuit settings of the wrong type": (lambda w, t: ["validate", tampered_circuit(w, t, lambda d: {
        **d, "settings": "x"})], ["corrupt"]),
    "circuit task a number": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {**d, "task": 5}),
                                            "--out", t / "r.html"], ["corrupt"]),
    "circuit model path a number": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "settings": {**d["settings"], "model": 5}}), "--out", t / "r.html"], ["corrupt"]),
    "circuit calibration of another task": (lambda w, t: ["validate", tampered_circuit(w, t, lambda d: {
        **d, "calibration": {"scale": 1.0, "bias": [0.0] * 3}}), "--no-controls"], ["calibration"]),
    "circuit edge between no nodes": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "edges": [["bogus", "x", 1.0]]}), "--out", t / "r.html"], ["corrupt"]),
    "circuit edge weight inf": (lambda w, t: ["export", tampered_circuit(w, t, lambda d: {
        **d, "edges": [["0.attn.q[0]", "0.attn.k[0]", math.inf]]}), "--format", "json-graph",
        "--out", t / "g.json"], ["weight"]),
    "circuit trained loss NaN": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "settings": {**d["settings"], "trained": {"loss": math.nan}}}), "--out", t / "r.html"], ["corrupt"]),
    "circuit seed a word": (lambda w, t: ["validate", tampered_circuit(w, t, lambda d: {
        **d, "settings": {**d["settings"], "seed": "x"}})], ["corrupt"]),
    "circuit with a NaN loss": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {**d, "loss": math.nan}),
                                              "--out", t / "r.html"], ["loss"]),
    # --- viewer, figures, export ---
    "viz port -1": (lambda w, t: ["viz", w / "circuit", "--serve", "--port", "-1"], ["--port"]),
    "viz onto a folder": (lambda w, t: ["viz", w / "circuit", "--out", folder(t, "r.html")], ["is a directory"]),
    "figure onto a folder": (lambda w, t: ["figure", w / "circuit", "--out", folder(t, "f.png")], ["is a directory"]),
    "circuit calibration of another task (viz)": (lambda w, t: ["viz", tampered_circuit(w, t, lambda d: {
        **d, "calibration": {"scale": 1.0, "bias": [0.0] * 3}}), "--out", t / "r.html"], ["calibration"]),
    "figure with a bad kind of file": (lambda w, t: ["figure", w / "circuit", "--out", t / "f.txt"], [".png"]),
    "figure prompt -1": (lambda w, t: ["figure", w / "circuit", "--out", t / "f.png", "--prompt", "-1"], ["--prompt"]),
    "export onto a folder": (lambda w, t: ["export", w / "circuit", "--format", "graphml", "--out", t], []),
    # --- steer and demo ---
    "steer an empty prompt": (lambda w, t: ["steer", w / "model", "--channel", "0.resid_mid[1]", "--value", "1",
                                            "--prompt", "", "--tokens", "1,2"], []),
    "steer value nan": (lambda w, t: ["steer", w / "model", "--channel", "0.resid_mid[1]", "--value", "nan",
                                      "--task", "add2_digit4"], ["--value"]),
    "demo out is a file": (lambda w, t: ["demo", "--quick", "--out", lines(t, "x", "f.txt")], ["not a directory"]),
    # --- frontier sweeps and activations ---
    "sweep with an unknown key": (lambda w, t: ["frontier", sweep_file(t, colour="red"), "--out", OUT], ["colour"]),
    "sweep with an empty grid": (lambda w, t: ["frontier", sweep_file(t, widths=[], dense_widths=[]), "--out", OUT],
                                 ["empty"]),
    "sweep task no tokenizer encodes": (lambda w, t: ["frontier", sweep_file(t, tasks=["close_quote"]), "--out", OUT],
                                        ["close_quote"]),
    "sweep target 0": (lambda w, t: ["frontier", sweep_file(t, targets=[0.0]), "--out", OUT], ["target"]),
    "sweep target negative": (lambda w, t: ["frontier", sweep_file(t, targets=[-1.0]), "--out", OUT], ["target"]),
    "sweep density 0": (lambda w, t: ["frontier", sweep_file(t, densities=[0.0]), "--out", OUT], ["density"]),
    "sweep unknown prune key": (lambda w, t: ["frontier", sweep_file(t, prune={"stepz": 3}), "--out", OUT], ["stepz"]),
    "sweep onto a model": (lambda w, t: ["frontier", sweep_file(t), "--out", copy(w, t, "model")], ["not empty"]),
    "sweep jobs 0": (lambda w, t: ["frontier", sweep_file(t), "--out", OUT, "--jobs", "0"], ["--jobs"]),
    "sweep preset unknown": (lambda w, t: ["frontier", "--preset", "nope", "--out", OUT], ["unknown sweep preset"]),
    "sweep quick of a python preset": (lambda w, t: ["frontier", "--preset", "python-cpu", "--quick", "--corpus",
                                                     w / "corpus", "--out", OUT], ["--quick"]),
    "sweep cell unknown": (lambda w, t: ["frontier", sweep_file(t), "--out", OUT, "--cell", "w9-dense"], ["w9-dense"]),
    "activations set unknown": (lambda w, t: ["activations", w / "model", "--data", t / "absent", "--out", OUT],
                                ["absent"]),
    "activations -n 0": (lambda w, t: ["activations", w / "model", "-n", "0", "--out", OUT], ["-n"]),
    "activations without run.json": (lambda w, t: ["activations", w / "model_norun", "--out", OUT], ["--corpus"]),
    "activations figure path a folder": (lambda w, t: ["activations", w / "model", "-n", "2", "--out",
                                                       folder(t, "acts/activations.png").parent], ["is a directory"]),
    "activations text not UTF-8": (lambda w, t: ["activations", w / "model", "--data", bad_utf8(t), "--out", OUT],
                                   ["UTF-8"]),
}


def sweep_file(tmp_path, **fields):
    data = {**to_dict(sweep_preset("arithmetic-cpu", quick=True)), **fields}
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    return tmp_path / "sweep.json"


def hf_dir(tmp_path, **config):
    path = tmp_path / "hf"
    path.mkdir()
    base = {"model_type": "gpt2", "vocab_size": 16, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2}
    (path / "config.json").write_text(json.dumps({**base, **config}))
    save_file({"transformer.wte.weight": torch.zeros(16, 8)}, str(path / "model.safetensors"))
    return path


def release_dir(tmp_path, config):
    path = tmp_path / "release"
    path.mkdir()
    (path / "beeg_config.json").write_text(json.dumps(config))
    torch.save({"transformer.wte.weight": torch.zeros(5, 8)}, path / "final_model.pt")
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(world, tmp_path, capsys, case):
    if not (world / "model_norun").exists():
        shutil.copytree(world / "model", world / "model_norun")
        (world / "model_norun" / "run.json").unlink()
    build, words = CASES[case]
    argv = [str(tmp_path / "out") if a == OUT else str(a) for a in build(world, tmp_path)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines_ = err.strip().splitlines()
    assert code == 2 and len(lines_) == 1 and lines_[0].startswith("error:"), (case, code, err)
    for w in words:
        assert w in lines_[0], (case, w, lines_[0])
    assert not (tmp_path / "out").exists(), case
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, (case, set(after) ^ set(before))      # nothing written, nothing removed


def test_a_busy_port_is_refused_before_any_model_work(world, capsys):
    s = busy_port()
    try:
        code = main(["viz", str(world / "circuit"), "--serve", "--port", str(s.getsockname()[1])])
    finally:
        s.close()
    err = capsys.readouterr().err
    assert code == 2 and "in use" in err and err.count("\n") == 1
