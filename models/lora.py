"""LoRA written from scratch: a frozen nn.Linear plus a trainable low-rank update, in the spirit of PEFT's LoRA layer.

For a frozen base weight W (m×n) with bias b, LoRA (Hu et al., 2021, arXiv:2106.09685) learns A (r×n) and B (m×r):

    y = W x + b + s · B A dropout(x),    s = α / r   (rsLoRA, arXiv:2312.03732: s = α / √r)

Only A and B train, r(m + n) weights per layer instead of mn. `merge()` folds s·BA into W so inference costs what
the dense layer costs; `unmerge()` subtracts it again. `add_lora` puts the layers into a copy of a model and
freezes everything else; `lora_state_dict` / `load_lora_state_dict` save and load only the adapter (a few KB).
"""
import copy
import math
import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from lowrank_bench.models.select import linear_layers

INITS = ("kaiming", "gaussian")
GAUSSIAN_STD = 0.01  # σ of init="gaussian": "small random values" for A and B, as the original assignment asks
PREFIX = "lora_"  # every adapter parameter lives under a module named lora_*, as in PEFT


@dataclass
class LoRAConfig:
    rank: int  # r, the rank of the update BA
    alpha: float | None = None  # α; None means α = r, i.e. scaling 1 (rsLoRA: √r), so the update is not rescaled
    dropout: float = 0.0  # dropout on the adapter's input only; the base path never sees it
    targets: tuple[str, ...] = ("hidden",)  # dotted name parts: "hidden" matches hidden.0, hidden.1; "hidden.1" one
    init: str = "kaiming"  # "kaiming": A Kaiming-uniform, B = 0 (BA = 0 at start); "gaussian": A, B ~ N(0, σ²)
    rslora: bool = False  # scaling α/√r instead of α/r, so the update's size does not shrink as r grows
    new_head: int | None = None  # a fresh trainable nn.Linear `head` with this many classes (PEFT's modules_to_save)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"alpha must be positive or None (alpha = rank), got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.targets, str) or not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"targets must be a non-empty sequence of module names, got {self.targets!r}")
        self.targets = tuple(self.targets)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.new_head is not None and (isinstance(self.new_head, bool) or not isinstance(self.new_head, int)
                                          or self.new_head < 1):
            raise ValueError(f"new_head must be None or a number of classes >= 1, got {self.new_head!r}")

    @property
    def effective_alpha(self):
        return self.rank if self.alpha is None else self.alpha

    @property
    def scaling(self):
        return self.effective_alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


