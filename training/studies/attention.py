"""Study 3: a one-layer multi-head transformer on IMDB whose query/key/value weights become rank-k SVD factors.

Two starting points for the factors, with identical data, budget and hyper-parameters:
- `random` (the original study): the SVD of the randomly initialised dense weights, truncated to rank k, trained
  from there with the rest of the network starting from the same random initialisation as the dense baseline;
- `trained`: the SVD of the trained dense baseline's weights, then fine-tuned.
The chosen k is the smallest whose validation accuracy is within `tolerance_points` of the dense baseline's.
"""
import copy

import torch

from models.lowrank import check_ranks, factorize
from models.transformer import Transformer, TransformerConfig
from training.data import load_imdb
from training.measure import named_param_counts
from training.studies.common import choose_smallest, median_latency_ms, print_table, row, save_run, write_summary
from training.train import train


def load_data(profile, root):
    d = profile.data
    return load_imdb(root, max_len=d.imdb_max_len, val_fraction=d.val_fraction, seed=profile.seed,
                     train_subset=d.imdb_train, test_subset=d.imdb_test)


def model_config(profile, splits):
    cfg = profile.attention
    return TransformerConfig(vocab_size=splits.vocab_size, max_len=profile.data.imdb_max_len, d_model=cfg.d_model,
                             n_heads=cfg.n_heads, n_layers=cfg.n_layers, d_ff=cfg.d_ff, dropout=cfg.dropout,
                             pad_id=splits.pad_id)


def run(profile, *, root, out, device):
    cfg = profile.attention
    splits = load_data(profile, root)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    torch.manual_seed(profile.seed)
    initial = Transformer(model_config(profile, splits))  # the random initialisation every run starts from
    check_ranks(initial, cfg.ranks, cfg.targets)  # a bad k fails now, not after the baseline has trained
    rows = []

    def fit(name, model, init, k, structure=None):
        metrics = train(model, splits, cfg.train, device=device, seed=profile.seed, desc=f"imdb {name}")
        rel = save_run(out, "attention", name, model, metrics, profile, "imdb", splits.classes, structure)
        rows.append(row(name, "dense" if k is None else "svd", model, metrics, sample, rel, k=k, init=init,
                        qkv_params=model.qkv_params(), named_params=named_param_counts(model),
                        latency_ms=median_latency_ms(model, latency_x)))
        r = rows[-1]
        print(f"{name}: {r['params_total']:,} parameters, {r['qkv_params']:,} in q/k/v, "
              f"{r['epoch_seconds']:.1f}s/epoch, {r['train_seconds']:.1f}s total, test {r['test_acc']:.4f}")
        return model

    dense = fit("dense", copy.deepcopy(initial), None, None)
    for name, n in rows[0]["named_params"].items():
        print(f"  {name:<40} {n:>10,}")
    sources = {"random": initial, "trained": dense}
    for init in cfg.inits:
        for k in cfg.ranks:
            model = factorize(sources[init], k, targets=cfg.targets, kind="svd")
            ranks = {n: m.rank for n, m in model.named_modules() if hasattr(m, "rank")}
            fit(f"{init}-k{k}", model, init, k, {"lowrank": {"kind": "svd", "ranks": ranks}})

    dense_val = rows[0]["val_acc"]
    chosen = {init: choose_smallest([r for r in rows if r["init"] == init], dense_val, cfg.tolerance_points)
              for init in cfg.inits}
    print_table(rows, ["name", "val_acc", "test_acc", "params_total", "qkv_params", "flops", "epoch_seconds",
                       "train_seconds", "latency_ms", "peak_mem_bytes"])
    for init, c in chosen.items():
        if c:
            print(f"chosen k ({init} init) = {c['k']}: validation {c['val_acc']:.4f} (dense {dense_val:.4f}), "
                  f"test {c['test_acc']:.4f} vs dense {rows[0]['test_acc']:.4f}; {c['epoch_seconds']:.1f}s/epoch vs "
                  f"{rows[0]['epoch_seconds']:.1f}s; q/k/v parameters {c['qkv_params']:,} vs {rows[0]['qkv_params']:,}")
        else:
            print(f"no k ({init} init) within {cfg.tolerance_points} validation points of dense")
    main = chosen.get("random") or chosen.get("trained")
    return write_summary(out, "attention", profile, device, rows, main, cfg.tolerance_points,
                         chosen_by_init={i: (c["name"] if c else None) for i, c in chosen.items()},
                         targets=list(cfg.targets))
