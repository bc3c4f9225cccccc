"""A frontier sweep (METHOD 7): a grid of model cells, the tasks their circuits are pruned on, and
the target losses, as one JSON object that round-trips.

Widths scale `model.d_model`, `n_head` (at least 1) and `d_mlp` together. `densities` are those of the narrowest
width; a wider cell keeps the same number of nonzero weights (density x (narrowest / width)^2, as the
paper widens at fixed L0). Each width also gets a dense baseline, `dense_widths` adds dense models of
other widths (so the dense loss-vs-size curve spans a range to interpolate in), and `sparsified`
sparsity-finetunes each width's dense baseline to those densities (METHOD 4).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import api
from ..circuits.pruner import PruneConfig
from ..circuits.validation import CONTROLS
from ..config_io import from_dict, load_json
from ..errors import UserError, check_number
from ..model.config import ModelConfig
from ..sparsity.projection import check_density
from ..tasks import BRACKET_TASKS, PYTHON_TASKS
from ..training.config import DataConfig, RunConfig, TrainConfig
from .activations import SETS

SWEEP_FILE = "sweep.json"


@dataclass
class Cell:
    """One model of the grid: `kind` sparse (trained sparse from scratch), dense, or sparsified
    (the dense model of the same width, sparsity-finetuned)."""
    name: str
    kind: str
    width: int
    density: float

    @property
    def base(self) -> str | None:
        """The cell a sparsified cell is finetuned from."""
        return f"w{self.width}-dense" if self.kind == "sparsified" else None


@dataclass
class SweepConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)   # steps etc. of the sparse cells
    dense_steps: int = 0             # 0: train.steps
    dense_lr: float = 0.0            # 0: train.lr (dense models often want a lower one)
    sparsify_steps: int = 0          # 0: train.steps
    sparsest_anneal_end: float = 0.0  # 0: train.anneal_end; else that of the sparse cells at the lowest L0 (METHOD 3)
    widths: list[int] = field(default_factory=lambda: [64, 128])
    densities: list[float] = field(default_factory=lambda: [1 / 4, 1 / 16, 1 / 64])
    dense_widths: list[int] = field(default_factory=list)
    sparsified: list[float] = field(default_factory=list)
    tasks: list[str] = field(default_factory=lambda: ["add2_digit4"])
    targets: list[float] = field(default_factory=lambda: [0.15])
    pass_accuracy: float = 0.0       # prune only the tasks a model gets right at least this often
    prune: dict = field(default_factory=dict)      # PruneConfig fields for every pruning
    controls: list[str] = field(default_factory=list)  # control prunings recorded beside each circuit
    curve_targets: list[float] = field(default_factory=list)  # more targets, on one task ...
    curve_cells: list[str] = field(default_factory=list)      # ... of these cells (default: a sparse, a dense)
    curve_task: str = ""             # that task ("": the last one)
    activation_sets: list[str] = field(default_factory=lambda: list(SETS))

    def __post_init__(self):
        for name in ("dense_steps", "sparsify_steps"):
            check_number(f"sweep '{name}'", getattr(self, name), 0, integer=True)
        check_number("sweep 'dense_lr'", self.dense_lr, 0)
        check_number("sweep 'sparsest_anneal_end'", self.sparsest_anneal_end, 0, 1)
        if 0 < self.sparsest_anneal_end < self.train.anneal_start:
            raise UserError("sweep 'sparsest_anneal_end' must not come before train 'anneal_start'")
        if not self.widths and not self.dense_widths:
            raise UserError("the sweep's grid is empty: give at least one width")
        for w in [*self.widths, *self.dense_widths]:
            check_number("sweep width", w, 1, 1 << 16, integer=True)
            if w * self.model.d_mlp % self.model.d_model:
                raise UserError(f"width {w} does not scale the model's d_mlp {self.model.d_mlp} (d_model "
                                f"{self.model.d_model}) to a whole number")
        for d in [*self.densities, *self.sparsified]:
            check_density(d)
        if not self.tasks:
            raise UserError("the sweep has no tasks")
        if not self.targets:
            raise UserError("the sweep has no target losses")
        for t in [*self.targets, *self.curve_targets]:
            check_number("sweep target loss", t, 0, low_open=True)
        if not isinstance(self.prune, dict):
            raise UserError("sweep 'prune' must be a JSON object of prune settings")
        if "target_loss" in self.prune:
            raise UserError("sweep 'prune' cannot set target_loss: the sweep's targets are its target losses")
        for name in ("widths", "dense_widths", "densities", "sparsified", "tasks", "targets", "curve_targets"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise UserError(f"sweep '{name}' lists a value twice: {values}")
        from_dict(PruneConfig, {**self.prune, "target_loss": self.targets[0]})  # names a bad key now
        names = [c.name for c in self.cells()]
        if len(set(names)) != len(names):
            raise UserError(f"two cells of the sweep would share a name (densities too close): {names}")
        folders = [f"{t:g}" for t in [*self.targets, *self.curve_targets]]
        if len(set(folders)) != len(folders):
            raise UserError(f"two target losses of the sweep are too close to tell apart: {folders}")
        if self.curve_task and self.curve_task not in self.tasks:
            raise UserError(f"curve_task {self.curve_task!r} is not one of the sweep's tasks")
        unknown = sorted(set(self.curve_cells) - set(names))
        if unknown:
            raise UserError(f"curve_cells names no cell of the grid: {', '.join(unknown)}")
        check_number("sweep 'pass_accuracy'", self.pass_accuracy, 0, 1)
        unknown = sorted(set(self.controls) - set(CONTROLS))
        if unknown:
            raise UserError(f"unknown control(s) {', '.join(unknown)} (known: {', '.join(CONTROLS)})")
        unknown = sorted(set(self.activation_sets) - set(SETS))
        if unknown:
            raise UserError(f"unknown activation set(s) {', '.join(unknown)} (known: {', '.join(SETS)})")

    def cells(self) -> list[Cell]:
        """The grid in training order: sparse and dense cells first, then the sparsified ones."""
        narrow = min(self.widths) if self.widths else 0
        out = [Cell(f"w{w}-d{_fmt(d * (narrow / w) ** 2)}", "sparse", w, d * (narrow / w) ** 2) for w in self.widths
               for d in self.densities if d < 1]
        out += [Cell(f"w{w}-dense", "dense", w, 1.0) for w in sorted(set(self.widths) | set(self.dense_widths))]
        out += [Cell(f"w{w}-sparsified-d{_fmt(d * (narrow / w) ** 2)}", "sparsified", w, d * (narrow / w) ** 2)
                for w in self.widths for d in self.sparsified]
        return out

    def curve(self) -> list[str]:
        """The cells whose circuit size is also measured against `curve_targets`."""
        if self.curve_cells:
            return list(self.curve_cells)
        cells, wide = self.cells(), max(self.widths or self.dense_widths)
        sparse = [c.name for c in cells if c.kind == "sparse" and c.width == wide]
        return ([sparse[len(sparse) // 2]] if sparse else []) + [f"w{wide}-dense"]

    def curve_on(self) -> str:
        """The task the curve cells are pruned on at every target."""
        return self.curve_task or self.tasks[-1]

    def shape(self, width: int) -> ModelConfig:
        m = self.model
        return replace(m, d_model=width, n_head=max(1, m.n_head * width // m.d_model), d_mlp=m.d_mlp * width // m.d_model)

    def steps(self, cell: Cell) -> int:
        """The training steps of a cell: its run's, or for a sparsified cell its finetuning's."""
        return (self.sparsify_steps or self.train.steps) if cell.base else self.run(cell).train.steps

    def sparsest(self, cell: Cell) -> bool:
        """A sparse cell at the grid's lowest number of nonzero weights (whatever its width)."""
        if cell.kind != "sparse":
            return False
        return round(cell.density * cell.width ** 2) == round(min(self.densities) * min(self.widths) ** 2)

    def run(self, cell: Cell) -> RunConfig:
        """The run that trains a sparse or dense cell from scratch."""
        dense = cell.kind == "dense"
        steps = (self.dense_steps or self.train.steps) if dense else self.train.steps
        lr = (self.dense_lr or self.train.lr) if dense else self.train.lr
        end = self.sparsest_anneal_end if self.sparsest_anneal_end and self.sparsest(cell) else self.train.anneal_end
        return RunConfig(model=self.shape(cell.width), data=self.data,
                         train=replace(self.train, density=cell.density, steps=steps, lr=lr, anneal_end=end))


