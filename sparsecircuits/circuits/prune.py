"""Pruning a model to the circuit of one task (METHOD 6).

1. Learn a gate per node: loss = task loss + k_coef * (open gates), AdamW, gradient clipping,
   linear LR decay, tau clamped to [-1, 1]; closed nodes are mean-, zero- or resample-ablated.
2. Discretise: rank nodes by tau and bisect k to the smallest top-k circuit whose held-out task loss,
   after a scale+shift fit of its final logits (LBFGS), reaches the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UserError
from ..tasks.base import Task
from ..tasks.evaluate import EncodedTask, encode_examples
from .masks import ABLATIONS, NodeMasks, ablation_hooks
from .nodes import node_sites


@dataclass
class PruneConfig:
    target_loss: float = 0.15
    ablation: str = "mean"           # mean | zero | resample
    k_coef: float = 1e-3           # the paper starts at 1e-4; our mean task loss needs 10x to prune
    lr: float = 3e-3
    weight_decay: float = 1e-3
    init_mean: float = 0.1
    init_std: float = 0.01
    temperature: float = 1.0
    steps: int = 300
    batch_pairs: int = 64
    n_train: int = 1024              # task examples the masks are trained on
    n_test: int = 256                # held-out examples the circuit is judged on
    freeze_norms: bool = False       # norms divide by the unpruned model's scale, not the pruned one's
    seed: int = 0

    def __post_init__(self):
        if not self.target_loss > 0:
            raise UserError(f"target loss must be > 0, got {self.target_loss}")
        if self.ablation not in ABLATIONS:
            raise UserError(f"ablation must be one of {', '.join(ABLATIONS)}, got {self.ablation!r}")
        if self.steps < 1 or self.batch_pairs < 1 or self.n_train < 2 or self.n_test < 2:
            raise UserError("steps, batch_pairs must be >= 1 and n_train, n_test >= 2")


def _slice(enc: EncodedTask, idx: torch.Tensor) -> EncodedTask:
    return EncodedTask(enc.tokens[idx], enc.last[idx], enc.correct[idx], enc.wrong[idx], enc.binary)


def logit_margin(logits: torch.Tensor, enc: EncodedTask) -> torch.Tensor:
    """Binary tasks: correct minus wrong logit at the last position. Vocab tasks: the last logits."""
    last = logits[torch.arange(len(enc.last)), enc.last.to(logits.device)].float()
    if not enc.binary:
        return last
    correct, wrong = enc.correct.to(logits.device), enc.wrong.to(logits.device)
    return last.gather(1, correct[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]


def calibrated_loss(out: torch.Tensor, enc: EncodedTask, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    if enc.binary:
        return F.softplus(-(scale * out + shift)).mean()
    return F.cross_entropy(scale * out, enc.correct.to(out.device))


def fit_scale_shift(out: torch.Tensor, enc: EncodedTask) -> tuple[float, float]:
    """A few LBFGS steps on (scale, shift) of the final logits: pruned models are badly calibrated."""
    scale = torch.ones((), requires_grad=True)
    shift = torch.zeros((), requires_grad=True)
    params = [scale, shift] if enc.binary else [scale]  # a shared shift does not change a softmax
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=30, line_search_fn="strong_wolfe")
    out = out.detach().cpu()

    def closure():
        opt.zero_grad()
        loss = calibrated_loss(out, enc, scale, shift)
        loss.backward()
        return loss

    opt.step(closure)
    return float(scale.detach()), float(shift.detach())


class Pruner:
    """Everything one (model, task) pruning needs: encoded examples, means, norm scales."""

    def __init__(self, model, task: Task, tokenizer, means: dict[str, torch.Tensor], cfg: PruneConfig):
        self.model, self.task, self.cfg, self.means = model, task, cfg, means
        self.device = next(model.parameters()).device
        self.sites = node_sites(model.cfg)
        train = task.examples("train", cfg.n_train, cfg.seed)
        test = task.examples("test", cfg.n_test, cfg.seed)
        self.train = encode_examples(task, train, tokenizer, model.cfg.block_size)
        self.test = encode_examples(task, test, tokenizer, model.cfg.block_size)
        self.calib = (1.0, 0.0)

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
                replacement: dict | None = None) -> torch.Tensor:
        """Logits of `tokens` with nodes gated by `gates` (1 = kept); `extra_hooks` see ablated values.
        `replacement` fixes what closed nodes become (default: `self.replacement(tokens)`)."""
        tokens = tokens.to(self.device)
        hooks = ablation_hooks(gates, replacement or self.replacement(tokens)) + list(extra_hooks)
        with frozen_norms(self.model, tokens) if self.cfg.freeze_norms else _nothing():
            return self.model.run_with_hooks(tokens, hooks)

    def run(self, enc: EncodedTask, gates: dict[str, torch.Tensor], extra_hooks=(),
            replacement: dict | None = None) -> torch.Tensor:
        """Margins (or last logits) of `enc` with nodes gated by `gates` (1 = kept)."""
        return logit_margin(self.forward(enc.tokens, gates, extra_hooks, replacement), enc)

    def loss(self, enc: EncodedTask, gates, calibrated: bool = True, extra_hooks=()) -> float:
        with torch.no_grad():
            out = self.run(enc, gates, extra_hooks)
            scale, shift = self.calib if calibrated else (1.0, 0.0)
            return float(calibrated_loss(out, enc, torch.tensor(scale), torch.tensor(shift)))

    # ---- step 1: learn the gates -------------------------------------------------------------------
    def learn_masks(self, progress: bool = True) -> NodeMasks:
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed)
        masks = NodeMasks(self.model.cfg, cfg.init_mean, cfg.init_std, cfg.temperature, generator=g).to(self.device)
        opt = torch.optim.AdamW(masks.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / cfg.steps)
        per_batch = cfg.batch_pairs * (2 if self.task.binary else 1)
        self.model.requires_grad_(False)
        for _ in tqdm(range(cfg.steps), desc=f"prune {self.task.name}", disable=not progress, leave=False):
            idx = torch.randint(0, len(self.train.last), (per_batch,), generator=g)
            enc = _slice(self.train, idx)
            gates = masks.gates()
            out = self.run(enc, gates)
            task_loss = calibrated_loss(out, enc, torch.tensor(1.0), torch.tensor(0.0))
            open_gates = sum(gt.sum() for gt in gates.values())
            (task_loss + cfg.k_coef * open_gates).backward()
            torch.nn.utils.clip_grad_norm_(masks.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            masks.clamp_()
        return masks

    # ---- step 2: discretise -------------------------------------------------------------------------
    def top_k_gates(self, order: list[tuple[str, int]], k: int) -> dict[str, torch.Tensor]:
        gates = {name: torch.zeros(w, device=self.device) for name, w in self.sites.items()}
        for name, ch in order[:k]:
            gates[name][ch] = 1.0
        return gates

    def evaluate_k(self, order, k: int) -> float:
        """Held-out loss of the top-k circuit after fitting the logit scale+shift on train examples."""
        self.calib = fit_scale_shift(*self._fit_data(order, k))
        return self.loss(self.test, self.top_k_gates(order, k))

    def discretise(self, masks: NodeMasks) -> dict:
        """Bisect k over nodes ranked by tau; the smallest k reaching the target (or the best k)."""
        ranked = sorted(((float(t), name, ch) for name, tau in masks.taus().items()
                         for ch, t in enumerate(tau.detach().cpu().tolist())), reverse=True)
        order = [(name, ch) for _, name, ch in ranked]
        n_open = sum(1 for t, _, _ in ranked if t > 0)
        curve: dict[int, float] = {}

        def at(k):
            if k not in curve:
                curve[k] = self.evaluate_k(order, k)
            return curve[k]

        target = self.cfg.target_loss
        hi = max(1, n_open)
        if at(hi) > target:  # the learned circuit misses: widen toward the whole model
            while hi < len(order) and at(hi) > target:
                hi = min(len(order), hi * 2)
        reached = at(hi) <= target
        if reached:
            lo = 0
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if at(mid) <= target:
                    hi = mid
                else:
                    lo = mid
            k = hi
        else:
            k = min(curve, key=lambda kk: (curve[kk], kk))
        loss = at(k)
        self.calib = fit_scale_shift(*self._fit_data(order, k))
        return {"order": order, "k": k, "loss": loss, "reached": reached, "n_open": n_open,
                "curve": sorted(curve.items()), "calibration": self.calib}

    def _fit_data(self, order, k):
        """Outputs of the top-k circuit on (up to n_test) training examples, to fit calibration on."""
        fit_enc = _slice(self.train, torch.arange(min(len(self.train.last), self.cfg.n_test)))
        with torch.no_grad():
            return self.run(fit_enc, self.top_k_gates(order, k)), fit_enc


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class frozen_norms:
    """Within the block, every norm divides by the scale it had in the unpruned forward pass of
    `tokens` (METHOD 6 control: the final norm can otherwise rescale weak pruned signals up)."""

    def __init__(self, model, tokens: torch.Tensor):
        self.model, self.tokens, self.handles = model, tokens, []

    def __enter__(self):
        norms = [m for name, m in self.model.named_modules() if name.split(".")[-1].startswith("ln_")]
        scales: dict[int, torch.Tensor] = {}

        def record(module, inputs, output):
            x = inputs[0].float()
            if isinstance(module, torch.nn.LayerNorm):
                scales[id(module)] = (x.mean(-1, keepdim=True), torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + module.eps))
            else:
                scales[id(module)] = (None, torch.sqrt(x.pow(2).mean(-1, keepdim=True) + (module.eps or 1e-6)))

        handles = [m.register_forward_hook(record) for m in norms if not isinstance(m, torch.nn.Identity)]
        with torch.no_grad():
            self.model(self.tokens)
        for h in handles:
            h.remove()

        def replace(module, inputs, output):
            mean, scale = scales[id(module)]
            x = inputs[0].float()
            y = (x - mean if mean is not None else x) / scale
            if getattr(module, "weight", None) is not None:
                y = y * module.weight
            if getattr(module, "bias", None) is not None:
                y = y + module.bias
            return y.to(output.dtype)

        self.handles = [m.register_forward_hook(replace) for m in norms if id(m) in scales]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False

