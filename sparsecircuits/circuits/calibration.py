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

from ..errors import UserError
from ..tasks.evaluate import EncodedTask

MAX_LOG_SCALE = math.log(100.0)  # the scale stays in [1/100, 100]: on prompts the model gets all right an
                                 # unbounded fit would drive it to infinity and any held-out miss to a huge loss
SCALE_PRIOR = 1e-3  # a weak pull of the log-scale to 0: where the fit prompts are all right with a margin, their
                    # loss barely moves with the scale, and the prior keeps it near 1 instead of at the bound
BIAS_PRIOR = 1e-4   # a weak pull of the biases to 0, so that the fit is unique where two biases only differ
NEWTON_STEPS = 50   # Newton converges in 5-15 steps; this is a cap, never reached in the tests


@dataclass
class Calibration:
    """`scale * logits + bias[token]`, bias over the task's candidate tokens (`EncodedTask.candidates`)."""
    scale: float = 1.0
    bias: tuple[float, ...] = ()

    def check(self, n_candidates: int) -> None:
        """A bias per candidate token of the task, or none (a tampered circuit.json has other counts)."""
        if self.bias and len(self.bias) != n_candidates:
            raise UserError(f"the calibration has {len(self.bias)} biases for a task of {n_candidates} candidate tokens "
                            "(a circuit of another task, or a tampered circuit.json)")

    def tensors(self, n_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(n_candidates)
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


def _objective(x: torch.Tensor, out: torch.Tensor, enc: EncodedTask, second: bool = True):
    """The fitted objective at x = (log-scale, biases) in float64: the calibrated task loss plus the
    two priors; with `second`, also its gradient and Hessian, written out (the fit has 1 + K unknowns,
    K the task's candidates, so they are a few small sums instead of autograd passes)."""
    s, b, n = x[0], x[1:], len(out)
    a = s.exp()
    prior = BIAS_PRIOR * b.pow(2).sum() + SCALE_PRIOR * s ** 2
    if enc.binary:
        ck, wk = enc.correct_k.to(out.device), enc.wrong_k.to(out.device)
        z = a * out + b[ck] - b[wk]
        loss = F.softplus(-z).mean() + prior
        if not second:
            return loss
        r, w = -torch.sigmoid(-z) / n, torch.sigmoid(z) * torch.sigmoid(-z) / n  # dloss/dz, d2loss/dz2
        rows = torch.arange(n, device=x.device)
        jac = torch.zeros(n, len(x), dtype=x.dtype, device=x.device)            # dz/dx, one row per prompt
        jac[:, 0] = a * out
        jac[rows, 1 + ck] += 1
        jac[rows, 1 + wk] -= 1
        grad, hess = jac.T @ r, jac.T @ (w[:, None] * jac)
        curve = (r * a * out).sum()                                             # d2z/ds2 = dz/ds
    else:
        cand, y = enc.candidates.to(out.device), enc.correct.to(out.device)
        scaled = a * out
        logits = scaled.index_add(1, cand, b.expand(n, -1))
        loss = F.cross_entropy(logits, y) + prior
        if not second:
            return loss
        p = torch.softmax(logits, 1)
        g = p.clone()
        g[torch.arange(n), y] -= 1                                              # dloss/dlogits, times n
        m0, mb = (p * scaled).sum(1), p[:, cand]                                # the softmax means of dlogits/dx
        grad = torch.cat([((g * scaled).sum() / n).view(1), g[:, cand].sum(0) / n])
        hess = torch.empty(len(x), len(x), dtype=x.dtype, device=x.device)
        hess[0, 0] = ((p * scaled * scaled).sum(1) - m0 ** 2).sum() / n
        hess[0, 1:] = hess[1:, 0] = (mb * scaled[:, cand] - m0[:, None] * mb).sum(0) / n
        hess[1:, 1:] = (torch.diag(mb.sum(0)) - mb.T @ mb) / n
        curve = (g * scaled).sum() / n
    grad = grad + torch.cat([(2 * SCALE_PRIOR * s).view(1), 2 * BIAS_PRIOR * b])
    hess = hess + torch.diag(torch.cat([(curve + 2 * SCALE_PRIOR).view(1), torch.full_like(b, 2 * BIAS_PRIOR)]))
    return loss, grad, hess


def fit_calibration(out: torch.Tensor, enc: EncodedTask, start: Calibration | None = None) -> Calibration:
    """The calibration of least loss on outputs `out` of the examples `enc`, from `start`: Newton's method
    with a backtracking line search, the log-scale held in [-MAX_LOG_SCALE, MAX_LOG_SCALE] (at a bound the
    fit wants to cross, only the biases move)."""
    start = start or Calibration()
    scale, bias = start.tensors(len(enc.candidates))
    c = MAX_LOG_SCALE
    x = torch.cat([scale.log().clamp(-c, c).view(1), bias]).double().to(out.device)
    out = out.detach().double()
    loss, grad, hess = _objective(x, out, enc)
    for _ in range(NEWTON_STEPS):
        s, g0 = float(x[0]), float(grad[0])
        held = (s >= c and g0 < 0) or (s <= -c and g0 > 0)
        step = _newton_step(hess[1:, 1:], grad[1:]) if held else _newton_step(hess, grad)
        if held:
            step = torch.cat([step.new_zeros(1), step])
        decrease = float(-(grad @ step))         # the loss a full step would save, to first order
        if decrease < 1e-10:
            break
        t = 1.0
        while t > 1e-6:
            trial = x + t * step
            trial[0] = trial[0].clamp(-c, c)
            new = _objective(trial, out, enc, second=False)
            if new <= loss - 1e-4 * t * decrease:
                break
            t /= 2
        else:
            break                                # no step lowers the loss: at the optimum to float precision
        x = trial
        loss, grad, hess = _objective(x, out, enc)
    return Calibration(float(x[0].exp()), tuple(float(v) for v in x[1:]))


def _newton_step(hess: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """-H^-1 g, with H shifted toward the identity until it is positive definite (the loss is not convex
    in the log-scale far from the optimum)."""
    shift = 0.0
    eye = torch.eye(len(grad), dtype=hess.dtype, device=hess.device)
    while True:
        chol, info = torch.linalg.cholesky_ex(hess + shift * eye)
        if info == 0:
            return -torch.cholesky_solve(grad[:, None], chol)[:, 0]
        shift = max(2 * shift, 1e-8 + float(hess.diagonal().abs().max()) * 1e-6)
