"""A character tokenizer (one token per character), saved as `tokenizer.json` in a model directory."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError

TOKENIZER_FILE = "tokenizer.json"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars) or not chars:
            raise UserError("a character tokenizer needs distinct, non-empty characters")
        self.chars = chars
        self.ids = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[c] for c in text]
        except KeyError as e:
            raise UserError(f"character {e.args[0]!r} is not in the tokenizer's vocabulary {self.chars!r}") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"type": self.kind, "chars": self.chars}

    def save(self, directory: str | Path) -> None:
        atomic_write_text(Path(directory) / TOKENIZER_FILE, json.dumps(self.to_json()) + "\n")


def load_tokenizer(directory: str | Path):
    """The tokenizer saved beside a model, or None if the directory has none."""
    path = Path(directory) / TOKENIZER_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if data.get("type") == "char":
        return CharTokenizer(data["chars"])
    raise UserError(f"{path}: unknown tokenizer type {data.get('type')!r}")
