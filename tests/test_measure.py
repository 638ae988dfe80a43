"""Peak memory, FLOPs and byte counts on cases whose answer is known by hand."""
import torch
import torch.nn as nn

from training.measure import forward_flops, optimizer_state_bytes, param_counts, peak_memory, weights_bytes

MIB = 2 ** 20


def test_cpu_peak_is_the_largest_live_set_plus_resident():
    def two_then_one():
        a = torch.ones(MIB // 4)  # 1 MiB of float32
        b = torch.ones(MIB // 4)  # both alive: 2 MiB
        del a, b
        c = torch.ones(MIB // 4)  # 1 MiB again, after the frees
        return c.sum()
    peak = peak_memory(two_then_one, "cpu", resident_bytes=123)
    assert 2 * MIB + 123 <= peak < 2 * MIB + 123 + 64 * 1024  # a scalar or two of slack, never a third MiB


def test_flops_and_bytes_of_a_linear_layer():
    layer = nn.Linear(30, 20)
    assert forward_flops(layer, torch.randn(7, 30)) == 2 * 7 * 30 * 20
    assert weights_bytes(layer) == 4 * (30 * 20 + 20)
    layer.bias.requires_grad_(False)
    assert param_counts(layer) == {"params_total": 620, "params_trainable": 600}


def test_adam_state_is_two_moments_per_trainable_weight():
    layer = nn.Linear(10, 10)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(2, 10)).sum().backward()
    opt.step()
    assert optimizer_state_bytes(opt) == 2 * 4 * 110 + 2 * 4  # exp_avg, exp_avg_sq; one scalar step each
