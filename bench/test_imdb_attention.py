"""Study 3 benchmarks: the IMDB transformer, dense and with rank-k SVD query/key/value, for every k.

Ids: `dense`, `k1`, `k2` … Latency does not depend on where the factors started, so timing uses the
randomly-initialised runs (the original study's); `extra_info` carries the test accuracy of both inits.
Inputs are full-length (`seq_len` = the profile's max_len) real reviews from the test split.
"""
import pytest
import torch

from harness import (batch_of, common_info, ensure_trained, inference_peak, load_row, profile_of, run_timed,
                     device_test_split, train_step)
from training.measure import forward_flops, param_counts, peak_memory, weights_bytes
from training.studies.attention import load_data
from training.train import evaluate

pytestmark = pytest.mark.benchmark(group="imdb-attention", warmup=True)


def _names(cfg):
    return ["dense"] + [f"k{k}" for k in cfg.ranks]


def _row_name(k, init):
    return "dense" if k == "dense" else f"{init}-{k}"


def pytest_generate_tests(metafunc):
    cfg = profile_of(metafunc.config).attention
    if "k" in metafunc.fixturenames:
        metafunc.parametrize("k", _names(cfg))
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", cfg.bench.batch_sizes, ids=lambda b: f"b{b}")


@pytest.fixture(scope="session")
def summary(env, capture):
    cfg = env.profile.attention
    rows = ["dense"] + [f"{i}-k{k}" for i in cfg.inits for k in cfg.ranks]
    return ensure_trained(env, "attention", rows, capture)


@pytest.fixture(scope="session")
def imdb(env, summary):
    return device_test_split(env, load_data)


@pytest.fixture(scope="session")
def models(env, summary, imdb):
    """k -> (model used for timing, its row, {init: test accuracy re-evaluated from the loaded checkpoint})."""
    cache = {}
    inits = env.profile.attention.inits

    def get(k):
        if k not in cache:
            accuracy, model, timed_row = {}, None, None
            for init in inits:
                loaded, row = load_row(env, summary, _row_name(k, init), "Transformer")
                accuracy[init] = evaluate(loaded, *imdb, batch_size=256)[1]
                if model is None:
                    model, timed_row = loaded, row
            cache[k] = (model, timed_row, accuracy)
        return cache[k]
    return get


def _info(env, model, row, accuracy, batch_size, x, dense_flops):
    flops = forward_flops(model, x[:1])
    c = model.config
    init = None if row["k"] is None else next(iter(accuracy))
    return {**common_info(env, model, batch_size), "study": "attention", "method": row["method"], "k": row["k"],
            "accuracy": accuracy[init] if init else next(iter(accuracy.values())),
            "accuracy_by_init": accuracy if init else None, **param_counts(model), "flops": flops,
            "weights_bytes": weights_bytes(model), "flop_ratio": flops / dense_flops, "seq_len": x.shape[1],
            "d_model": c.d_model, "heads": c.n_heads, "init": init, "qkv_params": model.qkv_params()}


def test_infer(benchmark, env, models, imdb, k, batch_size):
    model, row, accuracy = models(k)
    x, _ = batch_of(imdb, batch_size)
    dense_flops = forward_flops(models("dense")[0], x[:1])

    forward = env.for_inference(model)

    def infer():
        with torch.no_grad():
            return forward(x)
    benchmark.extra_info.update(_info(env, model, row, accuracy, batch_size, x, dense_flops), kind="infer",
                                peak_mem_bytes=inference_peak(model, x, env.device))
    run_timed(benchmark, infer, env.device, env.profile.attention.bench)


def test_attention_block(benchmark, env, models, imdb, k, batch_size):
    """The first block's self-attention alone, on the input it gets in the model (embedded, normalised) and the
    padding mask."""
    model, row, accuracy = models(k)
    ids, _ = batch_of(imdb, batch_size)
    attn = model.blocks[0].attn
    with torch.no_grad():
        x = model.blocks[0].ln_1(model.embed(ids))  # (B, T, C)
    mask = ids != model.config.pad_id
    dense_attn = models("dense")[0].blocks[0].attn
    flops, dense_flops = forward_flops(lambda t: attn(t, mask[:1]), x[:1]), \
        forward_flops(lambda t: dense_attn(t, mask[:1]), x[:1])

    def block():
        with torch.no_grad():
            return attn(x, mask)
    info = _info(env, model, row, accuracy, batch_size, ids, forward_flops(models("dense")[0], ids[:1]))
    info.update(kind="attention_block", flops=flops, flop_ratio=flops / dense_flops,
                peak_mem_bytes=peak_memory(block, env.device, weights_bytes(attn)))
    benchmark.extra_info.update(info)
    run_timed(benchmark, block, env.device, env.profile.attention.bench)


def test_train_step(benchmark, env, models, imdb, k):
    base, row, accuracy = models(k)
    batch_size = env.profile.attention.train.batch_size
    x, y = batch_of(imdb, batch_size)
    step, peak = train_step(env, base, env.profile.attention.train, x, y)
    benchmark.extra_info.update(_info(env, base, row, accuracy, batch_size, x, forward_flops(models("dense")[0], x[:1])),
                                kind="train_step", peak_mem_bytes=peak)
    run_timed(benchmark, step, env.device, env.profile.attention.bench)
