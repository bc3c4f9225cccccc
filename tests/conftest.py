import pytest
import torch

from sparsecircuits import ModelConfig, SparseTransformer


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
