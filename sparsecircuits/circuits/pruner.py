"""Pruning a model to the circuit of one task (METHOD 6), given only a target loss.

1. Learn a score per node (`masks.py`) by minimising calibrated task loss + k * size, where size
   counts open nodes and their edges (`Pruner.size`: circuit size is edges, METHOD 2), the logit
   calibration (a scale and a bias per candidate token) is learned with the scores, and k follows
   the target: it grows while the loss is below `margin * target` and shrinks while above, so no
   k_coef has to be guessed. The gates are soft at first and hard by the end, so the set that
   training settles on is the set it was judged as.
2. Keep the open nodes. If their held-out loss misses the target, train on from there with a lower
   margin (a repair), never adding closed nodes by rank.
3. Clean up (`cleanup.py`): drop kept nodes, those whose closing saves the most size first, while the
   held-out loss stays on target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from tqdm.auto import tqdm

from ..errors import UserError, check_number, check_seed
from ..tasks.base import Task
from ..tasks.evaluate import EncodedTask, encode_examples, task_outputs
from .calibration import Calibration, calibrated_loss, fit_calibration, loss_with
from .edges import EdgeCounter
from .masks import ABLATIONS, NodeScores, ablation_hooks
from .nodes import node_sites

LENGTH_GROUP = 32  # prompts per forward pass when a task's prompts differ in length


@dataclass
class PruneConfig:
    target_loss: float = 0.15
    ablation: str = "mean"            # mean | zero | resample
    means_from: str = "pretraining"   # what mean ablation averages: pretraining | task | a prompt file
    steps: int = 300
    batch_pairs: int = 64
    lr: float = 0.05
    init_score: float = 1.0           # scores live in [-1, 1]; open when > 0
    temperature_start: float = 0.25   # the gate is sigmoid(score / T), T falling geometrically ...
    temperature_end: float = 0.01     # ... to this
    grad_temperature: float = 0.3     # the backward pass never uses a T below this
    harden_start: float = 0.0         # from this fraction of training, gates turn hard ...
    harden_steps: float = 0.6         # ... all of them after this further fraction
    margin: float = 0.8               # training holds the loss at margin * target
    penalty_start: float = 1e-3       # k at the first step
    penalty_rate: float = 0.02        # the largest change of log k per step
    repairs: int = 2
    cleanup: bool = True
    n_train: int = 2048               # task examples the masks are trained on
    n_test: int = 256                 # held-out examples the circuit is judged on
    freeze_norms: bool = False        # norms divide by the unpruned model's scale, not the pruned one's
    seed: int = 0

    def __post_init__(self):
        check_number("target loss", self.target_loss, 0, low_open=True)
        if self.ablation not in ABLATIONS:
            raise UserError(f"ablation must be one of {', '.join(ABLATIONS)}, got {self.ablation!r}")
        for name in ("steps", "batch_pairs", "repairs", "n_train", "n_test"):
            check_number(name, getattr(self, name), 2 if name.startswith("n_") else 0 if name == "repairs" else 1,
                         integer=True)
        check_seed("seed", self.seed)
        for name in ("lr", "temperature_start", "temperature_end", "grad_temperature", "penalty_start", "penalty_rate"):
            check_number(name, getattr(self, name), 0, low_open=True)
        for name in ("init_score", "harden_start", "harden_steps"):
            check_number(name, getattr(self, name), 0, 1)
        check_number("margin", self.margin, 0, 1, low_open=True)

    @classmethod
    def from_settings(cls, settings: dict, **overrides) -> "PruneConfig":
        """The config a circuit's settings record (keys of other versions ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in settings.items() if k in names}, **overrides})


