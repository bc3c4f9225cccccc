"""Information flow over token positions (the `36+28=00064` pictures of the user's documents): how
much of each position reaches each later position through the circuit's attention heads, layer by
layer."""
from __future__ import annotations

import torch

MIN_STRENGTH = 0.02  # drop links weaker than this fraction of the prompt's strongest


@torch.no_grad()
def flow_strengths(model, circuit, pruner, tokens: torch.Tensor, lengths: list[int]) -> list[list[list]]:
    """For each prompt, per layer, `[target i, source j, strength]` links (j < i). Strength =
    sum over heads of attention(i -> j) x |the kept value channels of j projected onto the kept
    residual writes|, from the circuit-ablated forward pass, scaled so the prompt's strongest is 1."""
    cfg, B = model.cfg, len(tokens)
    H, D = cfg.n_head, cfg.d_head
    seen: dict[str, torch.Tensor] = {}

    def record(x, name):
        seen[name] = x.detach().float()

    gates = circuit.gates(cfg, pruner.device)
    pruner.forward(tokens, gates, [(f"{L}.attn.{p}", record) for L in range(cfg.n_layer) for p in ("v", "pattern")])
    layers = []
    for L, block in enumerate(model.blocks):
        v = seen[f"{L}.attn.v"].view(B, -1, H, D).transpose(1, 2)
        att = seen[f"{L}.attn.pattern"].cpu()                              # (B, H, T, T)
        writes = circuit.nodes.get(f"{L}.attn.resid_delta", [])
        kept_v = circuit.nodes.get(f"{L}.attn.v", [])
        strength = torch.zeros(att.shape[0], att.shape[2], att.shape[3])
        w_out = block.attn.c_proj.weight.float().cpu()
        for h in range(H):
            chans = [c for c in kept_v if c // D == h]
            if not chans or not writes:
                continue
            value = v[:, h, :, :].cpu()[..., [c - h * D for c in chans]]     # (B, T, |chans|)
            moved = (value @ w_out[writes][:, chans].T).norm(dim=-1)          # (B, T) per source position
            strength += att[:, h] * moved[:, None, :]
        layers.append(strength)
    out = []
    for b, n in enumerate(lengths):
        per_layer = [s[b, :n, :n].tril(-1) for s in layers]
        top = max(float(s.max()) for s in per_layer) or 1.0
        prompt = []
        for s in per_layer:
            s = s / top
            prompt.append([[i, j, round(float(s[i, j]), 3)] for i, j in torch.nonzero(s >= MIN_STRENGTH).tolist()])
        out.append(prompt)
    return out
