"""Study 1 benchmarks: the dense Hoda MLP and its truncated-SVD versions, for every k and batch size.

Ids: `dense`, `k1`, `k2` …; every benchmark carries the parameters `k` and `batch_size`, so
`--benchmark-group-by=param:k` (or `param:batch_size`) works, and `extra_info` holds what the report needs.
"""
import pytest
import torch

from bench.harness import (batch_of, common_info, ensure_trained, inference_peak, load_row, profile_of, run_timed,
                     device_test_split, train_step)
from models.mlp import fold_normalisation
from training.measure import forward_flops, param_counts, peak_memory, weights_bytes
from training.studies.svd import load_data
from training.train import evaluate

pytestmark = pytest.mark.benchmark(group="hoda-svd", warmup=True)


def pytest_generate_tests(metafunc):
    cfg = profile_of(metafunc.config).svd
    names = ["dense"] + [f"k{k}" for k in cfg.ranks]
    if "k" in metafunc.fixturenames:
        metafunc.parametrize("k", names, ids=names)
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", cfg.bench.batch_sizes, ids=lambda b: f"b{b}")
    if "layer" in metafunc.fixturenames:
        metafunc.parametrize("layer", _layers(cfg))


@pytest.fixture(scope="session")
def summary(env, capture):
    names = ["dense"] + [f"k{k}" for k in env.profile.svd.ranks]
    return ensure_trained(env, "svd", names, capture)


@pytest.fixture(scope="session")
def hoda(env, summary):
    return device_test_split(env, load_data)


@pytest.fixture(scope="session")
def models(env, summary, hoda):
    """name -> (model, row, test accuracy re-evaluated from the loaded checkpoint)."""
    cache = {}

    def get(name):
        if name not in cache:
            model, row = load_row(env, summary, name, "MLP")
            cache[name] = (model, row, evaluate(model, *hoda)[1])
        return cache[name]
    return get


def _info(env, model, row, accuracy, batch_size, dense_flops, x):
    flops = forward_flops(model, x[:1])
    return {**common_info(env, model, batch_size), "study": "svd", "method": row["method"], "k": row["k"],
            "accuracy": accuracy, "accuracy_truncated": row["acc_truncated"], **param_counts(model),
            "flops": flops, "weights_bytes": weights_bytes(model), "flop_ratio": flops / dense_flops,
            "costs_more_than_dense": row["costs_more_than_dense"]}


def test_infer(benchmark, env, models, hoda, k, batch_size):
    model, row, accuracy = models(k)
    dense_flops = forward_flops(models("dense")[0], hoda[0][:1])
    x, _ = batch_of(hoda, batch_size)

    # Timed with the normalisation folded into the first layer, dense and factored alike: at small k the extra
    # pass over the input would otherwise cost as much as the factored GEMMs themselves.
    folded = fold_normalisation(model)
    forward = env.for_inference(folded)

    def infer():
        with torch.no_grad():
            return forward(x)
    benchmark.extra_info.update(_info(env, model, row, accuracy, batch_size, dense_flops, x), kind="infer",
                                normalisation="folded", peak_mem_bytes=inference_peak(folded, x, env.device))
    run_timed(benchmark, infer, env.device, env.profile.svd.bench)


def test_train_step(benchmark, env, models, hoda, k):
    """One optimizer step of retraining (forward, backward, AdamW) at the retraining batch size."""
    model, row, accuracy = models(k)
    batch_size = env.profile.svd.retrain.batch_size
    x, y = batch_of(hoda, batch_size)
    step, peak = train_step(env, model, env.profile.svd.retrain, x, y)
    dense_flops = forward_flops(models("dense")[0], x[:1])
    benchmark.extra_info.update(_info(env, model, row, accuracy, batch_size, dense_flops, x), kind="train_step",
                                peak_mem_bytes=peak)
    run_timed(benchmark, step, env.device, env.profile.svd.bench)


def _layers(cfg):
    return [f"hidden.{i}" for i in range(len(cfg.hidden))]


def test_gemm(benchmark, env, models, layer, k, batch_size):
    """The raw-GEMM ceiling: the bare dense product x·Wᵀ, or the bare pair (x·W2ᵀ)·W1ᵀ, for one layer's shape."""
    model, row, accuracy = models(k)
    module = model.get_submodule(layer)
    factored = row["k"] is not None
    if factored:
        w2, w1 = module.w2.weight.detach(), module.w1.weight.detach()
        m, n = w1.shape[0], w2.shape[1]
        x = torch.randn(batch_size, n, device=env.device)
        product = lambda: (x @ w2.T) @ w1.T  # (B, k) then (B, m)
    else:
        w = module.weight.detach()
        m, n = w.shape
        x = torch.randn(batch_size, n, device=env.device)
        product = lambda: x @ w.T  # (B, m)
    flops = 2 * (row["k"] * (m + n) if factored else m * n)
    benchmark.extra_info.update(
        **common_info(env, model, batch_size), study="svd", kind="gemm_factored" if factored else "gemm_dense",
        method=row["method"], k=row["k"], layer=layer, m=m, n=n, accuracy=None, accuracy_truncated=None,
        **param_counts(model), flops=flops, weights_bytes=4 * (row["k"] * (m + n) if factored else m * n),
        flop_ratio=flops / (2 * m * n), peak_mem_bytes=peak_memory(product, env.device))
    with torch.no_grad():
        run_timed(benchmark, product, env.device, env.profile.svd.bench)
