"""The text classifier of Study 3: a small transformer encoder over WordPiece ids, pooled into two IMDB classes.

ids (B, T) → scaled token embedding (or a table of another width, projected to d_model) + sinusoidal positions →
n_layers pre-LN encoder blocks → final LayerNorm → pooling over the non-padding tokens → linear classifier.
Attention projections are separate `q_proj`, `k_proj`, `v_proj`, `out_proj` linears so that
`models.methods.factorize(model, k, QKV_TARGETS, layer="usv")` finds them by name suffix and swaps in `SVDLinear`
factors; `qkv_params()` counts them either way.

Padding (`ids == pad_id`) is masked as attention keys and left out of the pooling, so appending padding never
changes a prediction. Padded *query* positions still get (finite, meaningless) outputs; pooling discards them.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

QKV_TARGETS = ("q_proj", "k_proj", "v_proj")  # what Study 3 factors by default
ALL_TARGETS = QKV_TARGETS + ("out_proj", "fc1", "fc2")  # the option that also factors out_proj and feed-forward
POOLINGS = ("mean", "cls")


@dataclass
class TransformerConfig:
    vocab_size: int = 30522  # bert-base-uncased WordPiece
    max_len: int = 256  # tokens per review, [CLS] and [SEP] included; longer reviews are truncated by the tokenizer
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 1
    d_ff: int = 512  # 4 × d_model, as in the original transformer and nanoGPT
    dropout: float = 0.1
    # Word dropout: in training, each real token is left out (masked like padding) with this probability, so the
    # classifier cannot lean on a few memorised words.
    token_dropout: float = 0.0
    n_classes: int = 2
    pad_id: int = 0  # bert-base-uncased [PAD]
    pooling: str = "mean"  # "mean": masked mean of the non-padding tokens; "cls": the token at position 0
    # A token table of another width, e.g. a pre-defined one (MiniLM's 384) loaded by the study: vocab x
    # embedding_dim, projected to d_model by a bias-free linear and a LayerNorm. None: the table has d_model columns.
    embedding_dim: int | None = None
    freeze_embedding: bool = False  # the token table gets no gradient (a pre-defined table kept as it is)

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos position pairs, got {self.d_model}")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {self.n_classes!r}")
        for name in ("dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be an integer in [0, vocab_size={self.vocab_size}), got {self.pad_id!r}")
        if self.embedding_dim is not None and (not isinstance(self.embedding_dim, int) or self.embedding_dim < 1):
            raise ValueError(f"embedding_dim must be a positive integer or None, got {self.embedding_dim!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


def sinusoidal_positions(max_len, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)) (Vaswani et al. 2017, §3.5)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (C/2,)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)
    return pe.float()  # computed in float64 so large positions keep their precision


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key-padding mask; the same function as `nn.MultiheadAttention`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, mask=None):
        """x (B, T, C); mask (B, T) bool, True for real tokens, False for padding (never attended to)."""
        B, T, C = x.shape
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (proj(x).view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        attn_mask = None
        if mask is not None:
            assert mask.shape == (B, T) and mask.dtype == torch.bool, (mask.shape, mask.dtype)
            # A row with no real token would softmax over nothing (NaN in a plain softmax and in some kernels);
            # let it attend everywhere instead.
            # Its outputs are finite and meaningless, and pooling ignores them.
            keep = mask | ~mask.any(dim=1, keepdim=True)
            attn_mask = keep[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.out_proj(y))


class FeedForward(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)
        self.fc2 = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    """Pre-LN encoder layer: x + attn(LN(x)), then x + ff(LN(x)).

    Pre-LN (as in GPT-2 / nanoGPT) rather than the post-LN of the original paper: the residual path stays an
    identity, so training is stable without a learning-rate warm-up, and the low-rank runs (whose q/k/v start
    from a truncated, weaker attention) train under the same hyper-parameters as the dense baseline.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.ff(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.embedding_dim or config.d_model, padding_idx=config.pad_id)
        # std d^-1/2, times the sqrt(d) scale in forward: unit-size embeddings, the same size as the positions.
        nn.init.normal_(self.wte.weight, std=config.d_model ** -0.5)
        with torch.no_grad():
            self.wte.weight[config.pad_id].zero_()
        if config.embedding_dim is not None:
            # A table of another width goes through a projection to d_model, then a LayerNorm (as BERT normalises
            # its embeddings): unit-size tokens whatever the table's own scale (MiniLM's entries have std 0.056).
            self.wte_proj = nn.Linear(config.embedding_dim, config.d_model, bias=False)
            self.ln_wte = nn.LayerNorm(config.d_model)
        self.wte.weight.requires_grad_(not config.freeze_embedding)
        # Fixed, so not a parameter, and rebuilt from the config, so not saved in checkpoints.
        self.register_buffer("pe", sinusoidal_positions(config.max_len, config.d_model), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)  # pre-LN blocks leave the residual stream unnormalised
        self.head = nn.Linear(config.d_model, config.n_classes)

    def embed(self, ids):
        """ids (B, T) -> (B, T, C): scaled token embeddings plus positions, what the first block receives (before
        dropout); the benchmark of the attention block alone builds its input here too."""
        if self.config.embedding_dim is None:
            return self.wte(ids) * math.sqrt(self.config.d_model) + self.pe[:ids.shape[1]]
        return self.ln_wte(self.wte_proj(self.wte(ids))) + self.pe[:ids.shape[1]]

    def forward(self, ids):
        """ids (B, T) token ids, padding = pad_id -> logits (B, n_classes)."""
        B, T = ids.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}; truncate the input")
        mask = ids != self.config.pad_id  # (B, T), True for real tokens
        if self.training and self.config.token_dropout:
            mask = mask & (torch.rand(mask.shape, device=ids.device) >= self.config.token_dropout)
        x = self.dropout(self.embed(ids))  # (B, T, C)
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_f(x)  # (B, T, C)
        if self.config.pooling == "cls":
            # The tokenizer puts [CLS] first; padding is appended after it, so position 0 is never padding.
            pooled = x[:, 0]  # (B, C)
        else:
            # masked_fill, not multiply: padded positions must not contribute even if they held inf/NaN.
            total = x.masked_fill(~mask[..., None], 0.0).sum(dim=1)  # (B, C)
            count = mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1); an all-padding row pools to 0, not NaN
            pooled = total / count
        return self.head(self.dropout(pooled))  # (B, n_classes)

    def qkv_params(self):
        """Parameters of all query/key/value projections, dense (d·d + d each) or factored (k(d+d) + k + d each)."""
        return sum(p.numel() for name, module in self.named_modules() if name.endswith(QKV_TARGETS)
                   for p in module.parameters())
