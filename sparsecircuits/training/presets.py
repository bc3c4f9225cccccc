"""Named run configurations for Python code (METHOD 3 recipe).

`python-tiny` / `python-tiny-dense` finish on 2 CPU cores in under 30 minutes and score 7-9 of the 20
tasks; `python-tiny-long` (twice the steps) scores 10. The `python-paper-*`
presets are the paper's sweep shapes for a GPU (8 layers, d_head 16, context 256, afrac 1/8), widened
by `ef` at a fixed number of nonzero weights (density / ef^2 for matrices).
"""
from __future__ import annotations

from ..errors import UserError
from ..model.config import ModelConfig
from .config import DataConfig, RunConfig, TrainConfig


def _tiny(corpus: str, density: float, lr: float, steps: int) -> RunConfig:
    """4 layers x d_model 128, steps of 32 x 128 tokens: sized to finish on 2 CPU cores in under 30 minutes.

    ALiBi rather than no positions: at this budget the tasks' choices hang on the nearest earlier
    keyword, which a model without positions finds slowly (README, "Presets").
    """
    model = ModelConfig(vocab_size=2048, block_size=128, n_layer=4, d_model=128, n_head=8, d_head=16, d_mlp=512,
                        pos_emb="alibi", bigram=True, sink=True)
    train = TrainConfig(steps=steps, batch_size=32, lr=lr, density=density, anneal_start=0.01, anneal_end=0.5,
                        checkpoint_every=250, device="auto")
    return RunConfig(model=model, data=DataConfig(kind="corpus", path=corpus), train=train)


def _paper(corpus: str, ef: int) -> RunConfig:
    d = 256 * ef
    model = ModelConfig(vocab_size=2048, block_size=256, n_layer=8, d_model=d, n_head=d // 16, d_head=16,
                        d_mlp=4 * d, pos_emb="none", bigram=True, sink=True, afrac=1 / 8)
    train = TrainConfig(steps=100_000, batch_size=64, lr=1e-2, density=1 / (8 * ef * ef), anneal_start=0.01,
                        anneal_end=0.5, checkpoint_every=1000, device="auto")
    return RunConfig(model=model, data=DataConfig(kind="corpus", path=corpus), train=train)


PRESETS = {
    "python-tiny": lambda corpus: _tiny(corpus, 1 / 3, 4e-2, 6500),  # chosen on the tasks and time (README table)
    "python-tiny-dense": lambda corpus: _tiny(corpus, 1.0, 2e-2, 6500),
    "python-tiny-long": lambda corpus: _tiny(corpus, 1 / 3, 4e-2, 13000),  # 10 of 20 tasks (README table)
    **{f"python-paper-{ef}x": (lambda corpus, ef=ef: _paper(corpus, ef)) for ef in (1, 2, 4, 8)},
}


def preset(name: str, corpus: str) -> RunConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name](corpus)
