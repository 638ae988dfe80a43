"""Study 2 benchmarks: LoRA-fine-tuned Hoda MLP on Fashion-MNIST, per rank, merged and unmerged.

Ids: `r1`, `r2` … (LoRA ranks), `head` (head only) and `full` (full fine-tuning), under the same parameter name
`k` as the other suites so `--benchmark-group-by=param:k` works. Unmerged inference pays the side path
x·Aᵀ·Bᵀ per layer (PEFT's way); merged inference folds s·BA into W once and costs what the dense model costs.
"""
import pytest
import torch

from bench.harness import (batch_of, common_info, ensure_trained, inference_peak, load_row, profile_of, run_timed,
                     device_test_split, train_step)
from models.lora import lora_layers, lora_state_dict, merge_lora
from training.measure import forward_flops, param_counts, tensor_bytes, weights_bytes
from training.studies.lora import load_data
from training.train import evaluate

pytestmark = pytest.mark.benchmark(group="fashion-lora", warmup=True)


def _names(cfg):
    return ["head", "full"] + [f"r{r}" for r in cfg.ranks]


def pytest_generate_tests(metafunc):
    cfg = profile_of(metafunc.config).lora
    if "merged" in metafunc.fixturenames:  # merging only exists for LoRA rows
        cases = [(n, False) for n in _names(cfg)] + [(f"r{r}", True) for r in cfg.ranks]
        metafunc.parametrize("k,merged", cases, ids=[f"{n}-{'merged' if m else 'unmerged'}" for n, m in cases])
    elif "k" in metafunc.fixturenames:
        metafunc.parametrize("k", _names(cfg))
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", cfg.bench.batch_sizes, ids=lambda b: f"b{b}")


@pytest.fixture(scope="session")
def summary(env, capture):
    ensure_trained(env, "svd", ["dense"], capture)  # the pretrained model LoRA starts from
    return ensure_trained(env, "lora", _names(env.profile.lora), capture)


@pytest.fixture(scope="session")
def fashion(env, summary):
    return device_test_split(env, load_data)


@pytest.fixture(scope="session")
def models(env, summary, fashion):
    """(name, merged) -> (model, row, test accuracy re-evaluated from the loaded checkpoint)."""
    cache = {}

    def get(name, merged=False):
        if (name, merged) not in cache:
            model, row = load_row(env, summary, name, "MLP")
            if merged:
                model = merge_lora(model)
            cache[name, merged] = (model, row, evaluate(model, *fashion)[1])
        return cache[name, merged]
    return get


def _info(env, model, row, accuracy, batch_size, x, dense_flops, merged):
    flops = forward_flops(model, x[:1])
    adapter = tensor_bytes(lora_state_dict(model).values()) if lora_layers(model) else None
    return {**common_info(env, model, batch_size), "study": "lora", "method": row["method"], "k": row["r"],
            "r": row["r"], "alpha": row["alpha"], "merged": merged, "accuracy": accuracy,
            **param_counts(model), "flops": flops, "weights_bytes": weights_bytes(model),
            "flop_ratio": flops / dense_flops, "adapter_bytes": adapter, "checkpoint_bytes": row["checkpoint_bytes"]}


@pytest.fixture(scope="session")
def train_peak(env, models, fashion):
    """name -> peak bytes of one fine-tuning step (weights, gradients, Adam state, activations)."""
    cache = {}

    def get(name):
        if name not in cache:
            x, y = batch_of(fashion, env.profile.lora.train.batch_size)
            cache[name] = train_step(env, models(name)[0], env.profile.lora.train, x, y)[1]
        return cache[name]
    return get


def test_infer(benchmark, env, models, fashion, train_peak, k, merged, batch_size):
    model, row, accuracy = models(k, merged)
    x, _ = batch_of(fashion, batch_size)
    dense_flops = forward_flops(models("full")[0], x[:1])

    forward = env.for_inference(model)

    def infer():
        with torch.no_grad():
            return forward(x)
    benchmark.extra_info.update(_info(env, model, row, accuracy, batch_size, x, dense_flops, merged), kind="infer",
                                peak_mem_bytes=inference_peak(model, x, env.device),
                                train_step_peak_mem_bytes=train_peak(k))
    run_timed(benchmark, infer, env.device, env.profile.lora.bench)


def test_train_step(benchmark, env, models, fashion, k):
    """One optimizer step at the fine-tuning batch size: frozen weights get no gradients and no Adam state."""
    base, row, accuracy = models(k)
    batch_size = env.profile.lora.train.batch_size
    x, y = batch_of(fashion, batch_size)
    step, peak = train_step(env, base, env.profile.lora.train, x, y)
    dense_flops = forward_flops(models("full")[0], x[:1])
    benchmark.extra_info.update(_info(env, base, row, accuracy, batch_size, x, dense_flops, False),
                                kind="train_step", peak_mem_bytes=peak, train_step_peak_mem_bytes=peak)
    run_timed(benchmark, step, env.device, env.profile.lora.bench)
