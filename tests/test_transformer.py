"""The Study 3 transformer: attention equals nn.MultiheadAttention, SVD factors at k = d change nothing, padding
never changes a prediction, positions follow the formula, and the factors train."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from lowrank_bench.models.lowrank import SVDLinear
from lowrank_bench.models.methods import factorize
from lowrank_bench.models.transformer import (QKV_TARGETS, SelfAttention, Transformer, TransformerConfig,
                                sinusoidal_positions)
from lowrank_bench.training.measure import param_counts

D, H, VOCAB, PAD = 32, 4, 100, 0


def small(**overrides):
    kw = dict(vocab_size=VOCAB, max_len=24, d_model=D, n_heads=H, n_layers=2, d_ff=64, dropout=0.1, pad_id=PAD)
    return TransformerConfig(**{**kw, **overrides})


def padded_batch(lengths, T, seed=0):
    """Rows of random non-pad ids of the given lengths, padded with PAD up to T."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), T), generator=g)
    for row, n in enumerate(lengths):
        ids[row, n:] = PAD
    return ids


def copy_into_mha(attn):
    mha = nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        mha.out_proj.weight.copy_(attn.out_proj.weight)
        mha.out_proj.bias.copy_(attn.out_proj.bias)
    return mha


@pytest.mark.parametrize("mha_training", [True, False], ids=["mha-slow-path", "mha-eval"])
def test_self_attention_equals_multihead_attention(mha_training):
    torch.manual_seed(0)
    attn = SelfAttention(small()).eval()
    mha = copy_into_mha(attn).train(mha_training)  # dropout 0: train mode is deterministic and skips the fast path
    x = torch.randn(3, 7, D)
    mask = torch.arange(7)[None, :] < torch.tensor([[7], [4], [1]])  # True = real token
    with torch.no_grad():
        ours = attn(x, mask)
        theirs, _ = mha(x, x, x, key_padding_mask=~mask, need_weights=False)
    # MHA's eval fast path zero-fills padded query positions, so only the real ones are comparable there.
    where = torch.ones_like(mask) if mha_training else mask
    assert torch.allclose(ours[where], theirs[where], atol=1e-5), (ours[where] - theirs[where]).abs().max()
    # The mask matters: without it the padded keys would be attended to and the outputs would differ.
    with torch.no_grad():
        unmasked = attn(x)
    assert not torch.allclose(unmasked[1, :4], theirs[1, :4], atol=1e-3)


