"""Running a frontier sweep: train (or reuse) each cell, prune it on every task and target, and
record one row per (cell, task, target) in `results.jsonl`.

Each cell lives in `OUT/cells/NAME/`: its model, its circuits, and `cell.json`, rewritten after every
row, so a cell killed mid-pruning keeps its finished rows. A killed sweep resumes: finished cells are
skipped, a cell's training resumes from its checkpoint, its finished rows are read back rather than
pruned again, and a cell that failed is tried again. A cell whose training, evaluation or one of whose
prunings fails is recorded as failed with its error (keeping the rows it finished), and the sweep goes
on. `jobs` > 1 runs independent cells in parallel processes (`parallel.py`), one process per cell, so
that a process that dies (killed for memory, say) fails only its own cell.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import api
from ..atomic import atomic_write_json, atomic_write_text, refuse_file
from ..circuits import prune
from ..circuits.run import UnreachableTarget
from ..circuits.validation import control_prunings
from ..config_io import JSON_ERRORS, from_dict, load_json, to_dict
from ..errors import UserError
from ..model.io import WEIGHTS
from ..tasks import get_task
from ..tasks.evaluate import evaluate_task
from ..training.checkpoint import newest_step
from ..training.config import RUN_FILE, RunConfig
from ..training.distributed import resolve_device
from ..training.trainer import make_data
from .activations import activation_sparsity, input_sets, save_activations
from .config import SWEEP_FILE, Cell, SweepConfig
from .parallel import run_parallel, send_output
from .summary import summarize, write_frontier_figures

CELL_FILE = "cell.json"
RESULTS_FILE = "results.jsonl"
TASK_EXAMPLES = 200   # examples a task's accuracy is measured on, to decide whether it is pruned


def check_tasks(cfg: SweepConfig) -> None:
    """Every task must be one each cell's tokenizer encodes, with single-token answers that fit the
    context: checked on a few examples before any cell is trained."""
    run = cfg.run(cfg.cells()[0])
    tok = make_data(run).tokenizer
    for name in cfg.tasks:
        task = get_task(name)
        for e in task.examples("test", 4):
            try:
                ids = tok.encode(e.prompt)
            except (KeyError, ValueError, UserError):
                raise UserError(f"task {name}: the cells' tokenizer cannot encode its prompt {e.prompt[:40]!r}") from None
            answers = [a for a in (e.correct, e.wrong) if a is not None]
            if any(tok.single_token(a) is None for a in answers):
                raise UserError(f"task {name}: its answers {answers} are not single tokens of the cells' tokenizer")
            if len(ids) > run.model.block_size:
                raise UserError(f"task {name}: a prompt of {len(ids)} tokens exceeds the cells' context "
                                f"{run.model.block_size}")


def prepare(cfg: SweepConfig, out: str | Path) -> Path:
    """Check the sweep and its output folder, then write `sweep.json` (a rerun must be the same sweep)."""
    out = Path(out)
    refuse_file(out)
    check_tasks(cfg)
    saved = out / SWEEP_FILE
    if saved.exists():
        try:
            same = to_dict(load_json(SweepConfig, saved)) == to_dict(cfg)  # keys added since: their defaults
        except UserError:  # not JSON, or not a sweep
            same = False
        if not same:
            raise UserError(f"{out} holds another sweep ({SWEEP_FILE} differs): choose another --out")
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"{out} is not empty and holds no sweep: choose another --out")
    if _rank() == 0:  # under torchrun the other ranks only check
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(saved, to_dict(cfg))
    return out


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_sweep(cfg: SweepConfig, out: str | Path, jobs: int = 1, progress: bool = True,
              only: list[str] | None = None) -> dict:
    """Run (or resume) the sweep into `out`; returns the summary (also `summary.json`)."""
    cells = cfg.cells()
    if only:
        unknown = sorted(set(only) - {c.name for c in cells})
        if unknown:
            raise UserError(f"no cell named {', '.join(unknown)} (cells: {', '.join(c.name for c in cells)})")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and (not only or len(only) != 1):
        raise UserError("under torchrun, run one cell at a time: --cell NAME")
    out = prepare(cfg, out)
    todo = [c for c in cells if (not only or c.name in only) and not _finished(out, c)]
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress, position=0)
    for phase in ([c for c in todo if c.base is None], [c for c in todo if c.base is not None]):
        if jobs > 1 and len(phase) > 1:
            run_parallel([(c.name, (to_dict(cfg), asdict(c), str(out))) for c in phase], _cell_worker, jobs, bar,
                         progress, status=lambda i: cell_status(cfg, out, phase[i]),
                         died=lambda i, how: _record_failure(out, phase[i], f"its process died ({how})"))
        else:
            for c in phase:
                bar.set_postfix_str(c.name)
                run_cell(cfg, c, out, progress=progress)
                bar.update(1)
    bar.close()
    if _rank() != 0:
        return {}
    return finish(cfg, out)


def cell_status(cfg: SweepConfig, out: Path, cell: Cell) -> str:
    """How far a cell running in another process is: its newest training checkpoint, then its rows."""
    home = out / "cells" / cell.name
    if not (home / "model" / WEIGHTS).exists():  # written when its training ends
        return f"training, checkpoint at step {newest_step(home / 'model')}/{cfg.steps(cell)}"
    return f"{len(_record(out, cell).get('rows', []))}/{len(_targets(cfg, cell))} rows done"


def _finished(out: Path, cell: Cell) -> bool:
    return _record(out, cell).get("status") == "done"


def _record(out: Path, cell: Cell) -> dict:
    """The cell's record so far (empty when there is none); one this code cannot have written (a
    tampered or foreign file) is refused before the sweep reads or rewrites anything from it."""
    path = out / "cells" / cell.name / CELL_FILE
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except JSON_ERRORS:
        rec = None
    if not _valid_record(rec, cell):
        raise UserError(f"{path} is corrupt: delete it, and a rerun redoes the cell {cell.name}")
    return rec


def _valid_record(rec, cell: Cell) -> bool:
    """The fields the sweep and its summary read, of the types and ranges this code writes them with."""
    if not (isinstance(rec, dict) and rec.get("cell") == asdict(cell) and isinstance(rec.get("rows"), list)
            and rec.get("status") in ("done", "failed", "running")):
        return False
    if rec["status"] == "done" and not (_count(rec.get("nonzero")) and _loss(rec.get("pretrain_loss"))):
        return False
    for row in rec["rows"]:
        if not (isinstance(row, dict) and isinstance(row.get("task"), str) and _loss(row.get("target"))
                and isinstance(row.get("status"), str) and _count(row.get("nonzero"))
                and _loss(row.get("pretrain_loss"))):
            return False
        if row["status"] == "pruned" and not (_count(row.get("edges")) and _count(row.get("nodes"))
                                              and isinstance(row.get("reached"), bool)):
            return False
    return True


def _count(x) -> bool:
    return type(x) is int and x >= 0


def _loss(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x) and x >= 0


def _record_failure(out: Path, cell: Cell, error: str) -> None:
    """A worker that died: the cell failed, keeping the rows it had finished."""
    if not _finished(out, cell):
        rows = _record(out, cell).get("rows", [])
        atomic_write_json(out / "cells" / cell.name / CELL_FILE, {"cell": asdict(cell), "status": "failed",
                                                                  "error": error, "rows": rows})


def _cell_worker(cfg: dict, cell: dict, out: str, threads: int, conn=None) -> None:
    """A cell in a process of its own; with a connection, its output and progress bars go there."""
    torch.set_num_threads(threads)
    if conn is not None:
        send_output(conn)
    run_cell(from_dict(SweepConfig, cfg), Cell(**cell), Path(out), progress=conn is not None)


def run_cell(cfg: SweepConfig, cell: Cell, out: Path, progress: bool = True) -> dict | None:
    """Train, evaluate and prune one cell; its record is written to `cells/NAME/cell.json`, with the
    rows an earlier run finished and this one has not reached yet, so that a second kill loses none."""
    home = out / "cells" / cell.name
    record = {"cell": asdict(cell), "status": "failed", "error": None, "rows": []}
    pending = _record(out, cell).get("rows", [])
    t0 = time.perf_counter()
    try:
        device = resolve_device(cfg.train.device)
        model_dir = _train(cfg, cell, out, home / "model", progress)
        if model_dir is None:
            return None  # a rank other than 0 under torchrun: it only trains
        record["train_seconds"] = round(time.perf_counter() - t0, 1)
        model = api.load(model_dir, device=str(device))
        report = api.evaluate(model_dir, device=str(device))
        record["pretrain_loss"] = report.get("answer_loss", report.get("val_loss"))
        record["accuracy"] = report.get("accuracy")
        record["nonzero"] = report["nonzero_weights"]
        record["activations"] = _activations(cfg, model, model_dir)
        targets = _targets(cfg, cell)
        accuracy = {task: evaluate_task(model, get_task(task), model.tokenizer, n=TASK_EXAMPLES)["accuracy"]
                    for task in cfg.tasks}
        saved = _saved_rows(pending, record)
        for i, (task, target) in enumerate(targets):
            row = saved.get((task, target)) or _prune_row(cfg, cell, record, model, task, target, accuracy[task],
                                                          home, progress)
            record["rows"].append(row)
            pending = [saved[k] for k in targets[i + 1:] if k in saved]
            if _rank() == 0:
                atomic_write_json(home / CELL_FILE, {**record, "status": "running", "rows": record["rows"] + pending})
        failed = [f"{r['task']} at {r['target']:g}: {r['error']}" for r in record["rows"] if r["status"] == "failed"]
        if failed:  # the cell is tried again on a rerun, which prunes only these rows
            record["error"] = f"{len(failed)} pruning(s) failed; " + "; ".join(failed)
        else:
            record["status"] = "done"
    except Exception as e:  # recorded, and the sweep goes on
        record["error"] = f"{type(e).__name__}: {e}"
    if _rank() == 0:
        atomic_write_json(home / CELL_FILE, {**record, "rows": record["rows"] + pending})
    return record


def _targets(cfg: SweepConfig, cell: Cell) -> list[tuple[str, float]]:
    """The (task, target) rows a cell prunes, in order: every task at every target, then its curve."""
    targets = [(task, t) for task in cfg.tasks for t in cfg.targets]
    if cell.name in cfg.curve():
        targets += [(cfg.curve_on(), t) for t in cfg.curve_targets if t not in cfg.targets]
    return targets


def _train(cfg: SweepConfig, cell: Cell, out: Path, model_dir: Path, progress: bool) -> Path | None:
    if cell.base is None:
        api.train(cfg.run(cell), model_dir, resume=True, progress=progress)
    else:
        base = out / "cells" / cell.base / "model"
        if not (base / WEIGHTS).exists():  # written when its training ends
            raise UserError(f"its base cell {cell.base} did not train")
        api.sparsify(base, cell.density, model_dir, resume=True, progress=progress,
                     steps=cfg.steps(cell), checkpoint_every=cfg.train.checkpoint_every)
    return model_dir if _rank() == 0 else None


def _activations(cfg: SweepConfig, model, model_dir: Path) -> dict:
    """Mean activation sparsity per input set (the full table and its figure are `activations.json` and
    `activations.png` in the cell)."""
    run = load_json(RunConfig, model_dir / RUN_FILE)
    sets = input_sets(model, make_data(run), cfg.activation_sets)
    report = activation_sparsity(model, sets)
    save_activations(report, model_dir.parent)
    return {s: r["mean"] for s, r in report.items()}


def _saved_rows(rows: list[dict], record: dict) -> dict:
    """Rows an earlier, interrupted run finished for this same model (same nonzero weights and
    pretraining loss), by (task, target); rows that failed are left out, to be tried again."""
    return {(row["task"], row["target"]): row for row in rows
            if row["status"] in ("pruned", "unreachable", "not passed") and row["nonzero"] == record["nonzero"]
            and math.isclose(row["pretrain_loss"], record["pretrain_loss"], rel_tol=1e-5, abs_tol=1e-7)}


def _prune_row(cfg: SweepConfig, cell: Cell, record: dict, model, task: str, target: float, accuracy: float,
               home: Path, progress: bool) -> dict:
    """One row: the task's circuit at the target (with the controls), or why there is none."""
    row = {"cell": cell.name, "kind": cell.kind, "width": cell.width, "density": cell.density,
           "nonzero": record["nonzero"], "pretrain_loss": record["pretrain_loss"], "task": task, "target": target,
           "task_accuracy": accuracy}
    if accuracy < cfg.pass_accuracy:
        return {**row, "status": "not passed", "reached": False}
    t0 = time.perf_counter()
    try:
        circuit = prune(model, task, target, progress=progress, **cfg.prune)
        where = home / "circuits" / f"{task}-{target:g}"
        circuit.save(where)
        row.update(status="pruned", reached=circuit.reached, nodes=circuit.n_nodes, edges=circuit.n_edges,
                   loss=circuit.loss, full_loss=circuit.full_loss, circuit=str(where.relative_to(home.parent.parent)))
        if circuit.reached and cfg.controls:
            controls = control_prunings(model, get_task(task), circuit, None, cfg.controls, progress)
            row["controls"] = {k: {"reached": v["reached"], "edges": v["edges"]} for k, v in controls.items()}
    except UnreachableTarget as e:  # the whole model misses the target
        return {**row, "status": "unreachable", "reached": False, "error": str(e)}
    except Exception as e:  # recorded with the row, and the sweep goes on
        return {**row, "status": "failed", "reached": False, "error": f"{type(e).__name__}: {e}"}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def finish(cfg: SweepConfig, out: Path) -> dict:
    """`results.jsonl` (every finished row, unfinished cells' too), `summary.json` and the figures
    (from the finished cells)."""
    records = [r for r in (_record(out, c) for c in cfg.cells()) if r]
    rows = [r for rec in records for r in rec["rows"]]
    atomic_write_text(out / RESULTS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize(cfg, records)
    atomic_write_json(out / "summary.json", summary)
    if summary["points"]:
        write_frontier_figures(summary, rows, cfg, out)
    return summary
