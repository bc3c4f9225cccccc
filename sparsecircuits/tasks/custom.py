"""User tasks from a JSONL file: one example per line, `{"prompt": ..., "correct": ..., "wrong": ...}`.

`wrong` may be omitted (full-vocabulary loss). Examples are split into train/test by a hash of the
prompt, so the split never changes when lines are added or reordered.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config_io import JSON_ERRORS
from ..errors import UserError
from .base import Example, Task


class ListTask(Task):
    """A task over a fixed list of examples (a JSONL file, or a Python list)."""

    def __init__(self, name: str, items: list[Example], description: str = "", test_percent: float = 20.0):
        binary = all(e.wrong is not None for e in items)
        if not binary and any(e.wrong is not None for e in items):
            raise UserError(f"task {name}: give `wrong` on every line or on none")
        candidates = tuple(sorted({e.correct for e in items} | {e.wrong for e in items if e.wrong is not None}))
        super().__init__(name=name, description=description or f"{len(items)} examples", make=None,
                         candidates=candidates, binary=binary)
        self.items, self.test_percent = items, test_percent
        n_test = sum(self._is_test(e.prompt) for e in items)
        if n_test in (0, len(items)):
            raise UserError(f"task {name} has {len(items)} examples, {n_test} of them in the test split: a task "
                            f"needs examples in both splits ({test_percent:g}% of prompts are test, by hash)")

    def examples(self, split: str, n: int, seed: int = 0) -> list[Example]:
        if split not in ("train", "test"):
            raise UserError(f"split must be train or test, got {split!r}")
        chosen = [e for e in self.items if self._is_test(e.prompt) == (split == "test")]
        return chosen[:n]

    def _is_test(self, prompt: str) -> bool:
        return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 10_000 < self.test_percent * 100


def load_jsonl_task(path: str | Path, name: str | None = None) -> ListTask:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"task file {path} is not UTF-8 text (byte {e.start})") from None
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except JSON_ERRORS as e:
            raise UserError(f"{path} line {lineno}: not valid JSON ({getattr(e, 'msg', e)})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("correct"), str):
            raise UserError(f"{path} line {lineno}: needs string fields \"prompt\" and \"correct\"")
        if not row["prompt"]:
            raise UserError(f"{path} line {lineno}: empty prompt")
        wrong = row.get("wrong")
        if wrong is not None and not isinstance(wrong, str):
            raise UserError(f"{path} line {lineno}: \"wrong\" must be a string")
        extra = set(row) - {"prompt", "correct", "wrong"}
        if extra:
            raise UserError(f"{path} line {lineno}: unknown field(s) {', '.join(sorted(extra))}")
        try:  # JSON's \ud800 escapes can spell a lone surrogate, which no tokenizer encodes
            "".join(s for s in (row["prompt"], row["correct"], wrong) if s).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{path} line {lineno}: a string holds a lone surrogate (\\ud800-\\udfff)") from None
        items.append(Example(row["prompt"], row["correct"], wrong))
    if not items:
        raise UserError(f"task file {path} has no examples")
    return ListTask(name or path.stem, items, description=f"from {path.name}")
