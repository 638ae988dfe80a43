"""Every default in one visible block, and the profiles that override them.

A profile (`training/profiles/<name>.toml`, or any `PATH.toml` of the same schema) sets only what differs from the
defaults below, and `--set svd.ranks=[4,8]` overrides single keys on top of it (values parsed as TOML). Profiles are
read as data, never executed; an unknown key or a bad value raises `ValueError` naming the file and the key.
`auto` means `full` on CUDA and `quick` otherwise. Study configs nest their model's config, so a model setting
has one name everywhere (`attention.model.max_len` is also the tokenizer's length).
"""
import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lowrank_bench.core.io import MAX_INT
from lowrank_bench.core.spec import DTYPES, MODES
from lowrank_bench.models.methods import METHODS
from lowrank_bench.models.mlp import MLPConfig
from lowrank_bench.models.transformer import TransformerConfig

PROFILES_DIR = Path(__file__).parent / "profiles"
# A profile's name is the folder OUT/<name>/ its results go to, so it is a plain folder name: never `..`, a hidden
# folder, a path or something a shell or LaTeX would read differently.
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
AUGMENTATIONS = ("none", "affine", "flip_crop")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # linear warm-up share of all steps, then cosine decay to zero
    grad_clip: float = 1.0
    patience: int = 5  # epochs without a better accuracy on validation's stop part before stopping early
    label_smoothing: float = 0.0
    augment: str = "none"  # image batches: "affine" (digits), "flip_crop" (clothing) or "none"; training/train.py
    # Knowledge distillation, where a study passes a teacher (SVD retraining passes the dense model): the loss is
    # (1 - distill) * cross-entropy + distill * T² * KL(teacher || student) at temperature T (Hinton et al. 2015).
    distill: float = 0.0
    distill_temperature: float = 2.0
    amp: bool = True  # on CUDA only: bf16 autocast for the training step's forward pass (weights stay fp32)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if not 0 <= self.distill <= 1 or self.distill_temperature <= 0:
            raise ValueError(f"distill must be in [0, 1] and distill_temperature > 0, got {self.distill}, "
                             f"{self.distill_temperature}")


