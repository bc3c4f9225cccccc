"""Run configuration: model + data + optimisation, one JSON object ({"model", "data", "train"})."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.brackets import LENGTH, MAX_DEPTH, check_sizes
from ..errors import UserError, check_number, check_seed
from ..model.config import ModelConfig
from ..sparsity.projection import check_density

RUN_FILE = "run.json"  # a trained model's RunConfig, beside its weights
MAX_BATCH = 1 << 16    # sequences per step; beyond it a batch's tensors alone exhaust a machine's memory


@dataclass
class DataConfig:
    kind: str = "addition"      # addition | brackets | corpus
    n_digits: int = 2           # addition: operand digits
    answer_digits: int = 0      # addition: 0 = 2 * n_digits + 1
    length: int = LENGTH        # brackets: characters per word
    max_depth: int = MAX_DEPTH  # brackets: the deepest nesting (and the answer's length)
    seed: int = 0
    n_test: int = 1000          # addition, brackets: held-out problems
    path: str = ""              # corpus: a directory made by `sparsecircuits corpus build`

    def __post_init__(self):
        if self.kind not in ("addition", "brackets", "corpus"):
            raise UserError(f"unknown data kind {self.kind!r} (known: addition, brackets, corpus)")
        check_seed("data config 'seed'", self.seed)
        if self.kind == "corpus" and not self.path:
            raise UserError("data kind corpus needs a corpus directory in data.path")
        if self.kind == "brackets":
            check_sizes(self.length, self.max_depth)


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    warmup_frac: float = 0.01
    weight_decay: float = 0.1        # decoupled, applied after the top-k projection
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 0.1
    grad_rms_norm: bool = True       # rescale gradients to global RMS 1 every step
    density: float = 1.0             # target fraction of sparsified weights kept; 1 = dense
    anneal_start: float = 0.01       # L0 annealing window, as fractions of training
    anneal_end: float = 0.5
    min_per_neuron: int = 4
    vector_density: str = "sqrt"     # embeddings and biases keep sqrt(density) ("same": density)
    distill_weight: float = 0.0      # weight of KL(teacher || model), sparsity-finetuning only
    bridge_weight: float = 1.0       # weight of the bridge losses (runs with RunConfig.bridge_to)
    bridge_afrac: float = 0.25       # AbsTopK fraction of the bridges' encoders
    seed: int = 0
    checkpoint_every: int = 500
    autocast: str = "auto"           # auto (bf16 on GPUs, fp32 on CPUs) | bf16 | none
    device: str = "auto"             # auto | cpu | cuda | cuda:N

    def __post_init__(self):
        check_density(self.density)
        for name in ("steps", "checkpoint_every"):
            check_number(f"train config '{name}'", getattr(self, name), 1, integer=True)
        check_number("train config 'batch_size'", self.batch_size, 1, MAX_BATCH, integer=True)
        check_number("train config 'min_per_neuron'", self.min_per_neuron, 0, integer=True)
        check_seed("train config 'seed'", self.seed)
        for name in ("lr", "eps"):
            check_number(f"train config '{name}'", getattr(self, name), 0, low_open=True)
        for name in ("weight_decay", "distill_weight", "bridge_weight"):
            check_number(f"train config '{name}'", getattr(self, name), 0)
        check_number("train config 'warmup_frac'", self.warmup_frac, 0, 1)
        check_number("train config 'bridge_afrac'", self.bridge_afrac, 0, 1, low_open=True)
        for name in ("anneal_start", "anneal_end"):
            check_number(f"train config '{name}'", getattr(self, name), 0, 1)
        if self.anneal_start > self.anneal_end:
            raise UserError("anneal_start and anneal_end must satisfy 0 <= start <= end <= 1")
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise UserError(f"train config 'betas' must be two numbers, got {self.betas!r}")
        for b in self.betas:
            check_number("train config 'betas'", b, 0, 1)
            if b >= 1:
                raise UserError(f"train config 'betas' must be in [0, 1), got {self.betas!r}")
        if self.autocast not in ("auto", "bf16", "none"):
            raise UserError(f"autocast must be auto, bf16 or none, got {self.autocast!r}")
        self.betas = tuple(self.betas)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str = ""              # a model directory to start from (sparsity-finetuning)
    bridge_to: str = ""              # a dense model directory to train bridges to (METHOD 4)
