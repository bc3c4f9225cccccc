import itertools
import math

import pytest
import torch

from sparsecircuits import SparseTransformer, UserError, abs_topk, hook_names
from sparsecircuits.model import ABSTOPK_LOCATIONS

from conftest import small_config

OPTIONS = list(itertools.product(["rmsnorm", "layernorm", "none"], ["gelu", "relu"], ["none", "learned", "alibi"],
                                 [True, False]))


@pytest.mark.parametrize("norm,act,pos,flag", OPTIONS)
def test_every_option_gives_logits_of_the_right_shape(norm, act, pos, flag):
    cfg = small_config(norm=norm, activation=act, pos_emb=pos, bigram=flag, sink=flag, bias=flag, tied=not flag,
                       afrac=0.25 if flag else None, d_head=5, n_head=3)
    model = SparseTransformer(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (3, 11))
    logits = model(idx)
    assert logits.shape == (3, 11, cfg.vocab_size)
    assert torch.isfinite(logits).all()
    names = {n for n, _ in model.named_parameters()}
    assert ("lm_head.weight" in names) == (not cfg.tied)
    assert ("bigram" in names) == flag
    assert ("blocks.0.attn.sink_logit" in names) == flag
    assert ("blocks.0.mlp.c_fc.bias" in names) == flag
    assert model.blocks[0].attn.c_attn.weight.shape == (3 * 3 * 5, 32)  # d_head decoupled from d_model
    last = torch.tensor([10, 0, 4])
    with torch.no_grad():
        at_last = model(idx, last=last)
    assert at_last.shape == (3, cfg.vocab_size)
    assert torch.allclose(at_last, logits[torch.arange(3), last], atol=1e-5)  # what the pruner reads


@pytest.mark.parametrize("flag", [True, False])
def test_loss_from_targets_equals_cross_entropy_of_the_logits_across_chunks(monkeypatch, flag):
    """The chunked training loss (here 256-token chunks over 3 x 200 tokens), whose gradients are
    computed in its forward pass, is the plain mean CE of the logits, gradients included."""
    import sparsecircuits.model.loss as loss_module
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 1)
    cfg = small_config(bigram=flag, tied=not flag, final_logit_bias=flag, block_size=200)
    model = SparseTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        if flag:
            model.final_logits_bias.normal_(0, 1.0)
    idx = torch.randint(0, cfg.vocab_size, (3, 200))
    targets = torch.randint(0, cfg.vocab_size, (3, 200))
    targets[:, :17] = -1  # unscored positions
    scored = targets != -1
    expected = torch.nn.functional.cross_entropy(model(idx)[scored], targets[scored])
    loss = model(idx, targets)
    assert loss.shape == () and torch.allclose(loss, expected, rtol=1e-5)
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    expected.backward()
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6), n


def test_loss_under_bf16_autocast_follows_the_logits_and_needs_no_grad():
    """Under bf16 autocast the fused loss and its gradients agree with autograd through the logits;
    under no_grad it gives the same value and computes no gradients."""
    cfg = small_config(bigram=True, sink=True, block_size=64)
    model = SparseTransformer(cfg)
    idx, targets = torch.randint(0, cfg.vocab_size, (2, 2, 64))
    targets[:, :5] = -1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(idx, targets)
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx).float()
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
    expected.backward()
    assert abs(loss.item() - expected.item()) < 1e-3 * expected.item()
    for n, p in model.named_parameters():
        cos = torch.nn.functional.cosine_similarity(fused[n].flatten(), p.grad.flatten(), dim=0)
        assert p.grad.abs().max() == 0 or cos > 0.99, n
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        again = model(idx, targets)
    assert not again.requires_grad and again.item() == loss.item()


def test_causal_masking_future_tokens_do_not_change_past_logits():
    model = SparseTransformer(small_config(sink=True)).eval()
    a = torch.randint(0, 12, (2, 10))
    b = a.clone()
    b[:, 6:] = torch.randint(0, 12, (2, 4))
    with torch.no_grad():
        la, lb = model(a), model(b)
    assert torch.allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


