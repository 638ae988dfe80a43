"""Truncated-SVD factorisation: exact identities against an independent numpy SVD, counts, bad ranks."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from lowrank_bench.models.lowrank import LowRankLinear, SVDLinear, layer_report
from lowrank_bench.models.methods import factorize, factored_ranks
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.training.measure import forward_flops, param_counts


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP(MLPConfig(in_features=64, hidden=[48, 24], dropout=0.0)).eval()


@pytest.mark.parametrize("cls", [LowRankLinear, SVDLinear])
def test_full_rank_reproduces_layer(cls):
    torch.manual_seed(0)
    layer = nn.Linear(40, 30)
    x = torch.randn(16, 40)
    factored = cls.from_linear(layer, 30)
    rel = (factored(x) - layer(x)).norm() / layer(x).norm()
    assert rel <= 1e-5


def test_full_rank_model_matches_dense(mlp):
    x = torch.rand(8, 1, 8, 8)
    full = factorize(mlp, {"hidden.0": 48, "hidden.1": 24}, targets=["hidden"])
    rel = (full(x) - mlp(x)).norm() / mlp(x).norm()
    assert rel <= 1e-5


@pytest.mark.parametrize("k", [1, 3, 10, 24])
def test_truncation_error_is_eckart_young(k):
    torch.manual_seed(1)
    layer = nn.Linear(24, 36)
    W = layer.weight.detach().numpy().astype(np.float64)
    sigma = np.linalg.svd(W, compute_uv=False)  # independent oracle
    expected = np.sqrt(np.sum(sigma[k:] ** 2))
    factored = LowRankLinear.from_linear(layer, k)
    W_k = (factored.w1.weight @ factored.w2.weight).detach().double().numpy()
    assert np.linalg.norm(W - W_k) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    report = layer_report(layer.weight, [k])[0]
    assert report["rel_error"] == pytest.approx(expected / np.linalg.norm(W), rel=1e-6, abs=1e-9)
    assert report["energy"] == pytest.approx(np.sum(sigma[:k] ** 2) / np.sum(sigma ** 2), rel=1e-9)


def test_bias_is_kept_and_shapes_follow_the_math():
    layer = nn.Linear(20, 12)
    f = LowRankLinear.from_linear(layer, 5)
    assert f.w1.weight.shape == (12, 5) and f.w2.weight.shape == (5, 20)  # W1 m×k, W2 k×n
    assert f.w2.bias is None and torch.equal(f.w1.bias, layer.bias)
    assert "rank=5" in repr(f)


@pytest.mark.parametrize("k", [1, 7, 24])
def test_params_and_flops_match_formula(mlp, k):
    model = factorize(mlp, k, targets=["hidden"])
    m0, n0, m1, n1 = 48, 64, 24, 48
    head = 10 * 24 + 10
    assert param_counts(model)["params_total"] == k * (m0 + n0) + m0 + k * (m1 + n1) + m1 + head
    flops = forward_flops(model, torch.rand(1, 1, 8, 8))
    assert flops == 2 * (k * (m0 + n0) + k * (m1 + n1) + 10 * 24)  # flop_counter counts matmuls only
    report = layer_report(mlp.hidden[0].weight, [k])[0]
    assert report["params"] == k * (m0 + n0) + m0 and report["flops"] == 2 * k * (m0 + n0)


def test_break_even_flag():
    layer = nn.Linear(64, 48)  # k* = 48·64/112 ≈ 27.4
    flags = {r["rank"]: r["costs_more_than_dense"] for r in layer_report(layer.weight, [27, 28])}
    assert flags == {27: False, 28: True}


@pytest.mark.parametrize("k", [0, 25, -1, 2.5])
def test_out_of_range_k_raises_naming_layer(mlp, k):
    with pytest.raises(ValueError, match=r"hidden\.1.*\[1, min\(m, n\) = 24\]"):
        factorize(mlp, {"hidden.0": 4, "hidden.1": k}, targets=["hidden"])


def test_unknown_layer_and_target_raise(mlp):
    with pytest.raises(ValueError, match="not targets"):
        factorize(mlp, {"nope": 2}, targets=["hidden"])
    with pytest.raises(ValueError, match="'q_proj' matches no nn.Linear"):
        factorize(mlp, 2, targets=["q_proj"])


def test_original_model_unchanged(mlp):
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    model = factorize(mlp, 4, targets=["hidden"])
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert isinstance(mlp.hidden[0], nn.Linear) and isinstance(model.hidden[0], LowRankLinear)
    assert factored_ranks(model) == {"hidden.0": 4, "hidden.1": 4}


def test_svd_linear_trains_its_factors():
    layer = SVDLinear.from_linear(nn.Linear(16, 16), 4)
    layer(torch.randn(3, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (layer.U, layer.s, layer.V, layer.bias))
