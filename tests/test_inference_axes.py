"""Every (dtype, mode) of an inference benchmark computes what fp32 eager computes, for each study's timed model.

`bench.harness.Env.for_inference` converts and compiles the models the suites time; here the same call on tiny
models of each study (the folded SVD MLP, the unmerged LoRA MLP, the SVD-attention transformer and its attention
block alone), on the CPU. Tolerance, relative to the largest fp32 logit: 1e-4 for fp32 (compiled code may reorder
sums), 1e-2 for fp16 (10-bit mantissa) and 5e-2 for bf16 (7-bit mantissa, accumulated over a few layers).
"""
import copy
from pathlib import Path

import pytest
import torch

from lowrank_bench.bench.harness import Env
from lowrank_bench.models.lora import LoRAConfig, add_lora, lora_layers
from lowrank_bench.models.methods import factorize
from lowrank_bench.models.mlp import MLP, MLPConfig, fold_normalisation
from lowrank_bench.models.transformer import Transformer, TransformerConfig
from lowrank_bench.training.config import Profile
from lowrank_bench.timing.measure import DTYPE, cast

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}


def svd_mlp():
    model = MLP(MLPConfig(in_features=64, hidden=[64, 32], dropout=0.0, mean=0.2, std=0.5))
    return fold_normalisation(factorize(model, 8, ["hidden"])), torch.rand(16, 64)


def lora_mlp():
    model = add_lora(MLP(MLPConfig(in_features=64, hidden=[64, 32], dropout=0.0)), LoRAConfig(rank=4, alpha=8))
    for layer in lora_layers(model):  # B = 0 at init would leave the side path out of the comparison
        torch.nn.init.normal_(layer.lora_B.weight, std=0.1)
    return model, torch.rand(16, 64)


def svd_transformer():
    config = TransformerConfig(vocab_size=50, max_len=12, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
    model = factorize(Transformer(config), 4, ["q_proj", "k_proj", "v_proj"], layer="usv")
    ids = torch.randint(1, 50, (8, 12))
    ids[:, 9:] = config.pad_id  # padding, masked in attention and pooling
    return model, ids


class Block(torch.nn.Module):
    """The attention block as test_attention_block times it: (x, mask) in, the block's output out."""
    def __init__(self):
        super().__init__()
        self.attn = svd_transformer()[0].blocks[0].attn
        self.mask = torch.ones(8, 12, dtype=torch.bool)
        self.mask[:, 9:] = False

    def forward(self, x):
        return self.attn(x, self.mask)


STUDIES = {"svd": svd_mlp, "lora": lora_mlp, "attention": svd_transformer,
           "attention_block": lambda: (Block(), torch.randn(8, 12, 32))}


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("dtype", list(DTYPE))
@pytest.mark.parametrize("study", list(STUDIES))
def test_every_dtype_and_mode_computes_what_fp32_eager_computes(study, dtype, mode, tmp_path):
    torch.manual_seed(0)
    model, x = STUDIES[study]()
    model.eval()
    with torch.no_grad():
        want = model(x)
    env = Env(Profile(), torch.device("cpu"), Path(tmp_path), Path(tmp_path))
    converted, forward = env.for_inference(copy.deepcopy(model), dtype, mode)
    assert next(converted.parameters()).dtype == DTYPE[dtype]
    with torch.no_grad():
        got = forward(cast(x, dtype))
    assert got.dtype == DTYPE[dtype]
    err = (got.float() - want).abs().max().item() / want.abs().max().item()
    assert err <= TOLERANCE[dtype], f"{study} {dtype} {mode}: max error {err:.2g} of the largest logit"
