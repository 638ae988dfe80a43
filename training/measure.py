"""What the harness measures about a model besides time: parameters, bytes, FLOPs and peak memory.

Peak memory is measured, not estimated, and means the same on both devices: the bytes the caller says were
resident (weights, and whatever state it counts) plus the transient peak allocated during the call. On CUDA the
transient peak is the caching allocator's high-water mark (`max_memory_allocated`) above what was allocated
before the call, so data sets kept on the device do not count. The CPU allocator keeps no statistics, so there
the profiler records every allocation and free made during the call and their running sum gives the peak.
"""
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from lowrank_bench.models.inputs import call


def param_counts(model):
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params_total": total, "params_trainable": trainable}


def named_param_counts(model):
    return {name: p.numel() for name, p in model.named_parameters()}


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def weights_bytes(model):
    return tensor_bytes(list(model.parameters()) + list(model.buffers()))


def optimizer_state_bytes(optimizer):
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def forward_flops(model, x):
    """FLOPs of one forward pass on `x` (as `call` passes it), counted by torch.utils.flop_counter (a multiply-add
    counts 2).

    Attention runs through the math kernel here, whose two batched matmuls the counter sees: on the CPU it has no
    formula for the fused kernel (`_scaled_dot_product_flash_attention_for_cpu` counted 0, 4·T²·d short), on CUDA
    it has, so without this the same model had two FLOP counts. Only counted, never timed.
    """
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        call(model, x)
    return counter.get_total_flops()


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: the profiler's C++ side logs its start and stop there on CPU-only machines."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory(fn, device, resident_bytes=0):
    """`resident_bytes` plus the peak bytes allocated while `fn()` runs."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return resident_bytes + torch.cuda.max_memory_allocated(device) - before
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_stderr():
            prof.stop()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage  # allocations are positive, frees negative
        peak = max(peak, live)
    return resident_bytes + peak


def inference_peak(model, inputs, device):
    """Weights plus the transient peak of one no-grad forward pass of `model` on `inputs` (as `call` passes them)."""
    def infer():
        with torch.no_grad():
            call(model, inputs)
    return peak_memory(infer, device, weights_bytes(model))


@dataclass(frozen=True)
class Measurement:
    """What `measure` finds about a model on one input batch."""
    params_total: int  # every parameter
    params_trainable: int  # those with requires_grad
    flops: int  # of one forward pass on the whole batch (a multiply-add counts 2)
    weights_bytes: int  # parameters and buffers, in their own dtypes
    peak_mem_bytes: int  # the weights plus the transient peak of one no-grad forward pass on the batch


def measure(model, example_input, device=None) -> Measurement:
    """Parameters, forward FLOPs, weight bytes and peak memory of `model` on `example_input` (a tensor, a tuple of
    positional arguments or a dict of keyword arguments), on `device` (default: where the model's first parameter
    is). Nothing is timed: pytest's `lowrank` fixture times."""
    if device is None:
        device = next(model.parameters()).device
    counts = param_counts(model)
    return Measurement(counts["params_total"], counts["params_trainable"], forward_flops(model, example_input),
                       weights_bytes(model), inference_peak(model, example_input, device))
