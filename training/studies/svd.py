"""Study 1: a Hoda MLP, its truncated-SVD versions for every k, before and after retraining.

For each k the hidden layers' weights W (m×n) become W1 = U_k (m×k) and W2 = Σ_k V_kᵀ (k×n). Accuracy is taken
right after truncation and after retraining W1, W2 and the biases with validation-based early stopping. The
chosen k is the smallest whose retrained validation accuracy is within `tolerance_points` of the dense model's.
"""
import dataclasses

import torch

from models.lowrank import check_ranks, factorize, factored_ranks, layer_report
from models.mlp import MLP
from models.select import linear_layers
from training.data import load_hoda
from training.studies.common import choose_smallest, median_latency_ms, print_table, row, save_run, write_summary
from training.train import evaluate, train


def load_data(profile, root):
    d = profile.data
    return load_hoda(root, val_fraction=d.val_fraction, seed=profile.seed, train_subset=d.hoda_train,
                     test_subset=d.hoda_test, extra=d.hoda_extra)


def train_baseline(profile, splits, device):
    """The dense MLP; trained with and without augmentation when the profile asks, kept by validation."""
    cfg = profile.svd
    config = dataclasses.replace(cfg.model, mean=splits.mean, std=splits.std)
    check_ranks(MLP(config), cfg.ranks, cfg.targets)  # a bad k fails now, not after the baseline has trained
    candidates = []
    for augment in ([False, True] if cfg.augment_ablation else [cfg.baseline.augment]):
        torch.manual_seed(profile.seed)
        model = MLP(config)
        train_cfg = dataclasses.replace(cfg.baseline, augment=augment)
        metrics = train(model, splits, train_cfg, device=device, seed=profile.seed,
                        desc=f"hoda dense{' +aug' if augment else ''}")
        candidates.append((metrics["val_acc"], augment, model, metrics))
    val_acc, augment, model, metrics = max(candidates, key=lambda c: c[0])
    ablation = {("augment" if a else "no_augment"): {"val_acc": v, "test_acc": m["test_acc"]}
                for v, a, _, m in candidates}
    return model, metrics, augment, ablation


def run(profile, *, root, out, device):
    cfg = profile.svd
    splits = load_data(profile, root)
    x_test, y_test = splits.x_test.to(device), splits.y_test.to(device)
    x_val, y_val = splits.x_val.to(device), splits.y_val.to(device)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    save = lambda method, rank, model, metrics, **structure: save_run(out, "svd", method, rank, model, metrics,
                                                                      profile, "hoda", splits.classes, **structure)

    dense, metrics, augment, ablation = train_baseline(profile, splits, device)
    # Retraining keeps the augmentation the baseline chose: without it the factored model overfits the training
    # split (quick profile, k = 512: validation 99.37 % truncated, 99.15 % after one epoch without augmentation).
    retrain_cfg = dataclasses.replace(cfg.retrain, augment=augment)
    rows = [row("svd", "dense", None, dense, metrics, sample, save("dense", None, dense, metrics),
                acc_truncated=None, costs_more_than_dense=False, latency_ms=median_latency_ms(dense, latency_x))]
    print(f"dense baseline: test accuracy {metrics['test_acc']:.4f} (augmentation {'on' if augment else 'off'})")

    targets = linear_layers(dense, cfg.targets)
    layers = [{"layer": name, **r} for name in targets
              for r in layer_report(dense.get_submodule(name).weight, cfg.ranks, name)]
    for k in cfg.ranks:
        model = factorize(dense, k, targets=targets)
        _, acc_truncated, _ = evaluate(model, x_test, y_test)
        _, val_truncated, _ = evaluate(model, x_val, y_val)
        metrics = train(model, splits, retrain_cfg, device=device, seed=profile.seed, desc=f"hoda k={k}")
        costs_more = any(r["costs_more_than_dense"] for r in layers if r["rank"] == k)
        ckpt = save("svd", k, model, metrics,
                    structure={"lowrank": {"kind": "two_linear", "ranks": factored_ranks(model)}})
        rows.append(row("svd", "svd", k, model, metrics, sample, ckpt, acc_truncated=acc_truncated,
                        val_acc_truncated=val_truncated, costs_more_than_dense=costs_more,
                        latency_ms=median_latency_ms(model, latency_x)))

    chosen = choose_smallest(rows[1:], rows[0]["val_acc"], cfg.tolerance_points)
    print_table(rows, ["acc_truncated", "val_acc", "test_acc", "params_total", "flops", "latency_ms",
                       "epoch_seconds", "peak_mem_bytes", "costs_more_than_dense"])
    if chosen:
        print(f"chosen k = {chosen['rank']}: validation {chosen['val_acc']:.4f} (dense {rows[0]['val_acc']:.4f}), "
              f"test {chosen['test_acc']:.4f}")
    else:
        print(f"no k within {cfg.tolerance_points} validation points of dense")
    return write_summary(out, "svd", profile, device, rows, chosen, cfg.tolerance_points, layers=layers,
                         augmentation={"chosen": augment, **ablation},
                         latency_batch_size=len(latency_x))
