"""Study 2 benchmarks: LoRA-fine-tuned Hoda MLP on Fashion-MNIST, per rank, merged and unmerged.

Ids: `head` (head only), `full` (full fine-tuning), `r1`, `r2` … (LoRA ranks), with `-merged`/`-unmerged` for
inference. Unmerged inference pays the side path x·Aᵀ·Bᵀ per layer (PEFT's way); merged inference folds s·BA into
W once and costs what the dense model costs.
"""
import copy
import functools

import torch

from models.lora import lora_layers, lora_state_dict, merge_lora
from training.measure import inference_peak, tensor_bytes
from training.timing import cast, run_timed

STUDY = "lora"


def lora_info(suite, model, row, accuracy, x, kind, merged, dtype="fp32", mode="eager", converted=None):
    converted = converted or model
    adapter = tensor_bytes(lora_state_dict(converted).values()) if lora_layers(converted) else None
    return {**suite.info(model, row, accuracy, x, kind, dtype, mode, converted), "alpha": row["alpha"],
            "merged": merged, "adapter_bytes": adapter, "checkpoint_bytes": row["checkpoint_bytes"]}


@functools.cache  # once per variant, not once per inference benchmark (the suite hashes by identity)
def train_step_peak(suite, method, rank):
    """Peak bytes of one fine-tuning step (weights, gradients, Adam state, activations)."""
    x, y = suite.batch(suite.cfg.train.batch_size)
    return suite.train_step(suite.model(method, rank)[0], suite.cfg.train, x, y)[1]


def test_infer(benchmark, suite, method, rank, merged, batch_size, dtype, mode):
    model, row, accuracy = suite.model(method, rank)
    step_peak = train_step_peak(suite, method, rank)
    if merged:  # s·BA folded into W: accuracy is taken again from the merged weights
        model = merge_lora(copy.deepcopy(model))
        accuracy = suite.accuracy(model)
    x, _ = suite.batch(batch_size)
    converted, forward, accuracy = suite.inference(model, dtype, mode, accuracy, batch_size)
    xd = cast(x, dtype)

    def infer():
        with torch.no_grad():
            return forward(xd)
    benchmark.extra_info.update(lora_info(suite, model, row, accuracy, x, "infer", merged, dtype, mode, converted),
                                peak_mem_bytes=inference_peak(converted, xd, suite.env.device),
                                train_step_peak_mem_bytes=step_peak)
    run_timed(benchmark, infer, suite.env.device)


def test_train_step(benchmark, suite, method, rank):
    """One optimizer step at the fine-tuning batch size: frozen weights get no gradients and no Adam state."""
    model, row, accuracy = suite.model(method, rank)
    x, y = suite.batch(suite.cfg.train.batch_size)
    step, peak = suite.train_step(model, suite.cfg.train, x, y)
    benchmark.extra_info.update(lora_info(suite, model, row, accuracy, x, "train_step", False),
                                peak_mem_bytes=peak, train_step_peak_mem_bytes=peak)
    run_timed(benchmark, step, suite.env.device)
