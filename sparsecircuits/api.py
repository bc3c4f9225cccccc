"""The Python API in a few calls: load, train, sparsify, evaluate, validate and export a saved circuit."""
from __future__ import annotations

import numbers
from dataclasses import replace
from pathlib import Path

import torch

from .atomic import atomic_write_json, refuse_file
from .circuits import Circuit, model_hash
from .circuits.circuit import VALIDATION_FILE
from .circuits.effects import ablation_effects, circuit_pruner
from .circuits.export import write_export
from .circuits.run import circuit_means
from .circuits.validation import BINARISE_STEPS, validate
from .config_io import from_dict, load_json, to_dict
from .data.corpus import CorpusData, build_corpus
from .errors import UserError, check_number
from .model.io import CONFIG, load_model, save_model
from .model.transformer import SparseTransformer
from .tasks import get_task, required_tokens, resolve_tasks
from .tasks.evaluate import evaluate_task
from .training.bridges import load_bridged, site_of, steer
from .training.checkpoint import checkpoints
from .training.config import RUN_FILE, RunConfig
from .training.distributed import resolve_device
from .training.evaluate import answer_report, sparsity_report, validation_loss
from .training.presets import preset
from .training.sparsify import sparsify_trainer
from .training.trainer import Trainer, make_data


def load(path: str | Path, device: str = "cpu", tokenizer: str | Path | None = None,
         causal: bool | None = None) -> SparseTransformer:
    """A ready model from a model directory: ours, a Hugging Face GPT-2, or the authors' release
    (`tokenizer`: a folder with their `encoder.json` + `vocab.bpe`, or a `tokenizer.json`;
    `causal=False`: attention over the whole prompt, for a bidirectional model)."""
    return load_model(path, device, tokenizer, causal)


def save(model: SparseTransformer, path: str | Path) -> None:
    """Write `config.json` + `model.safetensors` into `path`, each atomically (temp file + rename)."""
    save_model(model, path)


def load_circuit(directory: str | Path, model: str | Path | None = None, progress: bool = True):
    """(circuit, model, means) of a circuit directory; the model is the one the circuit names unless
    `model` is given, and must have the weights the circuit was pruned from."""
    circuit = Circuit.load(directory)
    return (circuit, *circuit_model(circuit, directory, model, progress))


def circuit_model(circuit: Circuit, directory: str | Path, model: str | Path | None = None, progress: bool = True):
    """(model, means) that a loaded circuit was pruned from (see `load_circuit`)."""
    model_dir = model or circuit.settings.get("model")
    if not model_dir:
        raise UserError("the circuit does not name its model: pass the model directory")
    net = load(model_dir, tokenizer=circuit.settings.get("tokenizer"), causal=circuit.settings.get("causal"))
    circuit.check_model(net.cfg, str(directory))
    circuit.calibration.check(len(get_task(circuit.task).candidates))
    if model_hash(net) != circuit.settings.get("model_hash"):
        raise UserError(f"{directory} was pruned from other weights than the model in {model_dir}")
    return net, circuit_means(net, circuit, progress)


def validate_circuit(directory: str | Path, model: str | Path | None = None, controls: bool = True,
                     progress: bool = True, binarise_steps: int = BINARISE_STEPS) -> dict:
    """Every check of a saved circuit (`circuits.validation`), written to `validation.json` beside it,
    where the viewer's numbers view reads it."""
    circuit, net, means = load_circuit(directory, model, progress)
    report = validate(net, get_task(circuit.task), circuit, means, controls=controls, progress=progress,
                      binarise_steps=binarise_steps)
    atomic_write_json(Path(directory) / VALIDATION_FILE, report)
    return report


def ensure_corpus(path: str | Path, progress=None) -> str:
    """The corpus at `path`, built from this Python's standard library on first use; its absolute path
    (run.json names it, so circuits and evaluations find it from any folder)."""
    if not Path(path).exists():
        if progress:
            progress(f"no corpus at {path}: building one from this Python's standard library ...")
        build_corpus(path, required_tokens=required_tokens(), progress=progress)
    return str(Path(path).resolve())


def run_config(preset_name: str | None = None, config: str | Path | None = None, corpus: str | Path = "corpus",
               init_from: str | Path | None = None, bridge_to: str | Path | None = None,
               model_overrides: dict | None = None, progress=None, **train_overrides) -> RunConfig:
    """One run from a named preset (its corpus built on first use), a run-config file, or the defaults,
    with model fields (e.g. `afrac`) and train fields (e.g. `steps`, `density`) overridden. With
    `init_from` and no config file, the run takes the starting model's shape."""
    if preset_name and config:
        raise UserError("give a preset or a config file, not both")
    if preset_name:
        run = preset(preset_name, str(corpus))  # an unknown name is refused before any corpus is built
        run = replace(run, data=replace(run.data, path=ensure_corpus(corpus, progress)))
    else:
        run = load_json(RunConfig, config) if config else RunConfig()
    if init_from is not None:
        init_cfg = load(init_from).cfg
        run = replace(run, model=init_cfg) if not config else run
        run = replace(run, init_from=str(Path(init_from).resolve()))
    if bridge_to is not None:
        load(bridge_to)  # fail now, with a clear message, if it is not a model
        run = replace(run, bridge_to=str(Path(bridge_to).resolve()))
    model = to_dict(run.model) | (model_overrides or {})
    return from_dict(RunConfig, {**to_dict(run), "model": model, "train": to_dict(run.train) | train_overrides})


