"""Dataclass configs that round-trip to JSON and reject unknown or ill-typed keys."""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from .errors import UserError

JSON_ERRORS = (ValueError, RecursionError)  # json.loads on bad syntax or UTF-8, thousands of digits, deep nesting


def _check_type(name: str, value, hint):
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except UserError:
                continue
        raise UserError(f"config key '{name}' has ill-typed value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{name}' must be a list, got {value!r}")
        (inner, *_) = typing.get_args(hint) or (typing.Any,)
        items = [_check_type(name, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{name}' must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key '{name}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key '{name}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"config key '{name}' must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value


def from_dict(cls, data: dict):
    """Build dataclass `cls` from a dict, naming any unknown or ill-typed key."""
    if not isinstance(data, dict):
        raise UserError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    kwargs = {k: _check_type(k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def read_json(path: str | Path):
    """A JSON file's value; a missing or unparsable file is a UserError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"missing {path.name} in {path.parent}") from None
    except JSON_ERRORS as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def load_json(cls, path: str | Path):
    return from_dict(cls, read_json(path))
