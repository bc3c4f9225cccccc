"""Activation sparsity that a model finds on its own (seed 004): at every node location of every
layer, how sparse the activations are on familiar inputs against harder or unfamiliar ones.

Two measures per location: the fraction of near-zero entries (|x| below NEAR_ZERO x the location's
RMS on the familiar set, so a set that is merely quieter does not count as sparser by a threshold of
its own), and the Hoyer measure of each token's activation vector, (sqrt(n) - |x|_1 / |x|_2) /
(sqrt(n) - 1): 0 when every channel is equal, 1 when one channel holds everything, whatever the
scale. A third, the share of all activation mass in the top 1% of channels, says whether a few
channels carry the location.

Input sets: `familiar` (held-out examples of the training data), `harder` (addition with one more
digit than trained, bracket words 4 characters longer), `shuffled` (the familiar tokens in a random
order within each example), and `other` (a corpus directory, or a text file, given by path).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..atomic import atomic_path, atomic_write_json, refuse_dirs
from ..data.corpus import CorpusData
from ..errors import UserError
from ..config_io import load_json
from ..model.config import NODE_LOCATIONS
from ..model.io import load_model
from ..training.config import RUN_FILE, RunConfig
from ..training.trainer import make_data

NEAR_ZERO = 0.1
SETS = ("familiar", "harder", "shuffled")
REPORT_FILE, FIGURE_FILE = "activations.json", "activations.png"


def input_sets(model, data, names=SETS, other: str | Path | None = None, n: int = 256,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """Token batches (n, T) for each named set, and always `familiar`, the reference; `data` is the
    model's training data (AdditionData, BracketData or CorpusData), `other` a corpus directory or a
    text file."""
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        raise UserError(f"unknown input set(s) {', '.join(unknown)} (known: {', '.join(SETS)}, or a path)")
    n = max(1, int(n))
    familiar = _examples(data, n)
    g = torch.Generator().manual_seed(seed)
    out = {"familiar": familiar}
    harder = data.harder(min(n, 1000)) if "harder" in names and hasattr(data, "harder") else None
    if harder is not None and harder.seq_len - 1 <= model.cfg.block_size:
        out["harder"] = _examples(harder, n)
    if "shuffled" in names:
        out["shuffled"] = torch.stack([row[torch.randperm(len(row), generator=g)] for row in familiar])
    if other is not None:
        out["other"] = _other(model, other, n)
    return out


def _examples(data, n: int) -> torch.Tensor:
    rows, have = [], 0
    batches = data.test_batches() if hasattr(data, "test_batches") else data.val_batches()
    for x, _ in batches:
        rows.append(x)
        have += len(x)
        if have >= n:
            break
    return torch.cat(rows)[:n]


def _other(model, path: str | Path, n: int) -> torch.Tensor:
    path = Path(path)
    T = model.cfg.block_size
    if path.is_dir():
        return _examples(CorpusData(path, T), n)
    if not path.is_file():
        raise UserError(f"no corpus directory or text file at {path}")
    if model.tokenizer is None:
        raise UserError("the model has no tokenizer to read a text file with")
    try:
        ids = model.tokenizer.encode(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    windows = [ids[i:i + T] for i in range(0, len(ids) - T + 1, T)][:n]
    if not windows:
        raise UserError(f"{path} holds fewer than {T} tokens: not one window of the model's context")
    return torch.tensor(windows)


def model_activations(path: str | Path, sets=SETS, other: str | Path | None = None, n: int = 256,
                      corpus: str | Path | None = None) -> dict:
    """`activation_sparsity` of the model in `path` on its familiar data (its run's, or `corpus` for a
    model without run.json) against the other `sets` and the file or corpus `other`."""
    path = Path(path)
    model = load_model(path)
    if corpus is not None:
        data = CorpusData(corpus, model.cfg.block_size)
    elif (path / RUN_FILE).exists():
        data = make_data(load_json(RunConfig, path / RUN_FILE))
    else:
        raise UserError(f"{path} has no {RUN_FILE}: give its familiar data with --corpus CORPUS")
    return activation_sparsity(model, input_sets(model, data, sets, other, n))


@torch.no_grad()
def activation_sparsity(model, sets: dict[str, torch.Tensor], batch: int = 64) -> dict:
    """{set: {"locations": {hook: {near_zero, hoyer, top1_share}}, "mean": {...}, "n_tokens"}}; the
    near-zero threshold of each location comes from the `familiar` set. Two streaming passes (the
    familiar RMS, then the measures), so memory does not grow with the number of inputs."""
    if "familiar" not in sets:
        raise UserError("activation sparsity needs the familiar set as its reference")
    names = [f"{L}.{loc}" for L in range(model.cfg.n_layer) for loc in NODE_LOCATIONS]
    model.eval()
    squares = {h: [0.0, 0] for h in names}
    for cache in _batches(model, sets["familiar"], names, batch):
        for h, a in cache.items():
            squares[h][0] += float(a.pow(2).sum())
            squares[h][1] += a.numel()
    report = {}
    for s, tokens in sets.items():
        tallies = {h: Tally(NEAR_ZERO * math.sqrt(sq / max(1, n))) for h, (sq, n) in squares.items()}
        for cache in _batches(model, tokens, names, batch):
            for h, a in cache.items():
                tallies[h].add(a)
        locs = {h: t.result() for h, t in tallies.items()}
        mean = {k: sum(v[k] for v in locs.values()) / len(locs) for k in ("near_zero", "hoyer", "top1_share")}
        report[s] = {"n_tokens": tallies[names[0]].rows, "locations": locs, "mean": mean}
    return report


def _batches(model, tokens: torch.Tensor, names: list[str], batch: int):
    """{hook: activations (tokens, channels)} per batch of `tokens`."""
    device = next(model.parameters()).device
    for i in range(0, len(tokens), batch):
        _, cache = model.run_with_cache(tokens[i:i + batch].to(device), names)
        yield {h: cache[h].float().flatten(0, 1).cpu() for h in names}


class Tally:
    """The three measures of one location, accumulated over batches of activations (tokens, channels).
    A token whose activations are all zero counts as fully sparse (Hoyer 1)."""

    def __init__(self, threshold: float):
        self.threshold, self.near, self.entries, self.hoyer, self.rows, self.mass = threshold, 0, 0, 0.0, 0, None

    def add(self, a: torch.Tensor) -> None:
        n, x = a.shape[1], a.abs()
        l1, l2 = x.sum(1), a.norm(dim=1)
        ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-30), torch.ones_like(l1))
        if n > 1:
            self.hoyer += float(((math.sqrt(n) - ratio) / (math.sqrt(n) - 1)).sum())
        self.near += int((x <= self.threshold).sum())
        self.entries += x.numel()
        self.rows += len(a)
        self.mass = x.sum(0) if self.mass is None else self.mass + x.sum(0)

    def result(self) -> dict:
        top = self.mass.topk(max(1, math.ceil(0.01 * len(self.mass)))).values.sum() / self.mass.sum().clamp_min(1e-30)
        return {"near_zero": round(self.near / self.entries, 5), "hoyer": round(self.hoyer / self.rows, 5),
                "top1_share": round(float(top), 5)}


def save_activations(report: dict, out: str | Path) -> tuple[Path, Path]:
    """The report and its figure, `activations.json` and `activations.png` in the folder `out`."""
    out = Path(out)
    refuse_dirs(out / REPORT_FILE, out / FIGURE_FILE)
    atomic_write_json(out / REPORT_FILE, report)
    return out / REPORT_FILE, write_activation_figure(report, out / FIGURE_FILE)


def write_activation_figure(report: dict, out: str | Path) -> Path:
    """Near-zero fraction and Hoyer measure per location, one line per input set (PNG or SVG)."""
    from matplotlib.figure import Figure  # here, so that `import sparsecircuits` does not load matplotlib
    out = Path(out)
    names = list(next(iter(report.values()))["locations"])
    fig = Figure(figsize=(max(8, 0.25 * len(names)), 6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, label in zip(axes, ("near_zero", "hoyer"), (f"near-zero fraction (< {NEAR_ZERO} x RMS)",
                                                            "Hoyer sparsity")):
        for s, r in report.items():
            ax.plot(range(len(names)), [r["locations"][h][key] for h in names], marker="o", ms=3, label=s)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes[1].set_xlabel("layer.location")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=110)
    return out
