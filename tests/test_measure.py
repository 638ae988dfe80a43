"""Peak memory, FLOPs and byte counts on cases whose answer is known by hand."""
import dataclasses

import torch
import torch.nn as nn

from lowrank_bench.models.transformer import Transformer
from lowrank_bench.training.config import load_profile
from lowrank_bench.training.measure import (Measurement, forward_flops, measure, optimizer_state_bytes, param_counts, peak_memory,
                              weights_bytes)

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



class Pair(nn.Module):
    """Two linear layers, one on each keyword input: the form a Hugging Face model's inputs take."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(30, 20), nn.Linear(10, 20, bias=False)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


def test_measure_takes_positional_and_keyword_inputs():
    model = Pair()
    model.b.weight.requires_grad_(False)
    left, right = torch.randn(7, 30), torch.randn(7, 10)
    # the counter counts the matrix products (a multiply-add 2), not the bias or the sum
    expected = Measurement(params_total=620 + 200, params_trainable=620, flops=2 * 7 * (30 * 20 + 10 * 20),
                           weights_bytes=4 * 820, peak_mem_bytes=0)
    for inputs in ((left, right), {"left": left, "right": right}):
        m = measure(model, inputs)
        assert dataclasses.replace(m, peak_mem_bytes=0) == expected
        # weights, plus at least the two (7, 20) products alive together before their sum
        assert m.peak_mem_bytes >= m.weights_bytes + 2 * 4 * 7 * 20


def test_attention_flops_are_the_closed_form_on_the_cpu():
    """The smoke attention model, counted on the CPU, is the hand count CUDA's counter also gives (attention
    included): 4 d×d projections and 2 feed-forward matmuls per token, QKᵀ and AV over T², the head once."""
    cfg = load_profile("smoke").attention.model
    assert (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers, cfg.max_len, cfg.n_classes) == (128, 4, 256, 1, 64, 2)
    d, d_ff, C, T = cfg.d_model, cfg.d_ff, cfg.n_classes, cfg.max_len
    model = Transformer(dataclasses.replace(cfg, vocab_size=50)).eval()
    ids = torch.randint(1, 50, (1, T))  # no padding
    closed_form = 8 * T * d * d + 4 * T * d * d_ff + 4 * T * T * d + 2 * d * C
    assert forward_flops(model, ids) == closed_form == 18_874_880
    # What the closed form leaves out is no FLOP to the counter: lookups, norms, biases, GELU, softmax, pooling.
    assert forward_flops(nn.Embedding(50, d), ids) == forward_flops(nn.LayerNorm(d), torch.randn(1, T, d)) == 0


def test_adam_state_is_two_moments_per_trainable_weight():
    layer = nn.Linear(10, 10)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(2, 10)).sum().backward()
    opt.step()
    assert optimizer_state_bytes(opt) == 2 * 4 * 110 + 2 * 4  # exp_avg, exp_avg_sq; one scalar step each
