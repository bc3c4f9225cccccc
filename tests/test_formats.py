"""Models from elsewhere: a Hugging Face GPT-2 and the authors' release format, made inside the tests."""
import dataclasses
import json

import pytest
import torch

import sparsecircuits as sc
from sparsecircuits.cli import main

from conftest import small_config

transformers = pytest.importorskip("transformers")


def hf_gpt2(tmp_path, safe=True, **kw):
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=24, n_embd=32, n_layer=2, n_head=4, bos_token_id=96,
                                  eos_token_id=96, **kw)
    torch.manual_seed(1)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # make LayerNorm and biases non-trivial, so a wrong mapping shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "gpt2"
    model.save_pretrained(path)
    if not safe:  # the older save_pretrained output: a pickled state dict
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    return model, path


@pytest.mark.parametrize("safe", [True, False])
def test_hf_gpt2_gives_the_same_logits(tmp_path, safe):
    ref, path = hf_gpt2(tmp_path, safe)
    assert (path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    ours = sc.load(path)
    assert ours.cfg.norm == "layernorm" and ours.cfg.pos_emb == "learned" and ours.cfg.tied
    tokens = torch.randint(0, 97, (3, 24))
    with torch.no_grad():
        want = ref(tokens).logits
        got, cache = ours.run_with_cache(tokens)
        hidden = ref(tokens, output_hidden_states=True).hidden_states
    assert (got - want).abs().max() < 1e-4
    assert torch.allclose(cache["1.resid_in"], hidden[1], atol=1e-5)  # hooks see GPT-2's residual stream


def test_hf_gpt2_other_architectures_and_broken_weights_are_refused(tmp_path, capsys):
    _, path = hf_gpt2(tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    assert main(["eval", str(path)]) == 2
    assert "'llama' is not converted" in capsys.readouterr().err
    (path / "config.json").write_text(json.dumps({**config, "activation_function": "swish"}))
    assert main(["eval", str(path)]) == 2
    assert "swish" in capsys.readouterr().err
    (path / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file
    state = load_file(str(path / "model.safetensors"))
    del state["transformer.h.1.mlp.c_fc.weight"]
    state["transformer.h.0.attn.c_proj.bias"] = torch.zeros(5)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing blocks.1.mlp.c_fc.weight" in err and "mis-shaped blocks.0.attn.c_proj.bias" in err
    assert err.count("\n") == 1


def release_dir(tmp_path, model: sc.SparseTransformer, extra_config=None):
    """Write `model` the way the authors' release stores a model (METHOD 8)."""
    c = model.cfg
    state = {}
    for k, v in model.state_dict().items():
        if k == "bigram":
            k = "bigram_table"
        elif k.startswith("blocks."):
            k = "transformer.h." + k[len("blocks."):]
            k = k.replace(".attn.sink_logit", ".attn.attn_imp.sink_logit")
        elif k.startswith(("wte.", "wpe.", "ln_f.")):
            k = "transformer." + k
        state[k] = v.clone()
    config = {"block_size": c.block_size, "vocab_size": c.vocab_size, "n_layer": c.n_layer, "n_head": c.n_head,
              "d_head": c.d_head, "d_model": c.d_model, "n_mlp": c.d_mlp, "bias": c.bias,
              "rms_norm": c.norm == "rmsnorm", "activation_type": c.activation, "afrac": c.afrac,
              "afrac_loctypes": ",".join(c.abstopk_locations), "tied_unembed": c.tied,
              "enable_bigram_table": c.bigram, "learnable_bigram_table": c.bigram, "sink": c.sink, "flash": True,
              "residual_activation_type": "identity", "d_pos_emb": c.d_model if c.pos_emb == "learned" else None,
              "pfrac": 0.5, "expansion_factor": 1, "n_embd": c.d_model, **(extra_config or {})}
    path = tmp_path / "release"
    path.mkdir()
    (path / "beeg_config.json").write_text(json.dumps(config))
    torch.save(state, path / "final_model.pt")
    return path


def release_reference(state: dict, c: dict, idx: torch.Tensor) -> torch.Tensor:
    """Logits of a release-format model computed from the format's documented computation (METHOD 1, 8),
    written apart from our model: torch's RMSNorm with its default eps (or LayerNorm), AbsTopK keeping
    round(afrac * width) entries by magnitude at each listed location, a sink logit joining each
    head's softmax denominator, the bigram row of the current token and the final logit bias."""
    F = torch.nn.functional
    locs = set(c["afrac_loctypes"].split(",")) if c.get("afrac") else set()
    H, D = c["n_head"], c["d_head"]

    def topk(x, loc):
        if loc not in locs:
            return x
        k = int(round(c["afrac"] * x.shape[-1]))
        idx_ = x.abs().topk(k, dim=-1).indices
        return torch.zeros_like(x).scatter(-1, idx_, x.gather(-1, idx_))

    def norm(x, name):
        if c["rms_norm"]:
            return F.rms_norm(x, (x.shape[-1],), state[name + ".weight"])  # eps=None: torch's default
        return F.layer_norm(x, (x.shape[-1],), state[name + ".weight"], state.get(name + ".bias"))

    def linear(x, name):
        return F.linear(x, state[name + ".weight"], state.get(name + ".bias"))

    act = F.relu if c["activation_type"] == "relu" else F.gelu
    B, T = idx.shape
    x = state["transformer.wte.weight"][idx]
    if "transformer.wpe.weight" in state:
        x = x + state["transformer.wpe.weight"][:T]
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}"
        h = topk(norm(x, p + ".ln_1"), "attn_in")
        q, k, v = linear(h, p + ".attn.c_attn").split(H * D, dim=-1)
        q, k, v = (topk(t, loc).view(B, T, H, D).transpose(1, 2) for t, loc in ((q, "attn_q"), (k, "attn_k"), (v, "attn_v")))
        scores = (q @ k.transpose(-1, -2)) / D ** 0.5
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        if c.get("sink"):
            sink = state[p + ".attn.attn_imp.sink_logit"].view(1, H, 1, 1).expand(B, H, T, 1)
            att = torch.softmax(torch.cat([sink, scores], dim=-1), dim=-1)[..., 1:]
        else:
            att = torch.softmax(scores, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + topk(linear(y, p + ".attn.c_proj"), "attn_out")
        h = topk(norm(x, p + ".ln_2"), "mlp_in")
        h = topk(act(linear(h, p + ".mlp.c_fc")), "mlp_neuron")
        x = x + topk(linear(h, p + ".mlp.c_proj"), "mlp_out")
    x = norm(x, "transformer.ln_f")
    logits = x @ (state["transformer.wte.weight"] if c["tied_unembed"] else state["lm_head.weight"]).T
    if "bigram_table" in state:
        logits = logits + state["bigram_table"][idx]
    if "final_logits_bias" in state:
        logits = logits + state["final_logits_bias"]
    return logits


RELEASE_OPTIONS = [
    dict(bigram=True, sink=True, afrac=0.25, abstopk_locations=("attn_q", "attn_k", "mlp_neuron"), pos_emb="none",
         final_logit_bias=True),
    dict(bigram=True, sink=True, afrac=0.125, pos_emb="none"),                                   # all 8 locations
    dict(bigram=True, sink=False, afrac=0.25, pos_emb="none",
         abstopk_locations=("attn_in", "attn_q", "attn_k", "attn_v", "mlp_in", "mlp_neuron")),  # 6 locations
    dict(bigram=False, sink=False, norm="layernorm", activation="relu", pos_emb="learned", tied=True),
    dict(bigram=True, sink=True, pos_emb="learned"),                                             # dense, no AbsTopK
]


@pytest.mark.parametrize("options", RELEASE_OPTIONS)
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_release_format_matches_a_reference_forward_of_the_format(tmp_path, options, scale):
    """Within 1e-5 of the format's own computation, also where activations are so small that the
    norm's eps decides what AbsTopK keeps (scale 1e-3)."""
    ref = sc.SparseTransformer(small_config(vocab_size=64, **options)).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ref.wte.weight.mul_(scale)
        if ref.wpe is not None:
            ref.wpe.weight.mul_(scale)
        if ref.final_logits_bias is not None:
            ref.final_logits_bias.normal_()
    path = release_dir(tmp_path, ref)
    ours = sc.load(path)
    assert ours.cfg.norm_eps == (None if ours.cfg.norm == "rmsnorm" else 1e-5)
    state = torch.load(path / "final_model.pt", weights_only=True)
    config = json.loads((path / "beeg_config.json").read_text())
    tokens = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        assert (ours(tokens) - release_reference(state, config, tokens)).abs().max() < 1e-5


def test_norm_eps_decides_what_abstopk_keeps():
    """The test that would have caught a 1e-5 eps in place of torch's default: a value channel read
    from the normalised input races a bias; which one AbsTopK keeps depends on the norm's eps."""
    cfg = small_config(vocab_size=8, n_layer=1, afrac=1 / 16, abstopk_locations=("attn_v",), pos_emb="none")
    kept = {}
    for eps in (1e-5, None):
        m = sc.SparseTransformer(dataclasses.replace(cfg, norm_eps=eps)).eval()
        A = m.cfg.d_attn
        with torch.no_grad():
            for p in m.parameters():
                p.zero_()
            m.wte.weight[0, 0] = 3e-3                        # rms 3e-3 / sqrt(32): eps matters
            m.blocks[0].ln_1.weight.fill_(1.0)
            m.blocks[0].attn.c_attn.weight[2 * A + 0, 0] = 1.0  # v[0] = normalised x[0]: 5.6 or 1.5
            m.blocks[0].attn.c_attn.bias[2 * A + 1] = 2.0       # v[1] = 2
        _, cache = m.run_with_cache(torch.zeros(1, 1, dtype=torch.long), ["0.attn.v"])
        kept[eps] = int(cache["0.attn.v"][0, 0].nonzero())
    assert kept == {None: 0, 1e-5: 1}


def test_release_tokenizer_files_and_bad_pt_files(tmp_path, capsys):
    ref = sc.SparseTransformer(small_config(vocab_size=262)).eval()
    path = release_dir(tmp_path, ref)
    assert sc.load(path).tokenizer is None  # no tokenizer: ids are used directly
    # GPT-2-format tokenizer files: 256 byte tokens, a few merges, end-of-text last
    from tokenizers.pre_tokenizers import ByteLevel
    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    merges = [("d", "e"), ("de", "f"), ("\u0120", "x"), ("(", ")")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "encoder.json").write_text(json.dumps(vocab))
    (tok_dir / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (tmp_path / "t").mkdir()
    path = release_dir(tmp_path / "t", sc.SparseTransformer(small_config(vocab_size=len(vocab))).eval())
    model = sc.load(path, tokenizer=tok_dir)
    assert model.tokenizer.encode("def x()") == [vocab["def"], vocab["\u0120x"], vocab["()"]]
    assert model.tokenizer.decode(model.tokenizer.encode("def x()")) == "def x()"
    assert model.tokenizer.eot_id == vocab["<|endoftext|>"]
    # a .pt holding code (not just tensors) and one holding a non-tensor value are refused
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))
    torch.save({"transformer.wte.weight": Evil()}, path / "final_model.pt")
    assert main(["eval", str(path)]) == 2
    assert "weights_only" in capsys.readouterr().err
    torch.save({"transformer.wte.weight": torch.zeros(2), "step": 3}, path / "final_model.pt")
    assert main(["eval", str(path)]) == 2
    assert "other than a dict of tensors" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"")
    assert main(["eval", str(empty)]) == 2
    assert "beeg_config.json" in capsys.readouterr().err


def test_sparsify_a_gpt2_then_prune_and_draw_both(stdlib_corpus, tmp_path):
    cfg = transformers.GPT2Config(vocab_size=2048, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=2047,
                                  eos_token_id=2047)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    dense, sparse, corpus = tmp_path / "gpt2", tmp_path / "sparse", str(stdlib_corpus)
    assert main(["sparsify", str(dense), "--density", "0.25", "--data", corpus, "--steps", "20", "--batch-size", "4",
                 "--out", str(sparse), "--quiet"]) == 0
    twin = sc.load(sparse)
    assert twin.cfg == sc.load(dense).cfg and twin.tokenizer.vocab_size == 2048
    report = sc.evaluate(sparse)
    assert report["per_tensor"]["blocks.0.mlp.c_fc.weight"]["nonzero"] == 0.25 * 32 * 128
    task, common = "single_double_quote", ["--target-loss", "0.7", "--steps", "10", "--quiet"]  # untrained: chance
    assert main(["prune", str(dense), "--task", task, "--tokenizer", corpus, "--data", corpus,
                 "--out", str(tmp_path / "c_dense"), *common]) == 0
    assert main(["prune", str(sparse), "--task", task, "--out", str(tmp_path / "c_sparse"), *common]) == 0
    out = tmp_path / "grid.png"
    assert main(["figure", str(tmp_path / "c_sparse"), str(tmp_path / "c_dense"), "--kind", "grid",
                 "--labels", "sparse GPT-2,GPT-2", "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["viz", str(tmp_path / "c_dense"), "--out", str(tmp_path / "r.html"), "--quiet"]) == 0
