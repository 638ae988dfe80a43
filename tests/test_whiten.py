"""Data-aware SVD (models.whiten) and the method registry (models.methods), against numpy oracles.

The closed form of the best rank-k output approximation, used as the oracle below: for W (m×n), X (n×N),

    min_{rank B ≤ k} ‖(W − B) X‖_F  is attained by  B* = [W X]_k X⁺,  with error sqrt(Σ_{i>k} σ_i(W X)²)

(Friedland & Torokhti, "Generalized rank-constrained matrix approximations", SIAM J. Matrix Anal. Appl. 29(2),
2007, Thm. 2.1 with the identity on the left). Derivation: B X has rank ≤ k, so ‖W X − B X‖_F ≥ the Eckart–Young
error of W X; and [W X]_k = U_k Σ_k V_kᵀ has its rows in the row space of W X, inside that of X, so
[W X]_k X⁺ X = [W X]_k (X⁺ X projects onto the row space of X) and B* attains the bound. The ridge of models.whiten
is the same problem for the augmented inputs X̃ = [X, √λ I], since ‖(W − B) X̃‖_F² = ‖(W − B) X‖_F² + λ‖W − B‖_F².
Nothing below shares code with the implementation: numpy's SVD, pinv and Cholesky only.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

from lowrank_bench.models.lowrank import LowRankLinear, SVDLinear, check_rank
from lowrank_bench.models.methods import METHODS, calibrate, factorize
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.models.transformer import Transformer, TransformerConfig
from lowrank_bench.models.whiten import RIDGE, input_grams, whitened_svd
from lowrank_bench.training.measure import forward_flops, param_counts

SHAPES = [(12, 20, 50, 3), (30, 16, 40, 7), (20, 20, 200, 10), (25, 40, 15, 6), (8, 30, 10, 4)]  # (m, n, N, k)


def data(m, n, N, seed=0):
    """W, and inputs X with correlated features of very different scales (where whitening matters)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    X = (rng.standard_normal((n, n)) * np.logspace(0, -2, n)) @ rng.standard_normal((n, N))
    return W, X


def whiten(W, X, k, ridge=RIDGE):
    """W_k' = U diag(S) Vh' of models.whiten, as a numpy matrix."""
    U, S, Vh = whitened_svd(torch.from_numpy(W), k, torch.from_numpy(X @ X.T), ridge=ridge)
    return ((U * S) @ Vh).numpy()


def svd_k(A, k):
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vh[:k]


def tail(A, k):
    """sqrt(Σ_{i>k} σ_i(A)²): the Eckart–Young error of rank k."""
    s = np.linalg.svd(A, compute_uv=False)
    return np.sqrt(np.sum(s[k:] ** 2))


def ridge_lambda(X, ridge=RIDGE):
    return ridge * np.trace(X @ X.T) / X.shape[0]


def optimum(W, X, k):
    """The closed form B* = [W X]_k X⁺ (module docstring)."""
    return svd_k(W @ X, k) @ np.linalg.pinv(X)


@pytest.mark.parametrize("m, n, N, k", [s for s in SHAPES if s[2] >= s[1]])
def test_output_error_is_the_discarded_spectrum_of_WS(m, n, N, k):
    W, X = data(m, n, N)
    W_k = whiten(W, X, k, ridge=0.0)
    S = np.linalg.cholesky(X @ X.T)  # numpy's own factor: X Xᵀ = S Sᵀ
    error = np.linalg.norm((W - W_k) @ X)
    assert error == pytest.approx(tail(W @ S, k), rel=1e-8)
    assert error == pytest.approx(tail(W @ X, k), rel=1e-8)  # W S and W X share their singular values


