"""Bracket tasks: close the next bracket or stop (`((x)x=)` -> `)` vs `.`), by the depth still open.

`bracket_close{k}` asks for answer character k after the first k closing brackets: `)` when the word
left more than k brackets open, `.` when exactly k. A contrast pair is a word at depth k + 1 and the
same word with one `(` turned into the filler `x` (depth k): one character apart, answers swapped.
Words are drawn as BracketData draws them, kept when they end at depth k + 1.
"""
from __future__ import annotations

import random

from ..data.brackets import LENGTH, MAX_DEPTH
from .base import Example, Task


def bracket_task(close: int, length: int = LENGTH, max_depth: int = MAX_DEPTH) -> Task:
    """Task for answer character `close` (0 = the first after `=`) of the bracket words."""
    if not 0 <= close < max_depth:
        raise ValueError(f"close must be in 0..{max_depth - 1}, got {close}")

    def make(rng: random.Random) -> tuple[Example, Example]:
        while True:
            word = _word(rng, length, max_depth)
            if word.count("(") - word.count(")") == close + 1:
                break
        # a `(` whose removal keeps every later depth >= 0: every later depth must be >= 1
        depth, depths = 0, []
        for ch in word:
            depth += (ch == "(") - (ch == ")")
            depths.append(depth)
        ok = [i for i, ch in enumerate(word) if ch == "(" and min(depths[i:]) >= 1]
        i = rng.choice(ok)
        twin = word[:i] + "x" + word[i + 1:]
        suffix = "=" + ")" * close
        return Example(word + suffix, ")", "."), Example(twin + suffix, ".", ")")

    return Task(name=f"bracket_close{close}",
                description=f"answer character {close} of closing {length}-character bracket words: "
                            f"')' if more than {close} are open, '.' if {close}",
                make=make, candidates=(")", "."), binary=True)


def _word(rng: random.Random, length: int, max_depth: int) -> str:
    out, depth = [], 0
    for _ in range(length):
        ch = rng.choice([c for c, ok in (("(", depth < max_depth), (")", depth > 0), ("x", True)) if ok])
        depth += (ch == "(") - (ch == ")")
        out.append(ch)
    return "".join(out)


BRACKET_TASKS = {t.name: t for t in (bracket_task(k) for k in range(MAX_DEPTH))}
