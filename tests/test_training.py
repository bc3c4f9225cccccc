import json

import pytest
import torch
from safetensors.torch import load_file

import sparsecircuits as sc
from sparsecircuits import AdditionData, DataConfig, RunConfig, SparseTransformer, TrainConfig, Trainer
from sparsecircuits.config_io import to_dict
from sparsecircuits.training import checkpoint as ckpt
from sparsecircuits.training.checkpoint import checkpoints

from conftest import small_config


def tiny_run(**train) -> RunConfig:
    t = dict(steps=24, batch_size=32, lr=1e-2, density=0.1, checkpoint_every=8, autocast="none", device="cpu")
    t.update(train)
    return RunConfig(model=small_config(), data=DataConfig(n_digits=2, n_test=200), train=TrainConfig(**t))


def test_addition_data_is_zero_padded_and_splits_never_overlap():
    data = AdditionData(n_digits=2, seed=3, n_test=1000)
    assert data.text(36, 28) == "36+28=00064"
    assert data.tokenizer.decode(data.encode(torch.tensor([36 * 100 + 28]))[0]) == "36+28=00064"
    assert len(set(data.train_ids.tolist()) & set(data.test_ids.tolist())) == 0
    assert len(data.test_ids) == 1000 and len(data.train_ids) == 9000
    x, y = data.train_batch(5, 64)
    assert x.shape == (64, 10) and (y[:, :5] == -1).all() and (y[:, 5:] >= 0).all()
    assert torch.equal(data.train_batch(5, 64)[0], x)  # a batch is a function of (seed, step)
    seen = {int(a) * 100 + int(b) for a, b in zip(x[:, 0] * 10 + x[:, 1], x[:, 3] * 10 + x[:, 4])}
    assert not seen & set(data.test_ids.tolist())


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    cfg = small_config(sink=True, afrac=0.5, norm="layernorm", tied=True, activation="relu")
    model = SparseTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sc.save(model, tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = sc.load(tmp_path / "m")
    idx = torch.randint(0, 12, (3, 12))
    with torch.no_grad():
        assert torch.equal(model(idx), loaded(idx))
    assert loaded.cfg == cfg
    assert set(load_file(str(tmp_path / "m" / "model.safetensors"))) == set(model.state_dict())


def test_sparse_training_keeps_the_exact_density_and_saves_a_loadable_model(tmp_path):
    run = tiny_run()
    model = sc.train(run, tmp_path / "out", progress=False)
    report = sc.sparsity_report(model)
    wte = report["per_tensor"]["wte.weight"]
    c_fc = report["per_tensor"]["blocks.0.mlp.c_fc.weight"]
    assert c_fc["nonzero"] == round(0.1 * c_fc["numel"])
    assert wte["nonzero"] == round(0.1 ** 0.5 * wte["numel"])
    loaded = sc.load(tmp_path / "out")
    assert sc.sparsity_report(loaded)["nonzero_weights"] == report["nonzero_weights"]
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert sc.config_io.from_dict(RunConfig, saved) == run
    assert (tmp_path / "out" / "tokenizer.json").exists()


def test_resume_after_a_kill_ends_with_the_same_weights(tmp_path):
    run = tiny_run(steps=24, checkpoint_every=8)
    straight_trainer = Trainer(run, tmp_path / "a", progress=False)
    straight = straight_trainer.fit()

    class Killed(Exception):
        pass

    first = Trainer(run, tmp_path / "b", progress=False)
    original = first.train_step

    def dies_at_step_13(step):
        if step == 13:
            raise Killed
        return original(step)

    first.train_step = dies_at_step_13
    with pytest.raises(Killed):
        first.fit()
    assert [p.name for p in checkpoints(tmp_path / "b")] == ["checkpoint-00000008"]
    assert json.loads((tmp_path / "b" / "checkpoint-00000008" / "state.json").read_text())["step"] == 8
    assert not (tmp_path / "b" / "model.safetensors").exists()

    second = Trainer(run, tmp_path / "b", progress=False)
    assert second.resume() and second.step == 8
    resumed = second.fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert second.history == straight_trainer.history  # the loss log is not lost either


def test_a_kill_at_any_instant_of_a_checkpoint_write_loses_nothing(tmp_path, monkeypatch):
    """Killed after the new checkpoint is in place but before the old one is gone, and killed while
    writing the new one: resume takes the newest complete checkpoint, and the temp folder goes."""
    run = tiny_run(steps=24, checkpoint_every=8)
    straight = Trainer(run, tmp_path / "a", progress=False).fit()
    out = tmp_path / "b"

    class Killed(Exception):
        pass

    trainer = Trainer(run, out, progress=False)
    real_rmtree = ckpt.shutil.rmtree

    def dies_removing_the_old(path, *a, **k):   # the instant between the new folder and the old one's removal
        raise Killed
    for step in range(16):
        trainer.step = step
        trainer.train_step(step)
        trainer.step += 1
        if trainer.step == 8:
            trainer.checkpoint()
    monkeypatch.setattr(ckpt.shutil, "rmtree", dies_removing_the_old)
    with pytest.raises(Killed):
        trainer.checkpoint()                        # step 16 written, step 8 not yet removed
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)
    assert [p.name for p in checkpoints(out)] == ["checkpoint-00000008", "checkpoint-00000016"]

    def dies_writing(*a, **k):                       # a kill in the middle of writing step 24's weights
        raise Killed
    second = Trainer(run, out, progress=False)
    assert second.resume() and second.step == 16
    monkeypatch.setattr(ckpt, "save_file", dies_writing)
    with pytest.raises(Killed):
        ckpt.save_checkpoint(out, second.saved, second.opt, {"step": 24})
    monkeypatch.undo()
    leftover = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert leftover == []                            # an exception removes its own temp folder ...
    stale = out / f".checkpoint-00000024.{2 ** 22 + 7}.abcd.tmp"
    stale.mkdir()                                    # ... and a SIGKILL's temp goes on the next run
    third = Trainer(run, out, progress=False)
    assert third.resume() and third.step == 16 and not stale.exists()
    resumed = third.fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert [p.name for p in checkpoints(out)] == ["checkpoint-00000024"]  # only the last one stays


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch):
    from safetensors import SafetensorError
    run = tiny_run(steps=16, checkpoint_every=8)
    trainer = Trainer(run, tmp_path / "o", progress=False)
    for step in range(8):
        trainer.train_step(step)
    trainer.step = 8
    trainer.checkpoint()

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")
    monkeypatch.setattr(ckpt, "save_file", full)
    trainer.step = 12
    with pytest.raises(sc.UserError, match="cannot write a checkpoint.*previous one is kept"):
        trainer.checkpoint()
    assert [p.name for p in checkpoints(tmp_path / "o")] == ["checkpoint-00000008"]
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    Trainer(tiny_run(steps=8), tmp_path / "o", progress=False).fit()
    other = Trainer(tiny_run(steps=8, lr=3e-3), tmp_path / "o", progress=False)
    with pytest.raises(sc.UserError, match="different configuration"):
        other.resume()


