"""The weight-sparse GPT (METHOD 1), written to be read top to bottom like nanoGPT's model.py.

Hook names follow METHOD 2: `{layer}.attn.q`, `{layer}.mlp.post_act`, `final_resid`, ...
AbsTopK acts before the hook at its location, so hooks see what the next layer reads. The hook
methods (`run_with_cache`, `run_with_hooks`, `hooked`) are `hooks.Hooked`'s.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig, check_fits
from .hooks import Hooked, HookPoints, hook_names
from .loss import unembed_cross_entropy


def abs_topk(x: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k entries of largest magnitude along the last dim, zero the rest (k=None: identity)."""
    if k is None or k >= x.shape[-1]:
        return x
    idx = x.abs().topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


class Norm(nn.Module):
    """RMSNorm or LayerNorm (torch's computation) whose divisor, shape (B, T, 1), passes through a hook
    (`0.attn.norm_scale`, ..., `final_norm_scale`), so it can be read, or frozen by the pruner's control."""

    def __init__(self, cfg: ModelConfig, hooks: HookPoints, name: str):
        super().__init__()
        self.hooks, self.name, self.centred, self.eps = hooks, name, cfg.norm == "layernorm", cfg.norm_eps
        self.weight = nn.Parameter(torch.ones(cfg.d_model))
        self.bias = nn.Parameter(torch.zeros(cfg.d_model)) if self.centred and cfg.bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        if self.centred:
            h = h - h.mean(-1, keepdim=True)
        eps = self.eps if self.eps is not None else torch.finfo(h.dtype).eps
        scale = self.hooks(self.name, (h.pow(2).mean(-1, keepdim=True) + eps).sqrt())
        h = h / scale * self.weight
        return (h + self.bias if self.bias is not None else h).type_as(x)


def make_norm(cfg: ModelConfig, hooks: HookPoints, name: str) -> nn.Module:
    return Norm(cfg, hooks, name) if cfg.norm in ("rmsnorm", "layernorm") else nn.Identity()


def attention_mask(cfg: ModelConfig) -> torch.Tensor:
    """Additive logits over [sink key, key 0, ..., key T-1]: -inf on future keys (unless the model is
    not causal), the sink column open.

    With ALiBi, head h also adds -m_h * |i - j| for query i and key j (m_h = 2^(-8(h+1)/H)): a fixed
    recency bias, so a head can find the nearest earlier token of a kind without a position embedding.
    """
    T = cfg.block_size
    future = torch.ones(T, T).triu(1).bool() if cfg.causal else torch.zeros(T, T, dtype=torch.bool)
    mask = torch.zeros(T, T).masked_fill(future, float("-inf"))
    if cfg.pos_emb == "alibi":
        slopes = 2.0 ** (-8.0 * torch.arange(1, cfg.n_head + 1) / cfg.n_head)
        distance = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs()
        mask = mask - slopes[:, None, None] * distance
    return F.pad(mask, (1, 0))


