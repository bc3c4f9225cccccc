import json
import math
import os

import numpy as np
import pytest
import torch

import sparsecircuits as sc
from sparsecircuits import DataConfig, RunConfig, TrainConfig
from sparsecircuits.cli import main
from sparsecircuits.config_io import from_dict, to_dict
from sparsecircuits.data.corpus import Corpus, CorpusData, build_corpus, is_validation
from sparsecircuits.tasks import PYTHON_TASKS, required_tokens
from sparsecircuits.tasks.evaluate import evaluate_task
from sparsecircuits.training.presets import preset

from conftest import small_config


def small_sources(root):
    (root / "pkg" / "sub").mkdir(parents=True)
    files = {
        "pkg/a.py": "def add(a, b):\n    return a + b\n" * 20,
        "pkg/b.py": "class Box:\n    def __init__(self, items):\n        self.items = items\n" * 20,
        "pkg/sub/c.py": "for i in range(10):\n    print(f'{i}')\n" * 20,
        "pkg/sub/copy_of_a.py": "def add(a, b):\n    return a + b\n" * 20,
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "pkg" / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (root / "pkg" / "notes.txt").write_text("not python")
    for i in range(30):
        (root / "pkg" / f"gen_{i}.py").write_text(f"value_{i} = [{i}, {i + 1}]\nname_{i} = 'x{i}'\n" * 5)
    return root / "pkg"


def test_build_drops_duplicates_and_non_utf8_and_splits_by_content(tmp_path):
    src = small_sources(tmp_path)
    os.mkfifo(src / "pipe.py")  # not a file: reading it would wait for a writer forever
    manifest = build_corpus(tmp_path / "c", [src], vocab_size=400, val_percent=20, progress=lambda m: None)
    assert manifest["skipped"] == {"not_utf8": 1, "duplicates": 1}
    paths = [f["path"] for f in manifest["files"]]
    assert len(paths) == 33 and not any(p.endswith(".txt") for p in paths)
    for f in manifest["files"]:
        assert f["split"] == ("val" if is_validation(f["sha256"], 20) else "train")
    assert {f["split"] for f in manifest["files"]} == {"train", "val"}
    # the split follows content, not names: a rebuild from renamed files gives the same split
    again = build_corpus(tmp_path / "c2", [src], vocab_size=400, val_percent=20, progress=lambda m: None)
    assert {f["sha256"]: f["split"] for f in again["files"]} == {f["sha256"]: f["split"] for f in manifest["files"]}


def test_shards_are_uint16_and_decode_back_to_the_files(tmp_path):
    src = small_sources(tmp_path)
    manifest = build_corpus(tmp_path / "c", [src], vocab_size=400, val_percent=20, progress=lambda m: None)
    corpus = Corpus(tmp_path / "c")
    assert all(isinstance(a, np.memmap) and a.dtype == np.uint16 for a in corpus.splits["train"].arrays)
    stream = corpus.window("train", 0, corpus.splits["train"].tokens).tolist()
    texts, current = [], []
    for t in stream:
        if t == corpus.tokenizer.eot_id:
            texts.append(corpus.tokenizer.decode(current))
            current = []
        else:
            current.append(t)
    expected = [open(f["path"]).read() for f in manifest["files"] if f["split"] == "train"]
    assert texts == expected
    assert sum(f["tokens"] + 1 for f in manifest["files"] if f["split"] == "train") == len(stream)


def test_training_windows_are_random_and_a_function_of_the_step(stdlib_corpus):
    data = CorpusData(stdlib_corpus, block_size=64, seed=1)
    x, y = data.train_batch(3, 8)
    assert x.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(data.train_batch(3, 8)[0], x) and not torch.equal(data.train_batch(4, 8)[0], x)
    assert int(x.max()) < 2048 and data.tokenizer.vocab_size == 2048 and data.tokenizer.eot_id == 2047


def test_default_corpus_makes_every_task_token_single(stdlib_corpus):
    manifest = json.loads((stdlib_corpus / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 2_000_000 and manifest["splits"]["val"]["tokens"] > 50_000
    tok = Corpus(stdlib_corpus).tokenizer
    for s in required_tokens():
        assert tok.single_token(s) is not None, repr(s)
    for name, task in PYTHON_TASKS.items():
        e = task.examples("test", 2)[0]
        ids = tok.encode(e.prompt + e.correct)
        assert ids[-1] == tok.single_token(e.correct) or tok.encode(e.prompt)[:-1] == ids[:len(ids) - 2], name


def test_an_untrained_model_scores_chance_on_every_python_task(stdlib_corpus):
    model = sc.SparseTransformer(small_config(vocab_size=2048, block_size=256)).eval()
    tok = Corpus(stdlib_corpus).tokenizer
    losses = []
    for name, task in PYTHON_TASKS.items():
        r = evaluate_task(model, task, tok, n=40)
        assert abs(r["loss"] - math.log(2)) < 0.1, (name, r)  # tiny random logits: near ln 2 each
        assert r["accuracy"] == round(r["accuracy"] * r["n"]) / r["n"], (name, r)  # a count, exactly
        losses.append(r["loss"])
    assert abs(sum(losses) / len(losses) - math.log(2)) < 0.02


def test_corpus_training_and_eval_with_tasks(stdlib_corpus, tmp_path, capsys):
    run = RunConfig(model=small_config(vocab_size=2048, block_size=64),
                    data=DataConfig(kind="corpus", path=str(stdlib_corpus)),
                    train=TrainConfig(steps=30, batch_size=8, density=0.25, autocast="none"))
    sc.train(run, tmp_path / "m", progress=False)
    assert sc.data.load_tokenizer(tmp_path / "m", 2048).eot_id == 2047
    code = main(["eval", str(tmp_path / "m"), "--tasks", "for_while,enumerate_range,add2_digit4", "-n", "20",
                 "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and "validation loss" in out and "for_while" in out
    assert 0 < report["val_loss"] < math.log(2048)
    assert [t["task"] for t in report["tasks"]] == ["for_while", "enumerate_range", "add2_digit4"]


def test_corpus_bad_inputs(tmp_path, capsys, stdlib_corpus):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("nothing")
    assert main(["corpus", "build", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Python files" in err[0] and not (tmp_path / "c").exists()

    src = small_sources(tmp_path / "s")
    build_corpus(tmp_path / "good", [src], vocab_size=300, progress=lambda m: None)
    import shutil
    for what in ("shard", "manifest", "truncated"):
        bad = tmp_path / f"bad_{what}"
        shutil.copytree(tmp_path / "good", bad)
        if what == "shard":
            data = bytearray((bad / "train_000.bin").read_bytes())
            data[10] ^= 0xFF
            (bad / "train_000.bin").write_bytes(bytes(data))
        elif what == "manifest":
            (bad / "manifest.json").write_text('{"splits": ')
        else:
            (bad / "train_000.bin").write_bytes((bad / "train_000.bin").read_bytes()[:-2])
        with pytest.raises(sc.UserError, match="corrupt"):
            Corpus(bad)
    # a tokenizer that does not match the model's vocabulary
    run = RunConfig(model=small_config(vocab_size=2048, block_size=32),
                    data=DataConfig(kind="corpus", path=str(tmp_path / "good")), train=TrainConfig(steps=2))
    with pytest.raises(sc.UserError, match="vocab"):
        sc.Trainer(run, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_presets_same_shape_dense_long_and_fixed_nonzeros_as_width_grows():
    tiny, dense, long = preset("python-tiny", "c"), preset("python-tiny-dense", "c"), preset("python-tiny-long", "c")
    assert tiny.model == dense.model and tiny.train.density < 1 and dense.train.density == 1
    assert long.model == tiny.model and long.train.steps == 2 * tiny.train.steps
    assert (long.train.density, long.train.lr) == (tiny.train.density, tiny.train.lr)
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(tiny)))) == tiny

    def linear_nonzeros(ef):
        run = preset(f"python-paper-{ef}x", "c")
        m = run.model
        per_layer = m.d_model * 3 * m.n_head * m.d_head + m.n_head * m.d_head * m.d_model + 2 * m.d_model * m.d_mlp
        return m.n_layer * per_layer * run.train.density

    assert preset("python-paper-1x", "c").model.d_model == 256
    for ef in (2, 4, 8):
        assert linear_nonzeros(ef) == pytest.approx(linear_nonzeros(1), rel=0.01)


def test_train_preset_from_the_cli_with_overrides(stdlib_corpus, tmp_path, capsys):
    out = tmp_path / "tiny"
    code = main(["train", "--preset", "python-tiny", "--corpus", str(stdlib_corpus), "--steps", "3",
                 "--batch-size", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    expected = to_dict(preset("python-tiny", str(stdlib_corpus)))
    assert run["model"] == expected["model"]
    assert run["train"]["steps"] == 3 and run["train"]["batch_size"] == 2
    assert run["train"]["lr"] == expected["train"]["lr"] and run["train"]["density"] == expected["train"]["density"]
    model = sc.load(out)
    assert model.tokenizer.vocab_size == 2048
    linear = model.blocks[0].mlp.c_fc.weight
    assert int((linear != 0).sum()) == round(expected["train"]["density"] * linear.numel())
