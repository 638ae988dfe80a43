"""Study 3: a one-layer multi-head transformer on IMDB whose query/key/value weights become rank-k SVD factors.

Two starting points for the factors, with identical data, budget and hyper-parameters:
- `random` (the original study): the SVD of the randomly initialised dense weights, truncated to rank k, trained
  from there with the rest of the network starting from the same random initialisation as the dense baseline;
- `trained`: the SVD of the trained dense baseline's weights, then fine-tuned.
The chosen k is the smallest whose validation accuracy is within `tolerance_points` of the dense baseline's.
"""
import copy
import dataclasses

import torch

from models.lowrank import check_ranks, factored_ranks, factorize
from models.transformer import Transformer
from training.data import load_imdb
from training.measure import named_param_counts
from lowrank_bench.variants import variant_id
from training.studies.common import (choose_smallest, chosen_key, median_latency_ms, print_table, row, save_run,
                                     write_summary)
from training.train import train


def load_data(profile, root):
    d = profile.data
    return load_imdb(root, max_len=profile.attention.model.max_len, val_fraction=d.val_fraction, seed=profile.seed,
                     train_subset=d.imdb_train, test_subset=d.imdb_test)


def model_config(profile, splits):
    return dataclasses.replace(profile.attention.model, vocab_size=splits.vocab_size, pad_id=splits.pad_id)


def run(profile, *, root, out, device):
    cfg = profile.attention
    splits = load_data(profile, root)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    torch.manual_seed(profile.seed)
    initial = Transformer(model_config(profile, splits))  # the random initialisation every run starts from
    check_ranks(initial, cfg.ranks, cfg.targets)  # a bad k fails now, not after the baseline has trained
    rows = []

    def fit(model, init, k, **structure):
        method = "dense" if k is None else "svd"
        metrics = train(model, splits, cfg.train, device=device, seed=profile.seed,
                        desc=f"imdb {variant_id(method, k, init)}")
        rel = save_run(out, "attention", method, k, model, metrics, profile, "imdb", splits.classes, init=init,
                       **structure)
        rows.append(row("attention", method, k, model, metrics, sample, rel, init=init,
                        qkv_params=model.qkv_params(), named_params=named_param_counts(model),
                        latency_ms=median_latency_ms(model, latency_x)))
        r = rows[-1]
        print(f"{variant_id(method, k, init)}: {r['params_total']:,} parameters, {r['qkv_params']:,} in q/k/v, "
              f"{r['epoch_seconds']:.1f}s/epoch, {r['train_seconds']:.1f}s total, test {r['test_acc']:.4f}")
        return model

    dense = fit(copy.deepcopy(initial), None, None)
    for name, n in rows[0]["named_params"].items():
        print(f"  {name:<40} {n:>10,}")
    sources = {"random": initial, "trained": dense}
    for init in cfg.inits:
        for k in cfg.ranks:
            model = factorize(sources[init], k, targets=cfg.targets, kind="svd")
            fit(model, init, k, structure={"lowrank": {"kind": "svd", "ranks": factored_ranks(model)}})

    dense_val = rows[0]["val_acc"]
    chosen = {init: choose_smallest([r for r in rows if r["init"] == init], dense_val, cfg.tolerance_points)
              for init in cfg.inits}
    print_table(rows, ["val_acc", "test_acc", "params_total", "qkv_params", "flops", "epoch_seconds",
                       "train_seconds", "latency_ms", "peak_mem_bytes"])
    for init, c in chosen.items():
        if c:
            print(f"chosen k ({init} init) = {c['rank']}: validation {c['val_acc']:.4f} (dense {dense_val:.4f}), "
                  f"test {c['test_acc']:.4f} vs dense {rows[0]['test_acc']:.4f}; {c['epoch_seconds']:.1f}s/epoch vs "
                  f"{rows[0]['epoch_seconds']:.1f}s; q/k/v parameters {c['qkv_params']:,} vs {rows[0]['qkv_params']:,}")
        else:
            print(f"no k ({init} init) within {cfg.tolerance_points} validation points of dense")
    main = chosen.get("random") or chosen.get("trained")
    return write_summary(out, "attention", profile, device, rows, main, cfg.tolerance_points,
                         chosen_by_init={i: chosen_key(c) for i, c in chosen.items()},
                         targets=list(cfg.targets))
