"""Model directories we can read besides our own, converted to a SparseTransformer on load.

- A Hugging Face GPT-2 (`config.json` with `model_type: gpt2` + `model.safetensors` or
  `pytorch_model.bin`, as `save_pretrained` writes): LayerNorm, learned positions, tied embeddings,
  GELU (tanh). HF's Conv1D stores weights as (in, out); ours are nn.Linear (out, in).
- The authors' release (`beeg_config.json` + `final_model.pt`, METHOD 8): the same blocks as ours
  under their parameter names, with their options (bigram table, sink, AbsTopK, RMSNorm, ...).
Every `.pt` is read with `weights_only=True` and must hold tensors only.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config_io import read_json
from ..errors import UserError, check_number
from .config import ABSTOPK_LOCATIONS, ModelConfig

HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
RELEASE_CONFIG, RELEASE_WEIGHTS = "beeg_config.json", "final_model.pt"


def detect_format(path: Path) -> str:
    """'sparsecircuits', 'hf-gpt2' or 'release', from the files in `path`."""
    if (path / RELEASE_CONFIG).exists():
        return "release"
    config = path / "config.json"
    if config.exists():
        data = read_json(config)
        return "hf-gpt2" if isinstance(data, dict) and ("model_type" in data or "architectures" in data) \
            else "sparsecircuits"
    raise UserError(f"{path} holds no model in a known format: expected config.json + model.safetensors "
                    f"(sparsecircuits), config.json + model.safetensors or pytorch_model.bin (Hugging Face "
                    f"GPT-2), or {RELEASE_CONFIG} + {RELEASE_WEIGHTS} (the authors' release)")


def load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"missing {path.name} in {path.parent}") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]})") from None


def load_pt(path: Path) -> dict[str, torch.Tensor]:
    """A torch state dict, loaded with weights_only=True; anything but a flat dict of tensors is refused."""
    if not path.exists():
        raise UserError(f"missing {path.name} in {path.parent}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a plain tensor file (refused by weights_only loading: {first})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint that nests the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds something other than a dict of tensors")
    return state


# ---- Hugging Face GPT-2 ---------------------------------------------------------------------------
def hf_gpt2_config(c: dict, source: str) -> ModelConfig:
    archs = c.get("architectures") or []
    kind = c.get("model_type") or (",".join(map(str, archs)) if isinstance(archs, list) else archs)
    if not isinstance(kind, str) or kind != "gpt2" and "GPT2" not in kind:
        raise UserError(f"{source}: Hugging Face architecture {kind!r} is not converted (only GPT-2)")
    act = c.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in HF_ACTIVATIONS:
        raise UserError(f"{source}: GPT-2 activation {act!r} is not converted")
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if c.get(key):
            raise UserError(f"{source}: GPT-2 option {key} is not converted")
    if c.get("scale_attn_weights") is False:
        raise UserError(f"{source}: GPT-2 without scaled attention is not converted")
    try:
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            check_number(f"{source}: GPT-2 config key '{key}'", c[key], low=1, integer=True)
        check_number(f"{source}: GPT-2 config key 'layer_norm_epsilon'", c.get("layer_norm_epsilon", 1e-5), low=0)
        d, h = c["n_embd"], c["n_head"]
        return ModelConfig(vocab_size=c["vocab_size"], block_size=c["n_positions"], n_layer=c["n_layer"], d_model=d,
                           n_head=h, d_head=d // h, d_mlp=c.get("n_inner") or 4 * d, norm="layernorm",
                           activation=HF_ACTIVATIONS[act], pos_emb="learned", bigram=False, sink=False, bias=True,
                           tied=c.get("tie_word_embeddings", True), norm_eps=c.get("layer_norm_epsilon", 1e-5))
    except KeyError as e:
        raise UserError(f"{source} lacks the GPT-2 config key {e.args[0]!r}") from None


def hf_gpt2_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    sd = {k.removeprefix("transformer."): v for k, v in state.items()}
    out = {"wte.weight": sd.get("wte.weight"), "wpe.weight": sd.get("wpe.weight"),
           "ln_f.weight": sd.get("ln_f.weight"), "ln_f.bias": sd.get("ln_f.bias")}
    for i in range(cfg.n_layer):
        for ours, theirs, conv in (("ln_1", "ln_1", False), ("attn.c_attn", "attn.c_attn", True),
                                   ("attn.c_proj", "attn.c_proj", True), ("ln_2", "ln_2", False),
                                   ("mlp.c_fc", "mlp.c_fc", True), ("mlp.c_proj", "mlp.c_proj", True)):
            w = sd.get(f"h.{i}.{theirs}.weight")
            out[f"blocks.{i}.{ours}.weight"] = w.T.contiguous() if conv and w is not None else w
            out[f"blocks.{i}.{ours}.bias"] = sd.get(f"h.{i}.{theirs}.bias")
    if not cfg.tied:
        out["lm_head.weight"] = sd.get("lm_head.weight")
    return {k: v for k, v in out.items() if v is not None}


def read_hf_gpt2(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    cfg = hf_gpt2_config(read_json(path / "config.json"), str(path / "config.json"))
    if (path / "model.safetensors").exists():
        weights = path / "model.safetensors"
        state = load_state(weights)
    elif (path / "pytorch_model.bin").exists():
        weights = path / "pytorch_model.bin"
        state = load_pt(weights)
    else:
        raise UserError(f"{path} has a GPT-2 config.json but neither model.safetensors nor pytorch_model.bin")
    return cfg, hf_gpt2_state(state, cfg), str(weights)


# ---- the authors' release (METHOD 8) --------------------------------------------------------------
def release_config(c: dict, state: dict[str, torch.Tensor], source: str) -> ModelConfig:
    """Their config keys (extra ones ignored) and, where the config is silent, the tensors present."""
    locs = c.get("afrac_loctypes") or ",".join(ABSTOPK_LOCATIONS)
    locs = locs.split(",") if isinstance(locs, str) else locs
    if not isinstance(locs, list) or not all(isinstance(s, str) for s in locs):
        raise UserError(f"{source}: afrac_loctypes must be a comma list of locations, got {c['afrac_loctypes']!r}")
    locs = tuple(s.strip() for s in locs if s.strip())
    residual = c.get("residual_activation_type")
    if residual not in (None, "identity", "none"):
        raise UserError(f"{source}: residual_activation_type {residual!r} is not converted")
    if c.get("enable_bigram_table") and "bigram_table" not in state:
        raise UserError(f"{source}: enable_bigram_table is set but the weights hold no bigram_table")
    try:
        for key in ("vocab_size", "block_size", "n_layer", "d_model", "n_head"):
            check_number(f"{source}: config key '{key}'", c[key], low=1, integer=True)
        d_model = c["d_model"]
        return ModelConfig(vocab_size=c["vocab_size"], block_size=c["block_size"], n_layer=c["n_layer"],
                           d_model=d_model, n_head=c["n_head"], d_head=c.get("d_head") or d_model // c["n_head"],
                           d_mlp=c.get("d_mlp") or c.get("n_mlp") or 4 * d_model,
                           norm="rmsnorm" if c.get("rms_norm", True) else "layernorm",
                           norm_eps=None if c.get("rms_norm", True) else 1e-5,  # torch's defaults, as theirs
                           activation=c.get("activation_type", "gelu"),
                           pos_emb="learned" if "transformer.wpe.weight" in state else "none",
                           bigram="bigram_table" in state, sink=bool(c.get("sink", False)),
                           bias=bool(c.get("bias", True)), tied=bool(c.get("tied_unembed", False)),
                           afrac=c.get("afrac"), abstopk_locations=locs,
                           final_logit_bias="final_logits_bias" in state)
    except KeyError as e:
        raise UserError(f"{source} lacks the config key {e.args[0]!r}") from None


def release_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        k = k.removeprefix("transformer.")
        if k.startswith("h."):
            k = "blocks." + k[2:]
        k = k.replace(".attn.attn_imp.sink_logit", ".attn.sink_logit")
        out["bigram" if k == "bigram_table" else k] = v
    return out


def read_release(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    config = path / RELEASE_CONFIG
    c = read_json(config)
    if not isinstance(c, dict):
        raise UserError(f"{config} must hold a JSON object, not a {type(c).__name__}")
    state = load_pt(path / RELEASE_WEIGHTS)
    return release_config(c, state, str(config)), release_state(state), str(path / RELEASE_WEIGHTS)