def test_dense_training_learns_one_digit_addition(tmp_path):
    run = RunConfig(model=small_config(d_model=64, d_mlp=256), data=DataConfig(n_digits=1, n_test=20),
                    train=TrainConfig(steps=300, batch_size=64, lr=1e-2, density=1.0, autocast="none"))
    model = sc.train(run, tmp_path / "m", progress=False)
    report = sc.evaluate(tmp_path / "m")
    assert report["accuracy"] >= 0.9, report
    assert report["density"] == 1.0
    assert sc.answer_report(model, AdditionData(n_digits=1, n_test=20))["accuracy"] == report["accuracy"]


def test_sparsify_anneals_a_dense_model_to_the_target_and_keeps_the_base(tmp_path):
    base = RunConfig(model=small_config(), data=DataConfig(n_digits=1, n_test=20),
                     train=TrainConfig(steps=30, batch_size=32, density=1.0, autocast="none"))
    sc.train(base, tmp_path / "base", progress=False)
    sparse = sc.sparsify(tmp_path / "base", 0.05, tmp_path / "sparse", progress=False, steps=20,
                         distill_weight=0.5, autocast="none")
    run = json.loads((tmp_path / "sparse" / "run.json").read_text())
    assert run["train"]["density"] == 0.05 and run["train"]["distill_weight"] == 0.5
    assert run["init_from"] == str((tmp_path / "base").resolve())
    c_attn = sparse.blocks[0].attn.c_attn.weight
    assert int((c_attn != 0).sum()) == round(0.05 * c_attn.numel())
    assert sc.evaluate(tmp_path / "base")["density"] == 1.0
    for again in (lambda: sc.train(base, tmp_path / "base", progress=False),
                  lambda: sc.sparsify(tmp_path / "base", 0.05, tmp_path / "sparse", progress=False, steps=20)):
        with pytest.raises(sc.UserError, match="already holds a model"):  # a new run would delete the old one's
            again()


def test_run_config_merges_a_file_a_starting_model_and_overrides(tmp_path):
    base = RunConfig(model=small_config(), train=TrainConfig(steps=7, lr=1e-3, density=1.0))
    (tmp_path / "run.json").write_text(json.dumps(to_dict(base)))
    run = sc.run_config(config=tmp_path / "run.json", steps=3, density=0.25, model_overrides={"afrac": 0.5})
    assert (run.train.steps, run.train.lr, run.train.density, run.model.afrac) == (3, 1e-3, 0.25, 0.5)
    assert run.model.d_model == small_config().d_model
    init = tmp_path / "init"
    sc.save(SparseTransformer(small_config(d_model=48)), init)
    shaped = sc.run_config(init_from=init)  # no config file: the run takes the starting model's shape
    assert shaped.model.d_model == 48 and shaped.init_from == str(init.resolve())
    with pytest.raises(sc.UserError, match="unknown preset 'nope'"):
        sc.run_config("nope", corpus=tmp_path / "never-built")
    assert not (tmp_path / "never-built").exists()
