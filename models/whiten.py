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
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

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


def _real_tokens(model: nn.Module, batch: Any) -> torch.Tensor | None:
    """(B, T) True for real tokens when `batch` is token ids of a model with a `config.pad_id`; else None."""
    pad_id = getattr(getattr(model, "config", None), "pad_id", None)
    if pad_id is None or not torch.is_tensor(batch) or batch.dim() != 2 or batch.is_floating_point():
        return None
    return batch != pad_id


def input_grams(model: nn.Module, layer_names: Sequence[str], batches: Iterable[Any]) -> Grams:
    """{name: (G, n)}: G = Σ x xᵀ (float64) over the n inputs x that reached each named nn.Linear of `model`.

    Runs `model` in eval mode without gradients on each batch: a tensor (or whatever its forward takes as one
    argument), or an (inputs, labels) tuple or list of which the inputs are used. Inputs of shape (..., n) are
    flattened to rows. For token-id batches of a model with `config.pad_id` (models.transformer), only the real
    tokens' rows of (B, T, n) inputs count, so padding never shapes the factors; other layers see every row.
    The model's train/eval mode is restored and the hooks removed even if a batch fails.
    """
    grams: dict[str, list] = {}
    mask: list[torch.Tensor | None] = [None]  # the current batch's real tokens, read by the hooks

    def hook_for(name: str, n: int):
        def hook(module, args):
            x = args[0].detach()
            if mask[0] is not None and x.shape[:-1] == mask[0].shape:
                x = x[mask[0]]
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
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                mask[0] = _real_tokens(model, inputs)
                model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    missing = [name for name in layer_names if name not in grams]
    if missing:
        raise ValueError(f"no calibration input reached {missing}: pass at least one batch")
    return {name: (grams[name][0], grams[name][1]) for name in layer_names}