def _fmt(density: float) -> str:
    """1/64 -> '1_64', 0.3 -> '0.3': a cell name that says its density."""
    inv = 1 / density
    return f"1_{round(inv)}" if abs(inv - round(inv)) < 1e-6 else f"{density:g}"


def _algorithmic(quick: bool, data: DataConfig, vocab: int, block: int, tasks: list[str], quick_tasks: list[str],
                 quick_targets: list[float], quick_curve: list[float]) -> SweepConfig:
    """An algorithmic task family on 2 CPU cores: 3 densities x 2 widths, their dense baselines and two
    narrower dense models, each width's dense model sparsified, every task pruned at loss 0.15;
    `quick`: a tiny grid, two tasks (`quick_tasks`), for tests."""
    if quick:
        model = ModelConfig(vocab_size=vocab, block_size=block, n_layer=2, d_model=32, n_head=2, d_head=8, d_mlp=64,
                            pos_emb="learned")
        train = TrainConfig(steps=600, batch_size=64, lr=1e-2, checkpoint_every=200, device="cpu")
        return SweepConfig(model=model, data=data, train=train, dense_steps=600,
                           sparsify_steps=300, widths=[16, 32], densities=[1 / 2, 1 / 8], dense_widths=[8],
                           sparsified=[1 / 4], tasks=quick_tasks, targets=quick_targets, curve_targets=quick_curve,
                           prune={"steps": 60, "n_train": 256, "n_test": 128}, controls=["nonsense_labels"])
    model = ModelConfig(vocab_size=vocab, block_size=block, n_layer=4, d_model=64, n_head=4, d_head=16, d_mlp=256,
                        pos_emb="learned")
    train = TrainConfig(steps=2000, batch_size=128, lr=1e-2, checkpoint_every=500, device="auto")
    return SweepConfig(model=model, data=data, train=train, dense_steps=800, dense_lr=5e-3,
                       sparsify_steps=2000, widths=[64, 128], densities=[1 / 4, 1 / 16, 1 / 64], dense_widths=[16, 32],
                       sparsified=[1 / 16], tasks=tasks, targets=[0.15],
                       curve_targets=[0.05, 0.4], controls=["nonsense_labels"])


