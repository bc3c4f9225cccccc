"""Model configuration (METHOD 1): every architectural option of the weight-sparse transformer."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError

# The eight places AbsTopK can act, in forward order (METHOD 1).
ABSTOPK_LOCATIONS = ("attn_in", "attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")


@dataclass
class ModelConfig:
    vocab_size: int = 12
    block_size: int = 16
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    d_head: int = 16
    d_mlp: int = 512
    norm: str = "rmsnorm"            # rmsnorm | layernorm | none
    activation: str = "gelu"         # gelu | gelu_tanh (GPT-2's) | relu
    pos_emb: str = "none"            # none | learned | alibi (a fixed per-head recency bias)
    bigram: bool = True              # dense vocab x vocab logit table, never sparsified
    sink: bool = False               # per-head attention sink logit
    bias: bool = True
    tied: bool = False               # tie unembedding to the token embedding
    afrac: float | None = None       # AbsTopK keeps round(afrac * width) entries; None = off
    abstopk_locations: tuple[str, ...] = field(default_factory=lambda: ABSTOPK_LOCATIONS)
    final_logit_bias: bool = False   # a fixed per-token bias added to the logits (imported models)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "d_model", "n_head", "d_head", "d_mlp"):
            if getattr(self, name) < 1:
                raise UserError(f"model config '{name}' must be >= 1, got {getattr(self, name)}")
        for name, allowed in (("norm", ("rmsnorm", "layernorm", "none")),
                              ("activation", ("gelu", "gelu_tanh", "relu")), ("pos_emb", ("none", "learned", "alibi"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"model config '{name}' must be one of {'/'.join(allowed)}, got {getattr(self, name)!r}")
        self.abstopk_locations = tuple(self.abstopk_locations)
        bad = [loc for loc in self.abstopk_locations if loc not in ABSTOPK_LOCATIONS]
        if bad:
            raise UserError(f"unknown AbsTopK location(s) {', '.join(bad)}; known: {', '.join(ABSTOPK_LOCATIONS)}")
        if self.afrac is not None:
            if not 0 < self.afrac <= 1:
                raise UserError(f"afrac must be in (0, 1], got {self.afrac}")
            for loc in self.abstopk_locations:
                if self.abstopk_k(loc) < 1:
                    raise UserError(f"afrac {self.afrac} keeps no entry at {loc} (width {self.width(loc)})")

    @property
    def d_attn(self) -> int:
        return self.n_head * self.d_head

    def width(self, loc: str) -> int:
        """Width of the last dim at an AbsTopK location (q/k/v: all heads jointly)."""
        if loc in ("attn_q", "attn_k", "attn_v"):
            return self.d_attn
        return self.d_mlp if loc == "mlp_neuron" else self.d_model

    def abstopk_k(self, loc: str) -> int | None:
        """Entries AbsTopK keeps at `loc`, or None where it is off."""
        if self.afrac is None or loc not in self.abstopk_locations:
            return None
        return int(round(self.afrac * self.width(loc)))
