"""Every default in one visible block, and the profiles that override them.

A profile (`training/profiles/<name>.toml`) sets only what differs from the defaults below. It is read as data,
never executed; an unknown key or a bad value raises `ValueError` naming it. `auto` means `full` on CUDA and
`quick` otherwise.
"""
import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch

PROFILES_DIR = Path(__file__).parent / "profiles"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # linear warm-up share of all steps, then cosine decay to zero
    grad_clip: float = 1.0
    patience: int = 5  # epochs without a better validation accuracy before stopping early
    label_smoothing: float = 0.0
    augment: bool = False  # random shifts/rotations/scaling on image tensors
    amp: bool = True  # on CUDA only: bf16 autocast for the training step's forward pass (weights stay fp32)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")


@dataclass
class DataConfig:
    val_fraction: float = 0.1
    hoda_train: int | None = None  # stratified subset sizes; None = the whole split
    hoda_test: int | None = None
    hoda_extra: bool = False  # add RemainingSamples.cdb (22,352 images) to training
    fashion_train: int | None = None
    fashion_test: int | None = None
    imdb_train: int | None = None
    imdb_test: int | None = None
    imdb_max_len: int = 256

    def __post_init__(self):
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for f in dataclasses.fields(self):
            if f.type == int | None and getattr(self, f.name) is not None and getattr(self, f.name) < 1:
                raise ValueError(f"{f.name} must be >= 1 or left out (the whole split), got {getattr(self, f.name)}")


@dataclass
class BenchConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 256])
    rounds: int = 20
    warmup_rounds: int = 3

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")


@dataclass
class SVDStudyConfig:
    hidden: list[int] = field(default_factory=lambda: [1024, 512])
    dropout: float = 0.2
    targets: list[str] = field(default_factory=lambda: ["hidden"])  # the 10-class head is too small to pay
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    tolerance_points: float = 0.5  # chosen k: smallest within this many validation points of dense
    augment_ablation: bool = True  # train the baseline with and without augmentation, keep the better on val
    baseline: TrainConfig = field(default_factory=TrainConfig)
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, lr=3e-4))
    bench: BenchConfig = field(default_factory=BenchConfig)


@dataclass
class LoRAStudyConfig:
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    alpha_per_rank: float = 2.0  # alpha = 2r: scaling alpha/r = 2 for every rank, so ranks share a learning rate
    targets: list[str] = field(default_factory=lambda: ["hidden"])
    tolerance_points: float = 0.5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=2e-3))
    bench: BenchConfig = field(default_factory=BenchConfig)


@dataclass
class AttentionStudyConfig:
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 1
    d_ff: int = 512
    dropout: float = 0.1
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])  # + out_proj, fc1, fc2
    inits: list[str] = field(default_factory=lambda: ["random", "trained"])
    tolerance_points: float = 0.5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=64, lr=5e-4, patience=2))
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(batch_sizes=[1, 32]))

    def __post_init__(self):
        bad = set(self.inits) - {"random", "trained"}
        if bad:
            raise ValueError(f"inits must be 'random' and/or 'trained', got {sorted(bad)}")


@dataclass
class Profile:
    name: str = "default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    svd: SVDStudyConfig = field(default_factory=SVDStudyConfig)
    lora: LoRAStudyConfig = field(default_factory=LoRAStudyConfig)
    attention: AttentionStudyConfig = field(default_factory=AttentionStudyConfig)


def _type_name(annotation):
    if annotation is float:
        return "a number"
    if annotation is int:
        return "an integer"
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a string"
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        return f"a non-empty list of {'positive integers' if item is int else _type_name(item)[2:] + 's'}"
    return " or ".join("left out" if a is type(None) else _type_name(a) for a in typing.get_args(annotation))


def _fits(value, annotation):
    """Whether a TOML value fits a field annotation: int, float (an int will do), bool, str, list[X] (non-empty,
    items positive where X is int: ranks, sizes, widths), X | None. Numbers must be finite and not negative."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        return isinstance(value, list) and bool(value) and all(
            _fits(v, item) and (item is not int or v >= 1) for v in value)
    if annotation in (int, float):
        allowed = (int,) if annotation is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return isinstance(value, annotation)


def _merge(cls, defaults, overrides, where, prefix=""):
    """A `cls` instance: `defaults` (an instance) with the keys of `overrides` replaced, recursively.

    Every override is checked against the field's annotation here, as the profile loads, so a bad value fails
    before any work and names the file and key: `where` is the file, `prefix` the table ("svd.").
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(overrides) - set(names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} in [{prefix.rstrip('.') or 'top level'}]; "
                         f"allowed: {sorted(names)}")
    values = {}
    for name, f in names.items():
        value = getattr(defaults, name)
        if name in overrides:
            new = overrides[name]
            if dataclasses.is_dataclass(value):
                if not isinstance(new, dict):
                    raise ValueError(f"{where}: {prefix}{name} must be a table, got {new!r}")
                new = _merge(type(value), value, new, where, f"{prefix}{name}.")
            elif not _fits(new, f.type):
                raise ValueError(f"{where}: {prefix}{name} must be {_type_name(f.type)}"
                                 f"{' (>= 0)' if f.type in (int, float) else ''}, got {new!r}")
            value = new
        values[name] = value
    try:
        return cls(**values)
    except ValueError as e:  # a range check of __post_init__: name the file and the table
        raise ValueError(f"{where}: {prefix}{e}") from None


def available_profiles():
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml")) + ["auto"]


def resolve_profile_name(name, device="auto"):
    if name == "auto":
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        return "full" if cuda else "quick"
    return name


def load_profile(name, device="auto"):
    name = resolve_profile_name(name, device)
    path = PROFILES_DIR / f"{name}.toml"
    if not path.exists():
        raise ValueError(f"unknown profile {name!r}; available: {', '.join(available_profiles())}")
    try:
        overrides = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e}); fix the file") from None
    return _merge(Profile, Profile(name=name), {**overrides, "name": name}, path)


def as_dict(config):
    return dataclasses.asdict(config)


def resolve_device(device="auto"):
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch.cuda.is_available() is False; use --device cpu or auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
