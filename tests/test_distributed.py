"""Data-parallel training on CPU with gloo: 2 processes must hold identical sparse weights after
every step, match a single-process run over the same global batch, and only rank 0 writes."""
import json
import os
from dataclasses import replace
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparsecircuits import DataConfig, RunConfig, TrainConfig, Trainer
from sparsecircuits.config_io import to_dict
from sparsecircuits.frontier import sweep_preset

from conftest import small_config

STEPS = 12


def make_run() -> RunConfig:
    return RunConfig(model=small_config(), data=DataConfig(n_digits=2, n_test=100),
                     train=TrainConfig(steps=STEPS, batch_size=16, lr=1e-2, density=0.1, anneal_start=0.0,
                                       anneal_end=0.5, autocast="none", device="cpu", checkpoint_every=100))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(make_run(), out, progress=False)
    mismatches = []
    for step in range(STEPS):
        trainer.train_step(step)
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(2)]
        dist.all_gather(gathered, flat)
        if not torch.equal(gathered[0], gathered[1]) or not torch.equal(gathered[0] != 0, gathered[1] != 0):
            mismatches.append(step)
    if rank == 0:
        torch.save({"mismatches": mismatches, "state": trainer.model.state_dict()}, result)
    dist.barrier()  # neither rank leaves the group while the other still uses it
    dist.destroy_process_group()


def test_two_gloo_ranks_stay_identical_and_match_one_process(tmp_path):
    result = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(free_port(), str(tmp_path / "ddp"), str(result)), nprocs=2, join=True)
    ddp = torch.load(result, weights_only=True)
    assert ddp["mismatches"] == []  # identical weights and masks on both ranks after every step
    single = Trainer(make_run(), tmp_path / "single", progress=False)
    for step in range(STEPS):
        single.train_step(step)
    masks_equal = total = 0
    for name, p in single.model.state_dict().items():
        q = ddp["state"][name]
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), name
        masks_equal += int(((p != 0) == (q != 0)).sum())
        total += p.numel()
    assert masks_equal / total > 0.999


def test_torchrun_trains_and_only_rank_0_writes(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(to_dict(make_run())))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "sparsecircuits", "train", "--config", str(cfg),
                           "--out", str(out), "--quiet", "--checkpoint-every", "5"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("saved model to") == 1  # one rank reports, one rank writes
    assert sorted(p.name for p in out.iterdir()) == [f"checkpoint-{STEPS:08d}", "config.json", "model.safetensors", "run.json",
                                                       "tokenizer.json", "train_log.json"]
    state = json.loads((out / f"checkpoint-{STEPS:08d}" / "state.json").read_text())
    assert state["step"] == STEPS


def test_a_frontier_cell_trains_under_torchrun_and_rank_0_prunes(tmp_path):
    quick = sweep_preset("arithmetic-cpu", quick=True)
    sweep = replace(quick, train=replace(quick.train, steps=40), tasks=["add2_digit2"], targets=[0.8], curve_targets=[],
                    controls=[])
    (tmp_path / "sweep.json").write_text(json.dumps(to_dict(sweep)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "sparsecircuits", "frontier",
                           str(tmp_path / "sweep.json"), "--out", str(tmp_path / "s"), "--cell", "w16-d1_2", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("frontier: 1 of") == 1  # one rank reports
    record = json.loads((tmp_path / "s" / "cells" / "w16-d1_2" / "cell.json").read_text())
    assert record["status"] == "done" and record["rows"][0]["status"] == "pruned"
    state = json.loads((tmp_path / "s" / "cells" / "w16-d1_2" / "model" / "checkpoint-00000040" / "state.json").read_text())
    assert state["step"] == 40
