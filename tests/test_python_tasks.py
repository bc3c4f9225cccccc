"""The 20 Python contrast-pair tasks: names, pair structure, natural tokenisation, syntax, splits."""
from __future__ import annotations

import difflib
import os
import random
import sysconfig

import pytest

from sparsecircuits.data.bpe import train_bpe
from sparsecircuits.tasks.python import PYTHON_TASKS, pair_with_continuations

NAMES = [
    "single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname",
    "final_kwarg", "class_init", "with_as", "bracket_brace", "with_open", "for_while", "else_elif",
    "fstring_brace", "if_ternary", "var_swap", "indent_for", "lambda_func", "if_equals",
    "enumerate_range", "var_if", "while_return_true",
]
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
N_PAIRS = 50


def _stdlib_texts() -> list[str]:
    texts = []
    for root, dirs, files in os.walk(sysconfig.get_paths()["stdlib"]):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                try:
                    with open(os.path.join(root, name), encoding="utf-8") as f:
                        texts.append(f.read())
                except (UnicodeDecodeError, OSError):
                    continue
    return texts


@pytest.fixture(scope="module")
def tok():
    """A 2048-token BPE trained on the standard library with every task candidate required."""
    required = sorted({c for t in PYTHON_TASKS.values() for c in t.candidates})
    return train_bpe(_stdlib_texts(), 2048, required=required)


@pytest.fixture(scope="module")
def pairs():
    """50 pairs per task, each example with its natural continuation."""
    out = {}
    for name in PYTHON_TASKS:
        rng = random.Random(f"pairs/{name}")
        out[name] = [pair_with_continuations(name, rng) for _ in range(N_PAIRS)]
    return out


def _examples(pairs, name):
    return [ex for pair in pairs[name] for ex in pair]


def test_exactly_the_twenty_tasks():
    assert sorted(PYTHON_TASKS) == sorted(NAMES)
    for name, task in PYTHON_TASKS.items():
        assert task.name == name and task.binary
        assert task.description.endswith(".") and "\n" not in task.description
        assert len(task.candidates) == len(set(task.candidates)) >= 2


def test_candidates_are_single_tokens(tok):
    for task in PYTHON_TASKS.values():
        for c in task.candidates:
            assert tok.single_token(c) is not None, (task.name, c)


@pytest.mark.parametrize("name", NAMES)
def test_pairs_swap_answers(pairs, name):
    cands = set(PYTHON_TASKS[name].candidates)
    for (a, _), (b, _) in pairs[name]:
        assert a.prompt != b.prompt
        assert a.correct == b.wrong and a.wrong == b.correct
        assert a.correct != a.wrong
        assert {a.correct, b.correct} <= cands


@pytest.mark.parametrize("name", NAMES)
def test_make_matches_pairs_with_continuations(name):
    (a, _), (b, _) = pair_with_continuations(name, random.Random(7))
    assert PYTHON_TASKS[name].make(random.Random(7)) == (a, b)


@pytest.mark.parametrize("name", NAMES)
def test_answer_is_the_natural_token(tok, pairs, name):
    """The answer is exactly what the tokenizer produces after the prompt in the full code, and
    the prompt stays under 200 tokens."""
    for ex, cont in _examples(pairs, name):
        prompt_ids = tok.encode(ex.prompt)
        full = tok.encode(ex.prompt + ex.correct + cont)
        answer = tok.single_token(ex.correct)
        assert full[: len(prompt_ids) + 1] == prompt_ids + [answer], (
            tok.token_strings(prompt_ids[-3:]), tok.token_strings(full[len(prompt_ids) - 3: len(prompt_ids) + 3]))
        assert len(prompt_ids) < 200


@pytest.mark.parametrize("name", NAMES)
def test_full_code_compiles(pairs, name):
    for ex, cont in _examples(pairs, name):
        text = ex.prompt + ex.correct + cont
        try:
            compile(text, "<task>", "exec")
        except SyntaxError as e:
            pytest.fail(f"{name}: {e}\n{text}")


@pytest.mark.parametrize("name", NAMES)
def test_twins_differ_minimally(pairs, name):
    """The two prompts of a pair share everything but a few characters (the deciding detail)."""
    for (a, _), (b, _) in pairs[name]:
        blocks = difflib.SequenceMatcher(None, a.prompt, b.prompt, autojunk=False).get_matching_blocks()
        changed = len(a.prompt) + len(b.prompt) - 2 * sum(block.size for block in blocks)
        assert changed <= 50, (a.prompt, b.prompt)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name):
    task = PYTHON_TASKS[name]
    first = [task.make(random.Random(3)) for _ in range(5)]
    again = [task.make(random.Random(3)) for _ in range(5)]
    other = [task.make(random.Random(4)) for _ in range(5)]
    assert first == again
    assert first != other
    assert task.examples("test", 20, seed=1) == task.examples("test", 20, seed=1)
    assert task.examples("test", 20, seed=1) != task.examples("test", 20, seed=2)


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint(name):
    task = PYTHON_TASKS[name]
    train = task.examples("train", 200)
    test = task.examples("test", 200)
    assert len(train) == len(test) == 200
    assert not {e.prompt for e in train} & {e.prompt for e in test}


@pytest.mark.parametrize("name", NAMES)
def test_prompts_vary(pairs, name):
    prompts = [ex.prompt for ex, _ in _examples(pairs, name)]
    assert len(set(prompts)) >= 0.9 * len(prompts)
    assert len({(a.prompt, b.prompt) for (a, _), (b, _) in pairs[name]}) >= 40
    answers = {ex.correct for ex, _ in _examples(pairs, name)}
    assert len(answers) >= 2


def test_set_or_string_fixedvarname_uses_current(pairs):
    for (a, _), (b, _) in pairs["set_or_string_fixedvarname"]:
        assert a.prompt.endswith("current") and b.prompt.endswith("current")
        assert "current = set()" in a.prompt