@dataclass
class DataConfig:
    # Validation is two disjoint parts of a training split (training/data.py). The stop part, `stop_fraction` of the
    # examples drawn for training, drives early stopping and the epoch-0 comparison. The decide part, `<set>_decide`
    # examples, is evaluated once on each kept model: it is `val_acc` and what decisions use, and nothing chose the
    # weights on it. It comes from training examples the profile does not draw where there are that many
    # (evaluation cost only), else out of the drawn ones. Sizes: README, "Validation big enough to decide".
    stop_fraction: float = 0.1
    hoda_train: int | None = None  # stratified subset sizes; None = the whole split
    hoda_test: int | None = None
    hoda_decide: int = 6000  # out of the 60,000 training images where they all train (quick, full)
    hoda_extra: bool = False  # add RemainingSamples.cdb (22,352 images) to training
    fashion_train: int | None = None
    fashion_test: int | None = None
    fashion_decide: int = 6000
    imdb_train: int | None = None
    imdb_test: int | None = None
    imdb_decide: int = 2500  # out of the 25,000 training reviews where they all train (full)
    # The subsets and both validation parts are drawn with this seed, never the training seed: every seed then
    # sees the same split, so two variants' results pair up by seed and by example.
    split_seed: int = 0

    def __post_init__(self):
        if not 0 < self.stop_fraction < 1:
            raise ValueError(f"stop_fraction must be in (0, 1), got {self.stop_fraction}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_train", "_test", "_decide")) and value is not None and value < 1:
                whole = " or left out (the whole split)" if f.type == int | None else ""
                raise ValueError(f"{f.name} must be >= 1{whole}, got {value}")

    def split_args(self, dataset):
        """The keyword arguments of `training.data.load_<dataset>` that draw its parts."""
        return {"stop_fraction": self.stop_fraction, "decide_size": getattr(self, f"{dataset}_decide"),
                "seed": self.split_seed, "train_subset": getattr(self, f"{dataset}_train"),
                "test_subset": getattr(self, f"{dataset}_test")}

    def settings(self, dataset):
        """The keys that decide a job's data on `dataset`, for its job id: the shared ones and the set's own."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name in ("stop_fraction", "split_seed") or f.name.startswith(f"{dataset}_")}


def check_grid(ranks, name="ranks"):
    """A rank grid: a non-empty list of distinct integers >= 1 (whether each fits its layer is checked later)."""
    if not isinstance(ranks, list) or not ranks:
        raise ValueError(f"{name} must be a non-empty list of integers, got {ranks!r}")
    bad = [r for r in ranks if isinstance(r, bool) or not isinstance(r, int) or r < 1]
    if bad:
        raise ValueError(f"{name} must hold integers >= 1, got {bad}")
    if len(set(ranks)) < len(ranks):
        raise ValueError(f"{name} lists a value twice: {ranks}")


@dataclass
class BenchConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 256])
    rounds: int = 20  # rounds per benchmark; pytest-benchmark calibrates the iterations in each to min_time
    min_time: float = 5e-3  # seconds a round lasts at least, so timer resolution and one-off hiccups do not dominate
    # The inference benchmarks' axes; left out: the device's default (timing/measure.py AXES), --dtypes/--modes win.
    dtypes: list[str] | None = None  # from fp32, bf16, fp16
    modes: list[str] | None = None  # from eager, compiled

    def __post_init__(self):
        check_grid(self.batch_sizes, "batch_sizes")  # the same rule: distinct integers >= 1
        if self.rounds < 1 or self.min_time <= 0:
            raise ValueError(f"rounds must be >= 1 and min_time > 0, got {self.rounds}, {self.min_time}")
        for name, allowed in (("dtypes", DTYPES), ("modes", MODES)):
            values = getattr(self, name)
            if values is not None and (set(values) - set(allowed) or len(set(values)) < len(values)):
                raise ValueError(f"{name} must list distinct values from {', '.join(allowed)}, got {values}")


@dataclass
class StudyConfig:
    """What every study has: a rank grid, the layers it targets, the tolerance that picks the chosen rank, and
    its benchmark settings."""
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    targets: list[str] = field(default_factory=lambda: ["hidden"])  # the 10-class head is too small to pay
    # δ of the decision rule (core/decision.py), in accuracy points: a variant is "within" its reference when the
    # lower bound of their paired difference on the decide part of validation is above -δ; the chosen rank is the
    # last of the grid, tested from the largest down, that is within.
    margin_points: float = 0.5
    bench: BenchConfig = field(default_factory=BenchConfig)

    def __post_init__(self):
        check_grid(self.ranks)


@dataclass
class DecompositionStudyConfig(StudyConfig):
    """A study whose low-rank models come from a decomposition method of models/methods.py's registry: every
    method runs at every rank, side by side."""
    methods: list[str] = field(default_factory=lambda: ["svd", "whiten"])
    # What a calibrated method (whiten) sees of the training split: examples drawn with the job's seed, fed in
    # batches of calibration_batch_size. 2,048 inputs per layer give a well-conditioned 1024×1024 Gram matrix.
    calibration_samples: int = 2048
    calibration_batch_size: int = 256

    def __post_init__(self):
        super().__post_init__()
        if set(self.methods) - set(METHODS) or len(set(self.methods)) < len(self.methods):
            raise ValueError(f"methods must list distinct values from {', '.join(METHODS)}, got {self.methods}")


@dataclass
class SVDStudyConfig(DecompositionStudyConfig):
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    model: MLPConfig = field(default_factory=MLPConfig)
    augment_ablation: bool = True  # baseline with and without augmentation, the better on the stop part kept
    baseline: TrainConfig = field(default_factory=lambda: TrainConfig(augment="affine"))
    # Retraining starts next to an optimum (exactly on it at full rank), and epoch 0 (the truncated start) is a
    # candidate, so a rank it cannot help keeps its start. No warm-up; a cosine from 3e-4. Measured on quick Hoda (CPU),
    # validation means of seeds 0 and 1 (dense 99.29 %): 2 epochs at 1e-4 gave k = 8 92.85 %, k = 16 98.60 %; 6 at
    # 1e-4 95.18 / 98.79; 6 at 3e-4 96.80 / 98.88, and k = 32, 128, 512 99.29 / 99.38 / 99.38 against 99.17 / 99.30
    # / 99.33 before. Distillation from the dense model (distill 0.5, T 2) added 0.03 and 0.02 points at 6 epochs
    # and 3e-4, within noise, for a teacher forward pass per step: available, not on by default.
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, lr=3e-4, warmup_frac=0.0))


@dataclass
class LoRAStudyConfig(StudyConfig):
    alpha_per_rank: float = 2.0  # alpha = 2r: scaling alpha/r = 2 for every rank, so ranks share a learning rate
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=2e-3))


@dataclass
class AttentionStudyConfig(DecompositionStudyConfig):
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])  # + out_proj, fc1, fc2
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(batch_sizes=[1, 32]))
    # vocab_size, pad_id: the tokenizer's. Regularisation, measured on quick (CPU), dense, validation means of 2 seeds
    # (800 reviews each; test, 4,000, for the record): plain 80.94 % (test 80.00); token dropout 0.1 81.31 (79.65);
    # 0.2 81.06 (79.50); label smoothing 0.1 80.88 (79.97); dropout 0.2 80.38 (79.59); token dropout 0.1 with label
    # smoothing 0.1 81.44 (79.60), +0.50 in both seeds, kept. A point on 800 reviews is within noise either way.
    model: TransformerConfig = field(default_factory=lambda: TransformerConfig(token_dropout=0.1))
    inits: list[str] = field(default_factory=lambda: ["random", "trained"])
    # The token table: "learned", the model's own (trained from scratch), and/or "minilm", the word-piece embeddings
    # of all-MiniLM-L6-v2 (training/embeddings.py), projected to d_model. Each runs dense and every rank and init.
    embeddings: list[str] = field(default_factory=lambda: ["learned", "minilm"])
    # The minilm table fine-tuned with the rest (True: kept as loaded). Measured on quick, dense, seeds 0 and 1 (CPU):
    # validation 81.12 / 80.00 % fine-tuned against 79.50 / 79.50 % frozen (mean +1.06 points), so fine-tuned. Test
    # says the opposite (77.07-80.43 against 79.68-80.30 %, mean -1.24): fine-tuned fits its training split by
    # epoch 3 (98 % train accuracy, validation loss up from epoch 1) where frozen is still learning (82 %); the
    # learned table had 80.94 % validation, 80.00 % test. Fine-tuning costs a 295 ms training step against 216 ms.
    embedding_frozen: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=64, lr=5e-4, patience=2,
                                                                   label_smoothing=0.1))

    def __post_init__(self):
        super().__post_init__()
        for name, allowed in (("inits", ("random", "trained")), ("embeddings", ("learned", "minilm"))):
            values = getattr(self, name)
            if set(values) - set(allowed) or len(set(values)) < len(values):
                raise ValueError(f"{name} must list distinct values from {', '.join(allowed)}, got {values}")


@dataclass
class Profile:
    name: str = "default"
    # Every training variant runs once per seed (initialisation, data order, dropout, augmentation); decisions use
    # the validation mean over them. The benchmarks time the first seed's checkpoints.
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"least": 0})
    data: DataConfig = field(default_factory=DataConfig)
    svd: SVDStudyConfig = field(default_factory=SVDStudyConfig)
    lora: LoRAStudyConfig = field(default_factory=LoRAStudyConfig)
    attention: AttentionStudyConfig = field(default_factory=AttentionStudyConfig)

    def __post_init__(self):
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds lists a value twice: {self.seeds}")


def _type_name(annotation, least=1):
    if annotation is float:
        return "a number"
    if annotation is int:
        return "an integer below 2^63"
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a string"
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        each = f"integers >= {least}, below 2^63" if item is int else _type_name(item)[2:] + "s"
        return f"a non-empty list of {each}"
    return " or ".join("left out" if a is type(None) else _type_name(a, least) for a in typing.get_args(annotation))


def _fits(value, annotation, least=1):
    """Whether a TOML value fits a field annotation: int, float (an int will do), bool, str, list[X] (non-empty,
    items >= `least` where X is int: positive for ranks, sizes, widths; 0 allowed for seeds), X | None. Numbers
    must be finite and not negative."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_fits(value, a, least) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        return isinstance(value, list) and bool(value) and all(
            _fits(v, item) and (item is not int or v >= least) for v in value)
    if annotation in (int, float):
        allowed = (int,) if annotation is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value < MAX_INT
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
            elif not _fits(new, f.type, f.metadata.get("least", 1)):
                raise ValueError(f"{where}: {prefix}{name} must be {_type_name(f.type, f.metadata.get('least', 1))}"
                                 f"{' (>= 0)' if f.type in (int, float) else ''}, got {new!r}")
            value = new
        values[name] = value
    try:
        return cls(**values)
    except ValueError as e:  # a range check of __post_init__: name the file and the table
        raise ValueError(f"{where}: {prefix}{e}") from None


