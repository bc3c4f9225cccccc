"""Arithmetic tasks: predict answer digit i of zero-padded n-digit addition (`36+28=000` -> `6`).

There is no single wrong alternative to a digit, so these tasks use full-vocabulary cross-entropy.
"""
from __future__ import annotations

import random

from .base import Example, Task


def addition_task(n_digits: int = 2, digit: int = -1, answer_digits: int = 0) -> Task:
    """Task for answer digit `digit` (negative counts from the end) of `n_digits`-digit addition."""
    width = answer_digits or 2 * n_digits + 1
    index = digit % width

    def make(rng: random.Random) -> tuple[Example]:
        a, b = rng.randrange(10 ** n_digits), rng.randrange(10 ** n_digits)
        answer = f"{a + b:0{width}d}"
        prompt = f"{a:0{n_digits}d}+{b:0{n_digits}d}={answer[:index]}"
        return (Example(prompt, answer[index]),)

    return Task(name=f"add{n_digits}_digit{index}",
                description=f"answer digit {index} of zero-padded {n_digits}-digit addition",
                make=make, candidates=tuple("0123456789"), binary=False)


ARITHMETIC_TASKS = {t.name: t for t in (addition_task(2, i) for i in range(5))}
