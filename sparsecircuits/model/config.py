"""Model configuration (METHOD 1): every architectural option of the weight-sparse transformer."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import UserError, check_number

# Upper bounds on each size: beyond them a config is a typo, whatever the memory would allow.
SIZE_LIMITS = {"vocab_size": 2 ** 24, "block_size": 2 ** 20, "n_layer": 1024, "d_model": 2 ** 16, "n_head": 1024,
               "d_head": 2 ** 12, "d_mlp": 2 ** 18}

# The eight node locations of a layer (METHOD 2), in forward order, each spelled once:
# (hook name within the layer, which is also the node's location; AbsTopK's alias; the width's field).
LOCATIONS = (
    ("attn.act_in", "attn_in", "d_model"),
    ("attn.q", "attn_q", "d_attn"),
    ("attn.k", "attn_k", "d_attn"),
    ("attn.v", "attn_v", "d_attn"),
    ("attn.resid_delta", "attn_out", "d_model"),
    ("mlp.act_in", "mlp_in", "d_model"),
    ("mlp.post_act", "mlp_neuron", "d_mlp"),
    ("mlp.resid_delta", "mlp_out", "d_model"),
)
NODE_LOCATIONS = tuple(hook for hook, _, _ in LOCATIONS)
ABSTOPK_LOCATIONS = tuple(alias for _, alias, _ in LOCATIONS)  # the places AbsTopK can act (METHOD 1)
_WIDTH_FIELD = {name: width for hook, alias, width in LOCATIONS for name in (hook, alias)}


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
    norm_eps: float | None = 1e-5    # None: the dtype's machine epsilon (torch's RMSNorm default)
    activation: str = "gelu"         # gelu | gelu_tanh (GPT-2's) | relu
    pos_emb: str = "none"            # none | learned | alibi (a fixed per-head recency bias)
    bigram: bool = True              # dense vocab x vocab logit table, never sparsified
    sink: bool = False               # per-head attention sink logit
    bias: bool = True
    tied: bool = False               # tie unembedding to the token embedding
    afrac: float | None = None       # AbsTopK keeps round(afrac * width) entries; None = off
    abstopk_locations: tuple[str, ...] = field(default_factory=lambda: ABSTOPK_LOCATIONS)
    final_logit_bias: bool = False   # a fixed per-token bias added to the logits (imported models)
    causal: bool = True              # False: every position sees every other (imported bidirectional models)

    def __post_init__(self):
        for name, limit in SIZE_LIMITS.items():
            value = check_number(f"model config '{name}'", getattr(self, name), low=1, integer=True)
            if value > limit:
                raise UserError(f"model config '{name}' is too large: {value:,} (at most {limit:,})")
        for name, allowed in (("norm", ("rmsnorm", "layernorm", "none")),
                              ("activation", ("gelu", "gelu_tanh", "relu")), ("pos_emb", ("none", "learned", "alibi"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"model config '{name}' must be one of {'/'.join(allowed)}, got {getattr(self, name)!r}")
        if self.norm_eps is not None and not (isinstance(self.norm_eps, (int, float)) and 0 <= self.norm_eps < 1):
            raise UserError(f"model config 'norm_eps' must be a number in [0, 1) or null, got {self.norm_eps!r}")
        if self.norm_eps is None and self.norm == "layernorm":
            raise UserError("model config 'norm_eps' must be a number for layernorm")
        self.abstopk_locations = tuple(self.abstopk_locations)
        bad = [loc for loc in self.abstopk_locations if loc not in ABSTOPK_LOCATIONS]
        if bad:
            raise UserError(f"unknown AbsTopK location(s) {', '.join(bad)}; known: {', '.join(ABSTOPK_LOCATIONS)}")
        if self.afrac is not None:
            check_number("model config 'afrac'", self.afrac, low=0, high=1, low_open=True)
            for loc in self.abstopk_locations:
                if self.abstopk_k(loc) < 1:
                    raise UserError(f"afrac {self.afrac} keeps no entry at {loc} (width {self.width(loc)})")

    def n_floats(self) -> int:
        """Floats the model holds: parameters and the attention mask (what building it allocates)."""
        d, a, m, v, T = self.d_model, self.d_attn, self.d_mlp, self.vocab_size, self.block_size
        per_layer = d * 3 * a + 3 * a + a * d + d + 2 * d * m + m + d + 2 * d + self.n_head
        embed = v * d * (1 if self.tied else 2) + (T * d if self.pos_emb == "learned" else 0)
        mask = T * (T + 1) * (self.n_head if self.pos_emb == "alibi" else 1)
        return self.n_layer * per_layer + embed + (v * v if self.bigram else 0) + 2 * d + mask

    @property
    def d_attn(self) -> int:
        return self.n_head * self.d_head

    def width(self, loc: str) -> int:
        """Width of the last dim at a location, by hook name or AbsTopK alias (q/k/v: all heads jointly)."""
        return getattr(self, _WIDTH_FIELD[loc])

    def abstopk_k(self, loc: str) -> int | None:
        """Entries AbsTopK keeps at `loc`, or None where it is off."""
        if self.afrac is None or loc not in self.abstopk_locations:
            return None
        return int(round(self.afrac * self.width(loc)))


def check_fits(cfg: ModelConfig) -> None:
    """Refuse, before allocating, a model whose weights alone would not fit in this machine's memory."""
    need = 4 * cfg.n_floats()
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise UserError(f"model too large: {cfg.n_floats():,} floats ({need / 2 ** 30:,.1f} GiB) do not fit in this "
                        f"machine's {have / 2 ** 30:.1f} GiB of memory")