def test_abs_topk_keeps_exactly_k_largest_magnitudes():
    x = torch.randn(4, 7, 50)
    y = abs_topk(x, 9)
    assert ((y != 0).sum(-1) == 9).all()
    kept_min = torch.where(y != 0, x.abs(), torch.inf).amin(-1)
    dropped_max = torch.where(y == 0, x.abs(), 0).amax(-1)
    assert (kept_min > dropped_max).all()
    assert torch.equal(y[y != 0], x[y != 0])


def test_abstopk_in_the_model_keeps_k_at_every_location():
    cfg = small_config(afrac=0.25)
    model = SparseTransformer(cfg).eval()
    where = {"attn_in": "attn.act_in", "attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v",
             "attn_out": "attn.resid_delta", "mlp_in": "mlp.act_in", "mlp_neuron": "mlp.post_act",
             "mlp_out": "mlp.resid_delta"}
    _, cache = model.run_with_cache(torch.randint(0, 12, (2, 9)))
    for loc in ABSTOPK_LOCATIONS:
        k = cfg.abstopk_k(loc)
        act = cache[f"1.{where[loc]}"]
        assert act.shape[-1] == cfg.width(loc)
        assert ((act != 0).sum(-1) == k).all(), loc


@pytest.mark.parametrize("pos", ["none", "alibi"])
def test_sink_and_alibi_equal_the_closed_form(pos):
    """Head h's weights are exp(q.k/sqrt(D) - m_h (i - j)) / (sum + exp(b_h)), m_h = 2^(-8(h+1)/H)
    with ALiBi and 0 without it."""
    cfg = small_config(sink=True, n_layer=1, pos_emb=pos)
    model = SparseTransformer(cfg).eval()
    b = torch.tensor([1.5, -0.7])
    with torch.no_grad():
        model.blocks[0].attn.sink_logit.copy_(b)
    idx = torch.randint(0, 12, (2, 8))
    _, cache = model.run_with_cache(idx, ["0.attn.q", "0.attn.k", "0.attn.v", "0.attn.pattern", "0.attn.y"])
    B, T, H, D = 2, 8, cfg.n_head, cfg.d_head
    q, k, v = (cache[f"0.attn.{n}"].view(B, T, H, D).transpose(1, 2) for n in "qkv")
    y = torch.zeros(B, H, T, D)
    for i in range(T):
        s = (q[:, :, i:i + 1] @ k[:, :, : i + 1].transpose(-1, -2)).squeeze(2) / math.sqrt(D)  # (B, H, i+1)
        if pos == "alibi":
            s = s - torch.tensor([2 ** -4.0, 2 ** -8.0]).view(1, H, 1) * (i - torch.arange(i + 1))
        w = s.exp() / (s.exp().sum(-1, keepdim=True) + b.exp().view(1, H, 1))
        y[:, :, i] = (w.unsqueeze(-1) * v[:, :, : i + 1]).sum(2)
        assert torch.allclose(cache["0.attn.pattern"][:, :, i, : i + 1], w, atol=1e-6)  # the sink takes the rest
        assert not cache["0.attn.pattern"][:, :, i, i + 1:].any()
    assert torch.allclose(cache["0.attn.y"], y.transpose(1, 2).reshape(B, T, H * D), atol=1e-5)


def test_hooks_record_every_name_in_forward_order(small_model):
    logits, cache = small_model.run_with_cache(torch.randint(0, 12, (2, 5)))
    assert list(cache) == hook_names(2)
    assert cache["0.attn.q"].shape == (2, 5, 16)
    assert cache["1.mlp.post_act"].shape == (2, 5, 64)
    assert torch.allclose(cache["1.resid_mid"] + cache["1.mlp.resid_delta"], cache["final_resid"])


