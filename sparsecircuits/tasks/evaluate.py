"""Scoring a model on a task: binary cross-entropy over the two candidates at the last position
(METHOD 5), or full-vocabulary cross-entropy where there is no single wrong token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Example, Task


@dataclass
class EncodedTask:
    """Examples as tensors: right-padded prompts, their lengths and candidate token ids."""
    tokens: torch.Tensor      # (n, T) prompt ids, right-padded
    last: torch.Tensor        # (n,) index of each prompt's last token
    correct: torch.Tensor     # (n,)
    wrong: torch.Tensor       # (n,) or -1 where the task is scored over the whole vocabulary
    binary: bool
    candidates: torch.Tensor  # (c,) token ids of the task's candidates
    correct_k: torch.Tensor   # (n,) position of `correct` in `candidates`
    wrong_k: torch.Tensor     # (n,) position of `wrong` in `candidates` (0 for vocabulary tasks)

    def __len__(self) -> int:
        return len(self.last)

    def subset(self, idx) -> "EncodedTask":
        return EncodedTask(self.tokens[idx], self.last[idx], self.correct[idx], self.wrong[idx], self.binary,
                           self.candidates, self.correct_k[idx], self.wrong_k[idx])

    def repeat(self, k: int) -> "EncodedTask":
        """The examples `k` times over, one copy after another."""
        return EncodedTask(self.tokens.repeat(k, 1), self.last.repeat(k), self.correct.repeat(k),
                           self.wrong.repeat(k), self.binary, self.candidates, self.correct_k.repeat(k),
                           self.wrong_k.repeat(k))


def candidate_ids(task: Task, tokenizer) -> dict[str, int]:
    ids, split = {}, []
    for c in task.candidates:
        i = tokenizer.single_token(c)
        if i is None:
            split.append(c)
        ids[c] = i
    if split:
        raise UserError(f"task {task.name}: candidate(s) {', '.join(map(repr, split))} are not single tokens "
                        f"of this tokenizer")
    return ids


def encode_examples(task: Task, examples: list[Example], tokenizer, block_size: int) -> EncodedTask:
    if not examples:
        raise UserError(f"task {task.name}: no examples to encode")
    ids = candidate_ids(task, tokenizer)
    prompts = [tokenizer.encode(e.prompt)[-block_size:] for e in examples]  # a long prompt keeps its end
    pad = getattr(tokenizer, "eot_id", 0)
    T = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), T), pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(p)
    position = {c: k for k, c in enumerate(task.candidates)}
    return EncodedTask(tokens, torch.tensor([len(p) - 1 for p in prompts]),
                       torch.tensor([ids[e.correct] for e in examples]),
                       torch.tensor([ids[e.wrong] if e.wrong is not None else -1 for e in examples]), task.binary,
                       torch.tensor([ids[c] for c in task.candidates]),
                       torch.tensor([position[e.correct] for e in examples]),
                       torch.tensor([position[e.wrong] if e.wrong is not None else 0 for e in examples]))


def task_outputs(last: torch.Tensor, enc: EncodedTask) -> torch.Tensor:
    """From the (n, vocab) logits of each prompt's last position (`model(tokens, last=enc.last)`):
    binary tasks, correct minus wrong logit; vocabulary tasks, those logits."""
    last = last.float()
    if not enc.binary:
        return last
    correct, wrong = enc.correct.to(last.device), enc.wrong.to(last.device)
    return last.gather(1, correct[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]


def task_losses(last: torch.Tensor, enc: EncodedTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss (METHOD 5) and correctness from the (n, vocab) logits of each prompt's last position."""
    out = task_outputs(last, enc)
    if enc.binary:  # -log softmax(correct, wrong)[correct] = softplus(wrong - correct)
        return F.softplus(-out), out > 0
    correct = enc.correct.to(out.device)
    return F.cross_entropy(out, correct, reduction="none"), out.argmax(1) == correct


@torch.no_grad()
def evaluate_task(model, task: Task, tokenizer, n: int = 200, split: str = "test", seed: int = 0,
                  batch_size: int = 64) -> dict:
    """Mean task loss and accuracy of `model` over `n` examples of `split`."""
    model.eval()
    device = next(model.parameters()).device
    enc = encode_examples(task, task.examples(split, n, seed), tokenizer, model.cfg.block_size)
    losses, right = [], []
    for i in range(0, len(enc.last), batch_size):
        part = enc.subset(slice(i, i + batch_size))
        loss, ok = task_losses(model(part.tokens.to(device), last=part.last.to(device)), part)
        losses.append(loss.cpu())
        right.append(ok.cpu())
    loss, ok = torch.cat(losses), torch.cat(right)
    # the count over n, exact: a float32 mean puts 180/200 under 0.9 and fails a ">= 90%" threshold
    return {"task": task.name, "loss": float(loss.mean()), "accuracy": int(ok.sum()) / len(ok),
            "n": len(loss), "kind": "binary" if task.binary else "vocab"}