def available_profiles():
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml")) + ["auto"]


def check_profile_name(name, where):
    """Raise ValueError unless `name` fits PROFILE_NAME; `where` says what it came from."""
    if not PROFILE_NAME.fullmatch(name):
        raise ValueError(f"{where}: the profile name {name!r} is not a plain folder name (results go to "
                         f"OUT/<name>/); use up to 100 letters, digits, '.', '_' or '-', not starting with a dot")


def profile_path(name, device="auto"):
    """The TOML file of a built-in profile name (`auto` resolved for `device`) or of a user's `PATH.toml`."""
    if name.endswith(".toml"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ValueError(f"profile file {path} does not exist")
        check_profile_name(path.stem, f"profile file {path}")
        return path
    check_profile_name(name, "--profile")
    if name == "auto":
        name = "full" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "quick"
    path = PROFILES_DIR / f"{name}.toml"
    if not path.exists():
        raise ValueError(f"unknown profile {name!r}; available: {', '.join(available_profiles())}, or a PATH.toml")
    return path


def parse_overrides(assignments):
    """["svd.ranks=[4,8]", "seeds=[1]"] -> {"svd": {"ranks": [4, 8]}, "seeds": [1]}; values are TOML values.

    Each `--set` is exactly one key and one value: a value that is more than one TOML value (a newline and a second
    assignment) is refused, not cut to its first line, and so is `name`, which the profile's file name decides."""
    tree = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(KEY_PART.fullmatch(p) for p in parts):
            raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. svd.ranks=[4,8,16]")
        if parts == ["name"]:
            raise ValueError(f"--set {text!r}: the profile's name is not a setting (it is the profile file's name)")
        try:
            doc = tomllib.loads(f"v = {value.strip()}")
        except tomllib.TOMLDecodeError:
            raise ValueError(f"--set {text!r}: {value.strip()!r} is not a TOML value (strings need quotes)") from None
        if list(doc) != ["v"]:
            raise ValueError(f"--set {text!r}: one --set takes one KEY=VALUE; give each key its own --set")
        parsed = doc["v"]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {text!r}: {part} is set twice")
        node[parts[-1]] = parsed
    return tree


def _deep_update(base, update):
    for key, value in update.items():
        base[key] = _deep_update(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def load_profile(name, device="auto", overrides=()):
    """The profile `name` (or PATH.toml) with `overrides` ("KEY=VALUE" strings) applied, checked throughout."""
    path = profile_path(name, device)
    try:
        tree = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid TOML ({e}); fix the file") from None
    if "name" in tree:
        raise ValueError(f"{path}: `name` is not a setting; a profile's name is its file name ({path.stem})")
    _deep_update(tree, parse_overrides(overrides))
    where = f"{path}{' with --set' if overrides else ''}"
    return _merge(Profile, Profile(name=path.stem), {**tree, "name": path.stem}, where)


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
