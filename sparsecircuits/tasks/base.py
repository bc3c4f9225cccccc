"""Tasks (METHOD 5): named generators of contrast pairs, with disjoint train/test splits and a loss.

An `Example` is a prompt and the token that should come next (`correct`), with the token that would
be right for its twin prompt (`wrong`). A contrast pair is two examples whose prompts differ
minimally and whose correct/wrong tokens swap. Tasks with no single alternative (arithmetic) have
`wrong = None` and are scored with full-vocabulary cross-entropy.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError


@dataclass(frozen=True)
class Example:
    prompt: str
    correct: str
    wrong: str | None = None


@dataclass
class Task:
    """A named generator. `make(rng)` returns one contrast pair (or, for `binary=False`, one or more
    examples); `candidates` lists every string that may be `correct` or `wrong`, which must each be
    one token of the tokenizer."""

    name: str
    description: str
    make: Callable[[random.Random], tuple[Example, ...]]
    candidates: tuple[str, ...]
    binary: bool = True

    def examples(self, split: str, n: int, seed: int = 0) -> list[Example]:
        """`n` examples (whole pairs kept together) of `split`; no test prompt ever appears in train."""
        if split not in ("train", "test"):
            raise UserError(f"split must be train or test, got {split!r}")
        test = self._draw("test", n if split == "test" else max(n, 256), seed, exclude=set())
        if split == "test":
            return test
        return self._draw("train", n, seed, exclude={e.prompt for e in test})

    def _draw(self, split: str, n: int, seed: int, exclude: set[str]) -> list[Example]:
        rng = random.Random(f"{self.name}/{split}/{seed}")
        out: list[Example] = []
        seen = set(exclude)
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise UserError(f"task {self.name} cannot make {n} distinct {split} examples")
            group = self.make(rng)
            if any(e.prompt in seen for e in group):
                continue
            seen.update(e.prompt for e in group)
            out.extend(group)
        return out[:n] if not self.binary else out[: n + (n % 2)]
