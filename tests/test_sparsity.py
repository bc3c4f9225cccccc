import pytest
import torch

from sparsecircuits import SparseTransformer, TopKProjector, UserError, density_at, lr_at, sparsified_parameters
from sparsecircuits.sparsity import check_density, kept_count

from conftest import small_config


def _perturb(model, scale):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def _reference_mask(w, k, j):
    """Independent reference: reserve each row's top-j, then the global top-k of the rest."""
    a = w.abs().clone()
    keep = torch.zeros_like(a, dtype=torch.bool)
    if j:
        rows = a.topk(j, dim=1).indices
        keep.scatter_(1, rows, True)
    rest = a.masked_fill(keep, -1).flatten()
    keep.view(-1)[rest.topk(k - int(keep.sum())).indices] = True
    return keep


def test_sparsified_parameters_skip_norms_sinks_and_bigram():
    model = SparseTransformer(small_config(sink=True, bigram=True))
    names = [n for n, _ in sparsified_parameters(model)]
    assert "wte.weight" in names and "lm_head.weight" in names and "blocks.0.mlp.c_fc.bias" in names
    assert not any("ln_" in n or "sink" in n or n == "bigram" for n in names)


@pytest.mark.parametrize("density", [0.9, 0.5, 1 / 8, 1 / 64])
def test_projection_is_exact_at_every_step_and_matches_the_reference(density):
    model = SparseTransformer(small_config(d_model=64, d_mlp=256))
    named = sparsified_parameters(model)
    proj = TopKProjector(named, min_per_neuron=4)
    _perturb(model, 1e-2)  # biases start at 0: make every entry a candidate
    for step in range(12):  # later steps exercise the remembered-threshold fast path
        before = {n: p.detach().clone() for n, p in named}
        proj.project(density)
        for name, p in named:
            w = before[name]
            is_matrix = name.endswith(".weight") and any(s in name for s in ("c_attn", "c_fc", "c_proj"))
            k = kept_count(w.numel(), density if is_matrix else density ** 0.5)
            assert int((p != 0).sum()) == k, name
            if is_matrix:
                j = 4 if 4 * w.shape[0] <= k else 0
                assert torch.equal(p != 0, _reference_mask(w, k, j)), (name, step)
                if j:
                    assert int((p != 0).sum(1).min()) >= 4, name
            assert torch.equal(p[p != 0], w[p != 0])  # kept entries are untouched
        _perturb(model, 2e-3 if step % 3 else 2e-2)


def test_min_per_neuron_changes_the_result_where_it_binds():
    w = torch.zeros(6, 20)
    w[0] = torch.linspace(1, 2, 20)     # one row holds every large entry
    w[1:] = torch.rand(5, 20) * 0.1
    p = torch.nn.Parameter(w.clone())
    TopKProjector([("blocks.0.mlp.c_fc.weight", p)], min_per_neuron=2).project(24 / 120)
    assert int((p != 0).sum()) == 24
    assert (p != 0).sum(1).min() >= 2
    q = torch.nn.Parameter(w.clone())
    TopKProjector([("blocks.0.mlp.c_fc.weight", q)], min_per_neuron=0).project(24 / 120)
    assert (q[1:] != 0).sum() == 4  # without the reserve, row 0 takes all 20 of its entries


def test_vector_density_same_uses_the_matrix_density():
    model = SparseTransformer(small_config())
    proj = TopKProjector(sparsified_parameters(model), vector_density="same")
    proj.project(0.25)
    assert int((model.wte.weight != 0).sum()) == kept_count(model.wte.weight.numel(), 0.25)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5])
def test_density_outside_zero_one_is_refused(bad):
    with pytest.raises(UserError, match="density"):
        check_density(bad)


def test_l0_annealing_is_linear_between_the_window_ends():
    assert density_at(0, 1000, 0.01, 0.01, 0.5) == 1.0
    assert density_at(10, 1000, 0.01, 0.01, 0.5) == 1.0
    assert density_at(500, 1000, 0.01, 0.01, 0.5) == pytest.approx(0.01)
    assert density_at(999, 1000, 0.01, 0.01, 0.5) == pytest.approx(0.01)
    mid = density_at(255, 1000, 0.01, 0.01, 0.5)
    assert mid == pytest.approx(1 + (0.01 - 1) * (245 / 490))
    assert density_at(300, 1000, 1.0, 0.01, 0.5) == 1.0


def test_sharkfin_lr_warms_up_decays_and_rises_with_sparsity():
    assert lr_at(0, 1000, 1e-2, 0.01, 1.0, 1.0) == pytest.approx(1e-3)
    assert lr_at(9, 1000, 1e-2, 0.01, 1.0, 1.0) == pytest.approx(1e-2)
    assert lr_at(505, 1000, 1e-2, 0.01, 1.0, 1.0) == pytest.approx(1e-2 * 495 / 990)
    # while density is 4x the target, the multiplier is sqrt(1/4)
    assert lr_at(100, 1000, 1e-2, 0.01, 0.04, 0.01) == pytest.approx(lr_at(100, 1000, 1e-2, 0.01, 1, 1) * 0.5)
