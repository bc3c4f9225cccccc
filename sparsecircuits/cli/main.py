"""`sparsecircuits` command line: a thin layer over the Python API.

Bad input ends with one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


from .. import api, viz
from ..atomic import atomic_write_json, refuse_dirs, refuse_file
from ..circuits import prune, search
from ..circuits.circuit import CIRCUIT_FILE
from ..circuits.export import FORMATS
from ..data.corpus import build_corpus
from ..demo import run_demo
from ..errors import UserError
from ..frontier import model_activations, run_sweep, save_activations, sweep_config
from ..frontier.activations import FIGURE_FILE, REPORT_FILE, SETS
from ..frontier.config import PRESETS as SWEEPS
from ..tasks import TASKS, get_task, required_tokens
from ..training.presets import PRESETS
from .report import format_activations, format_demo, format_frontier, format_report, format_validation


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def _count(low: int, high: int):
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high:,}, got {value:,}")
        return value
    return parse


def _finite(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _train_overrides(args) -> dict:
    keys = ("steps", "batch_size", "lr", "seed", "device", "autocast", "checkpoint_every")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def cmd_train(args) -> None:
    train = _train_overrides(args) | ({"density": args.density} if args.density is not None else {})
    run = api.run_config(args.preset, args.config, args.corpus, args.init_from, args.bridge_to,
                         model_overrides={"afrac": args.afrac} if args.afrac is not None else None,
                         progress=lambda m: print(m, file=sys.stderr), **train)
    api.train(run, args.out, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"saved model to {args.out}")


def cmd_sparsify(args) -> None:
    overrides = _train_overrides(args)
    if args.distill_weight is not None:
        overrides["distill_weight"] = args.distill_weight
    api.sparsify(args.base, args.density, args.out, resume=args.resume, progress=not args.quiet, data=args.data,
                 **overrides)
    print(f"saved sparse model to {args.out}")


def cmd_eval(args) -> None:
    if args.json:
        refuse_dirs(args.json)
    report = api.evaluate(args.model, device=args.device or "cpu", tasks=args.tasks, n=args.n, corpus=args.corpus,
                          tokenizer=args.tokenizer)
    print(format_report(report))
    if args.json:
        atomic_write_json(Path(args.json), report)


def cmd_corpus_build(args) -> None:
    manifest = build_corpus(args.out, args.src or None, vocab_size=args.vocab_size, val_percent=args.val_percent,
                            required_tokens=required_tokens())
    split = manifest["splits"]
    print(f"corpus {args.out}: {len(manifest['files'])} files, {split['train']['tokens']:,} train and "
          f"{split['val']['tokens']:,} validation tokens, vocabulary {manifest['vocab_size']}")


def cmd_tasks_list(args) -> None:
    width = max(len(n) for n in TASKS)
    for name, task in TASKS.items():
        kind = "pair " if task.binary else "vocab"
        print(f"{name:<{width}}  {kind}  {task.description}")


def cmd_tasks_show(args) -> None:
    task = get_task(args.name)
    print(f"{task.name}: {task.description}")
    for i, e in enumerate(task.examples(args.split, args.n, args.seed)):
        wrong = f"   wrong: {e.wrong!r}" if e.wrong is not None else ""
        print(f"--- {i}   correct: {e.correct!r}{wrong}")
        print(e.prompt + "\u2038")


def cmd_prune(args) -> None:
    refuse_file(args.out)
    refuse_dirs(Path(args.out) / CIRCUIT_FILE)
    model = api.load(args.model, tokenizer=args.tokenizer, causal=False if args.bidirectional else None)
    task = get_task(args.task)
    options = {k: getattr(args, k) for k in ("ablation", "steps", "lr", "seed") if getattr(args, k) is not None}
    options.update(freeze_norms=args.freeze_norms, cleanup=not args.no_cleanup, means_from=args.means)
    if args.search > 1:
        circuit, _ = search(model, args.task, args.target_loss, budget=args.search, progress=not args.quiet,
                            corpus=args.data, **options)
    else:
        circuit = prune(model, args.task, args.target_loss, progress=not args.quiet, corpus=args.data, **options)
    circuit.save(args.out)
    state = "reaches" if circuit.reached else "does NOT reach"
    trained = circuit.settings["trained"]
    print(f"circuit of {task.name}: {circuit.n_nodes} nodes, {circuit.n_edges} edges, loss {circuit.loss:.4f} "
          f"({state} target {circuit.target}; full model {circuit.full_loss:.4f}; trained set {trained['nodes']} "
          f"nodes, {trained['edges']} edges before cleanup) -> {args.out}")


def cmd_validate(args) -> None:
    report = api.validate_circuit(args.circuit, args.model, controls=not args.no_controls, progress=not args.quiet)
    print(format_validation(report))


def _labels(args) -> list[str] | None:
    return [x.strip() for x in args.labels.split(",")] if args.labels else None


def cmd_viz(args) -> None:
    if not args.serve and not args.out:
        raise UserError("give --out FILE.html or --serve")
    if args.out and Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must be an .html file, got {args.out!r}")
    if args.out:
        refuse_dirs(args.out)
    server = viz.make_server(port=args.port) if args.serve else None  # a busy port is refused before any work
    try:
        models = viz.report_models(args.circuits, _labels(args), progress=not args.quiet)
        title = f"sparsecircuits: {models[0]['task']} circuit" + (" — " + " vs ".join(m["label"] for m in models)
                                                                  if len(models) > 1 else "")
        if args.out:
            print(f"report -> {viz.write_report(models, args.out, title)}")
        if server:
            server.page = viz.render(models, title)
            print(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
            server.serve_forever()
    finally:
        if server:
            server.server_close()


def cmd_figure(args) -> None:
    viz.check_figure_args(args.kind, args.out)
    models = viz.report_models(args.circuits, _labels(args), details=args.kind == "graph", progress=not args.quiet)
    if args.prompt >= len(models[0]["prompts"]):
        raise UserError(f"--prompt must be in 0..{len(models[0]['prompts']) - 1}")
    print(f"figure -> {viz.write_figure(models, args.kind, args.out, prompt=args.prompt)}")


def cmd_export(args) -> None:
    circuit, out = api.export_circuit(args.circuit, args.format, args.out, effects=not args.no_effects,
                                      progress=not args.quiet)
    print(f"{circuit.n_nodes} nodes, {circuit.n_edges} edges -> {out}")


def cmd_steer(args) -> None:
    candidates = tuple(args.tokens.split(",", 1)) if args.tokens and "," in args.tokens else None
    if args.tokens and candidates is None:
        raise UserError("--tokens needs two candidates, A,B")
    r = api.steer_model(args.model, args.channel, args.value, task=args.task, prompt=args.prompt,
                        candidates=candidates, strengths=args.strength)
    a, b = r["candidates"]
    (p0a, p0b), (p1a, p1b) = r["sparse"], r["sparse_edited"]
    print(f"edit {r['site']}[{r['channel']}] := {r['value']} on {r['prompt'][-60:]!r}; candidates {a!r} / {b!r}")
    print(f"  sparse model:  P={p0a:.4f} / {p0b:.4f} -> {p1a:.4f} / {p1b:.4f}")
    base = r["dense"][min(r["dense"])]
    for strength, (pa, pb) in r["dense"].items():
        print(f"  dense, strength {strength:4.2f}: P={pa:.4f} / {pb:.4f}  (change {pa - base[0]:+.4f} / {pb - base[1]:+.4f})")


def cmd_frontier(args) -> None:
    cfg = sweep_config(args.preset, args.sweep, args.quick, args.corpus, lambda m: print(m, file=sys.stderr))
    summary = run_sweep(cfg, args.out, jobs=args.jobs, progress=not args.quiet, only=args.cell)
    if summary:
        print(format_frontier(summary))
        figures = " and frontier.png/.svg" if summary["points"] else " (no finished cell: no figure)"
        print(f"wrote {Path(args.out) / 'results.jsonl'}, summary.json{figures}")


def cmd_activations(args) -> None:
    sets = [d for d in args.data if d in SETS]
    paths = [d for d in args.data if d not in SETS]
    if len(paths) > 1:
        raise UserError(f"give at most one corpus or text file, got {', '.join(paths)}")
    out = Path(args.out)
    refuse_file(out)
    refuse_dirs(out / REPORT_FILE, out / FIGURE_FILE)
    report = model_activations(args.model, sets, paths[0] if paths else None, n=args.n, corpus=args.corpus)
    files = save_activations(report, out)
    print(f"activation sparsity of {args.model} at every node location (means over locations):")
    print(format_activations(report))
    print(f"wrote {files[0]} and {files[1]}")


def cmd_demo(args) -> None:
    formats = {"model": format_report, "validation": format_validation}
    summary = run_demo(args.out, quick=args.quick, progress=not args.quiet,
                       show=lambda kind, report: print(formats[kind](report)))
    print(format_demo(summary, args.out))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sparsecircuits", description="Weight-sparse transformers and their circuits.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="train a dense addition model, sparsify it, report both")
    d.add_argument("--out", default="demo", help="output folder (default: demo)")
    d.add_argument("--quick", action="store_true", help="a few steps only, to check the pipeline runs")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    def common(sp, density_required=False):
        sp.add_argument("--out", required=True, help="output model directory")
        sp.add_argument("--density", type=float, required=density_required,
                        help="fraction of sparsified weights kept, in (0, 1]")
        sp.add_argument("--steps", type=int)
        sp.add_argument("--batch-size", type=int)
        sp.add_argument("--lr", type=float)
        sp.add_argument("--seed", type=int)
        sp.add_argument("--checkpoint-every", type=int)
        sp.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
        sp.add_argument("--autocast", choices=["auto", "bf16", "none"], help="auto (default): bf16 on GPUs, fp32 on CPUs")
        sp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train a model (weight-sparse when --density < 1)")
    t.add_argument("--config", help="run config JSON: {\"model\": {...}, \"data\": {...}, \"train\": {...}}")
    t.add_argument("--preset", help=f"a named run: {', '.join(PRESETS)}")
    t.add_argument("--corpus", default="corpus", help="corpus directory for --preset (built if missing)")
    t.add_argument("--afrac", type=float, help="AbsTopK fraction of activations kept")
    t.add_argument("--init-from", help="model directory whose weights start the run")
    t.add_argument("--bridge-to", help="dense model to train bridges to, jointly with this sparse model")
    common(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sparsify", help="sparsity-regularised finetuning of a dense model")
    s.add_argument("base", help="the dense base model directory")
    s.add_argument("--distill-weight", type=float, help="weight of KL(base || model) (default 1)")
    s.add_argument("--data", help="corpus directory to finetune on (default: the base model's own data)")
    common(s, density_required=True)
    s.set_defaults(func=cmd_sparsify)

    e = sub.add_parser("eval", help="accuracy and sparsity of a model")
    e.add_argument("model", help="model directory")
    e.add_argument("--json", help="also write the report to this JSON file")
    e.add_argument("--device", help="cpu (default), cuda, auto")
    e.add_argument("--tasks", help="'all' (the 20 Python tasks), 'arithmetic', 'brackets', or names / .jsonl files, "
                                   "comma separated")
    e.add_argument("-n", type=_count(1, 10 ** 6), default=200, help="test examples per task (default 200)")
    e.add_argument("--corpus", help="corpus for the validation loss (default: the model's training corpus)")
    e.add_argument("--tokenizer", help="tokenizer folder (tokenizer.json, or encoder.json + vocab.bpe) for a model that has none")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("prune", help="prune a model to the circuit of one task")
    pr.add_argument("model", help="model directory")
    pr.add_argument("--task", required=True, help="task name or .jsonl file")
    pr.add_argument("--data", help="corpus for the pretraining means of a model without run.json (e.g. a GPT-2)")
    pr.add_argument("--means", default="pretraining",
                    help="what mean ablation averages: pretraining (default: the model's data or --data), task "
                         "(the task's prompts), or a prompt file (.txt, one per line, or .jsonl with \"prompt\")")
    pr.add_argument("--bidirectional", action="store_true", help="attention without the causal mask (imported "
                    "bidirectional models)")
    pr.add_argument("--tokenizer", help="tokenizer folder (tokenizer.json, or encoder.json + vocab.bpe) for a model that has none")
    pr.add_argument("--target-loss", type=float, default=0.15)
    pr.add_argument("--out", required=True, help="circuit directory to write")
    pr.add_argument("--ablation", choices=["mean", "zero", "resample"])
    pr.add_argument("--steps", type=int, help="mask training steps (default 300)")
    pr.add_argument("--lr", type=float, help="mask learning rate (default 0.05)")
    pr.add_argument("--seed", type=int)
    pr.add_argument("--freeze-norms", action="store_true", help="norms use the unpruned model's scales")
    pr.add_argument("--no-cleanup", action="store_true", help="keep the trained set as it is (no node-by-node cleanup)")
    pr.add_argument("--search", type=_count(1, 1000), default=1, help="pruning runs in a hyper-parameter search (budget)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_prune)

    va = sub.add_parser("validate", help="check a circuit: sufficiency, necessity, baselines, controls")
    va.add_argument("circuit", help="circuit directory (from prune)")
    va.add_argument("--model", help="model directory (default: the one the circuit names)")
    va.add_argument("--no-controls", action="store_true", help="skip the three control prunings")
    va.add_argument("--quiet", action="store_true")
    va.set_defaults(func=cmd_validate)

    vz = sub.add_parser("viz", help="the interactive circuit report: one HTML file, or served on localhost")
    vz.add_argument("circuits", nargs="+", help="circuit directories (two or more: drawn side by side)")
    vz.add_argument("--out", help="HTML file to write")
    vz.add_argument("--serve", action="store_true", help="serve the report on http://127.0.0.1:PORT")
    vz.add_argument("--port", type=_count(0, 65535), default=0, help="port for --serve (default: a free one)")
    vz.add_argument("--labels", help="comma-separated panel names (default: the models' folder names)")
    vz.add_argument("--quiet", action="store_true")
    vz.set_defaults(func=cmd_viz)

    fg = sub.add_parser("figure", help="a static figure (PNG/SVG/PDF) of one or more circuits")
    fg.add_argument("circuits", nargs="+", help="circuit directories (one panel each)")
    fg.add_argument("--kind", choices=list(viz.KINDS), default="flow")
    fg.add_argument("--out", required=True, help="figure file: .png, .svg or .pdf")
    fg.add_argument("--prompt", type=_count(0, 10 ** 6), default=0, help="which task prompt the flow figure traces")
    fg.add_argument("--labels", help="comma-separated panel names")
    fg.add_argument("--quiet", action="store_true")
    fg.set_defaults(func=cmd_figure)

    ex = sub.add_parser("export", help="write a circuit as a graph for other tools (GraphML or JSON graph)")
    ex.add_argument("circuit", help="circuit directory")
    ex.add_argument("--format", choices=list(FORMATS), required=True)
    ex.add_argument("--out", required=True, help="file to write")
    ex.add_argument("--no-effects", action="store_true", help="skip each node's ablation effect (faster)")
    ex.add_argument("--quiet", action="store_true")
    ex.set_defaults(func=cmd_export)

    st = sub.add_parser("steer", help="edit one sparse channel and steer the dense model through the bridges")
    st.add_argument("model", help="sparse model trained with --bridge-to")
    st.add_argument("--channel", required=True, help="e.g. 1.resid_mid[5] or a node such as 1.mlp.resid_delta[5]")
    st.add_argument("--value", type=_finite, required=True,
                    help="value the channel is set to at every position (|value| <= 1e6)")
    st.add_argument("--task", help="take the prompt and the two candidates from this task's first test pair")
    st.add_argument("--prompt", help="prompt text (with --tokens)")
    st.add_argument("--tokens", help="the two candidate next tokens, A,B")
    st.add_argument("--strength", type=_finite, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    st.set_defaults(func=cmd_steer)

    c = sub.add_parser("corpus", help="build a corpus of Python code")
    csub = c.add_subparsers(dest="corpus_command", required=True, parser_class=_Parser)
    cb = csub.add_parser("build", help="collect, split, tokenize and pack .py files")
    cb.add_argument("--out", required=True, help="corpus directory to write")
    cb.add_argument("--src", action="append", help="a folder or file of Python code (repeatable; default: the stdlib)")
    cb.add_argument("--vocab-size", type=int, default=2048)
    cb.add_argument("--val-percent", type=float, default=5.0, help="percent of files held out for validation")
    cb.set_defaults(func=cmd_corpus_build)

    fr = sub.add_parser("frontier", help="sweep density x width: each cell's loss against its circuits' size")
    fr.add_argument("sweep", nargs="?", help="sweep config JSON (or use --preset)")
    fr.add_argument("--preset", help=f"a named sweep: {', '.join(SWEEPS)}")
    fr.add_argument("--quick", action="store_true", help="a tiny grid (arithmetic-cpu, brackets-cpu), to check the pipeline")
    fr.add_argument("--corpus", default="corpus", help="corpus directory for the python presets (built if missing)")
    fr.add_argument("--out", required=True, help="sweep directory (a rerun resumes it)")
    fr.add_argument("--jobs", type=_count(1, 256), default=1, help="cells trained and pruned in parallel processes")
    fr.add_argument("--cell", nargs="+", help="run only these cells (one, under torchrun)")
    fr.add_argument("--quiet", action="store_true")
    fr.set_defaults(func=cmd_frontier)

    ac = sub.add_parser("activations", help="activation sparsity per layer and location, familiar vs unfamiliar inputs")
    ac.add_argument("model", help="model directory")
    ac.add_argument("--data", nargs="+", default=list(SETS),
                    help=f"input sets: {', '.join(SETS)}, and at most one corpus directory or text file")
    ac.add_argument("--corpus", help="the familiar data of a model without run.json (a corpus directory)")
    ac.add_argument("-n", type=_count(1, 10 ** 5), default=256, help="examples per input set")
    ac.add_argument("--out", required=True, help="directory for activations.json and activations.png")
    ac.set_defaults(func=cmd_activations)

    k = sub.add_parser("tasks", help="list and show tasks")
    ksub = k.add_subparsers(dest="tasks_command", required=True, parser_class=_Parser)
    kl = ksub.add_parser("list", help="every known task")
    kl.set_defaults(func=cmd_tasks_list)
    ks = ksub.add_parser("show", help="examples of one task")
    ks.add_argument("name", help="task name or a .jsonl file")
    ks.add_argument("-n", type=_count(1, 10 ** 5), default=5)
    ks.add_argument("--split", choices=["train", "test"], default="test")
    ks.add_argument("--seed", type=int, default=0)
    ks.set_defaults(func=cmd_tasks_show)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file we cannot write, a port in use: the user's to fix, not a traceback
        print(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
