"""Study 1 benchmarks: the dense Hoda MLP and its truncated-SVD versions, for every k and batch size.

Ids: `dense`, `k1`, `k2` … (parameters `method`, `rank`, `batch_size`; `--benchmark-group-by=param:rank` works).
Inference is timed with the input normalisation folded into the first layer, dense and factored alike, as a
deployment would run it.
"""
import functools

import torch

from lowrank_bench.models.mlp import fold_normalisation
from lowrank_bench.models.select import linear_layers
from lowrank_bench.training.measure import peak_memory
from lowrank_bench.timing.measure import DTYPE, cast, run_timed

STUDY = "svd"


def svd_fields(suite, row):
    """The study's own extra_info: accuracies before retraining and on validation, means over seeds."""
    v = suite.variant(row)
    return {"accuracy_truncated": v["acc_truncated"], "val_accuracy": v["val_acc"],
            "val_accuracy_truncated": v.get("val_acc_truncated"), "costs_more_than_dense": v["costs_more_than_dense"]}


@functools.cache  # once per model (the suite hashes by identity), so the dense benchmark's model is its reference
def folded(suite, method, rank):
    """(the model as inference runs it, its row, its accuracy): at small k the extra pass over the input would
    otherwise cost as much as the factored GEMMs themselves, so the input normalisation is folded into the first
    layer, in fp32 (then converted: the fold's rounding happens once, in fp32)."""
    model, row, accuracy = suite.model(method, rank)
    return fold_normalisation(model), row, accuracy


def test_infer(lowrank, suite, method, rank, batch_size):
    """The model against the dense model, both folded, and against the GEMM chains that bound their speed, in
    paired rounds (the lowrank fixture's `ceiling`)."""
    model, row, accuracy = folded(suite, method, rank)
    x, _ = suite.batch(batch_size)
    ceiling = None if rank is None else tuple(
        gemm_chain(suite, m, k, batch_size, lowrank.dtype)[0] for m, k in (("dense", None), (method, rank)))
    suite.time_inference(lowrank, model, x, row, accuracy, {**svd_fields(suite, row), "normalisation": "folded"},
                         reference=folded(suite, "dense", None)[0], ceiling=ceiling)


def test_train_step(benchmark, suite, method, rank):
    """One optimizer step of retraining (forward, backward, AdamW) at the retraining batch size."""
    model, row, accuracy = suite.model(method, rank)
    x, y = suite.batch(suite.cfg.retrain.batch_size)
    step, peak = suite.train_step(model, suite.cfg.retrain, x, y)
    benchmark.extra_info.update(suite.info(model, row, accuracy, x, "train_step"), **svd_fields(suite, row),
                                peak_mem_bytes=peak)
    run_timed(benchmark, step, suite.env.device)


def gemm_chain(suite, method, rank, batch_size, dtype):
    """(chain, its weights, the layers' names): the bare products of every factored layer of a variant, chained as
    in the model, as one callable on a random batch in `dtype`. Dense: x·Wᵀ per layer; rank k: (x·W2ᵀ)·W1ᵀ."""
    model = suite.model(method, rank)[0]
    names = linear_layers(suite.model("dense", None)[0], suite.cfg.targets)
    layers = [model.get_submodule(name) for name in names]
    weights = [cast(w.detach(), dtype) for layer in layers
               for w in ((layer.w2.weight, layer.w1.weight) if rank else (layer.weight,))]  # in applied order
    assert all(a.shape[0] == b.shape[1] for a, b in zip(weights, weights[1:])), "factored layers must chain"
    x = torch.randn(batch_size, weights[0].shape[1], device=suite.env.device, dtype=DTYPE[dtype])

    def chain():
        h = x
        for w in weights:
            h = h @ w.T  # (B, out) of this product
        return h
    return chain, weights, names


def test_gemm(benchmark, suite, method, rank, batch_size, lowrank_dtype, lowrank_mode):
    """The raw-GEMM ceiling: the bare products of every factored layer, chained as in the model, in one call.

    One call with one synchronisation, as the model pays: timing each layer in its own call summed one call
    overhead (and on CUDA one sync) per layer, more than the model paid, so the "ceiling" sat below the model
    (efficiency up to 1.68 on the CPU smoke run, 1.34 on an H100). In the model's dtype and mode, so each (dtype,
    mode) of the model has its own ceiling (compiled on CUDA: one graph replay per chain, as the compiled model
    pays). test_infer times the same chains in alternation with the models for the ceiling's ratios.
    """
    dtype, mode = lowrank_dtype, lowrank_mode
    model, row, _ = suite.model(method, rank)
    dense = suite.model("dense", None)[0]
    chain, weights, names = gemm_chain(suite, method, rank, batch_size, dtype)
    dense_flops = sum(2 * dense.get_submodule(name).weight.numel() for name in names)
    flops = sum(2 * w.numel() for w in weights)  # per sample, like every FLOP count here
    benchmark.extra_info.update({
        **suite.fields(model, row, None, batch_size, "gemm_factored" if rank else "gemm_dense", dtype, mode),
        "layers": ",".join(names), "accuracy_truncated": None, "val_accuracy": None, "val_accuracy_truncated": None,
        "flops": flops, "flop_ratio": flops / dense_flops,
        "weights_bytes": sum(w.numel() * w.element_size() for w in weights),
        "peak_mem_bytes": peak_memory(chain, suite.env.device)})
    timed = suite.env.compiled(chain, mode)
    with torch.no_grad():
        run_timed(benchmark, timed, suite.env.device)
