"""Profiles load as data, override only what they set, and reject unknown keys and bad values."""
import pytest

from training import config
from training.config import TrainConfig, load_profile


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_profiles_load(name):
    p = load_profile(name)
    assert p.name == name and p.svd.ranks and p.lora.ranks and p.attention.ranks
    assert p.svd.bench.batch_sizes


def test_override_keeps_unset_defaults():
    smoke = load_profile("smoke")
    assert smoke.svd.retrain.epochs == 1  # set by smoke.toml
    assert (smoke.svd.retrain.lr, smoke.svd.retrain.warmup_frac) == (1e-4, 0.0)  # the retrain block's own defaults
    assert (TrainConfig().lr, TrainConfig().warmup_frac) == (1e-3, 0.05)  # ... not TrainConfig's


def test_auto_is_quick_on_cpu(monkeypatch):
    monkeypatch.setattr(config.torch.cuda, "is_available", lambda: False)
    assert load_profile("auto").name == "quick"
    monkeypatch.setattr(config.torch.cuda, "is_available", lambda: True)
    assert load_profile("auto").name == "full"


def test_unknown_key_and_bad_values_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)
    (tmp_path / "typo.toml").write_text("[svd]\nrankz = [1]\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rankz'\]"):
        load_profile("typo")
    (tmp_path / "neg.toml").write_text("[svd]\nbaseline = { epochs = 0 }\n")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        load_profile("neg")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        load_profile("nope")
