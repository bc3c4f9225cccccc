"""A character tokenizer (one token per character), saved as `tokenizer.json` in a model directory."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_json
from ..config_io import JSON_ERRORS
from ..errors import UserError
from .bpe import BPETokenizer, load_gpt2_files, looks_like_bpe

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

    def token_strings(self, ids) -> list[str]:
        return [self.chars[int(i)] for i in ids]

    def single_token(self, text: str) -> int | None:
        return self.ids.get(text) if len(text) == 1 else None

    def to_json(self) -> dict:
        return {"type": self.kind, "chars": self.chars}

    def save(self, directory: str | Path) -> None:
        atomic_write_json(Path(directory) / TOKENIZER_FILE, self.to_json(), indent=None)


def load_tokenizer(directory: str | Path, vocab_size: int | None = None):
    """The tokenizer saved beside a model (char or BPE), or None if the directory has none.

    With `vocab_size`, refuse a tokenizer whose vocabulary does not match the model's.
    """
    path = Path(directory) / TOKENIZER_FILE
    if not path.exists():
        return None
    try:
        text = path.read_text()
        data = json.loads(text)
    except JSON_ERRORS as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if isinstance(data, dict) and data.get("type") == "char":
        if not isinstance(data.get("chars"), str):
            raise UserError(f"{path}: a char tokenizer needs 'chars', a string of its characters")
        tok = CharTokenizer(data["chars"])
    elif isinstance(data, dict) and looks_like_bpe(data):
        tok = BPETokenizer.from_json(text)
    else:
        raise UserError(f"{path}: not a tokenizer this tool knows (char or BPE)")
    if vocab_size is not None and tok.vocab_size != vocab_size:
        raise UserError(f"{path} has {tok.vocab_size} tokens but the model's vocabulary is {vocab_size}")
    return tok


def load_any_tokenizer(directory: str | Path, vocab_size: int | None = None):
    """`load_tokenizer`, or GPT-2's original files (`encoder.json` + `vocab.bpe`) as the authors'
    release ships them; None when the directory has neither."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"tokenizer directory {directory} does not exist")
    if (directory / TOKENIZER_FILE).exists():
        tok = load_tokenizer(directory, vocab_size)
    elif (directory / "encoder.json").exists() and (directory / "vocab.bpe").exists():
        tok = load_gpt2_files(directory)
        if vocab_size is not None and tok.vocab_size != vocab_size:
            raise UserError(f"tokenizer in {directory} has {tok.vocab_size} tokens but the model's vocabulary is "
                            f"{vocab_size}")
    else:
        return None
    tok.source = str(directory.resolve())  # circuits record it, to find the same tokenizer again
    return tok
