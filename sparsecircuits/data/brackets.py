"""Bracket nesting: close every open bracket (`(x(()x=))..`: the prompt `(x(()x=`, the answer `))..`).

A word is `length` characters of `(`, `)` and the filler `x`, drawn left to right uniformly among the
characters that keep the nesting depth between 0 and `max_depth`; the answer closes the word's open
brackets and pads with `.` to `max_depth` characters. Every answer character is decided by the depth
still open, which is the count of `(` minus `)` so far: the paper's bracket-depth task (METHOD 7) in a
language small enough for a CPU. The interface is AdditionData's: held-out words are never drawn for
training, and batches are a pure function of (seed, step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError, check_number
from .addition import answer_targets
from .tokenizer import CharTokenizer

CHARS = "()x=."
LENGTH, MAX_DEPTH = 12, 4   # the default words, which the bracket tasks and the brackets-cpu preset use
MAX_LENGTH = 40
OPEN, CLOSE, FILL, EQUALS, PAD = range(len(CHARS))


def bracket_tokenizer() -> CharTokenizer:
    return CharTokenizer(CHARS)


def sample_words(n: int, length: int, max_depth: int, generator: torch.Generator) -> torch.Tensor:
    """`n` words (n, length) of token ids, each character uniform among those that keep the depth
    in [0, max_depth]."""
    depth = torch.zeros(n, dtype=torch.long)
    cols = []
    for _ in range(length):
        allowed = torch.stack([depth < max_depth, depth > 0, torch.ones_like(depth, dtype=torch.bool)], 1)
        choice = torch.multinomial(allowed.float(), 1, generator=generator).squeeze(1)  # OPEN, CLOSE, FILL
        depth += (choice == OPEN).long() - (choice == CLOSE).long()
        cols.append(choice)
    return torch.stack(cols, 1)


def check_sizes(length, max_depth) -> None:
    """Refuse word sizes that are not whole numbers in 1..MAX_LENGTH, depth at most the length."""
    check_number("brackets length", length, 1, MAX_LENGTH, integer=True)
    check_number("brackets max_depth", max_depth, 1, length, integer=True)


def depth_of(words: torch.Tensor) -> torch.Tensor:
    """The depth still open at the end of each word."""
    return (words == OPEN).sum(1) - (words == CLOSE).sum(1)


@dataclass
class BracketData:
    length: int = LENGTH
    max_depth: int = MAX_DEPTH
    seed: int = 0
    n_test: int = 1000

    def __post_init__(self):
        check_sizes(self.length, self.max_depth)
        if not 0 < self.n_test <= 100_000:
            raise UserError(f"n_test must be in 1..100000, got {self.n_test}")
        self.tokenizer = bracket_tokenizer()
        g = torch.Generator().manual_seed(self.seed)
        test, seen, tries = [], set(), 0
        while len(test) < self.n_test:
            tries += 1
            if tries > 100:
                raise UserError(f"brackets of length {self.length} have fewer than {self.n_test} distinct words")
            for word in sample_words(2 * self.n_test, self.length, self.max_depth, g).tolist():
                if tuple(word) not in seen and len(test) < self.n_test:
                    seen.add(tuple(word))
                    test.append(word)
        self.test_words = torch.tensor(test)
        self._test_set = seen

    @property
    def seq_len(self) -> int:
        return self.length + 1 + self.max_depth

    @property
    def prompt_len(self) -> int:
        return self.length + 1

    def harder(self, n_test: int) -> "BracketData | None":
        """`n_test` words 4 characters longer, at the same depth: more to keep count of than in training
        (none past MAX_LENGTH)."""
        if self.length + 4 > MAX_LENGTH:
            return None
        return BracketData(self.length + 4, self.max_depth, self.seed, n_test)

    def text(self, word: str) -> str:
        d = word.count("(") - word.count(")")
        return f"{word}={')' * d}{'.' * (self.max_depth - d)}"

    def encode(self, words: torch.Tensor) -> torch.Tensor:
        """Token ids (len(words), seq_len): each word, `=`, and its answer."""
        d = depth_of(words)
        answer = torch.where(torch.arange(self.max_depth) < d[:, None], CLOSE, PAD)
        return torch.cat([words, torch.full_like(d[:, None], EQUALS), answer], 1)

    def inputs_targets(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return answer_targets(tokens, self.prompt_len)

    def train_batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1)
        words = sample_words(2 * batch_size, self.length, self.max_depth, g)
        fresh = [i for i, w in enumerate(words.tolist()) if tuple(w) not in self._test_set][:batch_size]
        return self.inputs_targets(self.encode(words[fresh]))

    def test_batches(self, batch_size: int = 1000):
        for i in range(0, len(self.test_words), batch_size):
            yield self.inputs_targets(self.encode(self.test_words[i:i + batch_size]))
