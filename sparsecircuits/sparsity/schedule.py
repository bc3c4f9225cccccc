"""L0 annealing and the "sharkfin" learning rate of weight-sparse training (METHOD 3)."""
from __future__ import annotations

import math


def density_at(step: int, total: int, target: float, start_frac: float, end_frac: float) -> float:
    """Density (fraction of weights kept): 1 until `start_frac`, linear to `target` at `end_frac`."""
    if target >= 1.0:
        return 1.0
    start, end = start_frac * total, end_frac * total
    if step <= start:
        return 1.0
    if step >= end or end <= start:
        return target
    return 1.0 + (target - 1.0) * (step - start) / (end - start)


def lr_at(step: int, total: int, base_lr: float, warmup_frac: float, density_now: float, target: float) -> float:
    """Linear warm-up, linear decay to 0, times sqrt(L0_target / L0_now) (the sharkfin)."""
    warmup = max(1, int(round(warmup_frac * total)))
    shape = (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))
    return base_lr * shape * math.sqrt(min(1.0, target) / density_now)
