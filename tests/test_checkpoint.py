"""Checkpoints round-trip, rebuild factored and LoRA models from the sidecar alone, and refuse mismatches."""
import json

import pytest
import torch

from lowrank_bench.models.lora import LoRAConfig, add_lora
from lowrank_bench.models.methods import factorize, factored_ranks
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.models.transformer import Transformer, TransformerConfig
from lowrank_bench.training import checkpoint
from lowrank_bench.core.io import UserError


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP(MLPConfig(in_features=64, hidden=[32, 16], mean=0.3, std=0.4)).eval()


def test_round_trip_identical_outputs(tmp_path, mlp):
    x = torch.rand(5, 1, 8, 8)
    checkpoint.save(tmp_path / "m", mlp, study="svd", metrics={"test_acc": 0.5})
    loaded, sidecar = checkpoint.load(tmp_path / "m", expect_arch="MLP")
    assert torch.equal(loaded(x), mlp(x))
    assert sidecar["metrics"] == {"test_acc": 0.5} and sidecar["config"]["mean"] == 0.3


def test_frozen_parameters_stay_frozen(tmp_path, mlp):
    for p in mlp.hidden.parameters():
        p.requires_grad_(False)
    checkpoint.save(tmp_path / "m", mlp)
    loaded, _ = checkpoint.load(tmp_path / "m")
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


def test_factored_model_rebuilt_from_sidecar(tmp_path, mlp):
    model = factorize(mlp, {"hidden.0": 3, "hidden.1": 5}, targets=["hidden"]).eval()
    checkpoint.save(tmp_path / "k", model, structure={"lowrank": {"layer": "two_linear",
                                                                  "ranks": factored_ranks(model)}})
    loaded, _ = checkpoint.load(tmp_path / "k")
    x = torch.rand(4, 1, 8, 8)
    assert factored_ranks(loaded) == {"hidden.0": 3, "hidden.1": 5}
    assert torch.equal(loaded(x), model(x))


def test_transformer_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, max_len=12, d_model=16, n_heads=2, d_ff=32)).eval()
    checkpoint.save(tmp_path / "t", model)
    ids = torch.randint(1, 50, (3, 12))
    assert torch.equal(checkpoint.load(tmp_path / "t")[0](ids), model(ids))


def test_adapter_checkpoint_is_small_and_checks_its_base(tmp_path, mlp):
    checkpoint.save(tmp_path / "base", mlp)
    cfg = LoRAConfig(rank=2, alpha=4, new_head=10)
    model = add_lora(mlp, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    checkpoint.save(tmp_path / "adapter", model.eval(), structure={"lora": vars(cfg)}, base=tmp_path / "base")
    weights = (tmp_path / "adapter.safetensors").stat().st_size
    assert weights < (tmp_path / "base.safetensors").stat().st_size / 4
    loaded, _ = checkpoint.load(tmp_path / "adapter")
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    # A changed base is refused: the adapter was trained on other weights.
    other = MLP(mlp.config)
    checkpoint.save(tmp_path / "base", other)
    with pytest.raises(UserError, match="SHA-256 differs"):
        checkpoint.load(tmp_path / "adapter")


def test_other_architecture_refused(tmp_path, mlp):
    checkpoint.save(tmp_path / "m", mlp)
    with pytest.raises(UserError, match="holds a MLP but a Transformer was expected"):
        checkpoint.load(tmp_path / "m", expect_arch="Transformer")
    sidecar = json.loads((tmp_path / "m.json").read_text())
    sidecar["arch"] = "ResNet"
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match="not a lowrank-bench checkpoint"):
        checkpoint.load(tmp_path / "m")


def test_weights_that_do_not_fit_refused(tmp_path, mlp):
    checkpoint.save(tmp_path / "m", mlp)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    sidecar["config"]["hidden"] = [32, 8]
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match="do not match the sidecar"):
        checkpoint.load(tmp_path / "m")


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(UserError, match="lowrank-bench train"):
        checkpoint.load(tmp_path / "absent")


def test_failed_save_keeps_previous_files(tmp_path, mlp, monkeypatch):
    checkpoint.save(tmp_path / "m", mlp, note="first")
    before = (tmp_path / "m.safetensors").read_bytes(), (tmp_path / "m.json").read_text()

    def explode(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(checkpoint, "save_file", explode)
    with pytest.raises(RuntimeError):
        checkpoint.save(tmp_path / "m", MLP(mlp.config), note="second")
    assert ((tmp_path / "m.safetensors").read_bytes(), (tmp_path / "m.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary left


@pytest.mark.parametrize("damage", ["other_weights", "other_architecture", "overwritten_part"])
def test_weights_that_differ_from_the_sidecar_are_refused(tmp_path, mlp, damage):
    """A copied-over or partly overwritten weights file loads without error unless its hash is checked."""
    checkpoint.save(tmp_path / "m", mlp, study="svd")
    weights = tmp_path / "m.safetensors"
    if damage == "other_weights":
        checkpoint.save(tmp_path / "other", MLP(mlp.config), study="svd")
        weights.write_bytes((tmp_path / "other.safetensors").read_bytes())
    elif damage == "other_architecture":
        checkpoint.save(tmp_path / "other", Transformer(TransformerConfig(vocab_size=50, max_len=12, d_model=16,
                                                                          n_heads=2, d_ff=32)))
        weights.write_bytes((tmp_path / "other.safetensors").read_bytes())
    else:
        data = bytearray(weights.read_bytes())
        data[-64:] = bytes(64)  # the last tensor's tail: still a valid file of the right shapes
        weights.write_bytes(bytes(data))
    with pytest.raises(UserError) as err:
        checkpoint.load(tmp_path / "m")
    msg = str(err.value)
    assert "m.safetensors" in msg and "m.json" in msg and "lowrank-bench train svd" in msg and "restore" in msg
    assert "\n" not in msg


def test_a_damaged_base_is_named_and_not_blamed_on_the_adapter(tmp_path, mlp):
    checkpoint.save(tmp_path / "base", mlp, study="svd")
    cfg = LoRAConfig(rank=2, alpha=4, new_head=10)
    checkpoint.save(tmp_path / "adapter", add_lora(mlp, cfg).eval(), structure={"lora": vars(cfg)},
                    base=tmp_path / "base")
    base = tmp_path / "base.safetensors"
    data = bytearray(base.read_bytes())
    data[-64:] = bytes(64)
    base.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"base\.safetensors does not match .*base\.json.*train svd"):
        checkpoint.load(tmp_path / "adapter")
    checkpoint.save(tmp_path / "base", MLP(mlp.config), study="svd")  # a legitimately retrained base
    with pytest.raises(UserError, match="retrained after this adapter.*train lora"):
        checkpoint.load(tmp_path / "adapter")


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, mlp, monkeypatch):
    from safetensors import SafetensorError
    checkpoint.save(tmp_path / "m", mlp, note="first")
    before = (tmp_path / "m.safetensors").read_bytes()

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(UserError, match=r"m\.safetensors: cannot write.*StorageFull.*free disk space"):
        checkpoint.save(tmp_path / "m", mlp)
    assert (tmp_path / "m.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_weights_get_the_umask_mode_like_the_sidecar(tmp_path, mlp):
    import os
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "m", mlp)
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
