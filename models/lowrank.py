"""Low-rank linear layers and the truncated SVD they start from (models.methods puts them into a model).

For W (m×n) = U Σ Vᵀ, the best rank-k approximation in Frobenius and spectral norm (Eckart–Young–Mirsky) is
W_k = U_k Σ_k V_kᵀ, with ‖W − W_k‖_F = sqrt(Σ_{i>k} σ_i²). Two parametrisations of it:

- `LowRankLinear` (Study 1): two linear layers, x → W2 x → W1 (W2 x) + b, W1 = U_k (m×k), W2 = Σ_k V_kᵀ (k×n).
- `SVDLinear` (Study 3): U (m×k), s (k), V (n×k) as parameters, y = ((x V) ⊙ s) Uᵀ + b, never forming W.

Both cost k(m+n) weights (+k for s) against mn, so they only pay below the break-even rank k* = mn/(m+n).
The SVD runs in float64 so that small singular values are exact at full rank.
"""
import torch
import torch.nn as nn


def check_rank(rank, m, n, name="layer"):
    """The ranks both layers take: an integer k in [1, min(m, n)] for an m×n weight; a ValueError naming `name`."""
    if not isinstance(rank, int) or not 1 <= rank <= min(m, n):
        raise ValueError(f"{name}: rank k must be an integer in [1, min(m, n) = {min(m, n)}] "
                         f"for a {m}×{n} weight, got {rank!r}")


def truncated_svd(weight, rank):
    """(U_k, S_k, Vh_k) of `weight` in float64."""
    U, S, Vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    return U[:, :rank], S[:rank], Vh[:rank]


def break_even_rank(m, n):
    """Rank at which the factored layer has as many weights as the dense one: mn/(m+n)."""
    return m * n / (m + n)


class _LowRank(nn.Module):
    """What both parametrisations share: the rank check, the construction from an nn.Linear, the repr."""

    def __init__(self, in_features, out_features, rank):
        super().__init__()
        check_rank(rank, out_features, in_features)
        self.in_features, self.out_features, self.rank = in_features, out_features, rank

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank, name="layer", factors=truncated_svd):
        """`layer` at rank `rank`, keeping its bias, device and dtype; `name` goes into errors.

        `factors(weight, rank)` -> (U_k, S_k, Vh_k) with W_k = U_k diag(S_k) Vh_k is the decomposition (a method of
        models.methods; the truncated SVD by default). It runs after the rank check, so a bad k costs nothing.
        """
        m, n = layer.weight.shape
        check_rank(rank, m, n, name)
        factors = factors(layer.weight, rank)
        shapes = tuple(tuple(t.shape) for t in factors)
        if shapes != ((m, rank), (rank,), (rank, n)):
            raise ValueError(f"{name}: factors of shapes {shapes} do not make a rank-{rank} {m}×{n} weight")
        where = dict(device=layer.weight.device, dtype=layer.weight.dtype)  # a float64 or bf16 model stays one
        new = cls(n, m, rank, bias=layer.bias is not None).to(**where)
        U, S, Vh = (t.to(**where) for t in factors)
        with torch.no_grad():
            new.set_factors(U, S, Vh)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankLinear(_LowRank):
    """W ≈ W1 @ W2: `w2` (k×n, no bias) is applied first, then `w1` (m×k) with the original bias."""

    def __init__(self, in_features, out_features, rank, bias=True):
        super().__init__(in_features, out_features, rank)
        self.w2 = nn.Linear(in_features, rank, bias=False)
        self.w1 = nn.Linear(rank, out_features, bias=bias)

    @property
    def bias(self):
        return self.w1.bias

    def set_factors(self, U, S, Vh):
        self.w1.weight.copy_(U)  # W1 = U_k
        self.w2.weight.copy_(S[:, None] * Vh)  # W2 = Σ_k V_kᵀ

    def forward(self, x):
        return self.w1(self.w2(x))


class SVDLinear(_LowRank):
    """y = ((x V) ⊙ s) Uᵀ + b with U (m×k), s (k), V (n×k) all trainable."""

    def __init__(self, in_features, out_features, rank, bias=True):
        super().__init__(in_features, out_features, rank)
        self.U = nn.Parameter(torch.empty(out_features, rank))
        self.s = nn.Parameter(torch.empty(rank))
        self.V = nn.Parameter(torch.empty(in_features, rank))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def set_factors(self, U, S, Vh):
        self.U.copy_(U)
        self.s.copy_(S)
        self.V.copy_(Vh.T)

    def forward(self, x):
        y = ((x @ self.V) * self.s) @ self.U.T  # (..., k) then (..., m)
        return y if self.bias is None else y + self.bias


LAYERS = {"two_linear": LowRankLinear, "usv": SVDLinear}


def layer_report(weight, ranks, name="layer"):
    """Per k: relative Frobenius error, energy retained, parameters, FLOPs per sample and bytes of the factors."""
    m, n = weight.shape
    S = torch.linalg.svdvals(weight.detach().double())
    energy = S.square().cumsum(0) / S.square().sum()
    rows = []
    for k in ranks:
        check_rank(k, m, n, name)
        tail = S[k:].square().sum().sqrt() / S.square().sum().sqrt()
        rows.append({"rank": k, "m": m, "n": n, "rel_error": tail.item(), "energy": energy[k - 1].item(),
                     "params": k * (m + n) + m, "flops": 2 * k * (m + n), "bytes": 4 * (k * (m + n) + m),
                     "dense_params": m * n + m, "break_even": break_even_rank(m, n),
                     "costs_more_than_dense": k >= break_even_rank(m, n)})
    return rows
