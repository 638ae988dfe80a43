"""Profiles load as data, override only what they set, and reject unknown keys and bad values."""
import functools
import tomllib

import pytest

from lowrank_bench.training import config
from lowrank_bench.training.config import TrainConfig, load_profile


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_profiles_load(name):
    p = load_profile(name)
    assert p.name == name and p.svd.ranks and p.lora.ranks and p.attention.ranks
    assert p.svd.bench.batch_sizes


def test_override_keeps_unset_defaults():
    smoke = load_profile("smoke")
    assert smoke.svd.retrain.epochs == 1  # set by smoke.toml
    assert (smoke.svd.retrain.lr, smoke.svd.retrain.warmup_frac) == (3e-4, 0.0)  # the retrain block's own defaults
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


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_profiles_set_only_what_differs_from_the_defaults(name):
    """A profile that repeats a default hides which values it really chose (and drifts when the default moves)."""
    defaults = config.Profile()
    for key, value in _leaves(tomllib.loads((config.PROFILES_DIR / f"{name}.toml").read_text())):
        default = functools.reduce(getattr, key.split("."), defaults)
        assert value != default, f"{name}.toml sets {key} = {value!r}, which is the default"


def test_a_profile_file_of_ones_own_and_overrides(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("[svd]\nranks = [3, 5]\n[attention.model]\nmax_len = 32\n")
    p = load_profile(str(mine), overrides=["svd.ranks=[4, 8]", "lora.train.epochs=1", 'attention.inits=["random"]'])
    assert p.name == "mine" and p.svd.ranks == [4, 8] and p.lora.train.epochs == 1
    assert p.attention.model.max_len == 32 and p.attention.inits == ["random"]
    assert p.lora.train.lr == config.LoRAStudyConfig().train.lr  # the rest of the block keeps its default
    with pytest.raises(ValueError, match="profile file .*absent.toml does not exist"):
        load_profile(str(tmp_path / "absent.toml"))


@pytest.mark.parametrize("override, message", [
    ("svd.ranks", "expected KEY=VALUE"),
    ("svd.ranks=[4,", "is not a TOML value"),
    ("svd.rankz=[4]", r"unknown key\(s\) \['rankz'\]"),
    ("svd.ranks=[]", r"smoke.toml with --set: svd.ranks must be a non-empty list of integers >= 1"),
    ("svd.ranks=[4, 4]", "svd.ranks lists a value twice"),
    ("lora.ranks=[0, 2]", r"lora.ranks must be a non-empty list of integers >= 1, below 2\^63, got \[0, 2\]"),
    ("attention.ranks=[2.5]", r"attention.ranks must be a non-empty list of integers >= 1"),
    ("seeds=[-1]", r"seeds must be a non-empty list of integers >= 0, below 2\^63, got \[-1\]"),
    ("svd.bench.batch_sizes=[1, 1]", "svd.bench.batch_sizes lists a value twice"),
])
def test_bad_overrides_and_rank_grids_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_profile("smoke", overrides=[override])


def test_a_toml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[svd\nranks = [1]\n")
    with pytest.raises(ValueError, match=r"bad.toml: not valid TOML"):
        load_profile(str(bad))


@pytest.mark.parametrize("text, message", [
    ('[svd]\nmargin_points = "0.5"', "svd.margin_points must be a number"),
    ("[svd]\nranks = []", "svd.ranks must be a non-empty list of integers >= 1, below 2^63, got []"),
    ("[svd]\nranks = [0, 4]", "svd.ranks must be a non-empty list of integers >= 1"),
    ("[lora]\nbench = { batch_sizes = [] }", "lora.bench.batch_sizes must be a non-empty list"),
    ('seeds = ["a"]', "seeds must be a non-empty list"),
    ("seeds = [-1]", "seeds must be a non-empty list"),
    ("seeds = [0, 0]", "seeds lists a value twice"),
    ("[svd]\naugment_ablation = 1", "svd.augment_ablation must be true or false"),
    ("[lora]\ntrain = { augment = true }", "lora.train.augment must be a string"),
    ('[lora]\ntrain = { augment = "mirror" }', "lora.train.augment must be one of none, affine, flip_crop"),
    ("[svd]\nretrain = { distill = 1.5 }", "svd.retrain.distill must be in [0, 1]"),
    ("[attention.model]\ntoken_dropout = 1.0", "attention.model.token_dropout must be in [0, 1)"),
    ("[data]\nhoda_train = 2.5", "data.hoda_train must be an integer below 2^63 or left out"),
    ("[data]\nhoda_train = 0", "data.hoda_train must be >= 1"),
    ('[attention]\ntargets = ["q_proj", 3]', "attention.targets must be a non-empty list of strings"),
    ("[attention.model]\ndropout = -0.1", "attention.model.dropout must be a number (>= 0)"),
    ("[svd]\nbench = { rounds = 0 }", "svd.bench.rounds must be >= 1"),
    ("[svd]\nbaseline = { lr = nan }", "svd.baseline.lr must be a number"),
    ("[svd\nranks = [1]", "not valid TOML"),
])
def test_every_value_is_checked_when_the_profile_loads(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError) as err:
        load_profile("bad")
    assert str(err.value).startswith(f"{tmp_path / 'bad.toml'}: ") and message in str(err.value)


def test_an_int_is_a_valid_float_and_types_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)
    (tmp_path / "ok.toml").write_text("[svd]\nmargin_points = 1\nbaseline = { lr = 1 }\n[data]\nhoda_train = 10\n")
    p = load_profile("ok")
    assert p.svd.margin_points == 1 and p.svd.baseline.lr == 1 and p.data.hoda_train == 10


@pytest.mark.parametrize("file_name", ["...toml", ".hidden.toml", "two words.toml", "$(x).toml", "é.toml"])
def test_a_profile_name_is_a_plain_folder_name(tmp_path, file_name):
    """The name is the folder OUT/<name>: `...toml` would be `..`, results beside --out instead of in it."""
    path = tmp_path / file_name
    path.write_text("seeds = [0]\n")
    with pytest.raises(ValueError) as err:
        load_profile(str(path))
    assert repr(path.stem) in str(err.value) and "not a plain folder name" in str(err.value)
    assert "\n" not in str(err.value)
    for name in ("../smoke", "smoke/x", ".smoke"):  # a built-in profile's name is looked up as a file too
        with pytest.raises(ValueError, match="not a plain folder name"):
            load_profile(name)
    (tmp_path / "v1.2_a-b.toml").write_text("seeds = [0]\n")
    assert load_profile(str(tmp_path / "v1.2_a-b.toml")).name == "v1.2_a-b"


@pytest.mark.parametrize("override, message", [
    ("svd.ranks=[4]\nseeds=[9]", "one --set takes one KEY=VALUE"),
    ("svd.ranks=[4]\n[lora]\nranks=[1]", "one --set takes one KEY=VALUE"),
    ('name="x"', "the profile's name is not a setting"),
    ("svd. ranks=[4]", "expected KEY=VALUE"),
    ('"svd".ranks=[4]', "expected KEY=VALUE"),
])
def test_one_set_is_one_key_and_one_value(override, message):
    with pytest.raises(ValueError) as err:
        load_profile("smoke", overrides=[override])
    assert message in str(err.value) and "\n" not in str(err.value)  # one line: the value is quoted
    assert load_profile("smoke", overrides=["svd.ranks=[\n  4,\n  8,\n]"]).svd.ranks == [4, 8]  # one value, 4 lines


def test_name_in_a_profile_file_is_refused(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "other"\n')
    with pytest.raises(ValueError, match=r"mine.toml: `name` is not a setting; a profile's name is its file name"):
        load_profile(str(path))
