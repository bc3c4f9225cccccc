"""The frontier sweep (METHOD 7) and activation sparsity: the quick preset end to end, its files read
back and one row recomputed, resume, a failing cell, and the summary's arithmetic on known points."""
import json
import math
import os
import re
import shutil
import sys
from dataclasses import replace

import matplotlib.image
import pytest
import torch

import sparsecircuits as sc
from sparsecircuits.circuits import Circuit
from sparsecircuits.cli import main
from sparsecircuits.cli.report import format_frontier
from sparsecircuits.config_io import from_dict, to_dict
from sparsecircuits.frontier import Cell, SweepConfig, activation_sparsity, input_sets, run_sweep, sweep_preset
from sparsecircuits.frontier import parallel, sweep
from sparsecircuits.frontier.activations import Tally
from sparsecircuits.frontier.summary import matched_ratios, trends, write_frontier_figures
from sparsecircuits.frontier.sweep import cell_status, finish
from sparsecircuits.training.presets import preset
from sparsecircuits.training.trainer import make_data

from conftest import small_config


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier") / "sweep"
    assert main(["frontier", "--preset", "arithmetic-cpu", "--quick", "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    return out


def test_quick_sweep_writes_a_row_per_cell_task_and_target(quick_sweep):
    cfg = sweep_preset("arithmetic-cpu", quick=True)
    rows = [json.loads(line) for line in (quick_sweep / "results.jsonl").read_text().splitlines()]
    cells = cfg.cells()
    extra = len(cfg.curve()) * len([t for t in cfg.curve_targets if t not in cfg.targets])
    assert len(rows) == len(cells) * len(cfg.tasks) * len(cfg.targets) + extra
    assert {r["cell"] for r in rows} == {c.name for c in cells}
    pruned = [r for r in rows if r["status"] == "pruned" and r["reached"]]
    assert len(pruned) >= len(cells)  # every cell has circuits, not only failures
    assert all("nonsense_labels" in r["controls"] for r in pruned)
    for cell in cells:  # every cell's activation sparsity, as a table and a figure
        home = quick_sweep / "cells" / cell.name
        assert set(json.loads((home / "activations.json").read_text())) == set(cfg.activation_sets)
        assert (home / "activations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_config_refuses_a_bad_preset_before_building_a_corpus(tmp_path):
    for bad in (dict(preset_name="nope"), dict(preset_name="python-cpu", quick=True),
                dict(preset_name="arithmetic-cpu", sweep_file=tmp_path / "s.json"), {}):
        with pytest.raises(sc.UserError):
            sc.sweep_config(corpus=tmp_path / "corpus", **bad)
    assert not (tmp_path / "corpus").exists()
    assert sc.sweep_config("brackets-cpu", quick=True) == sweep_preset("brackets-cpu", quick=True)


def test_a_row_is_recomputed_from_its_model_and_circuit(quick_sweep):
    rows = [json.loads(line) for line in (quick_sweep / "results.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["kind"] == "sparse" and r["status"] == "pruned" and r["edges"] > 0)
    model_dir = quick_sweep / "cells" / row["cell"] / "model"
    report = sc.evaluate(model_dir)
    assert report["answer_loss"] == pytest.approx(row["pretrain_loss"], rel=1e-6)
    assert report["nonzero_weights"] == row["nonzero"]
    circuit = Circuit.load(quick_sweep / row["circuit"])
    assert (circuit.n_nodes, circuit.n_edges, circuit.task) == (row["nodes"], row["edges"], row["task"])
    assert sc.validate_circuit(quick_sweep / row["circuit"], controls=False, progress=False)["sufficiency"]["loss"] \
        == pytest.approx(row["loss"], abs=1e-4)
    summary = json.loads((quick_sweep / "summary.json").read_text())
    point = next(p for p in summary["points"] if p["kind"] == "sparse" and p["edges"])
    mine = [r for r in rows if r["cell"] == point["cell"] and r["target"] == summary["target"]
            and r["task"] in summary["tasks_compared"]]
    assert mine and all(r["reached"] for r in mine)
    expected = math.exp(sum(math.log(max(1, r["edges"])) for r in mine) / len(mine))
    assert point["edges"] == pytest.approx(expected, rel=1e-3)


def test_the_frontier_figure_is_written_with_its_axes(quick_sweep):
    png = matplotlib.image.imread(quick_sweep / "frontier.png")
    assert png.shape[0] > 300 and png.shape[1] > 800
    svg = (quick_sweep / "frontier.svg").read_text()
    for text in ("held-out pretraining loss", "circuit edges", "circuit size against target loss", "dense"):
        assert text in svg, text


def test_the_printed_table_says_which_dense_losses_left_the_ratio_unmeasured(quick_sweep):
    summary = json.loads((quick_sweep / "summary.json").read_text())
    summary["sparse_dense_ratio"].update(ratio=None, dense_loss_range=[2.6444684602, 2.6444684602])
    assert "not measured (no sparse cell's loss lies within the dense models' loss range: one dense model, at " \
           "2.6445)" in format_frontier(summary)
    summary["sparse_dense_ratio"]["dense_loss_range"] = [0.5, 2.25]
    assert "loss range: 0.5000-2.2500)" in format_frontier(summary)


def test_a_rerun_skips_finished_cells_and_redoes_a_lost_one(quick_sweep, capsys):
    cells = sorted((quick_sweep / "cells").iterdir())
    stamps = {c.name: (c / "cell.json").stat().st_mtime_ns for c in cells}
    lost = cells[0]
    (lost / "cell.json").unlink()  # as if killed before the cell finished
    assert main(["frontier", "--preset", "arithmetic-cpu", "--quick", "--out", str(quick_sweep), "--quiet"]) == 0
    assert f"{len(cells)} of {len(cells)} cells finished" in capsys.readouterr().out
    for c in cells[1:]:
        assert (c / "cell.json").stat().st_mtime_ns == stamps[c.name], c.name
    assert json.loads((lost / "cell.json").read_text())["status"] == "done"
    other = sweep_preset("arithmetic-cpu", quick=True)
    with pytest.raises(sc.UserError, match="another sweep"):
        run_sweep(replace(other, targets=[0.4]), quick_sweep, progress=False)


@pytest.mark.parametrize("tamper", [
    lambda rec: [rec],                                                           # not a record
    lambda rec: {k: v for k, v in rec.items() if k != "rows"},                   # no rows
    lambda rec: {**rec, "cell": {**rec["cell"], "width": "64"}},                 # another cell's
    lambda rec: {**rec, "pretrain_loss": None},                                  # done without a loss
    lambda rec: {**rec, "rows": [{**r, "edges": -5} for r in rec["rows"]]},      # a negative size
    lambda rec: {**rec, "rows": [{**r, "pretrain_loss": math.nan} for r in rec["rows"]]},
], ids=["list", "no rows", "other cell", "no loss", "negative edges", "nan loss"])
def test_a_tampered_cell_record_is_refused_before_the_results_are_rewritten(quick_sweep, tmp_path, capsys, tamper):
    out = tmp_path / "sweep"
    shutil.copytree(quick_sweep, out)
    cell = out / "cells" / sorted(p.name for p in (out / "cells").iterdir())[0] / "cell.json"
    cell.write_text(json.dumps(tamper(json.loads(cell.read_text()))))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["frontier", "--preset", "arithmetic-cpu", "--quick", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and cell.parent.name in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_cell_killed_mid_pruning_keeps_its_rows_and_resumes_from_them(quick_sweep, monkeypatch):
    cfg = sweep_preset("arithmetic-cpu", quick=True)
    home = quick_sweep / "cells" / cfg.curve()[0]  # a sparse cell, with the curve's rows too
    done = json.loads((home / "cell.json").read_text())
    lost = next(i for i, row in enumerate(done["rows"]) if row["status"] == "pruned" and i > 0)
    assert lost < len(done["rows"]) - 1  # rows before it and after it
    partial = {**done, "status": "running", "rows": done["rows"][:lost] + done["rows"][lost + 1:]}
    (home / "cell.json").write_text(json.dumps(partial))  # as if killed while pruning that row
    summary = finish(cfg, quick_sweep)  # what `--cell OTHER` reports meanwhile
    rows = [json.loads(line) for line in (quick_sweep / "results.jsonl").read_text().splitlines()]
    assert sum(r["cell"] == home.name for r in rows) == len(done["rows"]) - 1
    assert summary["unfinished"] == {home.name: len(done["rows"]) - 1}
    assert home.name not in [p["cell"] for p in summary["points"]] and home.name not in summary["failed"]
    calls, kept, real = [], [], sweep.prune

    def prune(model, task, target, **kw):
        calls.append((task, target))
        kept.append(len(json.loads((home / "cell.json").read_text())["rows"]))  # were it killed now
        return real(model, task, target, **kw)

    monkeypatch.setattr(sweep, "prune", prune)
    assert main(["frontier", "--preset", "arithmetic-cpu", "--quick", "--out", str(quick_sweep), "--quiet"]) == 0
    assert calls == [(done["rows"][lost]["task"], done["rows"][lost]["target"])]  # only the lost row is pruned
    assert kept == [len(done["rows"]) - 1]  # the rows after it are still on disk while it is pruned
    again = json.loads((home / "cell.json").read_text())
    assert again["status"] == "done"
    untimed = [[{k: v for k, v in r.items() if k != "seconds"} for r in rec["rows"]] for rec in (again, done)]
    assert untimed[0] == untimed[1]


def _tiny_sweep(tasks=("add2_digit2",)):
    quick = sweep_preset("arithmetic-cpu", quick=True)
    return replace(quick, widths=[16], densities=[1 / 2], dense_widths=[], sparsified=[1 / 4], tasks=list(tasks),
                   curve_targets=[], controls=[], train=replace(quick.train, steps=20), dense_steps=20,
                   sparsify_steps=20, prune={**quick.prune, "steps": 20})


@pytest.mark.slow
def test_a_cell_that_fails_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    cfg = _tiny_sweep()
    real = sc.api.train

    def train(run, out, **kw):
        if run.train.density == 1.0:
            raise RuntimeError("out of memory (injected)")
        return real(run, out, **kw)

    monkeypatch.setattr("sparsecircuits.frontier.sweep.api.train", train)
    summary = run_sweep(cfg, tmp_path / "s", progress=False)
    assert summary["failed"]["w16-dense"] == "RuntimeError: out of memory (injected)"
    assert "did not train" in summary["failed"]["w16-sparsified-d1_4"]  # its base failed
    assert [p["cell"] for p in summary["points"]] == ["w16-d1_2"]


@pytest.mark.slow
def test_a_pruning_that_fails_fails_its_cell_and_a_rerun_prunes_only_that_row(tmp_path, monkeypatch):
    cfg = _tiny_sweep(tasks=("add2_digit2", "add2_digit3"))
    real, calls = sweep.prune, []

    def prune(model, task, target, **kw):
        calls.append(task)
        if broken and task == "add2_digit2":
            raise RuntimeError("out of memory (injected)")
        return real(model, task, target, **kw)

    monkeypatch.setattr(sweep, "prune", prune)
    broken = True
    first = run_sweep(cfg, tmp_path / "s", progress=False)
    assert set(first["failed"]) == {"w16-d1_2", "w16-dense", "w16-sparsified-d1_4"} and not first["points"]
    assert "add2_digit2 at 0.5: RuntimeError: out of memory (injected)" in first["failed"]["w16-dense"]
    record = json.loads((tmp_path / "s" / "cells" / "w16-dense" / "cell.json").read_text())
    assert [r["status"] for r in record["rows"]][0] == "failed" and record["rows"][1]["status"] != "failed"
    assert (tmp_path / "s" / "cells" / "w16-sparsified-d1_4" / "model" / "model.safetensors").exists()
    broken, calls[:] = False, []
    again = run_sweep(cfg, tmp_path / "s", progress=False)
    assert again["failed"] == {} and again["finished"] == 3
    assert calls == ["add2_digit2"] * 3  # only the failed rows, once per cell


def _dies_as_dense(cfg, cell, out, threads, conn):
    """A cell worker whose process dies (as if killed for memory) on the dense cell, and which
    otherwise prints a line as it starts and as it ends (through the worker's output)."""
    run_cell = sweep.run_cell

    def announced(*args, **kwargs):
        print("about to train", cell["name"])
        if cell["kind"] == "dense":
            print("dying", file=sys.stderr, flush=True)
            os._exit(3)
        record = run_cell(*args, **kwargs)
        print("done", end="", flush=True)
        return record

    sweep.run_cell = announced  # in the spawned process only
    sweep._cell_worker(cfg, cell, out, threads, conn)  # the real worker


@pytest.mark.slow
def test_parallel_cells_run_each_in_its_own_process_and_one_that_dies_fails_alone(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(sweep, "_cell_worker", _dies_as_dense)
    summary = run_sweep(_tiny_sweep(), tmp_path / "s", jobs=2, progress=True)
    printed = capfd.readouterr()
    assert "w16-d1_2: training, checkpoint at step 0/20" in printed.err  # its line under the bar, from its folder
    assert re.search(r"w16-d1_2: train -> model: +100%", printed.err)  # then its own bars, sent by its process
    assert "about to train w16-d1_2\n" in printed.out
    assert "done\n" in printed.out  # printed with no newline: sent by the process, written whole by the sweep
    assert printed.err.count("dying") == 1  # sent just before it died: read before its pipe was closed
    assert summary["failed"]["w16-dense"] == "its process died (exit code 3)"
    assert "did not train" in summary["failed"]["w16-sparsified-d1_4"]
    assert [p["cell"] for p in summary["points"]] == ["w16-d1_2"]  # trained and pruned in its own process


class _Sent(list):
    send = list.append


def test_a_cells_process_sends_its_bars_at_most_once_a_second_and_the_last_one_and_whole_lines_of_text(monkeypatch):
    clock = iter([100.0, 100.5, 100.8, 102.0, 102.3, 102.4])
    monkeypatch.setattr(parallel.time, "monotonic", lambda: next(clock))
    sent = _Sent()
    stderr = parallel.ProcessOutput(sent, "stderr")
    for s in ["\rtrain:  10%|#  | 1/10 ", "\n\n", "\x1b[A\x1b[A", "\rtrain:  20%|## | 2/10 ",
              "\rtrain: 100%|###| 10/10", "\n",                         # a bar left on screen: its last redraw
              "UserWarning: odd\n", "\x1b[31mred", " text", "\n",       # text, whole lines, escapes kept
              "\rprune add2:  50%", "\rprune add2:  60%", "\r     ",  # a bar cleared when it ends
              "Loading"]:
        assert stderr.write(s) == len(s)
    stderr.flush()
    assert sent == [("bar", "train:  10%|#  | 1/10"), ("bar", "train: 100%|###| 10/10"),
                    ("stderr", "UserWarning: odd"), ("stderr", "\x1b[31mred text"),
                    ("bar", "prune add2:  50%"), ("bar", "prune add2:  60%"), ("stderr", "Loading")]


def test_a_cells_status_line_reads_its_newest_checkpoint_then_its_finished_rows(tmp_path, quick_sweep):
    cfg = sweep_preset("arithmetic-cpu", quick=True)
    cell = cfg.cells()[0]
    assert cell_status(cfg, tmp_path, cell) == "training, checkpoint at step 0/600"
    for step in (200, 400):
        (tmp_path / "cells" / cell.name / "model" / f"checkpoint-{step:08d}").mkdir(parents=True)
    assert cell_status(cfg, tmp_path, cell) == "training, checkpoint at step 400/600"
    rows = [r for r in map(json.loads, (quick_sweep / "results.jsonl").read_text().splitlines()) if r["cell"] == cell.name]
    assert rows and cell_status(cfg, quick_sweep, cell) == f"{len(rows)}/{len(rows)} rows done"


def _point(cell, kind, width, density, loss, edges):
    return {"cell": cell, "kind": kind, "width": width, "density": density, "nonzero": round(density * width ** 2),
            "pretrain_loss": loss, "edges": edges}


def test_matched_ratio_interpolates_log_edges_against_log_loss_between_dense_cells():
    points = [_point("d1", "dense", 8, 1.0, 0.1, 1000.0), _point("d2", "dense", 4, 1.0, 0.4, 100.0),
              _point("s", "sparse", 8, 0.25, 0.2, 10.0), _point("far", "sparse", 8, 0.1, 0.9, 5.0)]
    per, summary = matched_ratios(points)
    s, far = per
    assert s["dense_edges"] == pytest.approx(math.sqrt(1000 * 100), rel=1e-4)  # halfway in log loss
    assert s["ratio"] == pytest.approx(math.sqrt(1000 * 100) / 10, rel=1e-3)
    assert not far["matched"] and far["nearest_dense"] == "d2" and far["nearest_ratio"] == 20.0
    assert summary["ratio"] == pytest.approx(s["ratio"]) and summary["matched_cells"] == 1


def test_the_ratio_is_also_given_per_weight_budget_and_over_the_pareto_frontier():
    points = [_point("d", "dense", 8, 1.0, 0.0, 1000.0),
              _point("big", "sparse", 8, 1 / 4, 0.0, 250.0), _point("wide", "sparse", 16, 1 / 16, 0.0, 200.0),
              _point("small", "sparse", 8, 1 / 16, 0.0, 50.0), _point("also", "sparse", 16, 1 / 64, 0.0, 50.0)]
    per, summary = matched_ratios(points)
    assert summary["ratio"] == pytest.approx((4 * 5 * 20 * 20) ** 0.25, rel=1e-3)
    assert summary["by_nonzero"] == [{"nonzero": 16, "cells": 2, "ratio": pytest.approx(math.sqrt(4 * 5), rel=1e-3)},
                                     {"nonzero": 4, "cells": 2, "ratio": 20.0}]
    assert summary["frontier"] == {"ratio": 20.0, "cells": ["small", "also"]}  # equal cells both stay on it
    with_best = points + [_point("best", "sparse", 8, 1 / 32, 0.0, 10.0)]
    assert matched_ratios(with_best)[1]["frontier"] == {"ratio": 100.0, "cells": ["best"]}
    printed = format_frontier({"finished": 5, "cells": 5, "target": 0.15, "tasks_compared": ["t"], "tasks_constant": [],
                               "points": [{**p, "reached": 1, "tasks": 1} for p in points], "failed": {},
                               "unfinished": {}, "sparse_dense_ratio": summary, "matched": per,
                               "activations_dense": {}, "trends": trends(points)})
    assert "by nonzero weights: 16: 4.5x (2 cells); 4: 20.0x (2 cells)" in printed
    assert "Pareto frontier" in printed and "20.0x (small, also)" in printed


def test_trends_hold_only_when_every_step_goes_the_stated_way():
    good = [_point("a", "sparse", 4, 1 / 4, 0.1, 100), _point("b", "sparse", 4, 1 / 16, 0.2, 50),
            _point("c", "sparse", 8, 1 / 16, 0.05, 60), _point("d", "sparse", 8, 1 / 64, 0.15, 20)]
    t = trends(good)
    assert t["lower_l0"]["holds"] and t["wider"]["holds"]
    assert t["wider"]["by_l0"]["a"]["cells"] == ["a", "c"]  # the same number of nonzero weights
    bad = good[:3] + [_point("d", "sparse", 8, 1 / 64, 0.15, 80)]
    t = trends(bad)
    assert t["lower_l0"]["holds"] is False and t["wider"]["holds"] is False


def test_lower_l0_at_no_cost_in_loss_is_reported_as_such():
    flat = [_point("a", "sparse", 4, 1 / 4, 0.0, 100), _point("b", "sparse", 4, 1 / 16, 0.0002, 50),
            _point("c", "sparse", 8, 1 / 16, 0.0, 60), _point("d", "sparse", 8, 1 / 64, 0.0, 20)]
    t = trends(flat)
    assert t["lower_l0"]["holds"] and all(g["loss_flat"] for g in t["lower_l0"]["by_width"].values())
    summary = {"finished": 4, "cells": 4, "target": 0.15, "tasks_compared": ["t"], "tasks_constant": [],
               "points": [{**p, "reached": 1, "tasks": 1} for p in flat], "failed": {}, "unfinished": {},
               "sparse_dense_ratio": {"ratio": None, "dense_loss_range": None}, "matched": [], "activations_dense": {}, "trends": t}
    assert "circuits shrink: HOLDS for the circuits only: the loss is the same in every cell" in format_frontier(summary)
    rising = trends(flat[:3] + [_point("d", "sparse", 8, 1 / 64, 0.3, 20)])
    assert not rising["lower_l0"]["by_width"][8]["loss_flat"]
    assert "circuits shrink: HOLDS\n" in format_frontier({**summary, "trends": rising})


def test_a_trend_without_two_circuit_sizes_to_compare_is_not_measured():
    missing = [_point("a", "sparse", 4, 1 / 4, 0.1, None), _point("b", "sparse", 4, 1 / 16, 0.2, None),
               _point("c", "sparse", 8, 1 / 16, 0.05, 60), _point("d", "sparse", 8, 1 / 64, 0.15, None)]
    t = trends(missing)
    assert t["lower_l0"]["by_width"][4]["edges_fall"] is None and t["lower_l0"]["holds"] is None
    assert t["wider"]["holds"] is None  # a -> c: only c has a size
    wrong = missing[:2] + [_point("c", "sparse", 8, 1 / 16, 0.5, 60), _point("d", "sparse", 8, 1 / 64, 0.1, 50)]
    assert trends(wrong)["lower_l0"]["holds"] is False  # width 8's loss falls: one step the wrong way decides


def test_a_ratio_far_below_one_is_not_rounded_to_zero():
    points = [_point("d", "dense", 8, 1.0, 0.1, 1.0), _point("s", "sparse", 8, 0.25, 0.1, 3000.0)]
    (s,), summary = matched_ratios(points)
    assert s["ratio"] == pytest.approx(1 / 3000, rel=1e-3) and summary["ratio"] == pytest.approx(1 / 3000, rel=1e-3)


def test_sweeps_whose_cells_or_circuit_folders_would_share_a_name_are_refused():
    base = sweep_preset("arithmetic-cpu", quick=True)
    with pytest.raises(sc.UserError, match="share a name"):
        replace(base, densities=[0.1234561, 0.1234562])
    with pytest.raises(sc.UserError, match="too close"):
        replace(base, targets=[0.5, 0.5000001])
    with pytest.raises(sc.UserError, match="curve_task"):
        replace(base, curve_task="add2_digit4")


def test_sweep_cells_keep_l0_when_widening_and_name_their_density():
    cfg = SweepConfig(model=small_config(d_model=32, n_head=2, d_mlp=64), widths=[32, 64], densities=[1 / 4],
                      dense_widths=[16], sparsified=[1 / 4], tasks=["add2_digit4"])
    cells = {c.name: c for c in cfg.cells()}
    assert set(cells) == {"w32-d1_4", "w64-d1_16", "w16-dense", "w32-dense", "w64-dense", "w32-sparsified-d1_4",
                          "w64-sparsified-d1_16"}
    assert cells["w64-d1_16"].density * 64 ** 2 == cells["w32-d1_4"].density * 32 ** 2
    assert cells["w64-sparsified-d1_16"].base == "w64-dense"
    shape = cfg.shape(64)
    assert (shape.d_model, shape.n_head, shape.d_mlp) == (64, 4, 128)
    assert cfg.run(Cell("x", "dense", 64, 1.0)).train.density == 1.0


def test_python_cpu_cells_train_as_the_python_tiny_presets_at_their_density_for_fewer_steps():
    sweep = sweep_preset("python-cpu", corpus="c")
    dense, tiny = preset("python-tiny-dense", "c"), preset("python-tiny", "c")
    for cell in sweep.cells():
        run, like = sweep.run(cell), dense if cell.kind == "dense" else tiny
        assert cell.density <= (1.0 if cell.kind == "dense" else 1 / 8)
        assert run.model == like.model and run.data == like.data
        assert run.train == replace(like.train, density=cell.density, steps=2000)
    assert len(sweep.curve()) == 2 and sweep.curve_on() in sweep.tasks  # a sparse and a dense cell, on a task
    assert sweep.targets == [0.3] and sweep.pass_accuracy == 0.9  # a passed task is at about 0.2-0.3: prunable


def test_the_paper_sweeps_sparsest_cells_anneal_until_80_percent_and_the_rest_until_50():
    sweep = sweep_preset("python-gpu")
    ends = {c.name: sweep.run(c).train.anneal_end for c in sweep.cells() if c.kind != "sparsified"}
    sparsest = {c.name for c in sweep.cells() if c.kind == "sparse" and round(c.density * c.width ** 2) == 512}
    assert sparsest == {"w256-d1_128", "w512-d1_512", "w1024-d1_2048"}   # the L0 of 1/128 at width 256
    assert all(ends[n] == (0.8 if n in sparsest else 0.5) for n in ends)
    assert all(sweep_preset("arithmetic-cpu").run(c).train.anneal_end == 0.5
               for c in sweep_preset("arithmetic-cpu").cells() if c.kind != "sparsified")
    assert from_dict(SweepConfig, json.loads(json.dumps(to_dict(sweep)))) == sweep
    with pytest.raises(sc.UserError, match="sparsest_anneal_end"):
        replace(sweep, sparsest_anneal_end=1.5)


def test_a_sweep_folder_written_before_a_key_was_added_is_the_same_sweep(tmp_path):
    cfg = sweep_preset("arithmetic-cpu", quick=True)
    out = sweep.prepare(cfg, tmp_path / "s")
    saved = json.loads((out / "sweep.json").read_text())
    del saved["sparsest_anneal_end"]
    (out / "sweep.json").write_text(json.dumps(saved))
    assert sweep.prepare(cfg, out) == out
    with pytest.raises(sc.UserError, match="another sweep"):
        sweep.prepare(replace(cfg, targets=[0.4]), out)


def _measures(a, threshold):
    tally = Tally(threshold)
    for part in a.split(3):  # accumulated over batches, as over a dataset
        tally.add(part)
    return tally.result()


def test_hoyer_and_near_zero_measures_on_known_vectors():
    one_hot = torch.eye(8)
    uniform = torch.ones(8, 8)
    assert _measures(one_hot, 0.5)["hoyer"] == pytest.approx(1.0)
    assert _measures(uniform, 0.5)["hoyer"] == pytest.approx(0.0, abs=1e-6)
    assert _measures(one_hot, 0.5)["near_zero"] == pytest.approx(7 / 8)
    half = torch.cat([torch.ones(8, 4), torch.zeros(8, 4)], 1)
    assert _measures(half, 0.5)["top1_share"] == pytest.approx(0.25)  # 1 channel of 4 carrying mass


def test_activation_sparsity_covers_every_location_and_input_set(adder, tmp_path, capsys):
    model = sc.load(adder)
    run = sc.config_io.load_json(sc.RunConfig, adder / "run.json")
    sets = input_sets(model, make_data(run), n=64)
    assert set(sets) == {"familiar", "harder", "shuffled"}
    assert sets["harder"].shape[1] > sets["familiar"].shape[1]  # one more digit per operand
    report = activation_sparsity(model, sets)
    assert len(report["familiar"]["locations"]) == 8 * model.cfg.n_layer
    for r in report.values():
        for m in r["locations"].values():
            assert 0 <= m["near_zero"] <= 1 and 0 <= m["hoyer"] <= 1 and 0 < m["top1_share"] <= 1
    assert report["familiar"]["locations"] != report["shuffled"]["locations"]
    text = tmp_path / "code.txt"
    text.write_text("12+34=00046" * 40)
    assert main(["activations", str(adder), "--data", "familiar", "shuffled", str(text), "--out",
                 str(tmp_path / "a"), "-n", "32"]) == 0
    saved = json.loads((tmp_path / "a" / "activations.json").read_text())
    assert set(saved) == {"familiar", "shuffled", "other"}
    assert matplotlib.image.imread(tmp_path / "a" / "activations.png").shape[0] > 200
    assert "Hoyer" in capsys.readouterr().out


def test_losses_at_the_floor_are_matched_against_the_dense_cells_there():
    points = [_point("d1", "dense", 8, 1.0, 0.0, 100.0), _point("d2", "dense", 16, 1.0, 1e-5, 400.0),
              _point("d3", "dense", 4, 1.0, 0.5, 50.0), _point("s", "sparse", 8, 0.25, 0.0, 10.0)]
    (s,), summary = matched_ratios(points)
    assert s["matched"] and s["between"] == ["d1+d2"]
    assert s["dense_edges"] == pytest.approx(200.0) and s["ratio"] == pytest.approx(20.0)


def test_the_figure_names_every_cell_those_at_the_floor_and_those_that_miss_a_target(tmp_path):
    points = [_point("d1", "dense", 8, 1.0, 0.0, 100.0), _point("d2", "dense", 16, 1.0, 1e-5, 400.0),
              _point("s1", "sparse", 8, 0.25, 0.0, 10.0), _point("s2", "sparse", 16, 1 / 16, 0.0, 12.0),
              _point("weak", "sparse", 8, 1 / 64, 0.5, None)]
    write_frontier_figures({"points": points, "target": 0.15}, [], sweep_preset("arithmetic-cpu", quick=True),
                           tmp_path)
    texts = re.findall(r"<!-- (.*?) -->", (tmp_path / "frontier.svg").read_text())  # matplotlib's text labels
    for name in ("d1", "d2", "s1", "s2", "weak", "misses a target (no circuit size)"):
        assert name in texts, name
    assert any("every answer right" in t for t in texts)
    assert matplotlib.image.imread(tmp_path / "frontier.png").shape[1] > 800
