"""The training loop of METHOD 3 (and, with a teacher, the sparsity-finetuning of METHOD 4).

One step: forward (bf16 autocast on GPUs, fp32 on CPUs by default) -> loss (+ distillation) ->
backward -> gradient RMS normalisation -> Adam -> exact top-k projection at the annealed density -> decoupled weight decay.
Batches are a pure function of (seed, step) and the projection is exact, so a run resumed from a
checkpoint ends with the same weights as one never interrupted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..config_io import to_dict
from ..data.addition import AdditionData
from ..data.brackets import BracketData
from ..data.corpus import CorpusData
from ..errors import UserError
from ..atomic import atomic_path
from ..model.io import assign_state, load_model, save_model
from ..model.transformer import SparseTransformer
from ..sparsity.projection import TopKProjector, sparsified_parameters
from ..sparsity.schedule import density_at, lr_at
from .bridges import BRIDGES_FILE, Bridges, bridge_loss
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RUN_FILE, RunConfig
from .distributed import setup
from .optim import decay_weights, make_adam, normalize_grad_rms


def make_data(run: RunConfig) -> AdditionData | BracketData | CorpusData:
    """The run's training data: addition problems, bracket words, or windows of a code corpus."""
    d = run.data
    if d.kind == "corpus":
        data = CorpusData(d.path, run.model.block_size, seed=d.seed)
        if data.tokenizer.vocab_size != run.model.vocab_size:
            raise UserError(f"the corpus tokenizer has {data.tokenizer.vocab_size} tokens but the model's "
                            f"vocab_size is {run.model.vocab_size}")
        return data
    if d.kind == "brackets":
        data = BracketData(length=d.length, max_depth=d.max_depth, seed=d.seed, n_test=d.n_test)
    else:
        data = AdditionData(n_digits=d.n_digits, answer_digits=d.answer_digits, seed=d.seed, n_test=d.n_test)
    if data.seq_len - 1 > run.model.block_size:
        raise UserError(f"block_size {run.model.block_size} is shorter than the {data.seq_len - 1}-token inputs")
    if data.tokenizer.vocab_size > run.model.vocab_size:
        raise UserError(f"vocab_size {run.model.vocab_size} < the tokenizer's {data.tokenizer.vocab_size} tokens")
    return data


@dataclass
class StepResult:
    loss: float
    density: float
    lr: float


