"""The 2048-token byte-level BPE of METHOD 3, trained with HF `tokenizers` on the corpus.

The pre-split pattern keeps a run of punctuation together with trailing newlines, so `')`, `]]\\n`
and `],` are single tokens. Strings that tasks need as single tokens are guaranteed by adding them,
repeated, to what the trainer counts; training fails loudly if one still does not come out whole.
The end-of-text token is the last id (2047 for 2048 tokens), as in the authors' release.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from ..atomic import atomic_write_text
from ..errors import UserError

PRE_SPLIT = r"""[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
BOOST = 20_000  # copies of each required string the BPE trainer counts


def _tokenizers():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a dependency, but say so plainly if it is missing
        raise UserError("the `tokenizers` package is needed for BPE: pip install tokenizers") from None
    return tokenizers


class BPETokenizer:
    """Byte-level BPE wrapper: encode / decode / single-token lookup, saved as one JSON file."""

    kind = "bpe"

    def __init__(self, hf):
        self.hf = hf
        self.eot_id = hf.token_to_id(EOT)
        if self.eot_id is None:
            raise UserError(f"BPE tokenizer has no {EOT} token")

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Each id's own text (how a viewer shows tokens one by one)."""
        return [self.decode([i]) for i in ids]

    def single_token(self, text: str) -> int | None:
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def to_json(self) -> str:
        return self.hf.to_str()

    def save(self, directory: str | Path) -> None:
        atomic_write_text(Path(directory) / "tokenizer.json", self.to_json())

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        try:
            return cls(_tokenizers().Tokenizer.from_str(text))
        except Exception as e:  # the Rust side raises plain Exceptions for malformed files
            raise UserError(f"unreadable BPE tokenizer ({str(e).splitlines()[0][:120]})") from None


def _boosted(texts: Iterable[str], required: list[str]) -> Iterator[str | list[str]]:
    yield from texts
    for s in required:
        yield [s] * BOOST  # a batch of separate copies, so no copy runs into the next


def _pipeline(hf):
    """The METHOD 3 pre-split, then bytes to printable characters (GPT-2's byte-level scheme)."""
    tk = _tokenizers()
    hf.pre_tokenizer = tk.pre_tokenizers.Sequence([
        tk.pre_tokenizers.Split(tk.Regex(PRE_SPLIT), behavior="isolated"),
        tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = tk.decoders.ByteLevel()
    return hf


def load_gpt2_files(directory: str | Path) -> "BPETokenizer":
    """A BPE tokenizer from GPT-2-format `encoder.json` (token -> id) + `vocab.bpe` (merges)."""
    tk = _tokenizers()
    directory = Path(directory)
    try:
        model = tk.models.BPE.from_file(str(directory / "encoder.json"), str(directory / "vocab.bpe"))
    except Exception as e:  # the Rust side raises plain Exceptions for malformed files
        raise UserError(f"unreadable GPT-2 tokenizer files in {directory} ({str(e).splitlines()[0][:120]})") from None
    hf = _pipeline(tk.Tokenizer(model))
    if hf.token_to_id(EOT) is not None:
        hf.add_special_tokens([EOT])
    return BPETokenizer(hf)


def train_bpe(texts: Iterable[str], vocab_size: int = 2048, required: list[str] = ()) -> BPETokenizer:
    """Train byte-level BPE on `texts`; every string in `required` must come out as one token."""
    tk = _tokenizers()
    hf = _pipeline(tk.Tokenizer(tk.models.BPE()))
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(_boosted(texts, list(required)), trainer)
    hf.add_special_tokens([EOT])
    tok = BPETokenizer(hf)
    missing = [s for s in required if tok.single_token(s) is None]
    if missing:
        raise UserError(f"BPE training left task token(s) split: {', '.join(map(repr, missing[:8]))}")
    return tok


def looks_like_bpe(data: dict) -> bool:
    return isinstance(data.get("model"), dict) and data["model"].get("type") == "BPE"
