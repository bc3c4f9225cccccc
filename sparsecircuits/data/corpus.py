"""A corpus of real Python code, tokenized and packed into memory-mapped uint16 shards.

`build_corpus` collects `.py` files (default: this Python's standard library without its tests),
drops exact duplicates and files that are not UTF-8, splits train/validation by file using the
content hash (deterministic, never by line), trains the BPE, and writes, all at once by renaming a
finished temp directory: `tokenizer.json`, `train_000.bin ...`, `val_000.bin ...` and
`manifest.json` (files, token counts, hashes). `Corpus` reads random windows from the shards
through `np.memmap`, never loading them whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import new_dir
from ..errors import UserError, check_number
from .bpe import BPETokenizer, train_bpe

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
SHARD_TOKENS = 1 << 24
MANIFEST = "manifest.json"


def default_sources() -> list[Path]:
    return [Path(sysconfig.get_paths()["stdlib"])]


def collect_python_files(sources: list[Path], skip_tests: bool) -> list[Path]:
    files: list[Path] = []
    for src in sources:
        if src.is_file():
            files.append(src)
            continue
        if not src.is_dir():
            raise UserError(f"source {src} does not exist")
        for root, dirs, names in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not (d in SKIP_DIRS and (skip_tests or d == "__pycache__")))
            files.extend(Path(root) / n for n in sorted(names) if n.endswith(".py") and (Path(root) / n).is_file())
    return files


def read_unique_utf8(files: list[Path]) -> tuple[list[dict], int, int]:
    """Decoded files as {path, sha256, text}, first copy of each content kept; (+ skipped counts)."""
    seen: set[str] = set()
    out, not_utf8, duplicate = [], 0, 0
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            duplicate += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
            continue
        if not text.strip():
            continue
        seen.add(digest)
        out.append({"path": str(path), "sha256": digest, "text": text})
    return out, not_utf8, duplicate


def is_validation(sha256: str, val_percent: float) -> bool:
    """Deterministic split by content hash: the same file lands in the same split on every machine."""
    return int(sha256[:8], 16) % 10_000 < val_percent * 100


def build_corpus(out: str | Path, sources: list[str | Path] | None = None, vocab_size: int = 2048,
                 val_percent: float = 5.0, required_tokens: list[str] = (), progress=print) -> dict:
    """Build a corpus directory at `out`, which must not exist yet (one rename makes it, so a killed
    build leaves nothing half-written); return its manifest."""
    out = Path(out)
    if out.exists():
        kind = "a file" if not out.is_dir() else "a folder that is not empty" if any(out.iterdir()) else "a folder"
        raise UserError(f"--out {out} already exists ({kind}): a corpus is written into a new folder, nothing is "
                        "replaced")
    check_number("vocab_size", vocab_size, 260, 65536, integer=True)   # 256 bytes + specials; uint16 shards
    check_number("val_percent", val_percent, 0, 100)
    default = not sources
    paths = [Path(s) for s in sources] if sources else default_sources()
    files = collect_python_files(paths, skip_tests=default)
    if not files:
        raise UserError(f"no Python files under {', '.join(map(str, paths))}")
    docs, not_utf8, duplicate = read_unique_utf8(files)
    if not docs:
        raise UserError(f"no UTF-8 Python files with content under {', '.join(map(str, paths))}")
    if not 0 <= val_percent < 100:
        raise UserError(f"val_percent must be in [0, 100), got {val_percent}")
    for d in docs:
        d["split"] = "val" if is_validation(d["sha256"], val_percent) else "train"
    if not any(d["split"] == "train" for d in docs):
        raise UserError("every file fell into the validation split; lower val_percent or add files")
    progress(f"{len(docs)} files ({not_utf8} not UTF-8, {duplicate} duplicates dropped); training BPE ...")
    tok = train_bpe([d["text"] for d in docs if d["split"] == "train"], vocab_size, required_tokens)
    progress("tokenizing ...")
    for d, ids in zip(docs, tok.encode_batch([d["text"] for d in docs])):
        d["ids"] = ids
    manifest = {"version": 1, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                "sources": [str(p) for p in paths], "val_percent": val_percent,
                "skipped": {"not_utf8": not_utf8, "duplicates": duplicate}, "splits": {}, "files": []}
    with new_dir(out) as tmp:
        tok.save(tmp)
        manifest["tokenizer_sha256"] = hashlib.sha256((tmp / "tokenizer.json").read_bytes()).hexdigest()
        for split in ("train", "val"):
            stream: list[int] = []
            for d in docs:
                if d["split"] == split:
                    manifest["files"].append({"path": d["path"], "sha256": d["sha256"], "split": split,
                                              "tokens": len(d["ids"])})
                    stream.extend(d["ids"])
                    stream.append(tok.eot_id)  # end-of-text between files
            manifest["splits"][split] = _write_shards(tmp, split, np.asarray(stream, dtype=np.uint16))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _write_shards(directory: Path, split: str, tokens: np.ndarray) -> dict:
    shards = []
    for i, start in enumerate(range(0, max(len(tokens), 1), SHARD_TOKENS)):
        chunk = tokens[start:start + SHARD_TOKENS]
        name = f"{split}_{i:03d}.bin"
        chunk.tofile(directory / name)
        shards.append({"file": name, "tokens": int(len(chunk)), "sha256": hashlib.sha256(chunk.tobytes()).hexdigest()})
    return {"tokens": int(len(tokens)), "shards": shards}


@dataclass
class _Split:
    arrays: list[np.memmap]
    starts: np.ndarray   # cumulative token offsets of the shards
    tokens: int


class Corpus:
    """A built corpus: its tokenizer and memory-mapped token shards, checked against the manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"corpus directory {self.path} does not exist")
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
            splits = self.manifest["splits"]
            eot = int(self.manifest["eot_id"])
        except FileNotFoundError:
            raise UserError(f"{self.path} has no {MANIFEST}: not a corpus (build one with `corpus build`)") from None
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise UserError(f"{self.path / MANIFEST} is corrupt ({type(e).__name__}: {e})") from None
        tok_path = self.path / "tokenizer.json"
        if not tok_path.exists():
            raise UserError(f"corpus {self.path} has no tokenizer.json")
        tok_text = tok_path.read_bytes()
        if hashlib.sha256(tok_text).hexdigest() != self.manifest.get("tokenizer_sha256"):
            raise UserError(f"{tok_path} does not match the manifest's hash")
        self.tokenizer = BPETokenizer.from_json(tok_text.decode("utf-8"))
        if self.tokenizer.eot_id != eot:
            raise UserError(f"corpus tokenizer end-of-text id {self.tokenizer.eot_id} != manifest {eot}")
        try:
            self.splits = {name: self._open(spec) for name, spec in splits.items()}
        except UserError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a manifest field of the wrong type
            raise UserError(f"{self.path / MANIFEST} is corrupt ({type(e).__name__}: {e})") from None

    def _open(self, spec: dict) -> _Split:
        arrays = []
        for shard in spec["shards"]:
            f = self.path / shard["file"]
            if not f.exists() or f.stat().st_size != 2 * shard["tokens"]:
                raise UserError(f"corpus shard {f} is missing or has the wrong size (corrupt corpus)")
            arr = np.memmap(f, dtype=np.uint16, mode="r") if shard["tokens"] else np.zeros(0, np.uint16)
            if hashlib.sha256(arr.tobytes()).hexdigest() != shard["sha256"]:
                raise UserError(f"corpus shard {f} does not match its hash in the manifest (corrupt corpus)")
            if shard["tokens"] and int(arr.max()) >= self.vocab_size:
                raise UserError(f"corpus shard {f} holds token ids outside the vocabulary")
            arrays.append(arr)
        lengths = [len(a) for a in arrays]
        return _Split(arrays, np.cumsum([0] + lengths), int(sum(lengths)))

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    def window(self, split: str, start: int, length: int) -> np.ndarray:
        """`length` tokens from global offset `start` of `split`, crossing shard edges if needed."""
        s = self.splits[split]
        out, pos = [], start
        while len(out) == 0 or sum(len(o) for o in out) < length:
            i = int(np.searchsorted(s.starts, pos, side="right") - 1)
            offset = pos - int(s.starts[i])
            take = min(length - sum(len(o) for o in out), len(s.arrays[i]) - offset)
            out.append(np.asarray(s.arrays[i][offset:offset + take]))
            pos += take
        return np.concatenate(out) if len(out) > 1 else out[0]

    def batch(self, split: str, starts: list[int], length: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.window(split, s, length) for s in starts]).astype(np.int64))