def plain_softmax_attention(q, k, v, attn_mask=None, dropout_p=0.0):
    """Textbook attention: NaN on a row whose keys are all masked, as some fused kernels are."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


@pytest.mark.parametrize("core", ["sdpa", "plain-softmax"])
def test_all_padding_row_stays_finite(core, monkeypatch):
    # torch's CPU SDPA returns 0 for an all-masked row; a plain softmax does not, so the model must guard itself.
    if core == "plain-softmax":
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", plain_softmax_attention)
    torch.manual_seed(0)
    attn = SelfAttention(small()).eval()
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :3] = True
    assert torch.isfinite(attn(torch.randn(2, 5, D), mask)).all()
    for pooling in ("mean", "cls"):
        model = Transformer(small(pooling=pooling)).train()
        logits = model(padded_batch([0, 4], 6))
        logits.sum().backward()
        assert torch.isfinite(logits).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("k", [1, 5, D])
def test_qkv_params_match_formula(k):
    model = Transformer(small())
    L = model.config.n_layers
    assert model.qkv_params() == 3 * L * (D * D + D)
    factored = factorize(model, k, QKV_TARGETS, layer="usv")
    assert factored.qkv_params() == 3 * L * (k * (D + D) + k + D)
    # Only q/k/v changed, so the total moves by exactly the q/k/v difference.
    assert param_counts(factored)["params_total"] - param_counts(model)["params_total"] == \
        factored.qkv_params() - model.qkv_params()
    assert model.qkv_params() == 3 * L * (D * D + D)  # factorize copied; the dense model is untouched


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_full_rank_svd_equals_dense(pooling):
    torch.manual_seed(0)
    model = Transformer(small(pooling=pooling)).eval()
    factored = factorize(model, D, QKV_TARGETS, layer="usv").eval()
    n_svd = sum(isinstance(m, SVDLinear) for m in factored.modules())
    assert n_svd == 3 * model.config.n_layers
    ids = padded_batch([10, 6, 3], 10)
    with torch.no_grad():
        dense, low = model(ids), factored(ids)
        truncated = factorize(model, 2, QKV_TARGETS, layer="usv").eval()(ids)
    assert torch.allclose(dense, low, atol=1e-5), (dense - low).abs().max()
    assert not torch.allclose(dense, truncated, atol=1e-5)  # the comparison can tell a changed attention apart


@pytest.mark.parametrize("pooling, embedding_dim", [("mean", None), ("cls", None), ("mean", 12), ("cls", 48)])
def test_appending_padding_leaves_logits_unchanged(pooling, embedding_dim):
    torch.manual_seed(0)
    model = Transformer(small(pooling=pooling, max_len=32, embedding_dim=embedding_dim)).eval()
    lengths = [9, 5, 2]
    with torch.no_grad():
        ids = padded_batch(lengths, 9)
        batched = model(ids)
        more_padding = model(torch.cat([ids, torch.full((3, 21), PAD)], dim=1))
        alone = torch.cat([model(ids[i:i + 1, :n]) for i, n in enumerate(lengths)])
    assert torch.allclose(batched, more_padding, atol=1e-5), (batched - more_padding).abs().max()
    assert torch.allclose(batched, alone, atol=1e-5), (batched - alone).abs().max()
    # A real token instead of padding does change the prediction, so the check above is not vacuous.
    ids[2, 2] = 7
    with torch.no_grad():
        assert not torch.allclose(model(ids)[2], batched[2], atol=1e-5)


def test_token_dropout_is_padding_in_training_and_nothing_in_evaluation():
    """A dropped token is exactly a padding token: the same logits as the ids with it replaced by [PAD]."""
    torch.manual_seed(0)
    model = Transformer(small(dropout=0.0, token_dropout=0.3))
    ids = padded_batch([9, 5, 7], 9)
    torch.manual_seed(1)
    dropped = model.train()(ids)
    torch.manual_seed(1)
    keep = torch.rand(ids.shape) >= 0.3  # the draw forward makes
    assert not keep[ids != PAD].all()  # some real token was dropped, so the comparison means something
    with torch.no_grad():
        assert torch.allclose(dropped, model.eval()(ids.masked_fill(~keep, PAD)), atol=1e-5)
        plain = Transformer(small(dropout=0.0))
        plain.load_state_dict(model.state_dict())
        assert torch.equal(model(ids), plain.eval()(ids))  # evaluation sees every token


@pytest.mark.parametrize("k", [0, D + 1])
def test_rank_out_of_range_raises(k):
    with pytest.raises(ValueError, match="rank"):
        factorize(Transformer(small()), k, QKV_TARGETS, layer="usv")


@pytest.mark.parametrize("bad, field", [
    (dict(d_model=30, n_heads=4), "n_heads"),
    (dict(n_heads=0), "n_heads"),
    (dict(d_model=33, n_heads=1), "d_model"),
    (dict(n_layers=0), "n_layers"),
    (dict(max_len=0), "max_len"),
    (dict(d_ff=-1), "d_ff"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(token_dropout=1.0), "token_dropout"),
    (dict(n_classes=1), "n_classes"),
    (dict(pad_id=VOCAB), "pad_id"),
    (dict(pooling="max"), "pooling"),
    (dict(vocab_size=2.5), "vocab_size"),
])
def test_bad_config_raises(bad, field):
    with pytest.raises(ValueError, match=field):
        small(**bad)


def test_too_long_input_raises():
    model = Transformer(small(max_len=8))
    with pytest.raises(ValueError, match="max_len"):
        model(padded_batch([9], 9))


def test_sinusoidal_positions_match_formula():
    T, d = 50, 16
    expected = np.zeros((T, d))
    for pos in range(T):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    assert np.allclose(sinusoidal_positions(T, d).numpy(), expected, atol=1e-6)
    model = Transformer(small(max_len=T, d_model=d, n_heads=4))
    assert np.allclose(model.pe.numpy(), expected, atol=1e-6)
    assert "pe" not in model.state_dict()  # a non-persistent buffer: rebuilt from the config, not checkpointed


def test_positions_are_added():
    torch.manual_seed(0)
    model = Transformer(small(pooling="mean")).eval()  # without positions, mean pooling ignores word order
    ids = torch.tensor([[5, 6, 7], [6, 5, 7]])  # same bag of tokens, different order
    with torch.no_grad():
        a, b = model(ids)
    assert not torch.allclose(a, b, atol=1e-5)


def test_gradients_reach_factors():
    torch.manual_seed(0)
    factored = factorize(Transformer(small()), 3, QKV_TARGETS, layer="usv").train()
    loss = nn.functional.cross_entropy(factored(padded_batch([8, 5, 2, 6], 8)), torch.tensor([0, 1, 1, 0]))
    loss.backward()
    layers = [(n, m) for n, m in factored.named_modules() if isinstance(m, SVDLinear)]
    assert len(layers) == 3 * factored.config.n_layers
    for name, layer in layers:
        for p in ("U", "s", "V", "bias"):
            grad = getattr(layer, p).grad
            assert grad is not None and grad.abs().sum() > 0, f"{name}.{p} got no gradient"


def test_embed_is_what_the_first_attention_sees():
    """The attention-block benchmark builds its input as ln_1(embed(ids)): the model's own, √d scale included."""
    torch.manual_seed(0)
    model = Transformer(small()).eval()
    ids = padded_batch([24, 10], 24)
    seen = []
    model.blocks[0].attn.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(ids)
        assert torch.equal(model.blocks[0].ln_1(model.embed(ids)), seen[0])
        assert not torch.allclose(model.blocks[0].ln_1(model.wte(ids) + model.pe[:24]), seen[0], atol=1e-3)