def train(run: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          init: SparseTransformer | None = None) -> SparseTransformer:
    """Train `run` into `out`, starting from `init` or else from the model `run.init_from` names; with
    `resume`, continue from the newest checkpoint in `out` when there is one."""
    _check_out(out, resume)
    if init is None and run.init_from:
        init = load(run.init_from)
    trainer = Trainer(run, out, init=init, progress=progress)
    if resume:
        trainer.resume()
    return trainer.fit()


def sparsify(base: str | Path, density: float, out: str | Path, resume: bool = False, progress: bool = True,
             data: str | Path | None = None, **train_overrides) -> SparseTransformer:
    """Sparsity-regularised finetuning of the model in `base` down to `density` (METHOD 4), on its own
    data or on the corpus `data` (a model from elsewhere, e.g. a Hugging Face GPT-2, needs one)."""
    _check_out(out, resume)
    trainer = sparsify_trainer(base, density, out, progress=progress, data=data, **train_overrides)
    if resume:
        trainer.resume()
    return trainer.fit()


def _check_out(out: str | Path, resume: bool) -> None:
    """A run's output folder: not a file, and not a finished or started run unless resuming it (a new
    run's first checkpoint would delete the old run's)."""
    refuse_file(out)
    out = Path(out)
    if not resume and out.is_dir() and ((out / CONFIG).exists() or checkpoints(out)):
        raise UserError(f"{out} already holds a model or checkpoint: resume it (--resume) or choose another folder")


def evaluate(path: str | Path, device: str = "cpu", tasks: str | None = None, n: int = 200,
             corpus: str | Path | None = None, tokenizer: str | Path | None = None) -> dict:
    """Sparsity of a model directory; its accuracy (addition) or validation loss (code corpus) when we
    know its data; and with `tasks` ('all', 'arithmetic', 'brackets', or names), loss and accuracy per task."""
    path, device = Path(path), resolve_device(device)
    model = load_model(path, device, tokenizer)
    report = {"model": str(path)}
    run = load_json(RunConfig, path / RUN_FILE) if (path / RUN_FILE).exists() else None
    if corpus is not None or (run is not None and run.data.kind == "corpus"):
        data = CorpusData(corpus or run.data.path, model.cfg.block_size)
        if data.tokenizer.vocab_size != model.cfg.vocab_size:
            raise UserError(f"corpus tokenizer has {data.tokenizer.vocab_size} tokens, model vocab is {model.cfg.vocab_size}")
        report.update(validation_loss(model, data, device))
    elif run is not None:
        report.update(answer_report(model, make_data(run), device))
    if tasks:
        if model.tokenizer is None:
            raise UserError(f"{path} has no tokenizer: task prompts cannot be tokenized (pass --tokenizer DIR)")
        report["tasks"] = [evaluate_task(model, t, model.tokenizer, n=n) for t in resolve_tasks(tasks)]
    report.update(sparsity_report(model))
    return report


def export_circuit(directory: str | Path, fmt: str, out: str | Path, effects: bool = True,
                   progress: bool = True) -> tuple[Circuit, Path]:
    """Write a saved circuit as a graph file (`circuits.export.FORMATS`) for other tools, each node with
    its ablation effect unless `effects` is False; the labels are the first test prompt's tokens."""
    circuit, model, means = load_circuit(directory, progress=progress)
    pruner = circuit_pruner(model, circuit, means)
    node_effects = dict(zip(circuit.node_names, ablation_effects(pruner, circuit, circuit.node_names))) if effects \
        else {}
    first = pruner.test.tokens[0, : int(pruner.test.last[0]) + 1].tolist()
    return circuit, write_export(circuit, node_effects, list(model.tokenizer.token_strings(first)), fmt, out)


def steer_model(model_dir: str | Path, channel: str, value: float, task: str | None = None,
                prompt: str | None = None, candidates: tuple[str, str] | None = None,
                strengths=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """Edit one channel of a model trained with bridges (`train --bridge-to`) and carry the edit into its
    dense twin (METHOD 4): the prompt and two candidate answers come from a task's first test pair, or
    are given. Returns the candidates' probabilities, sparse before/after and dense at each strength."""
    value = check_number("the steered value (--value)", float(value) if isinstance(value, numbers.Real) else value,
                         -1e6, 1e6)  # far past any activation; the softmax overflows to NaN
    sparse, dense, bridges = load_bridged(model_dir)
    tok = sparse.tokenizer
    if tok is None:
        raise UserError(f"{model_dir} has no tokenizer")
    if task and (prompt is not None or candidates):
        raise UserError("give a task, or a prompt with two candidates, not both")
    if task:
        example = get_task(task).examples("test", 1)[0]
        if example.wrong is None:
            raise UserError(f"task {task} has no wrong answer to compare with: give a prompt and two candidates")
        prompt, candidates = example.prompt, (example.correct, example.wrong)
    if prompt is None or not candidates or len(candidates) != 2:
        raise UserError("give a task, or a prompt with two candidate answers A,B")
    if not prompt:
        raise UserError("the prompt is empty")
    ids = [tok.single_token(t) for t in candidates]
    if None in ids:
        raise UserError(f"candidates must be single tokens: {candidates}")
    site, index = site_of(channel, sparse.cfg.n_layer)
    tokens = torch.tensor([tok.encode(prompt)[-sparse.cfg.block_size:]])
    r = steer(sparse, dense, bridges, tokens, site, index, value, strengths)

    def probs(logprobs):
        return [float(logprobs[i].exp()) for i in ids]

    return {"site": site, "channel": index, "value": value, "prompt": prompt, "candidates": list(candidates),
            "sparse": probs(r["sparse"]), "sparse_edited": probs(r["sparse_edited"]),
            "dense": {s: probs(lp) for s, lp in r["dense"].items()}}