def _arithmetic(quick: bool) -> SweepConfig:
    """2-digit addition (`36+28=00064`), every answer digit pruned."""
    return _algorithmic(quick, DataConfig(kind="addition", n_digits=2), 12, 16,
                        [f"add2_digit{i}" for i in range(5)], ["add2_digit2", "add2_digit3"], [0.5], [0.7, 0.9])


def _brackets(quick: bool) -> SweepConfig:
    """Closing 12-character bracket words (`(x(()x=))..`), every answer character pruned; room in the
    context for the 4 characters more of the harder words that activations are measured on."""
    return _algorithmic(quick, DataConfig(kind="brackets"), 5, 24,
                        list(BRACKET_TASKS), ["bracket_close0", "bracket_close1"], [0.3], [0.4, 0.5])


def _python(gpu: bool, corpus: str) -> SweepConfig:
    """The code corpus at densities that are really sparse (1/8 and below): python-tiny's shape on a CPU
    at densities 1/8 and 1/16 (its dense baseline at python-tiny-dense's lr), trained for 2,000 steps
    instead of 6,500 and pruned with a quarter of the default mask training (150 steps of 32 pairs), so
    that the whole sweep finishes in about 2 hours on 2 cores without bf16 units; the paper's shapes
    (python-paper-*) on a GPU, whose sparsest cells anneal until 80% of training as the paper's do (METHOD 3;
    on a CPU it cost arithmetic-cpu's sparsest cells a digit, see benchmarks/RESULTS.md). Every task a model
    passes (90% of held-out pairs right) is pruned, on the CPU at loss 0.3, the loss python-tiny's table
    counts a task solved at: a model that is 90% right is at about 0.2-0.3, so at the paper's 0.15 the CPU
    models' passed tasks are refused as unreachable."""
    if gpu:
        model = ModelConfig(vocab_size=2048, block_size=256, n_layer=8, d_model=256, n_head=16, d_head=16, d_mlp=1024,
                            pos_emb="none", bigram=True, sink=True, afrac=1 / 8)
        train = TrainConfig(steps=100_000, batch_size=64, lr=1e-2, anneal_start=0.01, anneal_end=0.5,
                            checkpoint_every=1000, device="auto")
        widths, densities = [256, 512, 1024], [1 / 8, 1 / 32, 1 / 128]
    else:
        model = ModelConfig(vocab_size=2048, block_size=128, n_layer=4, d_model=128, n_head=8, d_head=16, d_mlp=512,
                            pos_emb="alibi", bigram=True, sink=True)
        train = TrainConfig(steps=2000, batch_size=32, lr=4e-2, anneal_start=0.01, anneal_end=0.5,
                            checkpoint_every=250, device="auto")
        widths, densities = [128], [1 / 8, 1 / 16]
    return SweepConfig(model=model, data=DataConfig(kind="corpus", path=corpus), train=train, widths=widths,
                       dense_lr=0.0 if gpu else 2e-2, sparsest_anneal_end=0.8 if gpu else 0.0, densities=densities,
                       tasks=list(PYTHON_TASKS),
                       prune={} if gpu else {"steps": 150, "batch_pairs": 32},
                       targets=[0.15 if gpu else 0.3], pass_accuracy=0.9, activation_sets=["familiar", "shuffled"],
                       curve_targets=[0.4 if gpu else 0.5], curve_task="single_double_quote")


