"""Study 1 benchmarks: the dense Hoda MLP and its truncated-SVD versions, for every k and batch size.

Ids: `dense`, `k1`, `k2` … (parameters `method`, `rank`, `batch_size`; `--benchmark-group-by=param:rank` works).
Inference is timed with the input normalisation folded into the first layer, dense and factored alike, as a
deployment would run it.
"""
import torch

from bench.harness import inference_peak, profile_of, run_timed
from models.mlp import MLP, fold_normalisation
from models.select import linear_layers
from training.measure import peak_memory

STUDY = "svd"


def svd_info(suite, model, row, accuracy, x, kind):
    return {**suite.info(model, row, accuracy, x, kind), "accuracy_truncated": row["acc_truncated"],
            "costs_more_than_dense": row["costs_more_than_dense"]}


def test_infer(benchmark, suite, method, rank, batch_size):
    model, row, accuracy = suite.model(method, rank)
    x, _ = suite.batch(batch_size)
    # At small k the extra pass over the input would otherwise cost as much as the factored GEMMs themselves.
    folded = fold_normalisation(model)
    forward = suite.env.for_inference(folded)

    def infer():
        with torch.no_grad():
            return forward(x)
    benchmark.extra_info.update(svd_info(suite, model, row, accuracy, x, "infer"), normalisation="folded",
                                peak_mem_bytes=inference_peak(folded, x, suite.env.device))
    run_timed(benchmark, infer, suite.env.device)


def test_train_step(benchmark, suite, method, rank):
    """One optimizer step of retraining (forward, backward, AdamW) at the retraining batch size."""
    model, row, accuracy = suite.model(method, rank)
    x, y = suite.batch(suite.cfg.retrain.batch_size)
    step, peak = suite.train_step(model, suite.cfg.retrain, x, y)
    benchmark.extra_info.update(svd_info(suite, model, row, accuracy, x, "train_step"), peak_mem_bytes=peak)
    run_timed(benchmark, step, suite.env.device)


def pytest_generate_tests(metafunc):
    if "layer" in metafunc.fixturenames:  # the layers the profile factors, as the study finds them
        cfg = profile_of(metafunc.config).svd
        metafunc.parametrize("layer", linear_layers(MLP(cfg.model), cfg.targets))


def test_gemm(benchmark, suite, method, rank, layer, batch_size):
    """The raw-GEMM ceiling: the bare dense product x·Wᵀ, or the bare pair (x·W2ᵀ)·W1ᵀ, for one layer's shape."""
    model, row, _ = suite.model(method, rank)
    module, device = model.get_submodule(layer), suite.env.device
    if rank is None:
        w = module.weight.detach()
        (m, n), product = w.shape, lambda: x @ w.T  # (B, m)
    else:
        w2, w1 = module.w2.weight.detach(), module.w1.weight.detach()
        (m, n), product = (w1.shape[0], w2.shape[1]), lambda: (x @ w2.T) @ w1.T  # (B, k) then (B, m)
    x = torch.randn(batch_size, n, device=device)
    weights = rank * (m + n) if rank else m * n
    benchmark.extra_info.update(
        **suite.fields(model, row, None, batch_size, "gemm_factored" if rank else "gemm_dense"),
        layer=layer, m=m, n=n, accuracy_truncated=None, flops=2 * weights, weights_bytes=4 * weights,
        flop_ratio=weights / (m * n), peak_mem_bytes=peak_memory(product, device))
    with torch.no_grad():
        run_timed(benchmark, product, device)