class Pruner:
    """Everything one (model, task) pruning needs: encoded examples, means, calibration."""

    def __init__(self, model, task: Task, tokenizer, means: dict[str, torch.Tensor] | None, cfg: PruneConfig):
        self.model, self.task, self.cfg, self.means = model, task, cfg, means
        if cfg.ablation == "mean" and means is None:
            raise UserError("mean ablation needs the means (or use ablation 'zero')")
        self.device = next(model.parameters()).device
        self.sites = node_sites(model.cfg)
        self.train = encode_examples(task, task.examples("train", cfg.n_train, cfg.seed), tokenizer,
                                     model.cfg.block_size)
        self.test = encode_examples(task, task.examples("test", cfg.n_test, cfg.seed), tokenizer,
                                    model.cfg.block_size)
        self.fit_set = self.train.subset(slice(0, cfg.n_test))  # what calibration is fitted on
        self.calib = Calibration()
        self.edges = EdgeCounter(model, self.device)
        self.mean_degree = max(1e-9, float(self.edges(self.all_open()))) / sum(self.sites.values())

    def size(self, gates: dict[str, torch.Tensor]) -> torch.Tensor:
        """(nodes + edges / mean degree) / 2: a node of average degree counts 1, a node joined to
        nothing 1/2, a hub more; differentiable in the gates."""
        return (sum(g.sum() for g in gates.values()) + self.edges(gates) / self.mean_degree) / 2

    # ---- forward passes --------------------------------------------------------------------------
    def replacement(self, tokens: torch.Tensor) -> dict[str, torch.Tensor | None]:
        if self.cfg.ablation == "zero":
            return {name: None for name in self.sites}
        if self.cfg.ablation == "mean":
            return {name: self.means[name].to(self.device) for name in self.sites}
        g = torch.Generator().manual_seed(self.cfg.seed + len(tokens))
        _, cache = self.model.run_with_cache(tokens[torch.randperm(len(tokens), generator=g)], list(self.sites))
        return cache

    def forward(self, tokens: torch.Tensor, gates: dict[str, torch.Tensor], extra_hooks=(),
                replacement: dict | None = None, last: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of `tokens` (of the positions `last` only, if given) with nodes gated by `gates` (1 =
        kept); `extra_hooks` see ablated values. `replacement` fixes what closed nodes become (default:
        `self.replacement(tokens)`)."""
        tokens = tokens.to(self.device)
        hooks = ablation_hooks(gates, replacement or self.replacement(tokens)) + list(extra_hooks)
        if self.cfg.freeze_norms:
            hooks += frozen_norm_hooks(self.model, tokens)
        return self.model.run_with_hooks(tokens, hooks, last)

    def run(self, enc: EncodedTask, gates: dict[str, torch.Tensor], extra_hooks=(),
            replacement: dict | None = None) -> torch.Tensor:
        """Task outputs (margins or last logits) of `enc` with nodes gated by `gates`. A causal model
        runs the prompts in groups of similar length, each cut after its longest prompt: no later
        position can change a prompt's output, so the right padding is never computed. Gates and
        replacements with a prompt dimension (per-copy gates, resampled activations) follow their rows."""
        if extra_hooks or not self.model.cfg.causal or int(enc.last.min()) == int(enc.last.max()):
            return task_outputs(self.forward(enc.tokens, gates, extra_hooks, replacement, enc.last), enc)
        replacement = replacement or self.replacement(enc.tokens.to(self.device))  # one draw for the whole set
        order = torch.argsort(enc.last)
        outs = []
        for rows in order.split(LENGTH_GROUP):
            T, dev = int(enc.last[rows].max()) + 1, rows.to(self.device)
            part = enc.subset(rows)
            outs.append(task_outputs(self.forward(
                part.tokens[:, :T], {k: _rows(g, dev, T) for k, g in gates.items()}, (),
                {k: _rows(r, dev, T) for k, r in replacement.items()}, part.last), part))
        return torch.cat(outs)[torch.argsort(order).to(self.device)]

    @torch.no_grad()
    def loss(self, enc: EncodedTask, gates, calibrated: bool = True) -> float:
        return loss_with(self.run(enc, gates), enc, self.calib if calibrated else Calibration())

    @torch.no_grad()
    def fit(self, gates) -> Calibration:
        """Fit the calibration of `gates` on training examples (never on the held-out ones)."""
        self.calib = fit_calibration(self.run(self.fit_set, gates), self.fit_set, self.calib)
        return self.calib

    def evaluate(self, gates) -> float:
        """Held-out loss of `gates` after fitting their calibration."""
        self.fit(gates)
        return self.loss(self.test, gates)

    def all_open(self) -> dict[str, torch.Tensor]:
        return {name: torch.ones(w, device=self.device) for name, w in self.sites.items()}

    # ---- step 1: learn the scores ------------------------------------------------------------------
    def learn(self, progress: bool = True) -> "Training":
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed)
        run = Training(self, NodeScores(self.model.cfg, cfg.init_score, generator=g).to(self.device), g)
        run.steps(cfg.steps, cfg.margin, cfg.lr, progress, schedule=True)
        return run

    # ---- step 2: the trained set, repaired if it misses ---------------------------------------------------
    def discretise(self, run: "Training", progress: bool = True) -> dict:
        """The smallest hard set training met the target with (on training prompts), judged on the
        held-out ones; where it misses, more training from there at a lower margin."""
        cfg = self.cfg
        gates = run.best_gates()
        loss, repairs, margin = self.evaluate(gates), 0, cfg.margin
        while loss > cfg.target_loss and repairs < cfg.repairs:
            repairs, margin = repairs + 1, margin * 0.6
            run.best, run.check_target = None, margin * cfg.target_loss  # a set that passes by more
            run.steps(max(1, cfg.steps // 4), margin, cfg.lr / 2, progress, schedule=False)
            gates = run.best_gates()
            loss = self.evaluate(gates)
        return {"gates": gates, "loss": loss, "calibration": self.calib, "repairs": repairs}


class Training:
    """The state of one score optimisation (scores, calibration, Adam, the penalty k), so that a
    repair continues exactly where training stopped.

    Once gates begin to harden, the open set is checked every CHECK_EVERY steps on training prompts; the
    smallest set that met the target is kept, so a late step that closes one node too many (and with
    it the nodes that only worked together with it) cannot lose the circuit. Where the loss wanders
    far above the target, training goes back to that set and goes on from there."""

    CHECK_EVERY = 10

    def __init__(self, pruner: Pruner, scores: NodeScores, generator: torch.Generator):
        self.pruner, self.scores, self.g = pruner, scores, generator
        n_cand = len(pruner.train.candidates)
        self.log_scale = torch.zeros((), device=pruner.device, requires_grad=True)
        self.bias = torch.zeros(n_cand, device=pruner.device, requires_grad=True)
        self.opt = torch.optim.Adam([*scores.parameters(), self.log_scale, self.bias], lr=pruner.cfg.lr)
        self.k, self.ema, self.done = pruner.cfg.penalty_start, None, 0
        self.history: list[dict] = []
        self.best: tuple[float, dict[str, torch.Tensor]] | None = None  # (size, scores)
        self.check_target = pruner.cfg.target_loss
        self.restores = 0

    def best_scores(self) -> dict[str, torch.Tensor]:
        """The scores of the smallest checked set on target, else the current ones."""
        if self.best is not None:
            return {k: v.clone() for k, v in self.best[1].items()}
        return {k: v.detach().clone() for k, v in self.scores.scores().items()}

    def best_gates(self) -> dict[str, torch.Tensor]:
        return {k: (v > 0).float() for k, v in self.best_scores().items()}

    @torch.no_grad()
    def restore(self) -> None:
        """Back to the best set's scores, with half the penalty: training had wandered off target."""
        for param, best in zip(self.scores.score, self.best[1].values()):
            param.copy_(best)
        self.ema, self.k = None, self.k / 2
        self.restores += 1

    @torch.no_grad()
    def check(self) -> None:
        p = self.pruner
        gates = self.scores.open()
        n = float(p.size(gates))
        if self.best is not None and n >= self.best[0]:
            return
        loss = float(calibrated_loss(p.run(p.fit_set, gates), p.fit_set, self.log_scale.exp(), self.bias))
        if loss <= self.check_target:
            self.best = (n, {k: v.detach().clone() for k, v in self.scores.scores().items()})

    def steps(self, n: int, margin: float, lr: float, progress: bool, schedule: bool) -> None:
        """`n` steps; with `schedule` the gates anneal and harden over them, else they stay hard."""
        p, cfg = self.pruner, self.pruner.cfg
        per_batch = cfg.batch_pairs * (2 if p.task.binary else 1)
        aim = margin * cfg.target_loss
        p.model.requires_grad_(False)
        for i in tqdm(range(n), desc=f"prune {p.task.name}", disable=not progress, leave=False):
            frac = i / max(1, n - 1) if schedule else 1.0
            T = cfg.temperature_start * (cfg.temperature_end / cfg.temperature_start) ** frac
            hard = min(1.0, max(0.0, (frac - cfg.harden_start) / cfg.harden_steps)) if schedule else 1.0
            for group in self.opt.param_groups:
                group["lr"] = lr * (1 - 0.9 * i / n)
            enc = p.train.subset(torch.randint(0, len(p.train), (per_batch,), generator=self.g))
            gates = self.scores.gates(T, cfg.grad_temperature, hard, self.g)
            task_loss = calibrated_loss(p.run(enc, gates), enc, self.log_scale.exp(), self.bias)
            size = p.size(gates)
            (task_loss + self.k * size).backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.scores.clamp_()
            loss = float(task_loss.detach())
            self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
            # k follows the target: up by at most `penalty_rate` in log per step, down up to 5x faster,
            # and never above target - aim: no node that costs the whole headroom is worth closing
            self.k *= math.exp(cfg.penalty_rate * max(-5.0, min(1.0, (aim - self.ema) / aim)))
            self.k = min(self.k, cfg.target_loss - aim)
            self.done += 1
            if hard > 0 and self.done % self.CHECK_EVERY == 0:
                self.check()
                if self.best is not None and self.ema > 2 * cfg.target_loss:
                    self.restore()
            if self.done % 10 == 0:
                self.history.append({"step": self.done, "loss": round(loss, 5),
                                     "size": round(float(size.detach()), 1), "k": float(f"{self.k:.4g}")})


def _rows(x: torch.Tensor | None, rows: torch.Tensor, T: int) -> torch.Tensor | None:
    """Rows `rows` of a per-prompt tensor (n, positions or 1, width), cut to T positions; a tensor
    shared by every prompt (width,) as it is."""
    return x if x is None or x.dim() < 3 else x[rows, :T]


def frozen_norm_hooks(model, tokens: torch.Tensor) -> list:
    """Hooks that fix every norm's divisor (`*norm_scale`) to its value in the unpruned forward pass of
    `tokens` (METHOD 6 control: the final norm can otherwise rescale weak pruned signals up). A
    LayerNorm still centres the pruned input: centring is linear and rescales nothing."""
    names = [n for n in model.hook_names if n.endswith("norm_scale")]
    with torch.no_grad():
        _, scales = model.run_with_cache(tokens, names)
    return [(name, lambda x, name: scales[name]) for name in scales]