@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
def test_norm_scale_hooks_show_the_divisor_and_freezing_them_fixes_the_norm(norm):
    torch.manual_seed(0)
    model = SparseTransformer(small_config(norm=norm, norm_eps=1e-3)).eval()
    idx = torch.randint(0, 12, (2, 6))
    _, cache = model.run_with_cache(idx)
    x = cache["1.resid_mid"]
    centred = x - x.mean(-1, keepdim=True) if norm == "layernorm" else x
    assert torch.allclose(cache["1.mlp.norm_scale"], (centred.pow(2).mean(-1, keepdim=True) + 1e-3).sqrt(), atol=1e-6)
    torch_norm = (torch.nn.LayerNorm(32, eps=1e-3) if norm == "layernorm" else torch.nn.RMSNorm(32, eps=1e-3))
    torch_norm.load_state_dict(model.blocks[1].ln_2.state_dict())
    assert torch.allclose(cache["1.mlp.act_in"], torch_norm(x), atol=1e-6)
    seen = {}  # a doubled divisor halves what the MLP reads (before the norm's bias)
    model.run_with_hooks(idx, [("1.mlp.norm_scale", lambda s, _: 2 * s),
                               ("1.mlp.act_in", lambda a, _: seen.setdefault("a", a))])
    bias = model.blocks[1].ln_2.bias
    shift = bias if bias is not None else 0
    assert torch.allclose(seen["a"] - shift, (cache["1.mlp.act_in"] - shift) / 2, atol=1e-6)


def test_hooks_intervene_and_are_removed_afterwards(small_model):
    idx = torch.randint(0, 12, (2, 6))
    with torch.no_grad():
        clean = small_model(idx)
        zeroed = small_model.run_with_hooks(idx, [("1.mlp.resid_delta", lambda x, name: torch.zeros_like(x))])
        small_model.blocks[1].mlp.c_proj.weight.zero_()
        small_model.blocks[1].mlp.c_proj.bias.zero_()
        reference = small_model(idx)
    assert torch.allclose(zeroed, reference, atol=1e-6)
    assert not torch.allclose(zeroed, clean)
    assert small_model.hooks.fns == {}


def test_hook_editing_one_channel_changes_only_downstream(small_model):
    idx = torch.randint(0, 12, (1, 6))

    def bump(x, name):
        x = x.clone()
        x[:, 3, 5] += 10.0
        return x

    with torch.no_grad():
        clean = small_model(idx)
        edited = small_model.run_with_hooks(idx, {"0.attn.v": bump})
    assert torch.allclose(clean[:, :3], edited[:, :3], atol=1e-6)  # earlier positions untouched
    assert not torch.allclose(clean[:, 3:], edited[:, 3:])


def test_unknown_hook_name_is_a_user_error(small_model):
    with pytest.raises(UserError, match="unknown hook name"):
        small_model.run_with_hooks(torch.zeros(1, 2, dtype=torch.long), [("0.attn.nope", lambda x, n: x)])


def test_impossible_configs_are_refused():
    with pytest.raises(UserError, match="afrac"):
        small_config(afrac=0.001)
    with pytest.raises(UserError, match="afrac"):
        small_config(afrac=1.5)
    with pytest.raises(UserError, match="norm"):
        small_config(norm="batchnorm")
    with pytest.raises(UserError, match="location"):
        small_config(afrac=0.5, abstopk_locations=("attn_x",))


def test_init_scales_follow_the_method():
    model = SparseTransformer(small_config(n_layer=8, d_model=256, d_mlp=1024))
    assert abs(model.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002
    assert abs(model.blocks[0].mlp.c_proj.weight.std().item() - 0.02 / 4) < 0.0005
    assert model.blocks[0].mlp.c_fc.bias.abs().max() == 0
    assert torch.equal(model.blocks[0].ln_1.weight, torch.ones(256))