@pytest.mark.parametrize("m, n, N, k", SHAPES)
def test_ridge_objective_is_the_discarded_spectrum(m, n, N, k):
    """With the ridge (any N, N < n included) the identity is exact for ‖(W − B)X‖² + λ‖W − B‖²."""
    W, X = data(m, n, N)
    lam = ridge_lambda(X)
    W_k = whiten(W, X, k)
    S = np.linalg.cholesky(X @ X.T + lam * np.eye(n))
    objective = np.sqrt(np.linalg.norm((W - W_k) @ X) ** 2 + lam * np.linalg.norm(W - W_k) ** 2)
    assert objective == pytest.approx(tail(W @ S, k), rel=1e-8)


@pytest.mark.parametrize("m, n, N, k", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_worse_than_plain_svd_on_the_data(m, n, N, k, seed):
    """Exact even with the ridge: J(whiten) ≤ J(svd) and ‖W − svd‖ ≤ ‖W − whiten‖ (Eckart–Young) give it."""
    W, X = data(m, n, N, seed)
    whitened = np.linalg.norm((W - whiten(W, X, k)) @ X)
    plain = np.linalg.norm((W - svd_k(W, k)) @ X)
    assert whitened <= plain * (1 + 1e-12)
    assert whitened < 0.9 * plain  # and on these anisotropic inputs clearly better, so the test can tell them apart


@pytest.mark.parametrize("m, n, k", [(12, 20, 3), (30, 16, 16), (20, 20, 1)])
def test_isotropic_inputs_give_plain_svd(m, n, k):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((m, n))
    Q, _ = np.linalg.qr(rng.standard_normal((3 * n, n)))  # 3n×n with orthonormal columns
    X = 2.5 * Q.T  # X Xᵀ = 6.25 I
    np.testing.assert_allclose(whiten(W, X, k), svd_k(W, k), rtol=0, atol=1e-10 * np.linalg.norm(W))


@pytest.mark.parametrize("m, n, N, k", [s for s in SHAPES if s[2] >= s[1]])
def test_matches_the_closed_form_optimum(m, n, N, k):
    W, X = data(m, n, N)
    expected = optimum(W, X, k)
    np.testing.assert_allclose(whiten(W, X, k, ridge=0.0), expected, rtol=0, atol=1e-8 * np.linalg.norm(expected))


@pytest.mark.parametrize("m, n, N, k", SHAPES)
def test_ridge_matches_the_closed_form_optimum_of_the_augmented_inputs(m, n, N, k):
    W, X = data(m, n, N)
    augmented = np.hstack([X, np.sqrt(ridge_lambda(X)) * np.eye(n)])  # X̃ = [X, √λ I]
    expected = optimum(W, augmented, k)
    np.testing.assert_allclose(whiten(W, X, k), expected, rtol=0, atol=1e-8 * np.linalg.norm(expected))


def test_no_random_rank_k_neighbour_does_better():
    """Brute force, no formula: rank-k matrices around the answer, at several scales, never have a lower error."""
    m, n, N, k = 6, 8, 30, 2
    W, X = data(m, n, N)
    U, S, Vh = (t.numpy() for t in whitened_svd(torch.from_numpy(W), k, torch.from_numpy(X @ X.T), ridge=0.0))
    best = np.linalg.norm((W - (U * S) @ Vh) @ X)
    rng = np.random.default_rng(4)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(500):
            B = (U + scale * rng.standard_normal(U.shape)) * S @ (Vh + scale * rng.standard_normal(Vh.shape))
            assert np.linalg.norm((W - B) @ X) >= best * (1 - 1e-12)


def test_rank_deficient_inputs_are_handled_by_the_ridge():
    """Fewer samples than inputs and an input that is always zero: G is singular, the ridge makes S exist."""
    m, n, N, k = 20, 32, 12, 5
    W, X = data(m, n, N)
    X[3] = 0.0  # a dead input (a border pixel, a ReLU that never fires)
    W_k = whiten(W, X, k)
    assert np.isfinite(W_k).all()
    error = np.linalg.norm((W - W_k) @ X)
    assert error <= np.linalg.norm((W - svd_k(W, k)) @ X)
    assert error == pytest.approx(tail(W @ X, k), rel=1e-4)  # the optimum on the data, up to the ridge's pull
    # In the directions X never visits (here input 3) the answer is plain SVD's pull, not noise: bounded.
    assert np.linalg.norm(W_k) <= 2 * np.linalg.norm(W)


def test_without_the_ridge_a_singular_gram_is_one_clear_error():
    W, X = data(6, 10, 20)
    X[2] = 0.0
    with pytest.raises(ValueError, match=r"hidden\.0: G \+ λI is not positive definite.*larger ridge"):
        whitened_svd(torch.from_numpy(W), 2, torch.from_numpy(X @ X.T), ridge=0.0, name="hidden.0")


@pytest.mark.parametrize("gram, message", [
    (torch.zeros(10, 10), "all zero"),
    (torch.full((10, 10), float("nan")), "inf or NaN"),
    (torch.eye(9), r"9×9 but the 6×10 weight needs 10×10"),
])
def test_unusable_grams_are_one_clear_error(gram, message):
    with pytest.raises(ValueError, match=rf"^head: .*{message}"):
        whitened_svd(torch.randn(6, 10), 2, gram, name="head")


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    config = MLPConfig(in_features=64, hidden=[48, 24], dropout=0.5, mean=0.3, std=0.7)
    return MLP(config)


def manual_inputs(model, x):
    """The inputs of hidden.0, hidden.1 and head, computed by hand from the weights (no dropout: evaluation)."""
    h0 = (x.flatten(1).double() - model.config.mean) / model.config.std
    h1 = torch.relu(h0 @ model.hidden[0].weight.double().T + model.hidden[0].bias.double())
    h2 = torch.relu(h1 @ model.hidden[1].weight.double().T + model.hidden[1].bias.double())
    return {"hidden.0": h0, "hidden.1": h1, "head": h2}


def test_input_grams_equal_X_Xt_over_all_batches(mlp):
    torch.manual_seed(1)
    batches = [torch.rand(b, 1, 8, 8) for b in (5, 7, 3)]
    mlp.train()  # input_grams must evaluate without dropout and give the mode back
    grams = input_grams(mlp, ["hidden.0", "hidden.1", "head"], batches)
    for name in grams:
        X = torch.cat([manual_inputs(mlp, x)[name] for x in batches]).T  # n × N
        G, count = grams[name]
        assert G.dtype == torch.float64 and count == 15
        torch.testing.assert_close(G, X @ X.T, rtol=1e-6, atol=1e-6)
    assert mlp.training
    assert all(not m._forward_pre_hooks for m in mlp.modules())


def test_hooks_are_removed_when_a_batch_fails(mlp):
    with pytest.raises(RuntimeError):
        input_grams(mlp, ["hidden.0"], [torch.rand(2, 64), torch.rand(2, 63)])
    assert all(not m._forward_pre_hooks for m in mlp.modules())


def test_calibrate_resolves_targets(mlp):
    x = torch.rand(6, 1, 8, 8)
    grams = calibrate(mlp, ["hidden"], [x])
    assert list(grams) == ["hidden.0", "hidden.1"]
    X = manual_inputs(mlp, x)["hidden.1"].T
    torch.testing.assert_close(grams["hidden.1"][0], X @ X.T, rtol=1e-6, atol=1e-6)


def test_transformer_grams_count_real_tokens_only():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, max_len=16, d_model=8, n_heads=2, d_ff=16))
    ids = torch.randint(1, 50, (3, 6))
    ids[0, 4:] = 0  # padding
    padded = torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    G, count = input_grams(model, ["blocks.0.attn.q_proj"], [ids])["blocks.0.attn.q_proj"]
    G_padded, count_padded = input_grams(model, ["blocks.0.attn.q_proj"], [padded])["blocks.0.attn.q_proj"]
    with torch.no_grad():
        X = model.blocks[0].ln_1(model.eval().embed(ids))[ids != 0].double().T  # what q_proj sees of real tokens
    assert count == count_padded == 16
    torch.testing.assert_close(G, X @ X.T, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(G_padded, G, rtol=1e-6, atol=1e-6)


def calibration_images(n=300):
    """Images in [0, 1] whose border is always 0, as Hoda's: a singular Gram for the first layer."""
    torch.manual_seed(5)
    x = torch.rand(n, 1, 32, 32)
    x[..., :2, :] = 0.0
    return x


@pytest.mark.parametrize("layer, cls", [("two_linear", LowRankLinear), ("usv", SVDLinear)])
def test_whiten_at_full_rank_reproduces_the_hoda_mlp(layer, cls):
    torch.manual_seed(0)
    dense = MLP(MLPConfig(mean=0.2, std=0.3)).eval()  # the Hoda architecture: 1024 -> 1024 -> 512 -> 10
    images = calibration_images()
    calibration = calibrate(dense, ["hidden"], images.split(100))
    full = factorize(dense, {"hidden.0": 1024, "hidden.1": 512}, ["hidden"], method="whiten", layer=layer,
                     calibration=calibration).eval()
    assert isinstance(full.hidden[0], cls) and type(dense.hidden[0]) is nn.Linear  # the original is untouched
    x = torch.rand(16, 1, 32, 32)
    rel = (full(x) - dense(x)).norm() / dense(x).norm()
    assert rel <= 1e-5


def test_whiten_beats_svd_on_the_calibration_outputs_of_a_layer():
    torch.manual_seed(0)
    dense = MLP(MLPConfig(mean=0.2, std=0.3)).eval()
    images = calibration_images()
    calibration = calibrate(dense, ["hidden.0"], [images])
    x = (images.flatten(1) - 0.2) / 0.3
    errors = {}
    for method in METHODS:
        model = factorize(dense, 16, ["hidden.0"], method=method, calibration=calibration)
        errors[method] = (model.hidden[0](x) - dense.hidden[0](x)).norm().item()
    assert errors["whiten"] < 0.75 * errors["svd"]  # 0.65 here


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("k", [1, 7, 24])
def test_registry_params_and_flops_match_the_built_layers(mlp, method, k):
    entry = METHODS[method]
    mlp.eval()
    calibration = calibrate(mlp, ["hidden"], [torch.rand(40, 64)])
    model = factorize(mlp, k, ["hidden"], method=method, calibration=calibration)
    shapes = [(48, 64), (24, 48)]
    head_params, head_flops = 10 * 24 + 10, 2 * 10 * 24
    assert param_counts(model)["params_total"] == sum(entry.params(m, n, k) for m, n in shapes) + head_params
    assert forward_flops(model, torch.rand(1, 64)) == sum(entry.flops(m, n, k) for m, n in shapes) + head_flops


@pytest.mark.parametrize("method", sorted(METHODS))
def test_max_rank_is_where_the_layers_stop(method):
    high = METHODS[method].max_rank(24, 48)
    check_rank(high, 24, 48)
    with pytest.raises(ValueError, match=r"\[1, min\(m, n\) = 24\]"):
        check_rank(high + 1, 24, 48)


def test_registry_entries_are_named_by_their_keys():
    assert {name: (e.name, e.calibrated) for name, e in METHODS.items()} == {"svd": ("svd", False),
                                                                              "whiten": ("whiten", True)}
    assert all(e.label for e in METHODS.values())


def test_calibrated_method_without_calibration_raises(mlp):
    with pytest.raises(ValueError, match=r"method 'whiten' is calibrated: pass calibration inputs"):
        factorize(mlp, 4, ["hidden"], method="whiten")


def test_calibration_missing_a_layer_raises(mlp):
    calibration = calibrate(mlp, ["hidden.0"], [torch.rand(8, 64)])
    with pytest.raises(ValueError, match=r"hidden\.1: no calibration inputs"):
        factorize(mlp, 4, ["hidden"], method="whiten", calibration=calibration)


@pytest.mark.parametrize("kwargs, message", [({"method": "tucker"}, "method must be one of"),
                                             ({"layer": "conv"}, "layer must be one of")])
def test_unknown_method_or_layer_raises(mlp, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factorize(mlp, 4, ["hidden"], **kwargs)
