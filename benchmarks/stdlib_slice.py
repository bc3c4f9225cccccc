"""A small corpus for the code benchmarks: four packages of this Python's standard library."""
from __future__ import annotations

import sysconfig
from pathlib import Path

from sparsecircuits.data.corpus import build_corpus

PACKAGES = ("json", "email", "asyncio", "unittest")
HELP = "a built corpus (default: one built from a slice of the standard library)"


def corpus_or_slice(corpus: str | None, tmp: str) -> str:
    """`corpus` if given, else a corpus of PACKAGES built under `tmp`."""
    if corpus is not None:
        return corpus
    path = str(Path(tmp) / "corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    build_corpus(path, [stdlib / name for name in PACKAGES], progress=lambda *a: None)
    return path