PRESETS = {
    "arithmetic-cpu": lambda quick, corpus: _arithmetic(quick),
    "brackets-cpu": lambda quick, corpus: _brackets(quick),
    "python-cpu": lambda quick, corpus: _python(False, corpus),
    "python-gpu": lambda quick, corpus: _python(True, corpus),
}

QUICK = ("arithmetic-cpu", "brackets-cpu")  # the presets with a tiny grid for tests


def sweep_preset(name: str, quick: bool = False, corpus: str = "corpus") -> SweepConfig:
    if name not in PRESETS:
        raise UserError(f"unknown sweep preset {name!r} (known: {', '.join(PRESETS)})")
    if quick and name not in QUICK:
        raise UserError(f"--quick is a setting of the {' and '.join(QUICK)} presets")
    return PRESETS[name](quick, corpus)


def sweep_config(preset_name: str | None = None, sweep_file: str | Path | None = None, quick: bool = False,
                 corpus: str | Path = "corpus", progress=None) -> SweepConfig:
    """A frontier sweep from a named preset (a corpus it needs built on first use) or a sweep file."""
    if bool(preset_name) == bool(sweep_file):
        raise UserError("give a sweep file or a preset (not both)")
    if sweep_file:
        if quick:
            raise UserError("--quick is a setting of a preset, not of a sweep file")
        return load_json(SweepConfig, sweep_file)
    cfg = sweep_preset(preset_name, quick, str(corpus))  # an unknown name is refused before any corpus is built
    if cfg.data.kind == "corpus":
        cfg = replace(cfg, data=replace(cfg.data, path=api.ensure_corpus(corpus, progress)))
    return cfg
