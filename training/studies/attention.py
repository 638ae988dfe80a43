"""Study 3: a one-layer multi-head transformer on IMDB whose query/key/value weights become rank-k SVD factors.

Two starting points for the factors, with identical data, budget and hyper-parameters:
- `random` (the original study): the SVD of the randomly initialised dense weights, truncated to rank k, trained
  from there with the rest of the network starting from the same random initialisation as the dense baseline;
- `trained`: the SVD of the trained dense baseline's weights, then fine-tuned.
The chosen k is the smallest whose validation accuracy, averaged over seeds, is within `margin_points` of the
dense baseline's mean. Jobs per seed and token table (`embeddings`: the model's own, learned from scratch, and/or
MiniLM's pre-defined one, training/embeddings.py): the dense run, every random-init k (no parent: the
initialisation is rebuilt from the seed) and every trained-init k (from that seed's dense checkpoint of the same
table). The chosen k (`chosen`, `chosen_by_init`) is the learned table's; the minilm table's is
`chosen_by_embedding`, each against its own dense baseline.
"""
import dataclasses

import torch

from lowrank_bench.core.spec import reference_key
from lowrank_bench.core.variants import variant_id
from lowrank_bench.models.methods import METHODS, check_ranks, factored_ranks
from lowrank_bench.models.transformer import Transformer
from lowrank_bench.training import checkpoint, embeddings
from lowrank_bench.training.data import load_imdb
from lowrank_bench.training.measure import named_param_counts
from lowrank_bench.training.studies.common import (checkpoint_name, chosen_key, chosen_row, decide, factorize_job,
                                     median_latency_ms, print_choices, print_table, row, save_run, write_summary)
from lowrank_bench.training.train import train


def load_data(profile, root):
    return load_imdb(root, max_len=profile.attention.model.max_len, **profile.data.split_args("imdb"))


def model_config(profile, splits):
    return dataclasses.replace(profile.attention.model, vocab_size=splits.vocab_size, pad_id=splits.pad_id)


def job(key, profile):
    """(the settings that decide variant `key`'s result, the keys of the variants it starts from): a trained start
    starts from the dense model with the same token table."""
    cfg = profile.attention
    _, method, rank, init, embedding = key
    settings = {"data": profile.data.settings("imdb"), "model": dataclasses.asdict(cfg.model),
                "train": dataclasses.asdict(cfg.train)}
    if embedding is not None:
        settings["embedding"] = {"name": embedding, "frozen": cfg.embedding_frozen}
    if rank is None:
        return settings, []
    settings["targets"] = cfg.targets
    if METHODS[method].calibrated:
        settings["calibration"] = {"samples": cfg.calibration_samples, "batch_size": cfg.calibration_batch_size}
    return settings, [reference_key("attention", embedding)] if init == "trained" else []


def check(profile):
    """Raise the ValueError a rank that does not fit its layer would, before any job of the sweep runs (the layers'
    shapes do not depend on the vocabulary)."""
    check_ranks(Transformer(profile.attention.model), profile.attention.ranks, profile.attention.targets)


def run_job(job, profile, *, root, work, device):
    """Train one job's model into `work` (where its parents' checkpoints are); returns (summary row, extra)."""
    cfg = profile.attention
    splits = load_data(profile, root)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    config, table = model_config(profile, splits), None
    if job.embedding is not None:
        table = embeddings.load(root, splits.vocab_size)  # exactly as stored; a missing file names both fixes
        config = dataclasses.replace(config, embedding_dim=table.shape[1], freeze_embedding=cfg.embedding_frozen)
    torch.manual_seed(job.seed)
    model = Transformer(config)  # the seed's random initialisation every run starts from
    if table is not None:
        with torch.no_grad():
            model.wte.weight.copy_(table)
    structure = {}
    cost = {}
    if job.rank is not None:
        if job.init == "trained":
            model, _ = checkpoint.load(work / checkpoint_name(reference_key("attention", job.embedding), job.seed),
                                       expect_arch="Transformer", device=device)
        model, cost = factorize_job(model, job, cfg, splits.x_train, "usv", device)
        structure = {"structure": {"lowrank": {"layer": "usv", "ranks": factored_ranks(model)}}}
    metrics = train(model, splits, cfg.train, device=device, seed=job.seed,
                    desc=f"imdb {variant_id(*job.key)}")
    rel = save_run(work, job, model, metrics, profile, "imdb", splits.classes, **structure)
    r = row(job, model, metrics, sample, rel, qkv_params=model.qkv_params(), named_params=named_param_counts(model),
            latency_ms=median_latency_ms(model, latency_x), **cost)
    print(f"{variant_id(*job.key)}: {r['params_total']:,} parameters, "
          f"{r['qkv_params']:,} in q/k/v, {r['epoch_seconds']:.1f}s/epoch, {r['train_seconds']:.1f}s total, "
          f"test {r['test_acc']:.4f}")
    for name, n in r["named_params"].items():
        print(f"  {name:<40} {n:>10,}")
    return r, {}


def summarize(profile, out, device, seed_rows, extras):
    """Write `summary.json`: each token table's rows decided against its own dense model, a chosen k per table,
    start and method, and per table and start the smallest of those (`chosen_by_init` for the model's own table,
    `chosen_by_embedding` for a pre-defined one); the chosen model is the own table's from a random start (the
    original study), else from a trained one."""
    cfg = profile.attention
    rows, choices, chosen = [], [], {}
    for embedding in (None if name == "learned" else name for name in cfg.embeddings):
        mine, picks = decide(out, [r for r in seed_rows if r.get("embedding") == embedding],
                             reference_key("attention", embedding), cfg.margin_points)
        chosen[embedding] = {init: chosen_row(mine, [c for c in picks if c["init"] == init]) for init in cfg.inits}
        rows, choices = rows + mine, choices + picks
    print_table(rows, ["val_acc", "test_acc", "val_diff", "val_diff_lower", "verdict", "params_total", "qkv_params",
                       "flops", "epoch_seconds", "train_seconds", "latency_ms"])
    print_choices("attention", choices, cfg.margin_points)
    learned = chosen.get(None, {})
    main = learned.get("random") or learned.get("trained")
    return write_summary(out, "attention", profile, device, rows, seed_rows, main, choices, cfg.margin_points,
                         chosen_by_init={i: chosen_key(c) for i, c in learned.items()},
                         chosen_by_embedding={e: {i: chosen_key(c) for i, c in by_init.items()}
                                              for e, by_init in chosen.items() if e is not None},
                         embedding_frozen=cfg.embedding_frozen, targets=list(cfg.targets))
