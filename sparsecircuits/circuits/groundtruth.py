"""Hand-built models whose circuit is known: a planted path that computes the answer, beside active
components that do not matter. They check a pruner against the truth (tests, `benchmarks/prune.py`).

Both tasks ask which letter, `A` or `B`, stands at position KEY of the prompt, among fillers that
carry the same sign on the same channel, so only an attention head that looks at position KEY can
answer (KEY is not 0: causal attention spread evenly would favour the first token). The attention
logits on the planted path are large (saturated softmax), the case where a straight-through
gradient vanishes. No norms, so an unread channel cannot matter.

- `first_token_model`: one head moves the letter to the last position; one ReLU neuron of the next
  layer reads it and writes the channel the unembedding reads (10 planted nodes).
- `two_hop_model`: a layer-0 head moves the letter to a `|` at position BAR_POS; a layer-1 head at
  the last position reads it from there (14 planted nodes).

Distractors read the fillers and positions through other heads and neurons and write channels that
nothing on the path reads.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..data.tokenizer import CharTokenizer
from ..model.config import ModelConfig
from ..model.transformer import SparseTransformer
from ..tasks.base import Example, Task

CHARS = "ABabxy|="
SIGN, NOISE, QUERY, KEY_MARK, BAR = 0, 1, 2, 3, 8   # residual channels the embeddings write
D_HEAD, SHARP, PROMPT_LEN, KEY, BAR_POS = 8, 16.0, 10, 5, 7
# On the path q and k are SHARP * marker - SHARP / PROMPT_LEN: 14.4 where the marker is, -1.6
# elsewhere (an attention logit of 73), and 0 on average over a prompt, so a mean-ablated q or k
# attends uniformly and the fillers drown the answer.


@dataclass
class PlantedModel:
    model: SparseTransformer
    task: Task
    planted: dict[str, list[int]]   # the circuit: {site: channels}

    @property
    def n_planted(self) -> int:
        return sum(len(v) for v in self.planted.values())

    def planted_gates(self, sites: dict[str, int]) -> dict[str, torch.Tensor]:
        """0/1 gates over `sites` ({site: width}) that keep exactly the planted nodes."""
        gates = {site: torch.zeros(w) for site, w in sites.items()}
        for site, chans in self.planted.items():
            gates[site][chans] = 1.0
        return gates


def _config() -> ModelConfig:
    return ModelConfig(vocab_size=len(CHARS), block_size=PROMPT_LEN, n_layer=2, d_model=32, n_head=4, d_head=D_HEAD,
                       d_mlp=32, norm="none", activation="relu", pos_emb="learned", bigram=False, bias=True,
                       final_logit_bias=True)


def _task(name: str, with_bar: bool) -> Task:
    """Contrast pairs `abxyaAx|b=` / `abxyaBx|b=` with the same fillers; the answer is the letter at KEY."""
    def make(rng: random.Random):
        fill = [rng.choice("abxy") for _ in range(PROMPT_LEN - 1)]
        if with_bar:
            fill[BAR_POS] = "|"

        def prompt(letter):
            return "".join(fill[:KEY]) + letter + "".join(fill[KEY + 1:]) + "="
        return Example(prompt("A"), "A", "B"), Example(prompt("B"), "B", "A")
    return Task(name=name, description=f"the letter at position {KEY}, A or B", make=make, candidates=("A", "B"))


def _base(seed: int) -> SparseTransformer:
    """Embeddings, distractors and unembedding shared by both models; the path is added after."""
    g = torch.Generator().manual_seed(seed)
    model = SparseTransformer(_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        ids = {c: i for i, c in enumerate(CHARS)}
        for c, s in (("A", 1), ("B", -1), ("a", 1), ("b", -1)):
            model.wte.weight[ids[c], SIGN] = s           # the fillers a/b contradict the answer
        for c, s in (("a", 1), ("b", 1), ("x", 1), ("y", -1)):
            model.wte.weight[ids[c], NOISE] = s
        model.wte.weight[ids["="], QUERY] = 1
        model.wte.weight[ids["|"], BAR] = 1
        model.wpe.weight[KEY, KEY_MARK] = 1
        model.wpe.weight[:, 12:16] = torch.randn(PROMPT_LEN, 4, generator=g)  # positions, read by distractors
        A = model.cfg.d_attn
        for layer, block in enumerate(model.blocks):                 # head 3: an active distractor
            w, h = block.attn.c_attn.weight, 3 * D_HEAD
            for j, ch in enumerate((NOISE, 12, 13)):
                w[h + j, ch] = 1.0
                w[A + h + j, 14 + j % 2] = 1.0
                w[2 * A + h + j, ch] = 1.0
                block.attn.c_proj.weight[20 + layer, h + j] = 1.0
            fc, proj = block.mlp.c_fc, block.mlp.c_proj                # neurons 8..23: distractors
            for n in range(8, 24):
                for ch in (NOISE, 12, 13, 14, 20, 21):
                    fc.weight[n, ch] = float(torch.randn((), generator=g))
                fc.bias[n] = 0.5
                proj.weight[24 + n % 6, n] = 1.0
        model.lm_head.weight[ids["A"], 5] = 8.0                      # logit A - logit B = 16 * ch5 - 4
        model.lm_head.weight[ids["B"], 5] = -8.0
        model.final_logits_bias[ids["B"]] = 4.0
    model.tokenizer = CharTokenizer(CHARS)
    return model


def _head(block, head: int, q_from: int, k_from: int, v_from: int, writes: int) -> None:
    """Head `head` attends from the marker `q_from` to the marker `k_from` and copies `v_from`."""
    A, h = block.attn.c_attn.weight.shape[0] // 3, head * D_HEAD
    for row, marker in ((h, q_from), (A + h, k_from)):
        block.attn.c_attn.weight[row, marker] = SHARP
        block.attn.c_attn.bias[row] = -SHARP / PROMPT_LEN
    block.attn.c_attn.weight[2 * A + h, v_from] = 1.0
    block.attn.c_proj.weight[writes, h] = 1.0


@torch.no_grad()
def first_token_model(seed: int = 0) -> PlantedModel:
    model = _base(seed)
    b0, b1 = model.blocks
    _head(b0, 0, QUERY, KEY_MARK, SIGN, writes=4)
    b1.mlp.c_fc.weight[0, 4] = 1.0              # relu(ch4): 1 for A, 0 for B
    b1.mlp.c_proj.weight[5, 0] = 1.0
    planted = {"0.attn.act_in": [SIGN, QUERY, KEY_MARK], "0.attn.q": [0], "0.attn.k": [0], "0.attn.v": [0],
               "0.attn.resid_delta": [4], "1.mlp.act_in": [4], "1.mlp.post_act": [0], "1.mlp.resid_delta": [5]}
    return PlantedModel(model, _task("first_token", with_bar=False), planted)


@torch.no_grad()
def two_hop_model(seed: int = 0) -> PlantedModel:
    model = _base(seed)
    b0, b1 = model.blocks
    _head(b0, 0, BAR, KEY_MARK, SIGN, writes=4)    # at `|`: ch4 = the letter's sign
    _head(b1, 0, QUERY, BAR, 4, writes=5)       # at `=`: ch5 = ch4 at `|`
    planted = {"0.attn.act_in": [SIGN, KEY_MARK, BAR], "0.attn.q": [0], "0.attn.k": [0], "0.attn.v": [0],
               "0.attn.resid_delta": [4], "1.attn.act_in": [QUERY, 4, BAR], "1.attn.q": [0], "1.attn.k": [0],
               "1.attn.v": [0], "1.attn.resid_delta": [5]}
    return PlantedModel(model, _task("two_hop", with_bar=True), planted)


PLANTED = {"first_token": first_token_model, "two_hop": two_hop_model}
