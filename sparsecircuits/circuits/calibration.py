"""Logit calibration of a pruned model (METHOD 6): a scale of the final logits and a bias per
candidate token, fitted because ablating most of a model leaves its logits badly calibrated.

The bias belongs to a token, never to "the correct answer": in a contrast pair the two prompts swap
their answers, so a constant bias cannot beat chance on a circuit that carries no information.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..tasks.evaluate import EncodedTask

MAX_LOG_SCALE = math.log(100.0)  # the scale stays in [1/100, 100]: on prompts the model gets all right an
                                 # unbounded fit would drive it to infinity and any held-out miss to a huge loss
SCALE_PRIOR = 1e-3  # a weak pull of the log-scale to 0: where the fit prompts are all right with a margin, their
                    # loss barely moves with the scale, and the prior keeps it near 1 instead of at the bound


def task_outputs(last: torch.Tensor, enc: EncodedTask) -> torch.Tensor:
    """From the (n, vocab) logits of each prompt's last position (`model(tokens, last=enc.last)`):
    binary tasks, correct minus wrong logit; vocabulary tasks, those logits."""
    last = last.float()
    if not enc.binary:
        return last
    correct, wrong = enc.correct.to(last.device), enc.wrong.to(last.device)
    return last.gather(1, correct[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]


@dataclass
class Calibration:
    """`scale * logits + bias[token]`, bias over the task's candidate tokens (`EncodedTask.candidates`)."""
    scale: float = 1.0
    bias: tuple[float, ...] = ()

    def tensors(self, n_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
        bias = torch.tensor(self.bias, dtype=torch.float32) if self.bias else torch.zeros(n_candidates)
        return torch.tensor(float(self.scale)), bias

    def to_json(self) -> dict:
        return {"scale": self.scale, "bias": list(self.bias)}

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        return cls(float(d["scale"]), tuple(float(b) for b in d["bias"]))


def calibrated_loss(out: torch.Tensor, enc: EncodedTask, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Task loss (METHOD 5) of outputs `out` (from `task_outputs`) after calibration."""
    bias = bias.to(out.device)
    if enc.binary:
        z = scale * out + bias[enc.correct_k.to(out.device)] - bias[enc.wrong_k.to(out.device)]
        return F.softplus(-z).mean()
    logits = (scale * out).index_add(1, enc.candidates.to(out.device), bias.expand(len(out), -1))
    return F.cross_entropy(logits, enc.correct.to(out.device))


def loss_with(out: torch.Tensor, enc: EncodedTask, calib: Calibration) -> float:
    return float(calibrated_loss(out, enc, *calib.tensors(len(enc.candidates))))


def fit_calibration(out: torch.Tensor, enc: EncodedTask, start: Calibration | None = None) -> Calibration:
    """LBFGS on a bounded log-scale and the biases over outputs `out` of the examples `enc`."""
    start = start or Calibration()
    scale, bias = start.tensors(len(enc.candidates))
    c = MAX_LOG_SCALE
    u = (scale.clamp(1 / 99.0, 99.0).log() / c).atanh().mul(c).clone().requires_grad_(True)  # log-scale = c tanh(u / c)
    bias = bias.clone().requires_grad_(True)
    # tolerances 100x torch's defaults: the loss agrees to 1e-5 in a quarter of the time (the cleanup fits often)
    opt = torch.optim.LBFGS([u, bias], lr=0.5, max_iter=40, tolerance_grad=1e-5, tolerance_change=1e-7,
                            line_search_fn="strong_wolfe")
    out = out.detach().float()

    def closure():
        opt.zero_grad()
        log_scale = c * torch.tanh(u / c)
        loss = calibrated_loss(out, enc, log_scale.exp(), bias) + 1e-4 * bias.pow(2).sum() + SCALE_PRIOR * log_scale ** 2
        loss.backward()
        return loss

    opt.step(closure)
    return Calibration(float((c * torch.tanh(u.detach() / c)).exp()), tuple(float(v) for v in bias.detach()))
