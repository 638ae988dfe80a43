"""LoRA from scratch against PEFT as an oracle, plus the properties PEFT's own tests check on a tiny MLP."""
import copy

import peft  # the `test` extra's, used only as the oracle
import pytest
import torch
import torch.nn as nn

from lowrank_bench.models.lora import (LoRAConfig, LoRALinear, add_lora, load_lora_state_dict, lora_state_dict, merge_lora,
                         unmerge_lora)
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.training.measure import param_counts

HIDDEN = ["hidden.0", "hidden.1"]  # hidden.0 is 32×64, hidden.1 is 16×32


@pytest.fixture
def base():
    torch.manual_seed(0)
    return MLP(MLPConfig(in_features=64, hidden=[32, 16], dropout=0.0)).eval()


@pytest.fixture
def x():
    return torch.randn(8, 64, generator=torch.Generator().manual_seed(1))


def randomize_B(model, seed=2):
    """B = 0 hides every bug on the adapter path, so most tests start from a random, nonzero B."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.weight.copy_(torch.randn(mod.lora_B.weight.shape, generator=g) * 0.5)
    return model


def peft_model(base, config, target_modules, modules_to_save=None):
    lc = peft.LoraConfig(r=config.rank, lora_alpha=config.effective_alpha, lora_dropout=config.dropout,
                         use_rslora=config.rslora, target_modules=target_modules, modules_to_save=modules_to_save)
    return peft.get_peft_model(copy.deepcopy(base), lc)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("rslora, dropout", [(False, 0.0), (True, 0.0), (False, 0.5)],
                         ids=["plain", "rslora", "dropout"])
def test_outputs_match_peft(base, x, rslora, dropout):
    config = LoRAConfig(rank=4, alpha=8, rslora=rslora, dropout=dropout)
    ours = randomize_B(add_lora(base, config))
    theirs = peft_model(base, config, HIDDEN)
    for name in HIDDEN:
        mine, ref = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
        with torch.no_grad():
            ref.lora_A["default"].weight.copy_(mine.lora_A.weight)
            ref.lora_B["default"].weight.copy_(mine.lora_B.weight)
        assert mine.scaling == ref.scaling["default"] == (8 / 2 if rslora else 8 / 4)
    ours.train(dropout > 0), theirs.train(dropout > 0)  # with dropout, both must draw the same masks
    torch.manual_seed(3)
    y = ours(x)
    torch.manual_seed(3)
    y_ref = theirs(x)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=0)
    assert (y - base(x)).abs().max() > 1e-2  # the adapter path really contributes


@pytest.mark.parametrize("targets, peft_targets, new_head", [
    (("hidden",), HIDDEN, None), (("hidden",), HIDDEN, 10), (("hidden.1",), ["hidden.1"], None),
    (("hidden.1",), ["hidden.1"], 10), (("hidden", "head"), [*HIDDEN, "head"], None)])
def test_trainable_params_match_peft(base, targets, peft_targets, new_head):
    config = LoRAConfig(rank=4, targets=targets, new_head=new_head)
    theirs = peft_model(base, config, peft_targets, modules_to_save=["head"] if new_head else None)
    ours = add_lora(base, config)
    assert trainable(ours) == trainable(theirs) == theirs.get_nb_trainable_parameters()[0]
    lora = sum(4 * (base.get_submodule(n).in_features + base.get_submodule(n).out_features) for n in peft_targets)
    head = 16 * 10 + 10 if new_head else 0
    assert trainable(ours) == lora + head  # r(m + n) per layer, as in the paper
    assert param_counts(ours)["params_total"] == param_counts(base)["params_total"] + lora  # the new head has the old one's size


def test_default_init_is_the_base_model(base, x):
    ours = add_lora(base, LoRAConfig(rank=4))
    assert all(not torch.equal(m.lora_A.weight, torch.zeros_like(m.lora_A.weight)) for m in ours.modules()
               if isinstance(m, LoRALinear))
    assert torch.equal(ours(x), base(x))
    gaussian = add_lora(base, LoRAConfig(rank=4, init="gaussian"))
    B = gaussian.hidden[0].lora_B.weight
    assert 0.005 < B.std() < 0.02  # small random values, so the output moves a little
    assert not torch.equal(gaussian(x), base(x))


def test_merge_matches_unmerged_and_unmerge_restores(base, x):
    ours = randomize_B(add_lora(base, LoRAConfig(rank=4, alpha=16)))
    W = ours.hidden[0].base_layer.weight.detach().clone()
    y = ours(x)
    merge_lora(ours)
    assert all(m.merged for m in ours.modules() if isinstance(m, LoRALinear))
    assert not torch.allclose(ours.hidden[0].base_layer.weight, W)
    torch.testing.assert_close(ours(x), y, atol=1e-5, rtol=0)
    with pytest.warns(UserWarning, match="Already merged"):
        merge_lora(ours)
    unmerge_lora(ours)
    torch.testing.assert_close(ours.hidden[0].base_layer.weight, W, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(x), y, atol=1e-6, rtol=0)
    with pytest.warns(UserWarning, match="Already unmerged. Nothing to do."):
        unmerge_lora(ours)


def test_merge_refuses_non_finite(base):
    ours = add_lora(base, LoRAConfig(rank=2))
    layer = ours.hidden[0]
    W = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        layer.lora_B.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, W) and not layer.merged


def test_training_changes_only_the_adapter(base, x):
    ours = add_lora(base, LoRAConfig(rank=4, new_head=10))
    expected = {f"{n}.{ab}.weight" for n in HIDDEN for ab in ("lora_A", "lora_B")} | {"head.weight", "head.bias"}
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == expected
    assert not torch.equal(ours.head.weight, base.head.weight)  # a fresh head, even with the same class count
    before = {n: p.detach().clone() for n, p in ours.named_parameters()}
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)  # all parameters: freezing alone must protect the base
    target = torch.arange(8) % 10
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(ours(x), target).backward()
        opt.step()
    for n, p in ours.named_parameters():
        assert torch.equal(p, before[n]) != (n in expected), n  # frozen: bitwise equal; adapter: moved


def test_original_model_untouched(base, x):
    state = {k: v.clone() for k, v in base.state_dict().items()}
    y = base(x)
    ours = randomize_B(add_lora(base, LoRAConfig(rank=4, new_head=3)))
    merge_lora(ours)
    assert ours(x).shape == (8, 3) and ours.config.n_classes == 3 and base.config.n_classes == 10
    assert all(type(m) is nn.Linear for m in base.hidden) and all(p.requires_grad for p in base.parameters())
    assert all(torch.equal(v, state[k]) for k, v in base.state_dict().items())
    assert torch.equal(base(x), y)


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be an integer >= 1, got 0"),
    ({"rank": 17}, r"hidden\.1: rank r must be in \[1, min\(m, n\) = 16\].*got 17"),
    ({"rank": 33, "targets": ("hidden.0",)}, r"hidden\.0: .*= 32\].*got 33"),
    ({"rank": 4, "init": "xavier"}, "init must be one of .*'xavier'"),
    ({"rank": 4, "dropout": 1.0}, "dropout"),
    ({"rank": 4, "alpha": 0}, "alpha"),
    ({"rank": 4, "targets": ("conv",)}, r"'conv' matches no nn.Linear.*hidden\.0, hidden\.1, head"),
    ({"rank": 4, "targets": ("head",), "new_head": 10}, "new_head replaces"),
])
def test_bad_config_raises(base, kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_lora(base, LoRAConfig(**kwargs))


def test_rank_at_bound_is_accepted(base):
    ours = add_lora(base, LoRAConfig(rank=16))
    assert [m.rank for m in ours.modules() if isinstance(m, LoRALinear)] == [16, 16]
    assert "rank=16, alpha=16" in repr(ours)


def test_add_lora_twice_is_refused(base):
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(add_lora(base, LoRAConfig(rank=2)), LoRAConfig(rank=2))


def test_state_dict_round_trip(base, x):
    config = LoRAConfig(rank=4, new_head=10)
    trained = randomize_B(add_lora(base, config))
    state = lora_state_dict(trained)
    expected = {f"{n}.{ab}.weight" for n in HIDDEN for ab in ("lora_A", "lora_B")} | {"head.weight", "head.bias"}
    assert set(state) == expected
    assert sum(v.numel() for v in state.values()) == trainable(trained) < param_counts(base)["params_total"] / 3
    fresh = add_lora(base, config)
    assert not torch.equal(fresh(x), trained(x))
    load_lora_state_dict(fresh, state)
    assert torch.equal(fresh(x), trained(x))


def test_mismatched_state_is_refused(base):
    state = lora_state_dict(add_lora(base, LoRAConfig(rank=4)))
    with pytest.raises(ValueError, match=r"hidden\.0\.lora_A\.weight has shape \(4, 64\).*\(2, 64\)"):
        load_lora_state_dict(add_lora(base, LoRAConfig(rank=2)), state)
    with pytest.raises(ValueError, match=r"missing keys \['head\.bias', 'head\.weight'\]"):
        load_lora_state_dict(add_lora(base, LoRAConfig(rank=4, new_head=10)), state)
    with pytest.raises(ValueError, match=r"unexpected keys \['hidden\.0\.lora_A\.weight'"):
        load_lora_state_dict(add_lora(base, LoRAConfig(rank=4, targets=("hidden.1",))), state)
    merged = merge_lora(add_lora(base, LoRAConfig(rank=4)))
    with pytest.raises(ValueError, match="unmerge"):
        load_lora_state_dict(merged, state)
