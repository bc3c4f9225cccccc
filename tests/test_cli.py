import argparse
import json
import subprocess
import sys

import pytest

from sparsecircuits import DataConfig, RunConfig, TrainConfig
from sparsecircuits import train as sc_train
from sparsecircuits.cli import main
from sparsecircuits.cli.main import build_parser
from sparsecircuits.config_io import to_dict
from sparsecircuits.training.checkpoint import checkpoints

from conftest import small_config


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "model"
    run = RunConfig(model=small_config(), data=DataConfig(n_digits=1, n_test=20),
                    train=TrainConfig(steps=6, batch_size=16, density=1.0, autocast="none"))
    sc_train(run, path, progress=False)
    return path


def write_config(path, **sections):
    data = to_dict(RunConfig(model=small_config(), train=TrainConfig(steps=4, batch_size=8)))
    for section, values in sections.items():
        data[section].update(values)
    path.write_text(json.dumps(data))
    return path


def test_train_eval_and_sparsify_from_the_command_line(capsys, tmp_path, base_model):
    cfg = write_config(tmp_path / "run.json", train={"autocast": "none"})
    code, out, _ = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--density", "0.2", "--quiet")
    assert code == 0 and (tmp_path / "t" / "model.safetensors").exists()
    code, out, _ = run_cli(capsys, "eval", tmp_path / "t", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and "exact match" in out and "mlp.c_fc.weight" in out and "layer 1" in out
    assert report["per_tensor"]["blocks.1.mlp.c_fc.weight"]["nonzero"] == round(0.2 * 64 * 32)
    code, out, _ = run_cli(capsys, "sparsify", base_model, "--density", "0.1", "--out", tmp_path / "s",
                           "--steps", "4", "--quiet", "--autocast", "none")
    assert code == 0 and json.loads((tmp_path / "s" / "run.json").read_text())["train"]["density"] == 0.1


def test_train_refuses_to_overwrite_a_finished_run(capsys, tmp_path):
    cfg = write_config(tmp_path / "run.json")
    assert run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--quiet")
    assert_one_line_error(code, err, "--resume")
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--quiet", "--resume")
    assert code == 0


@pytest.mark.parametrize("sections,words", [
    ({"train": {"stepz": 3}}, ["unknown", "stepz"]),
    ({"model": {"d_model": "wide"}}, ["d_model", "integer"]),
    ({"train": {"density": 1.5}}, ["density"]),
    ({"train": {"density": 0}}, ["density"]),
    ({"model": {"afrac": 0.001}}, ["afrac"]),
    ({"model": {"afrac": 2.0}}, ["afrac"]),
])
def test_bad_train_configs_fail_cleanly_and_write_nothing(capsys, tmp_path, sections, words):
    cfg = write_config(tmp_path / "run.json", **sections)
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag,value", [("--density", "0"), ("--density", "-1"), ("--density", "1.01"),
                                        ("--afrac", "0.0001")])
def test_bad_train_flags_fail_cleanly(capsys, tmp_path, flag, value):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "out", flag, value, "--quiet")
    assert_one_line_error(code, err)
    assert not (tmp_path / "out").exists()


def test_config_that_is_not_json_or_missing(capsys, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = run_cli(capsys, "train", "--config", tmp_path / "bad.json", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "not valid JSON")
    code, _, err = run_cli(capsys, "train", "--config", tmp_path / "none.json", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "none.json")
    assert not (tmp_path / "o").exists()


def corrupt_copies(base_model, tmp_path):
    """Model directories broken in each way a user meets: garbage weights, bad config, wrong shapes."""
    import shutil
    garbage = tmp_path / "garbage"
    shutil.copytree(base_model, garbage)
    (garbage / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    truncated = tmp_path / "truncated"
    shutil.copytree(base_model, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    reshaped = tmp_path / "reshaped"
    shutil.copytree(base_model, reshaped)
    cfg = json.loads((reshaped / "config.json").read_text())
    cfg["d_mlp"] = 96
    (reshaped / "config.json").write_text(json.dumps(cfg))
    badcfg = tmp_path / "badcfg"
    shutil.copytree(base_model, badcfg)
    (badcfg / "config.json").write_text('{"n_layer": 2, "colour": "blue"}')
    return {"missing": (tmp_path / "nowhere", "does not exist"), "garbage": (garbage, "safetensors"),
            "truncated": (truncated, "safetensors"), "reshaped": (reshaped, "mis-shaped"),
            "badcfg": (badcfg, "colour")}


def test_missing_or_corrupt_model_directories(capsys, tmp_path, base_model):
    for kind, (path, word) in corrupt_copies(base_model, tmp_path).items():
        code, _, err = run_cli(capsys, "eval", path)
        assert_one_line_error(code, err, word)
        code, _, err = run_cli(capsys, "sparsify", path, "--density", "0.1", "--out", tmp_path / f"s_{kind}")
        assert_one_line_error(code, err, word)
        assert not (tmp_path / f"s_{kind}").exists()
        code, _, err = run_cli(capsys, "train", "--init-from", path, "--out", tmp_path / f"t_{kind}")
        assert_one_line_error(code, err, word)
        assert not (tmp_path / f"t_{kind}").exists()


@pytest.mark.parametrize("density", ["0", "1.5", "-0.1"])
def test_sparsify_density_outside_zero_one(capsys, tmp_path, base_model, density):
    code, _, err = run_cli(capsys, "sparsify", base_model, "--density", density, "--out", tmp_path / "s")
    assert_one_line_error(code, err, "density")
    assert not (tmp_path / "s").exists()


def test_corrupt_checkpoint_on_resume(capsys, tmp_path):
    cfg = write_config(tmp_path / "run.json", train={"checkpoint_every": 2})
    assert run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--quiet")[0] == 0
    (checkpoints(tmp_path / "t")[-1] / "optimizer.safetensors").write_bytes(b"junk")
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "t", "--resume", "--quiet")
    assert_one_line_error(code, err, "optimizer.safetensors")


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sparsecircuits", "eval", str(tmp_path / "absent")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: model directory {tmp_path / 'absent'} does not exist"]
    assert "Traceback" not in proc.stderr


def _subcommands(parser, prefix=()):
    """Every leaf subcommand of the parser, as argument lists: ["train"], ["corpus", "build"], ..."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return [list(prefix)]
    return [c for name, sub in actions[0].choices.items() for c in _subcommands(sub, (*prefix, name))]


def test_every_subcommand_has_help(capsys):
    commands = _subcommands(build_parser())
    names = {" ".join(c) for c in commands}
    assert {"demo", "train", "sparsify", "eval", "corpus build", "tasks list", "tasks show", "prune", "validate",
            "viz", "figure", "export", "steer"} <= names
    for cmd in commands:
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: sparsecircuits " + " ".join(cmd)), cmd
        assert len(out.splitlines()) > 3, cmd  # options are described, not only the usage line


def test_train_init_from_starts_at_the_given_weights(capsys, tmp_path, base_model):
    code, _, _ = run_cli(capsys, "train", "--init-from", base_model, "--out", tmp_path / "t", "--steps", "1",
                         "--lr", "1e-9", "--quiet", "--autocast", "none")
    assert code == 0
    import sparsecircuits as sc
    start, after = sc.load(base_model), sc.load(tmp_path / "t")
    assert after.cfg == start.cfg
    diff = max(float((a - b).abs().max()) for a, b in zip(start.state_dict().values(), after.state_dict().values()))
    assert diff < 1e-6  # one step at a tiny learning rate: still the base model's weights
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["init_from"] == str(base_model.resolve())
