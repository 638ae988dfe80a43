"""The MLP's input normalisation, and folding it into the first layer for inference."""
import pytest
import torch

from lowrank_bench.models.lora import LoRAConfig, add_lora
from lowrank_bench.models.methods import factorize
from lowrank_bench.models.mlp import MLP, MLPConfig, fold_normalisation


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP(MLPConfig(in_features=64, hidden=[48, 24], dropout=0.0, mean=0.3, std=0.2)).eval()


def test_forward_normalises_with_the_stored_statistics(mlp):
    x = torch.rand(5, 1, 8, 8)
    plain = MLP(MLPConfig(in_features=64, hidden=[48, 24], dropout=0.0))
    plain.load_state_dict(mlp.state_dict())
    torch.testing.assert_close(mlp(x), plain.eval()((x - 0.3) / 0.2))


@pytest.mark.parametrize("rank", [None, 5])
def test_folded_model_computes_the_same_function(mlp, rank):
    model = mlp if rank is None else factorize(mlp, {"hidden.0": rank, "hidden.1": rank}, targets=["hidden"])
    x = torch.rand(16, 1, 8, 8)
    folded = fold_normalisation(model)
    assert (folded.config.mean, folded.config.std) == (0.0, 1.0)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert model.config.mean == 0.3  # the original is left alone


def test_folding_refuses_a_layer_it_cannot_absorb_into(mlp):
    lora = add_lora(mlp, LoRAConfig(rank=2))
    with pytest.raises(TypeError, match="LoRALinear"):
        fold_normalisation(lora)