class Attention(nn.Module):
    """Multi-head attention (causal unless `cfg.causal` is off) with decoupled d_head and an optional
    per-head sink logit."""

    def __init__(self, cfg: ModelConfig, layer: int, hooks: HookPoints):
        super().__init__()
        self.cfg, self.hooks, self.p = cfg, hooks, f"{layer}.attn."
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_attn, bias=cfg.bias)  # q, k, v stacked
        self.c_proj = nn.Linear(cfg.d_attn, cfg.d_model, bias=cfg.bias)
        # exp(sink_logit[h]) joins head h's softmax denominator: a key slot with zero key and value.
        self.sink_logit = nn.Parameter(torch.zeros(cfg.n_head)) if cfg.sink else None
        self.k = {loc: cfg.abstopk_k(f"attn_{loc}") for loc in ("q", "k", "v", "out")}
        self.register_buffer("mask", attention_mask(cfg), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H, D, hook, p = self.cfg.n_head, self.cfg.d_head, self.hooks, self.p
        q, k, v = self.c_attn(x).split(self.cfg.d_attn, dim=-1)
        q = hook(p + "q", abs_topk(q, self.k["q"])).view(B, T, H, D).transpose(1, 2)
        k = hook(p + "k", abs_topk(k, self.k["k"])).view(B, T, H, D).transpose(1, 2)
        v = hook(p + "v", abs_topk(v, self.k["v"])).view(B, T, H, D).transpose(1, 2)
        pattern = hook(p + "pattern", self.pattern(q, k))
        y = (pattern @ v).transpose(1, 2).reshape(B, T, H * D)
        y = hook(p + "y", y)
        return abs_topk(self.c_proj(y), self.k["out"])

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Masked attention logits (B*H, T, S) from per-head q, k (B, H, T, D); with a sink, key 0 is
        the sink (zero key, logit b_h), met by an extra constant-1 channel of q: one batched matmul."""
        B, H, T, D = q.shape
        q = q * D ** -0.5
        if self.sink_logit is not None:
            q = torch.cat([q, q.new_ones(B, H, T, 1)], dim=-1)
            b = self.sink_logit.to(k.dtype).view(1, H, 1, 1).expand(B, H, 1, 1)
            k = torch.cat([F.pad(b, (D, 0)), F.pad(k, (0, 1))], dim=2)  # sink key [0, ..., 0, b_h]
        S = k.shape[2]
        mask = self.mask[..., :T, T + 1 - S:T + 1].to(q.dtype)
        if mask.dim() == 3:  # one mask per head (ALiBi)
            mask = mask.expand(B, H, T, S).reshape(B * H, T, S)
        return torch.baddbmm(mask, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2))

    def pattern(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, H, T, T) from per-head q and k (B, H, T, D); the sink, whose value is
        zero, takes the rest of each row."""
        T = q.shape[2]
        return torch.softmax(self.scores(q, k), dim=-1)[..., -T:].unflatten(0, q.shape[:2])


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, hooks: HookPoints):
        super().__init__()
        self.hooks, self.p = hooks, f"{layer}.mlp."
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU(approximate="tanh" if cfg.activation == "gelu_tanh" else "none")
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
        self.k_neuron, self.k_out = cfg.abstopk_k("mlp_neuron"), cfg.abstopk_k("mlp_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hooks(self.p + "post_act", abs_topk(self.act(self.c_fc(x)), self.k_neuron))
        return abs_topk(self.c_proj(h), self.k_out)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, hooks: HookPoints):
        super().__init__()
        self.hooks, self.p = hooks, f"{layer}."
        self.ln_1, self.ln_2 = make_norm(cfg, hooks, f"{layer}.attn.norm_scale"), make_norm(cfg, hooks, f"{layer}.mlp.norm_scale")
        self.attn, self.mlp = Attention(cfg, layer, hooks), MLP(cfg, layer, hooks)
        self.k_attn_in, self.k_mlp_in = cfg.abstopk_k("attn_in"), cfg.abstopk_k("mlp_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hook, p = self.hooks, self.p
        x = hook(p + "resid_in", x)
        a = hook(p + "attn.act_in", abs_topk(self.ln_1(x), self.k_attn_in))
        x = x + hook(p + "attn.resid_delta", self.attn(a))
        x = hook(p + "resid_mid", x)
        m = hook(p + "mlp.act_in", abs_topk(self.ln_2(x), self.k_mlp_in))
        return x + hook(p + "mlp.resid_delta", self.mlp(m))


class SparseTransformer(Hooked, nn.Module):
    """Decoder-only transformer: LongTensor (batch, positions) -> logits (batch, positions, vocab)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_fits(cfg)
        self.cfg = cfg
        self.source, self.tokenizer = None, None  # set by `load`: the model directory and its tokenizer
        self.hooks = HookPoints(hook_names(cfg.n_layer))
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.pos_emb == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, i, self.hooks) for i in range(cfg.n_layer))
        self.ln_f = make_norm(cfg, self.hooks, "final_norm_scale")
        self.lm_head = None if cfg.tied else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.bigram = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.vocab_size)) if cfg.bigram else None
        if cfg.final_logit_bias:
            self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        else:
            self.final_logits_bias = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02); output projections N(0, 0.02 / sqrt(2 n_layer)); biases, bigram, sinks 0."""
        for name, p in self.named_parameters():
            if "ln_" in name and name.endswith(".weight"):
                continue  # norm scales start at 1
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.cfg.n_layer))
            elif p.dim() == 2 and name != "bigram":
                nn.init.normal_(p, 0.0, 0.02)
            else:
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                last: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; or, given `targets` (same shape, -1 = unscored), the mean next-token loss; or, given
        `last` (one position per sequence), the (n, vocab) logits of those positions alone: all a task
        reads, without unembedding every position."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.cfg.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(self.hooks("final_resid", x))
        if targets is not None:
            return self.chunked_loss(x, idx, targets)
        if last is not None:
            at = (torch.arange(len(idx), device=idx.device), last.to(idx.device))
            x, idx = x[at], idx[at]
        return self.logits(x, idx)

    @property
    def unembedding(self) -> torch.Tensor:
        """The (vocab, d_model) unembedding: lm_head's weight, or the token embedding when tied."""
        return self.lm_head.weight if self.lm_head is not None else self.wte.weight

    def logits(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Unembedding of the final residual `x`, plus the bigram row of each current token `idx`."""
        logits = F.linear(x, self.unembedding)
        if self.bigram is not None:
            logits = logits + F.embedding(idx, self.bigram)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        return logits

    def chunked_loss(self, x: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over scored targets without the whole (tokens x vocab) logits (model/loss.py)."""
        return unembed_cross_entropy(x.flatten(0, 1), self.unembedding, self.bigram, idx.flatten(), targets.flatten(),
                                     self.final_logits_bias)
