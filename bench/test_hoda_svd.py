"""Study 1 benchmarks: the dense Hoda MLP and its truncated-SVD versions, for every k and batch size.

Ids: `dense`, `k1`, `k2` …; every benchmark carries the parameters `k` and `batch_size`, so
`--benchmark-group-by=param:k` (or `param:batch_size`) works, and `extra_info` holds what the report needs.
"""
import pytest
import torch

from harness import (batch_of, common_info, ensure_trained, inference_peak, load_row, profile_of, run_timed,
                     device_test_split, train_step)
from models.mlp import fold_normalisation
from models.select import linear_layers
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


def test_gemm(benchmark, env, models, k, batch_size):
    """The raw-GEMM ceiling: the bare products of every factored layer, chained as in the model, in one call.

    Dense: x·Wᵀ per layer; rank k: (x·W2ᵀ)·W1ᵀ per layer. One call with one synchronisation, as the model pays:
    timing each layer in its own call summed one call overhead (and on CUDA one sync) per layer, more than the model
    paid, so the "ceiling" sat below the model (efficiency up to 1.68 on the CPU smoke run, 1.34 on an H100).
    """
    model, row, accuracy = models(k)
    factored = row["k"] is not None
    names = linear_layers(models("dense")[0], env.profile.svd.targets)
    layers = [model.get_submodule(name) for name in names]
    weights = [w.detach() for layer in layers
               for w in ((layer.w2.weight, layer.w1.weight) if factored else (layer.weight,))]  # in applied order
    assert all(a.shape[0] == b.shape[1] for a, b in zip(weights, weights[1:])), "factored layers must chain"
    x = torch.randn(batch_size, weights[0].shape[1], device=env.device)

    def chain():
        h = x
        for w in weights:
            h = h @ w.T  # (B, out) of this product
        return h
    dense_flops = sum(2 * layer.out_features * layer.in_features for layer in
                      (models("dense")[0].get_submodule(name) for name in names))
    flops = sum(2 * w.numel() for w in weights)  # per sample, like every FLOP count here
    benchmark.extra_info.update(
        **common_info(env, model, batch_size), study="svd", kind="gemm_factored" if factored else "gemm_dense",
        method=row["method"], k=row["k"], layers=",".join(names), accuracy=None, accuracy_truncated=None,
        **param_counts(model), flops=flops, weights_bytes=sum(w.numel() * w.element_size() for w in weights),
        flop_ratio=flops / dense_flops, peak_mem_bytes=peak_memory(chain, env.device))
    with torch.no_grad():
        run_timed(benchmark, chain, env.device, env.profile.svd.bench)