class CorpusData:
    """Training data from a corpus: random context windows, a pure function of (seed, step)."""

    def __init__(self, path: str | Path, block_size: int, seed: int = 0, val_windows: int = 256):
        self.corpus = Corpus(path)
        self.tokenizer = self.corpus.tokenizer
        self.block_size, self.seed, self.val_windows = block_size, seed, val_windows
        for split in ("train", "val"):
            if split in self.corpus.splits and 0 < self.corpus.splits[split].tokens <= block_size + 1:
                raise UserError(f"corpus {split} split ({self.corpus.splits[split].tokens} tokens) is shorter "
                                f"than one context window of {block_size + 1}")

    def train_batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1)
        high = self.corpus.splits["train"].tokens - self.block_size - 1
        starts = torch.randint(0, high + 1, (batch_size,), generator=g).tolist()
        tokens = self.corpus.batch("train", starts, self.block_size + 1)
        return tokens[:, :-1], tokens[:, 1:]

    def val_batches(self, batch_size: int = 32):
        """A fixed set of evenly spaced validation windows (the same for every model)."""
        split = self.corpus.splits.get("val")
        if split is None or split.tokens <= self.block_size + 1:
            return
        n = min(self.val_windows, (split.tokens - 1) // self.block_size)
        span = (split.tokens - self.block_size - 1) / max(1, n - 1) if n > 1 else 0
        starts = [int(i * span) for i in range(n)]
        for i in range(0, n, batch_size):
            tokens = self.corpus.batch("val", starts[i:i + batch_size], self.block_size + 1)
            yield tokens[:, :-1], tokens[:, 1:]
