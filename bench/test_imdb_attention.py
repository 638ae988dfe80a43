"""Study 3 benchmarks: the IMDB transformer, dense and with rank-k SVD query/key/value, for every k.

Ids: `dense`, `k1`, `k2` … Latency does not depend on where the factors started, so timing uses the first init of
the profile (`random`, the original study's); `extra_info` carries the mean test accuracy of every init
(`accuracy_random`, `accuracy_trained`). Inputs are
full-length (`seq_len` = the model's max_len) real reviews from the test split.
"""
import torch

from lowrank_bench.training.measure import forward_flops, peak_memory, weights_bytes
from lowrank_bench.timing.measure import run_timed

STUDY = "attention"


def attention_model(suite, method, rank):
    """(timed model, its row, its test accuracy, the study's own extra_info): the mean test accuracy of every start
    this rank and method was trained from (None for a start it was not: a calibrated method starts only from the
    trained model), the architecture's sizes."""
    rows = suite.rows(method, rank)
    model, row, accuracy = suite.model(method, rank, rows[0])
    c = model.config
    started = {r["init"] for r in rows}
    by_init = {f"accuracy_{init}": suite.variant({**row, "init": init})["test_acc"] if init in started else None
               for init in ("random", "trained")}
    return model, row, accuracy, {**by_init, "seq_len": suite.test[0].shape[1], "d_model": c.d_model,
                                  "heads": c.n_heads, "d_ff": c.d_ff, "qkv_params": model.qkv_params()}


def test_infer(lowrank, suite, method, rank, batch_size):
    x, _ = suite.batch(batch_size)
    model, row, accuracy, own = attention_model(suite, method, rank)
    suite.time_inference(lowrank, model, x, row, accuracy, own)  # token ids: integer in every dtype


def test_attention_block(benchmark, suite, method, rank, batch_size, lowrank_dtype, lowrank_mode):
    """The first block's self-attention alone, on the input it gets in the model (embedded, normalised) and the
    padding mask, in the dtype and mode; its accuracy is the whole model's in the same dtype and mode."""
    dtype, mode = lowrank_dtype, lowrank_mode
    ids, _ = suite.batch(batch_size)
    model, row, accuracy, own = attention_model(suite, method, rank)
    converted, forward = suite.env.for_inference(model, dtype, mode)
    accuracy = suite.timed_accuracy(accuracy, dtype, mode, batch_size)
    if callable(accuracy):
        accuracy = accuracy(forward)
    attn, dense_attn = converted.blocks[0].attn, suite.model("dense", None)[0].blocks[0].attn
    with torch.no_grad():
        x = converted.blocks[0].ln_1(converted.embed(ids))  # (B, T, C), in dtype
    mask = ids != model.config.pad_id
    flops = forward_flops(lambda t: model.blocks[0].attn(t, mask[:1]), x[:1].float())

    def through(fn):
        def block():
            with torch.no_grad():
                return fn(x, mask)
        return block
    benchmark.extra_info.update(
        own, **suite.fields(converted, row, accuracy, batch_size, "attention_block", dtype, mode),
        flops=flops, flop_ratio=flops / forward_flops(lambda t: dense_attn(t, mask[:1]), x[:1].float()),
        # eager, as every peak here: the first compiled call would count the compiler's own allocations
        peak_mem_bytes=peak_memory(through(attn), suite.env.device, weights_bytes(attn)))
    run_timed(benchmark, through(suite.env.compiled(attn, mode)), suite.env.device)


def test_train_step(benchmark, suite, method, rank):
    x, y = suite.batch(suite.cfg.train.batch_size)
    model, row, accuracy, own = attention_model(suite, method, rank)
    step, peak = suite.train_step(model, suite.cfg.train, x, y)
    benchmark.extra_info.update(own, **suite.info(model, row, accuracy, x, "train_step"), peak_mem_bytes=peak)
    run_timed(benchmark, step, suite.env.device)