class LoRALinear(nn.Module):
    """y = base_layer(x) + scaling · lora_B(lora_A(dropout(x))), with `base_layer` (W, m×n) frozen."""

    def __init__(self, base_layer: nn.Linear, config: LoRAConfig, name="layer"):
        super().__init__()
        m, n = base_layer.weight.shape
        if config.rank > min(m, n):
            raise ValueError(f"{name}: rank r must be in [1, min(m, n) = {min(m, n)}] for a {m}×{n} weight, "
                             f"got {config.rank}")
        self.base_layer = base_layer
        self.rank, self.alpha, self.scaling = config.rank, config.effective_alpha, config.scaling
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(n, config.rank, bias=False, device=base_layer.weight.device,
                                dtype=base_layer.weight.dtype)
        self.lora_B = nn.Linear(config.rank, m, bias=False, device=base_layer.weight.device,
                                dtype=base_layer.weight.dtype)
        if config.init == "kaiming":
            # As microsoft/LoRA (loralib/layers.py) and PEFT: A like nn.Linear's default, B = 0, so BA = 0 at start
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)
        else:
            nn.init.normal_(self.lora_A.weight, std=GAUSSIAN_STD)
            nn.init.normal_(self.lora_B.weight, std=GAUSSIAN_STD)
        self._merged = False

    @property
    def merged(self):
        return self._merged

    def delta_weight(self):
        """s·BA (m×n), what merging adds to W."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    @torch.no_grad()
    def merge(self):
        """Fold s·BA into W; the forward is then the base layer alone. Refuses to write a non-finite weight."""
        if self._merged:
            warnings.warn("Already merged. Nothing to do.")
            return
        merged = self.base_layer.weight + self.delta_weight()
        if not torch.isfinite(merged).all():
            raise ValueError("merging the adapter gives non-finite weights (NaN or inf in lora_A/lora_B); "
                             "the base weight was left unchanged")
        self.base_layer.weight.copy_(merged)
        self._merged = True

    @torch.no_grad()
    def unmerge(self):
        """Subtract s·BA from W again (W comes back up to float rounding)."""
        if not self._merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        self.base_layer.weight.sub_(self.delta_weight())
        self._merged = False

    def forward(self, x):
        y = self.base_layer(x)  # (..., m)
        if self._merged:
            return y
        return y + self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))  # (..., r) then (..., m)

    def extra_repr(self):
        return f"rank={self.rank}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self._merged}"


def _is_adapter(name, config):
    """The one place that decides what trains: lora_* parameters, and the head when it was replaced."""
    return any(part.startswith(PREFIX) for part in name.split(".")) or (
        config.new_head is not None and name.startswith("head."))


def add_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """A copy of `model` with every nn.Linear matched by `config.targets` wrapped in a LoRALinear, optionally a
    new `head`, and everything else frozen. The model passed in is left untouched.

    Sharp edge: a model that already has LoRA layers is refused rather than wrapped twice.
    """
    if any(isinstance(mod, LoRALinear) for mod in model.modules()):
        raise ValueError("model already has LoRA layers; call add_lora on the base model")
    names = linear_layers(model, config.targets)
    if config.new_head is not None:
        if not isinstance(getattr(model, "head", None), nn.Linear):
            raise ValueError(f"new_head={config.new_head} needs a model with an nn.Linear `head`")
        if "head" in names:
            raise ValueError("targets include `head`, which new_head replaces; drop one of the two")
    model = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), config, name=name))
    if config.new_head is not None:
        old = model.head
        model.head = nn.Linear(old.in_features, config.new_head, bias=old.bias is not None,
                               device=old.weight.device, dtype=old.weight.dtype)
        if hasattr(getattr(model, "config", None), "n_classes"):
            # the deepcopy's config must describe the new head so a checkpoint sidecar rebuilds the right shape
            model.config = replace(model.config, n_classes=config.new_head)
    for name, p in model.named_parameters():
        p.requires_grad_(_is_adapter(name, config))
    model.lora_config = config  # what lora_state_dict needs, and what a checkpoint records
    return model


def lora_layers(model):
    return [mod for mod in model.modules() if isinstance(mod, LoRALinear)]


def merge_lora(model):
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model):
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def lora_state_dict(model) -> dict[str, torch.Tensor]:
    """Only the adapter: lora_A, lora_B and a replaced head, detached copies keyed by parameter name."""
    if not hasattr(model, "lora_config"):
        raise ValueError("model has no LoRA adapter; build it with add_lora")
    return {n: p.detach().clone() for n, p in model.named_parameters() if _is_adapter(n, model.lora_config)}


@torch.no_grad()
def load_lora_state_dict(model, state):
    """Copy an adapter saved by lora_state_dict into `model` (built by add_lora with the same config).

    Refuses missing or unexpected keys and shape mismatches, naming them, so an adapter never loads onto the
    wrong base or rank. The model must be unmerged: loading into a merged W would leave the old update in it.
    """
    if any(layer.merged for layer in lora_layers(model)):
        raise ValueError("model has merged LoRA layers; unmerge_lora(model) before loading an adapter")
    own = dict(model.named_parameters())
    expected = set(lora_state_dict(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"adapter does not fit the model: missing keys {missing}, unexpected keys {unexpected}")
    for name in sorted(expected):
        if state[name].shape != own[name].shape:
            raise ValueError(f"adapter does not fit the model: {name} has shape {tuple(state[name].shape)}, "
                             f"the model expects {tuple(own[name].shape)} (different rank or base?)")
    for name in expected:
        own[name].copy_(state[name])
    return model
