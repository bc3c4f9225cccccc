"""The task registry: the 20 Python tasks, the arithmetic and bracket tasks, and tasks users add."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .arithmetic import ARITHMETIC_TASKS, addition_task
from .base import Example, Task
from .brackets import BRACKET_TASKS, bracket_task
from .custom import ListTask, load_jsonl_task
from .python import PYTHON_TASKS

TASKS: dict[str, Task] = {**PYTHON_TASKS, **ARITHMETIC_TASKS, **BRACKET_TASKS}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """A task by name, or from a JSONL file when `name` is a path ending in .jsonl."""
    if name.endswith(".jsonl"):
        return load_jsonl_task(Path(name))
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; `sparsecircuits tasks list` shows the {len(TASKS)} known tasks")
    return TASKS[name]


def resolve_tasks(spec: str) -> list[Task]:
    """'all' (the Python tasks), 'arithmetic', 'brackets', or a comma list of names / .jsonl paths."""
    if spec == "all":
        return list(PYTHON_TASKS.values())
    if spec == "arithmetic":
        return list(ARITHMETIC_TASKS.values())
    if spec == "brackets":
        return list(BRACKET_TASKS.values())
    return [get_task(s.strip()) for s in spec.split(",") if s.strip()]


def required_tokens() -> list[str]:
    """Every candidate string of every Python task: the BPE must make each one a single token."""
    return sorted({c for t in PYTHON_TASKS.values() for c in t.candidates})


__all__ = ["ARITHMETIC_TASKS", "BRACKET_TASKS", "PYTHON_TASKS", "TASKS", "Example", "ListTask", "Task", "addition_task",
           "bracket_task",
           "get_task", "load_jsonl_task", "register_task", "required_tokens", "resolve_tasks"]
