"""n-digit addition with zero-padded answers: `36+28=00064` (prompt `36+28=`, answer `00064`).

Operands are zero-padded to n digits, answers to `answer_digits` (default 2n+1: 5 for 2 digits).
A seeded set of held-out problems is never drawn for training. Batches are a pure function of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError
from .tokenizer import CharTokenizer

CHARS = "0123456789+="


def addition_tokenizer() -> CharTokenizer:
    return CharTokenizer(CHARS)


def answer_targets(tokens: torch.Tensor, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token inputs and targets of problems whose first `prompt_len` tokens are the prompt:
    only the answer is scored (other targets -1)."""
    x, y = tokens[:, :-1], tokens[:, 1:].clone()
    y[:, : prompt_len - 1] = -1
    return x, y


@dataclass
class AdditionData:
    n_digits: int = 2
    answer_digits: int = 0        # 0 = 2 * n_digits + 1
    seed: int = 0
    n_test: int = 1000

    def __post_init__(self):
        if not 1 <= self.n_digits <= 9:
            raise UserError(f"addition n_digits must be 1..9, got {self.n_digits}")
        self.answer_digits = self.answer_digits or 2 * self.n_digits + 1
        if self.answer_digits < self.n_digits + 1:
            raise UserError(f"answer_digits {self.answer_digits} cannot hold a {self.n_digits}-digit sum")
        self.space = 10 ** self.n_digits
        if not 0 < self.n_test <= self.space ** 2 // 2:
            raise UserError(f"n_test must be in 1..{self.space ** 2 // 2}, got {self.n_test}")
        self.tokenizer = addition_tokenizer()
        g = torch.Generator().manual_seed(self.seed)
        test: list[int] = []
        seen: set[int] = set()
        while len(test) < self.n_test:  # distinct problems, encoded as a * space + b
            for p in torch.randint(0, self.space ** 2, (2 * self.n_test,), generator=g).tolist():
                if p not in seen and len(test) < self.n_test:
                    seen.add(p)
                    test.append(p)
        self.test_ids = torch.tensor(test)
        self._test_set = seen
        if self.space ** 2 <= 1 << 22:
            is_test = torch.zeros(self.space ** 2, dtype=torch.bool)
            is_test[self.test_ids] = True
            self.train_ids = (~is_test).nonzero().squeeze(1)
        else:
            self.train_ids = None

    @property
    def seq_len(self) -> int:
        return 2 * self.n_digits + 2 + self.answer_digits

    @property
    def prompt_len(self) -> int:
        return 2 * self.n_digits + 2

    def harder(self, n_test: int) -> "AdditionData | None":
        """`n_test` problems with one more digit than in training (none past 9 digits)."""
        if self.n_digits >= 9:
            return None
        return AdditionData(n_digits=self.n_digits + 1, seed=self.seed, n_test=n_test)

    def text(self, a: int, b: int) -> str:
        n = self.n_digits
        return f"{a:0{n}d}+{b:0{n}d}={a + b:0{self.answer_digits}d}"

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (len(ids), seq_len) of the problems `a * space + b`, built digit by digit."""
        a, b = ids // self.space, ids % self.space
        s = a + b
        n, m = self.n_digits, self.answer_digits
        cols = [(a // 10 ** (n - 1 - i)) % 10 for i in range(n)] + [torch.full_like(a, 10)]
        cols += [(b // 10 ** (n - 1 - i)) % 10 for i in range(n)] + [torch.full_like(a, 11)]
        cols += [(s // 10 ** (m - 1 - i)) % 10 for i in range(m)]
        return torch.stack(cols, dim=1)

    def inputs_targets(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return answer_targets(tokens, self.prompt_len)

    def train_batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1)
        if self.train_ids is not None:
            ids = self.train_ids[torch.randint(0, len(self.train_ids), (batch_size,), generator=g)]
        else:
            ids = torch.randint(0, self.space ** 2, (2 * batch_size,), generator=g)
            ids = torch.tensor([i for i in ids.tolist() if i not in self._test_set][:batch_size])
        return self.inputs_targets(self.encode(ids))

    def test_batches(self, batch_size: int = 1000):
        for i in range(0, len(self.test_ids), batch_size):
            yield self.inputs_targets(self.encode(self.test_ids[i:i + batch_size]))
