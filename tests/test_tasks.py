import json
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F

from sparsecircuits import UserError
from sparsecircuits.cli import main
from sparsecircuits.data.addition import addition_tokenizer
from sparsecircuits.tasks import ARITHMETIC_TASKS, TASKS, get_task, load_jsonl_task, register_task, resolve_tasks
from sparsecircuits.tasks.base import Example, Task
from sparsecircuits.tasks.custom import ListTask
from sparsecircuits.tasks.evaluate import encode_examples, evaluate_task


def test_registry_has_the_20_python_tasks_and_the_arithmetic_ones():
    assert len(resolve_tasks("all")) == 20
    assert sorted(ARITHMETIC_TASKS) == [f"add2_digit{i}" for i in range(5)]
    with pytest.raises(UserError, match="unknown task"):
        get_task("not_a_task")


def test_a_task_registered_in_python_is_known_by_name_listed_and_scored(capsys):
    def make(rng):  # a contrast pair: the units digit of a sum, with and without a carry into it
        a, b = rng.randrange(10), rng.randrange(1, 10)
        return (Example(f"{a}+{b}=", str((a + b) % 10), str((a + b + 1) % 10)),
                Example(f"{a}+{b}+1=", str((a + b + 1) % 10), str((a + b) % 10)))
    try:
        task = register_task(Task("units_carry", "units digit with and without a carry", make, tuple("0123456789")))
        assert get_task("units_carry") is task and TASKS["units_carry"] is task
        assert main(["tasks", "list"]) == 0
        assert re.search(r"^units_carry +pair +units digit with and without a carry$", capsys.readouterr().out, re.M)
    finally:
        TASKS.pop("units_carry", None)  # registered for this test only
    pairs = task.examples("test", 20)
    assert len(pairs) == 20
    assert all(x.correct == y.wrong and x.wrong == y.correct for x, y in zip(pairs[::2], pairs[1::2]))
    report = evaluate_task(_uniform_model(), task, addition_tokenizer(), n=20)
    assert report["n"] == 20 and report["kind"] == "binary" and report["loss"] == pytest.approx(math.log(2), abs=1e-6)


def _uniform_model():
    """A model whose logits are all zero: every binary task at loss ln 2."""
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.cfg = type("Cfg", (), {"block_size": 16})()

        def forward(self, tokens, last=None):
            return torch.zeros(len(tokens), 12) * self.w
    return Uniform()


def test_arithmetic_examples_are_correct_sums():
    task = ARITHMETIC_TASKS["add2_digit3"]
    for e in task.examples("test", 50):
        lhs, answer_so_far = e.prompt.split("=")
        a, b = map(int, lhs.split("+"))
        assert f"{a + b:05d}"[:3] == answer_so_far and f"{a + b:05d}"[3] == e.correct and e.wrong is None
    test = {e.prompt for e in task.examples("test", 200)}
    assert not test & {e.prompt for e in task.examples("train", 200)}


def test_pairs_differ_and_answers_swap_for_every_python_task():
    for task in resolve_tasks("all"):
        ex = task.examples("train", 20)
        for a, b in zip(ex[::2], ex[1::2]):
            assert a.prompt != b.prompt and a.correct == b.wrong and a.wrong == b.correct, task.name


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_task_loads_and_splits_stably(tmp_path):
    rows = [json.dumps({"prompt": f"x{i} = ", "correct": " 1", "wrong": " 2"}) for i in range(50)]
    task = load_jsonl_task(write_jsonl(tmp_path / "mine.jsonl", rows))
    train, test = task.examples("train", 100), task.examples("test", 100)
    assert task.name == "mine" and task.binary and len(train) + len(test) == 50
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    again = load_jsonl_task(write_jsonl(tmp_path / "again.jsonl", list(reversed(rows))))
    assert {e.prompt for e in again.examples("test", 100)} == {e.prompt for e in test}


@pytest.mark.parametrize("bad,words", [
    ('{"prompt": "a", "correct": "b"', ["line 2", "not valid JSON"]),
    ('{"prompt": 3, "correct": "b"}', ["line 2", "prompt"]),
    ('{"prompt": "a", "correct": "b", "colour": 1}', ["line 2", "colour"]),
])
def test_jsonl_task_malformed_line_names_the_line(tmp_path, capsys, bad, words):
    path = write_jsonl(tmp_path / "t.jsonl", ['{"prompt": "a", "correct": "b", "wrong": "c"}', bad])
    with pytest.raises(UserError) as e:
        load_jsonl_task(path)
    for w in words:
        assert w in str(e.value)
    assert main(["tasks", "show", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_tasks_cli_lists_and_shows(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TASKS)
    assert main(["tasks", "show", "for_while", "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("correct:") == 4 and "for_while" in out
    assert main(["tasks", "show", "nope"]) == 2
    assert "unknown task" in capsys.readouterr().err


@pytest.mark.parametrize("binary", [True, False])
def test_task_scores_read_each_prompts_own_last_position(small_model, binary):
    """Prompts of different lengths, right-padded: each is scored from its own last position, as a
    pass over the full logits reads it."""
    rng = random.Random(0)
    items = [Example("".join(rng.choice("0123456789+") for _ in range(rng.randint(2, 12))) + "=", c,
                     ("9" if c != "9" else "1") if binary else None) for c in "0123456789" * 4]
    task = ListTask("mixed_lengths", items, test_percent=50)
    tok = addition_tokenizer()
    report = evaluate_task(small_model, task, tok, n=len(items), batch_size=7)
    enc = encode_examples(task, task.examples("test", len(items), 0), tok, small_model.cfg.block_size)
    assert len(set(enc.last.tolist())) > 3 and report["n"] == len(enc)
    with torch.no_grad():
        last = small_model(enc.tokens)[torch.arange(len(enc)), enc.last]
    if binary:
        pair = torch.stack([last.gather(1, enc.correct[:, None])[:, 0], last.gather(1, enc.wrong[:, None])[:, 0]], 1)
        losses, right = -F.log_softmax(pair, 1)[:, 0], pair[:, 0] > pair[:, 1]
    else:
        losses, right = F.cross_entropy(last, enc.correct, reduction="none"), last.argmax(1) == enc.correct
    assert report["loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
    assert report["accuracy"] == int(right.sum()) / len(enc)
