"""Study 1: a Hoda MLP, its truncated-SVD versions for every k, before and after retraining.

For each k the hidden layers' weights W (m×n) become W1 = U_k (m×k) and W2 = Σ_k V_kᵀ (k×n). Accuracy is taken
right after truncation and after retraining W1, W2 and the biases with validation-based early stopping. The
chosen k is the smallest whose retrained validation accuracy, averaged over seeds, is within `tolerance_points` of
the dense model's mean.

Jobs (training/jobs.py runs them): per seed, the dense baseline, then one retraining per k starting from that
seed's dense checkpoint.
"""
import dataclasses

import torch

from models.lowrank import break_even_rank, layer_report
from models.methods import check_ranks, factored_ranks, factorize
from models.mlp import MLP
from models.select import linear_layers
from training import checkpoint
from training.data import load_hoda
from training.stats import summarize as over_seeds
from training.studies.common import (checkpoint_name, choose_smallest, median_latency_ms, print_table, row,
                                     save_run, write_summary)
from training.train import evaluate, train

DENSE = ("svd", "dense", None, None)  # the key of the baseline every rank and every LoRA run starts from


def load_data(profile, root):
    d = profile.data
    return load_hoda(root, val_fraction=d.val_fraction, seed=d.split_seed, train_subset=d.hoda_train,
                     test_subset=d.hoda_test, extra=d.hoda_extra)


def data_config(profile):
    d = profile.data
    return {"val_fraction": d.val_fraction, "split_seed": d.split_seed, "hoda_train": d.hoda_train,
            "hoda_test": d.hoda_test, "hoda_extra": d.hoda_extra}


def jobs(profile):
    """(key, settings that decide its result, parent keys) of every job of one seed, parents first."""
    cfg = profile.svd
    dense = {"data": data_config(profile), "model": dataclasses.asdict(cfg.model), "baseline": dataclasses.asdict(
        cfg.baseline), "augment_ablation": cfg.augment_ablation}
    yield DENSE, dense, []
    for k in cfg.ranks:
        yield ("svd", "svd", k, None), {"retrain": dataclasses.asdict(cfg.retrain), "targets": cfg.targets}, [DENSE]


def check(profile):
    """Raise the ValueError a rank that does not fit its layer would, before any job of the sweep runs."""
    check_ranks(MLP(profile.svd.model), profile.svd.ranks, profile.svd.targets)


def train_baseline(profile, splits, device, seed):
    """The dense MLP; trained without augmentation and with the baseline's when the profile asks, kept by
    validation."""
    cfg = profile.svd
    config = dataclasses.replace(cfg.model, mean=splits.mean, std=splits.std)
    candidates = []
    for augment in dict.fromkeys(["none", cfg.baseline.augment] if cfg.augment_ablation else [cfg.baseline.augment]):
        torch.manual_seed(seed)
        model = MLP(config)
        train_cfg = dataclasses.replace(cfg.baseline, augment=augment)
        metrics = train(model, splits, train_cfg, device=device, seed=seed, desc=f"hoda dense augment={augment}")
        candidates.append((metrics["val_acc"], augment, model, metrics))
    val_acc, augment, model, metrics = max(candidates, key=lambda c: c[0])
    ablation = {a: {"val_acc": v, "test_acc": m["test_acc"]} for v, a, _, m in candidates}
    return model, metrics, augment, ablation


def run_job(job, profile, *, root, work, device):
    """Train one job's model into `work` (where its parents' checkpoints are); returns (summary row, extra)."""
    cfg = profile.svd
    splits = load_data(profile, root)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    save = lambda model, metrics, **kw: save_run(work, job, model, metrics, profile, "hoda", splits.classes, **kw)
    if job.method == "dense":
        dense, metrics, augment, ablation = train_baseline(profile, splits, device, job.seed)
        print(f"dense baseline: test accuracy {metrics['test_acc']:.4f} (augmentation {augment})")
        layers = [{"layer": name, **r} for name in linear_layers(dense, cfg.targets)
                  for r in layer_report(dense.get_submodule(name).weight, cfg.ranks, name)]
        rel = save(dense, metrics, augment=augment)
        return (row(job, dense, metrics, sample, rel, acc_truncated=None, costs_more_than_dense=False,
                    latency_ms=median_latency_ms(dense, latency_x)),
                {"augmentation": {"chosen": augment, **ablation}, "layers": layers,
                 "latency_batch_size": len(latency_x)})

    k = job.rank
    dense, sidecar = checkpoint.load(work / checkpoint_name(DENSE, job.seed), expect_arch="MLP", device=device)
    # Retraining keeps the augmentation the baseline chose: without it the factored model overfits the training
    # split (quick profile, k = 512: validation 99.37 % truncated, 99.15 % after one epoch without augmentation).
    retrain_cfg = dataclasses.replace(cfg.retrain, augment=sidecar["augment"])
    targets = linear_layers(dense, cfg.targets)
    model = factorize(dense, k, targets=targets)
    _, acc_truncated, _ = evaluate(model, splits.x_test.to(device), splits.y_test.to(device))
    _, val_truncated, _ = evaluate(model, splits.x_val.to(device), splits.y_val.to(device))
    metrics = train(model, splits, retrain_cfg, device=device, seed=job.seed, desc=f"hoda k={k}", teacher=dense)
    costs_more = any(k >= break_even_rank(*dense.get_submodule(name).weight.shape) for name in targets)
    rel = save(model, metrics, structure={"lowrank": {"kind": "two_linear", "ranks": factored_ranks(model)}})
    return row(job, model, metrics, sample, rel, acc_truncated=acc_truncated, val_acc_truncated=val_truncated,
               costs_more_than_dense=costs_more, latency_ms=median_latency_ms(model, latency_x)), {}


def summarize(profile, out, device, seed_rows, extras):
    """Write `summary.json` from every job's row (and the dense jobs' extras); the chosen k on validation means."""
    cfg = profile.svd
    rows = over_seeds(seed_rows, DENSE[1:])
    dense = rows[0]
    chosen = choose_smallest(rows[1:], dense["val_acc"], cfg.tolerance_points)
    print_table(rows, ["acc_truncated", "val_acc", "test_acc", "params_total", "flops", "latency_ms",
                       "epoch_seconds", "peak_mem_bytes", "costs_more_than_dense"])
    if chosen:
        print(f"chosen k = {chosen['rank']}: validation mean {chosen['val_acc']:.4f} (dense {dense['val_acc']:.4f}), "
              f"test {chosen['test_acc']:.4f}")
    else:
        print(f"no k within {cfg.tolerance_points} validation points of dense (means over seeds)")
    first = extras[DENSE][0]  # the layers' spectra of the first seed's baseline
    return write_summary(out, "svd", profile, device, rows, seed_rows, chosen, cfg.tolerance_points,
                         layers=first["layers"], augmentation=first["augmentation"],
                         augmentation_by_seed=[e["augmentation"] for e in extras[DENSE]],
                         retrain=dataclasses.asdict(cfg.retrain), latency_batch_size=first["latency_batch_size"])
