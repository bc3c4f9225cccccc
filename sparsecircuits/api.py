"""The Python API in a few calls: load, train, sparsify, evaluate, validate a saved circuit."""
from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write_json
from .circuits import Circuit, model_hash
from .circuits.circuit import VALIDATION_FILE
from .circuits.run import circuit_means
from .circuits.validation import BINARISE_STEPS, validate
from .config_io import load_json
from .errors import UserError
from .model.io import load_model, save_model
from .model.transformer import SparseTransformer
from .training.config import RunConfig
from .data.corpus import CorpusData
from .tasks import get_task, resolve_tasks
from .tasks.evaluate import evaluate_task
from .training.evaluate import addition_report, sparsity_report, validation_loss
from .training.sparsify import sparsify_trainer
from .training.distributed import resolve_device
from .training.config import RUN_FILE
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


def train(run: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          init: SparseTransformer | None = None) -> SparseTransformer:
    """Train `run` into `out`; with `resume`, continue from `out/checkpoint` when there is one."""
    trainer = Trainer(run, out, init=init, progress=progress)
    if resume:
        trainer.resume()
    return trainer.fit()


def sparsify(base: str | Path, density: float, out: str | Path, resume: bool = False, progress: bool = True,
             data: str | Path | None = None, **train_overrides) -> SparseTransformer:
    """Sparsity-regularised finetuning of the model in `base` down to `density` (METHOD 4), on its own
    data or on the corpus `data` (a model from elsewhere, e.g. a Hugging Face GPT-2, needs one)."""
    trainer = sparsify_trainer(base, density, out, progress=progress, data=data, **train_overrides)
    if resume:
        trainer.resume()
    return trainer.fit()


def evaluate(path: str | Path, device: str = "cpu", tasks: str | None = None, n: int = 200,
             corpus: str | Path | None = None, tokenizer: str | Path | None = None) -> dict:
    """Sparsity of a model directory; its accuracy (addition) or validation loss (code corpus) when we
    know its data; and with `tasks` ('all', 'arithmetic', or names), loss and accuracy per task."""
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
        report.update(addition_report(model, make_data(run), device))
    if tasks:
        if model.tokenizer is None:
            raise UserError(f"{path} has no tokenizer: task prompts cannot be tokenized (pass --tokenizer DIR)")
        report["tasks"] = [evaluate_task(model, t, model.tokenizer, n=n) for t in resolve_tasks(tasks)]
    report.update(sparsity_report(model))
    return report
