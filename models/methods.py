"""The decomposition methods, one registry entry each, and the functions that put their layers into a model.

A method turns a dense weight W (m×n) and a rank k into factors (U_k m×k, S_k (k,), Vh_k k×n) with
W_k = U_k diag(S_k) Vh_k; either parametrisation of models.lowrank (`layer="two_linear"`: LowRankLinear,
`layer="usv"`: SVDLinear) takes them unchanged. Both methods here give the same layers, so they cost the same:
k(m+n) weights + m bias, 2k(m+n) FLOPs per sample.

    svd      truncated SVD: the W_k nearest W (Eckart–Young), no data needed.
    whiten   data-aware SVD (models.whiten): the W_k whose outputs on calibration inputs are nearest W's.

Calibrated use: `factorize(model, 32, ["hidden"], method="whiten", calibration=calibrate(model, ["hidden"], loader))`.
"""
import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from lowrank_bench.models.lowrank import LAYERS, LowRankLinear, SVDLinear, check_rank, truncated_svd
from lowrank_bench.models.select import linear_layers
from lowrank_bench.models.whiten import Factors, Grams, input_grams, whitened_svd


@dataclass(frozen=True)
class Method:
    """One decomposition method: how it builds rank-k factors and what the resulting layer costs."""
    name: str  # in ids and on the command line
    label: str  # for people (tables, figures)
    calibrated: bool  # needs calibration inputs (models.whiten.input_grams) to build its factors
    # factors(weight, rank, gram, name) -> (U_k, S_k, Vh_k) in float64; gram = Σ x xᵀ of the layer's inputs (or
    # None for an uncalibrated method), name goes into errors
    factors: Callable[[torch.Tensor, int, torch.Tensor | None, str], Factors]
    params: Callable[[int, int, int], int]  # (m, n, k) -> parameters of LowRankLinear, bias included (SVDLinear: + k)
    flops: Callable[[int, int, int], int]  # (m, n, k) -> FLOPs per sample of the factored layer (multiply-add = 2)
    max_rank: Callable[[int, int], int]  # (m, n) -> the largest k; the layers take [1, min(m, n)]


def _factored_params(m: int, n: int, k: int) -> int:
    return k * (m + n) + m


def _factored_flops(m: int, n: int, k: int) -> int:
    return 2 * k * (m + n)


def _svd_factors(weight: torch.Tensor, rank: int, gram: torch.Tensor | None = None, name: str = "layer") -> Factors:
    return truncated_svd(weight, rank)


def _whiten_factors(weight: torch.Tensor, rank: int, gram: torch.Tensor | None = None,
                    name: str = "layer") -> Factors:
    if gram is None:
        raise ValueError(f"{name}: method 'whiten' needs the Gram matrix of the layer's calibration inputs")
    return whitened_svd(weight, rank, gram, name=name)


METHODS: dict[str, Method] = {entry.name: entry for entry in (
    Method("svd", "truncated SVD", False, _svd_factors, _factored_params, _factored_flops, min),
    Method("whiten", "data-aware SVD (SVD-LLM whitening)", True, _whiten_factors, _factored_params, _factored_flops,
           min),
)}


def _method(method: str) -> Method:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method]


def factorize(model: nn.Module, ranks: int | dict[str, int], targets: Sequence[str], method: str = "svd",
              layer: str = "two_linear", calibration: Grams | None = None) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers named in `targets` are replaced by rank-k factors of `method`.

    `targets` are dotted name parts ("hidden", "hidden.0", "q_proj"); `ranks` is one int for all of them or a dict
    {full module name: k}; `layer` is the parametrisation (a key of models.lowrank.LAYERS). A calibrated method
    needs `calibration`, the {layer name: (G, n)} of `calibrate`/`input_grams` for every layer it factors. The
    original model is left untouched.
    """
    entry = _method(method)
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {sorted(LAYERS)}, got {layer!r}")
    if entry.calibrated and calibration is None:
        raise ValueError(f"method {method!r} is calibrated: pass calibration inputs, "
                         f"calibration=calibrate(model, targets, batches)")
    model = copy.deepcopy(model)
    names = linear_layers(model, targets)
    if isinstance(ranks, dict):
        unknown = set(ranks) - set(names)
        if unknown:
            raise ValueError(f"ranks name layers that are not targets: {sorted(unknown)}; targets: {names}")
    for name in names:
        k = ranks.get(name) if isinstance(ranks, dict) else ranks
        if k is None:
            continue
        gram = None
        if entry.calibrated:
            if name not in calibration:
                raise ValueError(f"{name}: no calibration inputs for this layer (calibration has "
                                 f"{sorted(calibration)}); calibrate every layer you factor")
            gram = calibration[name][0]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        factors = partial(entry.factors, gram=gram, name=name)
        setattr(parent, child, LAYERS[layer].from_linear(getattr(parent, child), k, name=name, factors=factors))
    return model


def calibrate(model: nn.Module, targets: Sequence[str], batches: Iterable[Any],
              mask: Callable[[Any], torch.Tensor | None] | None = None) -> Grams:
    """{layer name: (G, n)} of every nn.Linear of `model` matched by `targets`, from running the dense `model` on
    `batches`: what `factorize(..., calibration=)` takes.

    Each batch is what the model takes: a tensor, a tuple of positional arguments or a dict of keyword arguments
    (a Hugging Face tokenizer's output); from a loader of (inputs, labels) pairs pass `(x for x, _ in loader)`.
    Only the positions that count shape the factors: `mask(batch)` gives them ((batch, tokens), non-zero where a
    position counts; None: all), by default a Hugging Face batch's `attention_mask`, else the token ids that are not
    the config's `pad_token_id` (or `pad_id`) (models.whiten.input_grams)."""
    return input_grams(model, linear_layers(model, targets), batches, mask)


def factored_ranks(model: nn.Module) -> dict[str, int]:
    """{module name: rank} of every low-rank layer in `model`, enough to rebuild its structure."""
    return {n: m.rank for n, m in model.named_modules() if isinstance(m, (LowRankLinear, SVDLinear))}


def check_ranks(model: nn.Module, ranks: Iterable[int], targets: Sequence[str]) -> None:
    """Raise the ValueError `factorize` would, before any work is spent: every k must fit every target layer."""
    for name in linear_layers(model, targets):
        m, n = model.get_submodule(name).weight.shape
        for k in ranks:
            check_rank(k, m, n, name)
