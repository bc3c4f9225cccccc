"""The logit calibration's fit (Newton's method with the written-out gradient and Hessian) against the
LBFGS fit it replaced, and a whole pruning with each.

Run: python benchmarks/calibration.py [--threads T] [--rounds R]
Figures are ratios against the fit as shipped, measured in the same process, interleaved:
- one fit, cold (from scale 1, no bias) and warm (from a nearby calibration, as the cleanup refits), on
  256 held-out outputs of a binary task and of a 10-candidate vocabulary task, with the objective each
  reaches (lower is better);
- `prune` of a small dense adder (the test suite's, trained here for 400 steps) on `add2_digit4` at loss
  0.5, whose cleanup refits the calibration hundreds of times, with the circuit each finds.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from contextlib import contextmanager

import torch

import sparsecircuits as sc
from sparsecircuits import DataConfig, ModelConfig, RunConfig, TrainConfig
from sparsecircuits.circuits import calibration, cleanup, pruner, validation
from sparsecircuits.circuits.calibration import MAX_LOG_SCALE, SCALE_PRIOR, Calibration, calibrated_loss
from sparsecircuits.tasks.evaluate import EncodedTask

SHIPPED = calibration.fit_calibration


def lbfgs_fit(out, enc, start=None):
    """The fit as it was: LBFGS on a tanh-bounded log-scale and the biases, autograd for the gradient."""
    start = start or Calibration()
    scale, bias = start.tensors(len(enc.candidates))
    c = MAX_LOG_SCALE
    u = (scale.clamp(1 / 99.0, 99.0).log() / c).atanh().mul(c).clone().requires_grad_(True)
    bias = bias.clone().requires_grad_(True)
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


@contextmanager
def fitting_with(fit):
    """Every module that fits a calibration uses `fit` inside the block."""
    modules = (calibration, cleanup, pruner, validation)
    saved = [m.fit_calibration for m in modules]
    for m in modules:
        m.fit_calibration = fit
    try:
        yield
    finally:
        for m, f in zip(modules, saved):
            m.fit_calibration = f


def problem(binary: bool, seed: int, n: int = 256):
    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(n, dtype=torch.long)
    if binary:
        ck = torch.randint(0, 2, (n,), generator=g)
        enc = EncodedTask(zeros[:, None], zeros, ck, 1 - ck, True, torch.tensor([0, 1]), ck, 1 - ck)
        return torch.randn(n, generator=g) * 2 + 1, enc
    y = torch.randint(0, 10, (n,), generator=g)
    enc = EncodedTask(zeros[:, None], zeros, y, zeros - 1, False, torch.arange(10), y, zeros)
    out = torch.randn(n, 12, generator=g) * 3
    out[torch.arange(n), y] += 2
    return out, enc


def objective(out, enc, calib) -> float:
    x = torch.tensor([math.log(calib.scale), *calib.bias], dtype=torch.float64)
    return float(calibration._objective(x, out.double(), enc, second=False))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fits = {"as shipped (Newton)": SHIPPED, "LBFGS (before)": lbfgs_fit}
    print(f"{torch.get_num_threads()} thread(s), medians over {args.rounds} rounds")
    for binary in (True, False):
        for warm in (False, True):
            times, reached = {k: [] for k in fits}, {k: [] for k in fits}
            for r in range(args.rounds + 1):  # round 0 warms up
                out, enc = problem(binary, r)
                start = SHIPPED(out, enc) if warm else None
                if start is not None:
                    start = Calibration(start.scale * 1.3, tuple(b + 0.1 for b in start.bias))
                for key, fit in fits.items():
                    t0 = time.perf_counter()
                    calib = fit(out, enc, start)
                    if r:
                        times[key].append(time.perf_counter() - t0)
                        reached[key].append(objective(out, enc, calib))
            label = f"{'binary' if binary else 'vocabulary'} task, {'warm' if warm else 'cold'} start"
            report(label, times, {k: f"objective {statistics.mean(v):.7f}" for k, v in reached.items()}, 1e3, "ms")
    with tempfile.TemporaryDirectory() as tmp:
        run = RunConfig(model=ModelConfig(vocab_size=12, block_size=16, n_layer=2, d_model=48, n_head=4, d_head=8,
                                          d_mlp=128, pos_emb="learned"), data=DataConfig(n_digits=2),
                        train=TrainConfig(steps=400, batch_size=128, lr=1e-2, density=1.0, autocast="none"))
        torch.manual_seed(0)
        sc.train(run, tmp + "/adder", progress=False)
        model = sc.load(tmp + "/adder")
        times, found = {k: [] for k in fits}, {}
        for key, fit in fits.items():
            with fitting_with(fit):
                t0 = time.perf_counter()
                circuit = sc.prune(model, "add2_digit4", 0.5, steps=60, n_train=128, n_test=64, batch_pairs=32,
                                   progress=False)
                times[key].append(time.perf_counter() - t0)
            found[key] = f"{circuit.n_nodes} nodes, {circuit.n_edges} edges, loss {circuit.loss:.4f}"
        report("prune of a dense adder (add2_digit4 at 0.5)", times, found, 1.0, "s")


def report(label, times, notes, unit, name):
    new = statistics.median(times["as shipped (Newton)"])
    print(label)
    for key, t in times.items():
        ratio = statistics.median(t) / new
        print(f"  {key:<22}{statistics.median(t) * unit:9.1f} {name}  {ratio:5.2f}x the time  {notes[key]}")


if __name__ == "__main__":
    main()
