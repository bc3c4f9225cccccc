import pytest
import torch

import sparsecircuits as sc
from sparsecircuits import DataConfig, ModelConfig, RunConfig, SparseTransformer, TrainConfig
from sparsecircuits.data.corpus import build_corpus
from sparsecircuits.tasks import required_tokens


SLOW_FIXTURES = {"adder", "stdlib_corpus", "quick_sweep"}  # each trains a model or builds a corpus
SLOW_MODULES = {"test_demo", "test_distributed", "test_bad_input", "test_viz", "test_bridges"}


def pytest_collection_modifyitems(items):
    """Mark as slow every test that trains, prunes or starts processes, so that
    `pytest -m "not slow"` runs the fast ones in seconds (CI runs all)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_config(**kw) -> ModelConfig:
    base = dict(vocab_size=12, block_size=16, n_layer=2, d_model=32, n_head=2, d_head=8, d_mlp=64,
                pos_emb="learned")
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def small_model() -> SparseTransformer:
    return SparseTransformer(small_config()).eval()


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory):
    """The default corpus: this Python's standard library without its tests (about 10 s to build)."""
    path = tmp_path_factory.mktemp("corpus") / "stdlib"
    build_corpus(path, required_tokens=required_tokens(), progress=lambda m: None)
    return path


@pytest.fixture(scope="session")
def adder(tmp_path_factory):
    """A small dense model trained on 2-digit addition: sure of the last digit, so worth pruning."""
    path = tmp_path_factory.mktemp("adder") / "m"
    run = RunConfig(model=small_config(d_model=48, d_mlp=128, n_head=4),
                    data=DataConfig(n_digits=2),
                    train=TrainConfig(steps=400, batch_size=128, lr=1e-2, density=1.0, autocast="none"))
    sc.train(run, path, progress=False)
    return path
