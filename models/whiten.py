"""Data-aware SVD: the truncation-aware data whitening of SVD-LLM (Wang et al., ICLR 2025).

Truncated SVD minimises the weight error ‖W − W_k‖_F, but what a layer y = W x passes on is its output error on
the inputs it actually sees. With calibration inputs X (n × N) and G = X Xᵀ = S Sᵀ (S the lower Cholesky factor),

    ‖(W − B) X‖_F² = tr((W − B) G (W − B)ᵀ) = ‖(W − B) S‖_F²,

so the best rank-k B for the data is B S = [W S]_k (Eckart–Young on W S): with W S = U Σ Vᵀ,
W_k' = U_k Σ_k V_kᵀ S⁻¹, and its output error is sqrt(Σ_{i>k} σ_i(W S)²), the discarded singular values of W S.

Ridge: S is the Cholesky factor of G + λI with λ = `RIDGE` · tr(G)/n (a millionth of the mean input energy per
feature). G is singular whenever the data do not span every input direction: fewer samples than inputs, an input
that is always zero (a border pixel, a dead ReLU unit); its Cholesky factor then does not exist and S⁻¹ would be
free in those directions. With the ridge the factors minimise ‖(W − B) X‖_F² + λ‖W − B‖_F² exactly, i.e. the
output error on X plus a vanishing pull towards plain SVD, which fixes the directions X never visits.
Everything is computed in float64.
"""
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from lowrank_bench.models.inputs import call

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (U_k m×k, S_k (k,), Vh_k k×n), W_k = U diag(S) Vh
Grams = dict[str, tuple[torch.Tensor, int]]  # {layer name: (G = Σ x xᵀ over the inputs it saw, how many inputs)}

RIDGE = 1e-6  # λ relative to the mean diagonal of G


def whitened_svd(weight: torch.Tensor, rank: int, gram: torch.Tensor, ridge: float = RIDGE,
                 name: str = "layer") -> Factors:
    """(U_k, S_k, Vh_k') in float64 with U_k diag(S_k) Vh_k' the rank-`rank` W minimising ‖(W − W_k')X‖_F² +
    λ‖W − W_k'‖_F² for G = X Xᵀ (`gram`), λ = `ridge` · tr(G)/n; a ValueError naming `name` if G is unusable."""
    W = weight.detach().to(torch.float64)
    m, n = W.shape
    G = gram.detach().to(device=W.device, dtype=torch.float64)
    if G.shape != (n, n):
        raise ValueError(f"{name}: the Gram matrix is {'×'.join(map(str, G.shape))} but the {m}×{n} weight needs "
                         f"{n}×{n}; calibrate the layer the weight belongs to")
    if not torch.isfinite(G).all():
        raise ValueError(f"{name}: the calibration inputs hold inf or NaN; check the calibration batches")
    mean_energy = torch.diagonal(G).mean().item()
    if mean_energy <= 0.0:
        raise ValueError(f"{name}: its calibration inputs are all zero (or there were none), so they say nothing "
                         "about the layer; pass batches that reach it, or factor it with plain SVD")
    S, info = torch.linalg.cholesky_ex(G + ridge * mean_energy * torch.eye(n, dtype=torch.float64, device=W.device))
    if info.item() != 0:
        raise ValueError(f"{name}: G + λI is not positive definite even with the ridge λ = {ridge:g} · tr(G)/n; "
                         "pass a larger ridge or more calibration inputs")
    U, sigma, Vh = torch.linalg.svd(W @ S, full_matrices=False)
    # Vh_k S⁻¹ by a triangular solve (X S = Vh_k), never forming the inverse.
    Vh_whitened = torch.linalg.solve_triangular(S, Vh[:rank], upper=False, left=False)
    return U[:, :rank], sigma[:rank], Vh_whitened


def default_mask(model: nn.Module, batch: Any) -> torch.Tensor | None:
    """The positions of `batch` that count by default: a Hugging Face batch's `attention_mask` (a Mapping holding
    one: a tokenizer's output); else, for integer token ids (the batch, its `input_ids` or its first positional
    argument) of a model whose config names its padding id (`pad_token_id`, as Hugging Face configs do, or
    models.transformer's `pad_id`), the ids that are not padding; else None: every position counts."""
    if isinstance(batch, Mapping) and batch.get("attention_mask") is not None:
        return batch["attention_mask"]
    ids = batch.get("input_ids") if isinstance(batch, Mapping) else batch[0] if isinstance(batch, tuple) else batch
    config = getattr(model, "config", None)
    pad = next((p for p in (getattr(config, "pad_token_id", None), getattr(config, "pad_id", None)) if p is not None),
               None)
    if pad is None or not torch.is_tensor(ids) or ids.dim() != 2 or ids.is_floating_point():
        return None
    return ids != pad


def input_grams(model: nn.Module, layer_names: Sequence[str], batches: Iterable[Any],
                mask: Callable[[Any], torch.Tensor | None] | None = None) -> Grams:
    """{name: (G, n)}: G = Σ x xᵀ (float64) over the n inputs x that reached each named nn.Linear of `model`.

    Runs `model` in eval mode without gradients on each batch, passed as models.inputs.call passes it: a tensor is
    its one argument, a tuple its positional arguments, a dict its keyword arguments (a tokenizer's output).
    Inputs of shape (..., n) are flattened to rows. Only the positions that count give rows: `mask(batch)` is a
    tensor over the leading dimensions of the layers' inputs ((B, T) for token sequences), non-zero where a
    position counts, or None for all of them; by default `default_mask` (so padding never shapes the factors).
    A layer whose inputs have other leading dimensions (a pooler's (B, n)) sees every row; a mask that fits no
    target layer's inputs is an error. The model's train/eval mode is restored and the hooks removed even if a
    batch fails.
    """
    mask = partial(default_mask, model) if mask is None else mask
    grams: dict[str, list] = {}
    current: list = [None, False]  # the current batch's mask, and whether a layer's inputs fitted it

    def hook_for(name: str, n: int):
        def hook(module, args):
            x = args[0].detach()
            if current[0] is not None and x.shape[:-1] == current[0].shape:
                x, current[1] = x[current[0]], True
            rows = x.reshape(-1, n).to(torch.float64)
            entry = grams.setdefault(name, [torch.zeros(n, n, dtype=torch.float64, device=rows.device), 0])
            entry[0] += rows.T @ rows
            entry[1] += rows.shape[0]
        return hook

    handles = []
    was_training = model.training
    try:
        for name in layer_names:
            layer = model.get_submodule(name)
            if not isinstance(layer, nn.Linear):
                raise ValueError(f"{name} is a {type(layer).__name__}, not an nn.Linear; calibrate linear layers")
            handles.append(layer.register_forward_pre_hook(hook_for(name, layer.in_features)))
        model.eval()
        with torch.no_grad():
            for batch in batches:
                positions = mask(batch)
                current[:] = [None if positions is None else positions.to(torch.bool), False]
                call(model, batch)
                if positions is not None and not current[1]:
                    raise ValueError(f"the mask's shape {tuple(positions.shape)} fits the inputs of none of "
                                     f"{list(layer_names)}; give a mask over their leading dimensions, (batch, tokens)")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    missing = [name for name in layer_names if name not in grams]
    if missing:
        raise ValueError(f"no calibration input reached {missing}: pass at least one batch")
    return {name: (grams[name][0], grams[name][1]) for name in layer_names}
