"""Study 1: a Hoda MLP, its truncated-SVD versions for every k, before and after retraining.

For each k the hidden layers' weights W (m×n) become W1 = U_k (m×k) and W2 = Σ_k V_kᵀ (k×n). Accuracy is taken
right after truncation and after retraining W1, W2 and the biases with early stopping on validation's stop part.
The chosen k is the smallest whose retrained validation (decide part) accuracy, averaged over seeds, is within
`margin_points` of the dense model's mean.

Jobs (training/jobs.py runs them): per seed, the dense baseline, then one retraining per method and k starting from
that seed's dense checkpoint.
"""
import dataclasses

import torch

from lowrank_bench.core.spec import reference_key
from lowrank_bench.models.lowrank import break_even_rank, layer_report
from lowrank_bench.models.methods import METHODS, check_ranks, factored_ranks
from lowrank_bench.models.mlp import MLP
from lowrank_bench.models.select import linear_layers
from lowrank_bench.training import checkpoint
from lowrank_bench.training.data import load_hoda
from lowrank_bench.training.studies.common import (checkpoint_name, chosen_row, decide, factorize_job, median_latency_ms,
                                     print_choices, print_table, row, save_run, write_summary)
from lowrank_bench.training.train import evaluate, train

DENSE = reference_key("svd")  # the baseline every rank and every LoRA run starts from


def load_data(profile, root):
    return load_hoda(root, **profile.data.split_args("hoda"), extra=profile.data.hoda_extra)


def job(key, profile):
    """(the settings that decide variant `key`'s result, the keys of the variants it starts from)."""
    cfg = profile.svd
    if key == DENSE:
        return {"data": profile.data.settings("hoda"), "model": dataclasses.asdict(cfg.model),
                "baseline": dataclasses.asdict(cfg.baseline), "augment_ablation": cfg.augment_ablation}, []
    settings = {"retrain": dataclasses.asdict(cfg.retrain), "targets": cfg.targets}
    if METHODS[key[1]].calibrated:
        settings["calibration"] = {"samples": cfg.calibration_samples, "batch_size": cfg.calibration_batch_size}
    return settings, [DENSE]


def check(profile):
    """Raise the ValueError a rank that does not fit its layer would, before any job of the sweep runs."""
    check_ranks(MLP(profile.svd.model), profile.svd.ranks, profile.svd.targets)


def train_baseline(profile, splits, device, seed):
    """The dense MLP; trained without augmentation and with the baseline's when the profile asks, the better kept
    by its accuracy on the stop part (the decide part judges the result, so it chooses nothing)."""
    cfg = profile.svd
    config = dataclasses.replace(cfg.model, mean=splits.mean, std=splits.std)
    candidates = []
    for augment in dict.fromkeys(["none", cfg.baseline.augment] if cfg.augment_ablation else [cfg.baseline.augment]):
        torch.manual_seed(seed)
        model = MLP(config)
        train_cfg = dataclasses.replace(cfg.baseline, augment=augment)
        metrics = train(model, splits, train_cfg, device=device, seed=seed, desc=f"hoda dense augment={augment}")
        candidates.append((metrics["stop_acc"], augment, model, metrics))
    _, augment, model, metrics = max(candidates, key=lambda c: c[0])
    ablation = {a: {"stop_acc": s, "val_acc": m["val_acc"], "test_acc": m["test_acc"]} for s, a, _, m in candidates}
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
    model, cost = factorize_job(dense, job, cfg, splits.x_train, "two_linear", device)
    _, acc_truncated, _ = evaluate(model, splits.x_test.to(device), splits.y_test.to(device))
    _, val_truncated, _ = evaluate(model, splits.x_decide.to(device), splits.y_decide.to(device))
    metrics = train(model, splits, retrain_cfg, device=device, seed=job.seed, desc=f"hoda k={k}", teacher=dense)
    costs_more = any(k >= break_even_rank(*dense.get_submodule(name).weight.shape) for name in targets)
    rel = save(model, metrics, structure={"lowrank": {"layer": "two_linear", "ranks": factored_ranks(model)}})
    return row(job, model, metrics, sample, rel, acc_truncated=acc_truncated, val_acc_truncated=val_truncated,
               costs_more_than_dense=costs_more, latency_ms=median_latency_ms(model, latency_x), **cost), {}


def summarize(profile, out, device, seed_rows, extras):
    """Write `summary.json` from every job's row (and the dense jobs' extras): each method's rows decided against
    dense, its chosen k, and overall the smallest of them (the first method's on a tie)."""
    cfg = profile.svd
    rows, choices = decide(out, seed_rows, DENSE, cfg.margin_points)
    print_table(rows, ["acc_truncated", "val_acc", "test_acc", "val_diff", "val_diff_lower", "verdict", "params_total",
                       "flops", "latency_ms", "epoch_seconds", "calibration_seconds", "costs_more_than_dense"])
    print_choices("svd", choices, cfg.margin_points)
    first = extras[DENSE][0]  # the layers' spectra of the first seed's baseline
    return write_summary(out, "svd", profile, device, rows, seed_rows, chosen_row(rows, choices), choices,
                         cfg.margin_points, methods={m: METHODS[m].label for m in cfg.methods},
                         layers=first["layers"], augmentation=first["augmentation"],
                         augmentation_by_seed=[e["augmentation"] for e in extras[DENSE]],
                         retrain=dataclasses.asdict(cfg.retrain), latency_batch_size=first["latency_batch_size"])