@pytest.mark.parametrize("embedding_dim", [12, D, 48])
def test_a_table_of_another_width_is_projected_to_d_model(embedding_dim):
    model = Transformer(small(embedding_dim=embedding_dim))
    ids = padded_batch([7, 3], 9)
    assert model.wte.weight.shape == (VOCAB, embedding_dim) and model.wte_proj.weight.shape == (D, embedding_dim)
    assert model.embed(ids).shape == (2, 9, D) and model(ids).shape == (2, 2)
    # unit-size tokens whatever the table's scale: the LayerNorm after the projection
    with torch.no_grad():
        model.wte.weight.mul_(1000)
    tokens = (model.embed(ids) - model.pe[:9])[ids != PAD]  # (real tokens, C)
    assert tokens.pow(2).mean().sqrt().item() == pytest.approx(1, rel=1e-3)
    assert Transformer(small()).wte.weight.shape == (VOCAB, D) and not hasattr(Transformer(small()), "wte_proj")


def test_a_frozen_table_stays_bit_identical_through_a_training_step():
    from lowrank_bench.training.config import TrainConfig
    from lowrank_bench.training.train import make_optimizer

    torch.manual_seed(0)
    model = Transformer(small(embedding_dim=12, freeze_embedding=True)).train()
    table, proj = model.wte.weight.detach().clone(), model.wte_proj.weight.detach().clone()
    optimizer, _ = make_optimizer(model, TrainConfig(weight_decay=0.1), total_steps=10)  # decay would move it too
    loss = model(padded_batch([9, 4], 9)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    assert not model.wte.weight.requires_grad and model.wte.weight.grad is None
    assert torch.equal(model.wte.weight, table)
    assert not torch.equal(model.wte_proj.weight, proj)  # the rest of the model trains
    assert Transformer(small(embedding_dim=12)).wte.weight.requires_grad  # fine-tuned: the table trains
