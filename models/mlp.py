"""The image classifier of Studies 1 and 2: a plain MLP on 32×32 grey images.

Input normalisation lives inside the model (the training split's mean and std, kept in its config), so a checkpoint
takes images in [0, 1] and needs nothing else to be used: Fashion-MNIST is fed to the Hoda model the same way.
"""
import copy
import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank_bench.models.lowrank import LowRankLinear


@dataclass
class MLPConfig:
    in_features: int = 32 * 32
    hidden: list[int] = field(default_factory=lambda: [1024, 512])
    n_classes: int = 10
    dropout: float = 0.2
    mean: float = 0.0  # normalisation statistics of the training split, stored so inference needs no data
    std: float = 1.0

    def __post_init__(self):
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        widths = [config.in_features, *config.hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(widths[-1], config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        # One new buffer for the normalised input, and ReLU in place: at small ranks the factored GEMMs are so
        # cheap that every extra pass over a (B, 1024) activation shows in the latency.
        x = x.flatten(1)  # (B, in_features)
        if (self.config.mean, self.config.std) != (0.0, 1.0):  # not yet folded into the first layer
            x = x.sub(self.config.mean).div_(self.config.std)
        for layer in self.hidden:
            x = self.dropout(F.relu(layer(x), inplace=True))
        return self.head(x)  # (B, n_classes) logits


def fold_normalisation(model: MLP) -> MLP:
    """A copy of `model` computing the same function with the input normalisation folded into its first layer.

    For an affine first layer f(x) = L(x) + b, f((x − μ)/σ) = L(x)/σ + (b − (μ/σ)·L(1)): dividing the input-facing
    weights by σ and shifting the bias removes a whole pass over the (B, in_features) input from inference, the
    same trick as folding batch norm. Only for inference: training keeps the normalised parametrisation.
    """
    model = copy.deepcopy(model)
    first = model.hidden[0]
    if type(first) is nn.Linear:
        input_facing = first
    elif isinstance(first, LowRankLinear):
        input_facing = first.w2
    else:
        raise TypeError(f"fold_normalisation: the first layer is a {type(first).__name__}; only nn.Linear and "
                        "LowRankLinear can absorb the normalisation")
    if first.bias is None:
        raise TypeError("fold_normalisation: the first layer has no bias to absorb the mean shift")
    mean, std = model.config.mean, model.config.std
    with torch.no_grad():
        ones = torch.ones(1, model.config.in_features, device=first.bias.device, dtype=first.bias.dtype)
        linear_part_of_ones = first(ones)[0] - first.bias  # L(1)
        input_facing.weight.div_(std)
        first.bias.sub_(linear_part_of_ones * (mean / std))
    model.config = dataclasses.replace(model.config, mean=0.0, std=1.0)
    return model