class Trainer:
    """Trains `run.model` on `run.data` into directory `out` (checkpoints in `out/checkpoint-NNNNNNNN/`)."""

    def __init__(self, run: RunConfig, out: str | Path, init: SparseTransformer | None = None,
                 teacher: SparseTransformer | None = None, progress: bool = True):
        self.run, self.out, self.progress = run, Path(out), progress
        t = run.train
        self.procs, self.device = setup(t.device)
        if t.batch_size % self.procs.world:
            raise UserError(f"batch_size {t.batch_size} does not split over {self.procs.world} processes")
        self.data = make_data(run)
        torch.manual_seed(t.seed)
        self.model = SparseTransformer(run.model)
        if init is not None:
            assign_state(self.model, init.state_dict(), source=run.init_from or "the starting model")
        self.model.to(self.device).train()
        self.teacher = teacher.to(self.device).eval() if teacher is not None else None
        if t.distill_weight > 0 and self.teacher is None:
            raise UserError("distill_weight > 0 needs a teacher model (sparsify from a base model)")
        self.net = self.model
        if self.procs.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        self.bridges, self.dense, self.saved = None, None, self.model
        if run.bridge_to:
            self._setup_bridges()
        self.params = list(self.model.parameters())
        self.decayed = [p for n, p in self.model.named_parameters() if p.dim() == 2 and n != "bigram"]
        self.opt = make_adam(self.params, t.lr, t.betas, t.eps)
        if self.bridges is not None:  # plain Adam for the bridges: no shared RMS rescaling, a small eps
            self.opt.add_param_group({"params": list(self.bridges.parameters()), "eps": 1e-8})
        self.projector = (TopKProjector(sparsified_parameters(self.model), t.min_per_neuron, t.vector_density)
                          if t.density < 1 else None)
        self.step, self.history = 0, []

    def _setup_bridges(self) -> None:
        """Bridges to the dense model `run.bridge_to`, trained with the sparse model (one process)."""
        if self.procs.world > 1:
            raise UserError("training with bridges runs in one process")
        self.dense = load_model(self.run.bridge_to).to(self.device).eval().requires_grad_(False)
        self.bridges = Bridges(self.dense.cfg, self.run.model, self.run.train.bridge_afrac).to(self.device)
        self.saved = nn.ModuleDict({"model": self.model, "bridges": self.bridges})  # what checkpoints hold

    def density(self, step: int) -> float:
        t = self.run.train
        return density_at(step, t.steps, t.density, t.anneal_start, t.anneal_end)

    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int = 0) -> torch.Tensor:
        t = self.run.train
        bf16 = t.autocast == "bf16" or (t.autocast == "auto" and self.device.type == "cuda")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        if self.bridges is None and self.teacher is None:
            with autocast:
                return self.net(x, y)  # the model's own chunked loss: no full logits
        scored = y != -1
        bridged = None
        with autocast:
            if self.bridges is not None:
                logits, bridged = bridge_loss(self.bridges, self.model, self.dense, x, scored, step)
            else:
                logits = self.net(x)
        logits = logits.float()
        loss = F.cross_entropy(logits[scored], y[scored])
        if bridged is not None:
            loss = loss + t.bridge_weight * bridged
        if self.teacher is not None and t.distill_weight > 0:
            with torch.no_grad(), autocast:
                target = self.teacher(x)
            kl = F.kl_div(F.log_softmax(logits[scored], -1), F.log_softmax(target.float()[scored], -1),
                          log_target=True, reduction="batchmean")
            loss = loss + t.distill_weight * kl
        return loss

    def train_step(self, step: int) -> StepResult:
        t = self.run.train
        density = self.density(step)
        lr = lr_at(step, t.steps, t.lr, t.warmup_frac, density, t.density)
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y = self.data.train_batch(step, t.batch_size)  # the global batch; this rank takes its slice
        b, r = t.batch_size // self.procs.world, self.procs.rank
        x, y = x[r * b:(r + 1) * b].to(self.device), y[r * b:(r + 1) * b].to(self.device)
        loss = self.loss(x, y, step)
        loss.backward()
        if t.grad_rms_norm:
            normalize_grad_rms(self.params)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.projector is not None:
            self.projector.project(density)
        decay_weights(self.decayed, lr, t.weight_decay)
        return StepResult(loss.detach(), density, lr)

    def resume(self) -> bool:
        """Continue from the newest `out/checkpoint-*` if there is one; refuse a checkpoint of another run."""
        state = load_checkpoint(self.out, self.saved, self.opt)
        if state is None:
            return False
        if state.get("run") != to_dict(self.run):
            raise UserError(f"the checkpoint in {self.out} was made with a different configuration")
        self.step, self.history = state["step"], state.get("history", [])
        return True

    def checkpoint(self) -> None:
        """Rank 0 writes; the others wait, so no rank runs ahead of a checkpoint."""
        if self.procs.main:
            save_checkpoint(self.out, self.saved, self.opt,
                            {"step": self.step, "run": to_dict(self.run), "history": self.history})
        self.procs.barrier()

    def fit(self) -> SparseTransformer:
        t = self.run.train
        bar = tqdm(total=t.steps, initial=self.step, disable=not (self.progress and self.procs.main),
                   desc=f"train -> {self.out.name}",
                   dynamic_ncols=True)
        log_every = max(1, t.steps // 100)
        while self.step < t.steps:
            r = self.train_step(self.step)
            self.step += 1
            if self.step % log_every == 0 or self.step == t.steps:
                self.history.append({"step": self.step, "loss": float(r.loss), "density": r.density, "lr": r.lr})
                bar.set_postfix(loss=f"{float(r.loss):.4f}", density=f"{r.density:.4f}")
            bar.update(1)
            if self.step % t.checkpoint_every == 0 and self.step < t.steps:
                self.checkpoint()
        bar.close()
        self.save()
        return self.model

    def save(self) -> None:
        """The final model directory: weights, config, tokenizer, run config and loss history."""
        self.model.eval()
        if self.procs.main:
            save_model(self.model, self.out, extra={RUN_FILE: to_dict(self.run), "train_log.json": self.history})
            self.data.tokenizer.save(self.out)
            if self.bridges is not None:
                with atomic_path(self.out / BRIDGES_FILE) as tmp:
                    save_file({k: v.detach().cpu().contiguous() for k, v in self.bridges.state_dict().items()},
                              str(tmp))
        self.checkpoint()
