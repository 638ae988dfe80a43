"""Study 2: the pretrained Hoda MLP fine-tuned onto Fashion-MNIST with LoRA, for every rank r.

Compared with the same budget: head only (pretrained body frozen, new head), full fine-tuning (everything
trains, new head), the same MLP trained from scratch, and the pretrained model with no training at all (its Hoda
head on Fashion images: near chance). Every row is one job per seed, started from that seed's dense Hoda
checkpoint (training/jobs.py runs them). α = alpha_per_rank · r keeps the scaling α/r fixed across ranks, so every
rank sees updates of the same size for the same learning rate and the rows differ only in capacity.
"""
import copy
import dataclasses

import torch
import torch.nn as nn

from models.lora import LoRAConfig, add_lora, merge_lora
from models.methods import check_ranks
from models.mlp import MLP
from training import checkpoint
from training.data import load_fashion
from core.io import UserError
from core.variants import variant_id
from training.stats import summarize as over_seeds
from training.studies.common import (checkpoint_name, choose_smallest, median_latency_ms, print_table, row,
                                     save_run, write_summary)
from training.studies.svd import DENSE
from training.train import evaluate, train


def load_data(profile, root):
    d = profile.data
    return load_fashion(root, val_fraction=d.val_fraction, seed=d.split_seed, train_subset=d.fashion_train,
                        test_subset=d.fashion_test)


def jobs(profile):
    """(key, settings that decide its result, parent keys) of every job of one seed; all start from svd's dense."""
    cfg, d = profile.lora, profile.data
    data = {"val_fraction": d.val_fraction, "split_seed": d.split_seed, "fashion_train": d.fashion_train,
            "fashion_test": d.fashion_test}
    yield ("lora", "pretrained", None, None), {"data": data}, [DENSE]
    trained = {"data": data, "train": dataclasses.asdict(cfg.train)}
    for method in ("head", "full", "scratch"):
        yield ("lora", method, None, None), trained, [DENSE]
    for r in cfg.ranks:
        yield ("lora", "lora", r, None), {**trained, "targets": cfg.targets, "alpha_per_rank": cfg.alpha_per_rank}, \
            [DENSE]


def check(profile):
    """Raise the ValueError a rank that does not fit its layer would, before any job of the sweep runs."""
    check_ranks(MLP(profile.svd.model), profile.lora.ranks, profile.lora.targets)


def load_pretrained(stem, device):
    if not stem.with_suffix(".json").exists():
        raise UserError(f"LoRA needs the pretrained Hoda MLP at {stem}.json; run `lowrank-bench train svd` "
                        "with the same --profile and --out first")
    model = checkpoint.load(stem, expect_arch="MLP", device=device)[0]
    return model.requires_grad_(False)  # as a row of its own it is evaluated, never trained


def with_new_head(base, n_classes, train_body):
    """A copy of `base` with a fresh head; the body trains only when `train_body`."""
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(train_body)
    model.head = nn.Linear(model.head.in_features, n_classes).to(model.head.weight.device)
    return model


def run_job(job, profile, *, root, work, device):
    """Train (or, for `pretrained`, only evaluate) one job's model in `work`; returns (summary row, extra)."""
    cfg = profile.lora
    base_rel = checkpoint_name(DENSE, job.seed)
    base = load_pretrained(work / base_rel, device)
    splits = load_data(profile, root)
    n_classes = len(splits.classes)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)

    def make_row(model, metrics, rel, **extra):
        size = sum(p.stat().st_size for p in checkpoint.paths(work / rel))
        total = sum(p.numel() for p in model.parameters())
        return row(job, model, metrics, sample, rel, checkpoint_bytes=size,
                   trainable_pct=100 * sum(p.numel() for p in model.parameters() if p.requires_grad) / total,
                   latency_ms=median_latency_ms(model, latency_x), **extra)

    if job.method == "pretrained":  # the seed's dense Hoda model as it is, its Hoda head on Fashion images
        _, val_acc, _ = evaluate(base, splits.x_val.to(device), splits.y_val.to(device))
        _, test_acc, _ = evaluate(base, splits.x_test.to(device), splits.y_test.to(device))
        return make_row(base, {"val_acc": val_acc, "test_acc": test_acc}, base_rel, alpha=None), {}

    builds = {"head": lambda: with_new_head(base, n_classes, train_body=False),
              "full": lambda: with_new_head(base, n_classes, train_body=True),
              "scratch": lambda: MLP(copy.deepcopy(base.config))}
    lora_cfg = None
    if job.method == "lora":
        lora_cfg = LoRAConfig(rank=job.rank, alpha=cfg.alpha_per_rank * job.rank, targets=tuple(cfg.targets),
                              new_head=n_classes)
        builds["lora"] = lambda: add_lora(base, lora_cfg)
    torch.manual_seed(job.seed)  # new heads and adapters start from the seed alone
    model = builds[job.method]()
    metrics = train(model, splits, cfg.train, device=device, seed=job.seed,
                    desc=f"fashion {variant_id(job.method, job.rank)}")
    if lora_cfg is None:
        rel = save_run(work, job, model, metrics, profile, "fashion", splits.classes)
        return make_row(model, metrics, rel, alpha=None), {}
    rel = save_run(work, job, model, metrics, profile, "fashion", splits.classes,
                   structure={"lora": vars(lora_cfg)}, base=work / base_rel)
    merged = merge_lora(copy.deepcopy(model))
    return make_row(model, metrics, rel, alpha=lora_cfg.effective_alpha,
                    latency_merged_ms=median_latency_ms(merged, latency_x)), {}


def summarize(profile, out, device, seed_rows, extras):
    """Write `summary.json`: the chosen r is the smallest within tolerance of the best LoRA validation mean."""
    cfg = profile.lora
    rows = over_seeds(seed_rows, ("full", None, None))
    lora_rows = [r for r in rows if r["method"] == "lora"]
    best = max(r["val_acc"] for r in lora_rows)
    chosen = choose_smallest(lora_rows, best, cfg.tolerance_points)
    print_table(rows, ["val_acc", "test_acc", "params_trainable", "trainable_pct", "epoch_seconds",
                       "peak_mem_bytes", "train_state_bytes", "latency_ms", "latency_merged_ms", "checkpoint_bytes"])
    full = next(r for r in rows if r["method"] == "full")
    print(f"chosen r = {chosen['rank']}: validation mean {chosen['val_acc']:.4f} (best LoRA {best:.4f}), test "
          f"{chosen['test_acc']:.4f}, full fine-tuning test {full['test_acc']:.4f}, "
          f"{chosen['trainable_pct']:.2f}% of parameters trainable")
    return write_summary(out, "lora", profile, device, rows, seed_rows, chosen, cfg.tolerance_points,
                         alpha_rule=f"alpha = {cfg.alpha_per_rank} * r (scaling alpha/r = {cfg.alpha_per_rank})")
