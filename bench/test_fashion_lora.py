"""Study 2 benchmarks: LoRA-fine-tuned Hoda MLP on Fashion-MNIST, per rank, merged and unmerged.

Ids: `head` (head only), `full` (full fine-tuning), `r1`, `r2` … (LoRA ranks), with `-merged`/`-unmerged` for
inference. Unmerged inference pays the side path x·Aᵀ·Bᵀ per layer (PEFT's way); merged inference folds s·BA into
W once and costs what the dense model costs.
"""
import copy
import functools

from lowrank_bench.models.lora import lora_layers, lora_state_dict, merge_lora
from lowrank_bench.timing.measure import DTYPE, run_timed

STUDY = "lora"


def lora_fields(model, row, merged, dtype="fp32"):
    """The study's own extra_info; the adapter's bytes in `dtype`, the dtype the model is timed in."""
    adapter = None
    if lora_layers(model):
        adapter = sum(t.numel() for t in lora_state_dict(model).values()) * DTYPE[dtype].itemsize
    return {"alpha": row["alpha"], "merged": merged, "adapter_bytes": adapter,
            "checkpoint_bytes": row["checkpoint_bytes"]}


@functools.cache  # once per variant, not once per inference benchmark (the suite hashes by identity)
def train_step_peak(suite, method, rank):
    """Peak bytes of one fine-tuning step (weights, gradients, Adam state, activations)."""
    x, y = suite.batch(suite.cfg.train.batch_size)
    return suite.train_step(suite.model(method, rank)[0], suite.cfg.train, x, y)[1]


def test_infer(lowrank, suite, method, rank, merged, batch_size):
    model, row, accuracy = suite.model(method, rank)
    step_peak = train_step_peak(suite, method, rank)
    if merged:  # s·BA folded into W: accuracy is taken again from the merged weights
        model = merge_lora(copy.deepcopy(model))
        accuracy = suite.accuracy(model)
    x, _ = suite.batch(batch_size)
    suite.time_inference(lowrank, model, x, row, accuracy,
                         {**lora_fields(model, row, merged, lowrank.dtype), "train_step_peak_mem_bytes": step_peak})


def test_train_step(benchmark, suite, method, rank):
    """One optimizer step at the fine-tuning batch size: frozen weights get no gradients and no Adam state."""
    model, row, accuracy = suite.model(method, rank)
    x, y = suite.batch(suite.cfg.train.batch_size)
    step, peak = suite.train_step(model, suite.cfg.train, x, y)
    benchmark.extra_info.update(suite.info(model, row, accuracy, x, "train_step"), **lora_fields(model, row, False),
                                peak_mem_bytes=peak, train_step_peak_mem_bytes=peak)
    run_timed(benchmark, step, suite.env.device)
