"""Study 2: the pretrained Hoda MLP fine-tuned onto Fashion-MNIST with LoRA, for every rank r.

Compared with the same budget: head only (pretrained body frozen, new head), full fine-tuning (everything
trains, new head), the same MLP trained from scratch, and the pretrained model with no training at all (its Hoda
head on Fashion images: near chance). α = alpha_per_rank · r keeps the scaling α/r fixed across ranks, so every
rank sees updates of the same size for the same learning rate and the rows differ only in capacity.
"""
import copy
from pathlib import Path

import torch
import torch.nn as nn

from models.lora import LoRAConfig, add_lora, merge_lora
from models.lowrank import check_ranks
from models.mlp import MLP
from training import checkpoint
from training.data import load_fashion
from lowrank_bench.io import UserError
from lowrank_bench.variants import variant_id
from training.studies.common import choose_smallest, median_latency_ms, print_table, row, save_run, write_summary
from training.train import evaluate, train


def load_data(profile, root):
    d = profile.data
    return load_fashion(root, val_fraction=d.val_fraction, seed=profile.seed, train_subset=d.fashion_train,
                        test_subset=d.fashion_test)


def load_pretrained(out, device):
    stem = Path(out) / "svd" / "dense"
    if not stem.with_suffix(".json").exists():
        raise UserError(f"LoRA needs the pretrained Hoda MLP at {stem}.json; run `lowrank-bench train svd` "
                        "with the same --profile and --out first")
    model = checkpoint.load(stem, expect_arch="MLP", device=device)[0]
    return model.requires_grad_(False), stem  # as a row of its own it is evaluated, never trained


def with_new_head(base, n_classes, train_body):
    """A copy of `base` with a fresh head; the body trains only when `train_body`."""
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(train_body)
    model.head = nn.Linear(model.head.in_features, n_classes).to(model.head.weight.device)
    return model


def run(profile, *, root, out, device):
    cfg = profile.lora
    base, base_stem = load_pretrained(out, device)
    check_ranks(base, cfg.ranks, cfg.targets)  # a bad r fails now, not after the comparison rows have trained
    splits = load_data(profile, root)
    n_classes = len(splits.classes)
    sample = splits.x_test[:1].to(device)
    latency_x = splits.x_test[:max(cfg.bench.batch_sizes)].to(device)
    rows = []

    def add_row(method, rank, model, metrics, rel, **extra):
        size = sum(p.stat().st_size for p in checkpoint.paths(Path(out) / rel))
        total = sum(p.numel() for p in model.parameters())
        rows.append(row("lora", method, rank, model, metrics, sample, rel, checkpoint_bytes=size,
                        trainable_pct=100 * sum(p.numel() for p in model.parameters() if p.requires_grad) / total,
                        latency_ms=median_latency_ms(model, latency_x), **extra))

    def fit(method, rank, build):
        torch.manual_seed(profile.seed)  # new heads and adapters start the same whatever ran before
        model = build()
        metrics = train(model, splits, cfg.train, device=device, seed=profile.seed,
                        desc=f"fashion {variant_id(method, rank)}")
        return model, metrics

    _, val_acc, _ = evaluate(base, splits.x_val.to(device), splits.y_val.to(device))
    _, test_acc, _ = evaluate(base, splits.x_test.to(device), splits.y_test.to(device))
    add_row("pretrained", None, base, {"val_acc": val_acc, "test_acc": test_acc}, "svd/dense", alpha=None)

    baselines = {"head": lambda: with_new_head(base, n_classes, train_body=False),
                 "full": lambda: with_new_head(base, n_classes, train_body=True),
                 "scratch": lambda: MLP(copy.deepcopy(base.config))}
    for method, build in baselines.items():
        model, metrics = fit(method, None, build)
        add_row(method, None, model, metrics,
                save_run(out, "lora", method, None, model, metrics, profile, "fashion", splits.classes), alpha=None)

    for r in cfg.ranks:
        lora_cfg = LoRAConfig(rank=r, alpha=cfg.alpha_per_rank * r, targets=tuple(cfg.targets), new_head=n_classes)
        model, metrics = fit("lora", r, lambda: add_lora(base, lora_cfg))
        rel = save_run(out, "lora", "lora", r, model, metrics, profile, "fashion", splits.classes,
                       structure={"lora": vars(lora_cfg)}, base=base_stem)
        merged = merge_lora(copy.deepcopy(model))
        add_row("lora", r, model, metrics, rel, alpha=lora_cfg.effective_alpha,
                latency_merged_ms=median_latency_ms(merged, latency_x))

    lora_rows = [r for r in rows if r["method"] == "lora"]
    best = max(r["val_acc"] for r in lora_rows)
    chosen = choose_smallest(lora_rows, best, cfg.tolerance_points)
    print_table(rows, ["val_acc", "test_acc", "params_trainable", "trainable_pct", "epoch_seconds",
                       "peak_mem_bytes", "train_state_bytes", "latency_ms", "latency_merged_ms", "checkpoint_bytes"])
    full = next(r for r in rows if r["method"] == "full")
    print(f"chosen r = {chosen['rank']}: validation {chosen['val_acc']:.4f} (best LoRA {best:.4f}), test "
          f"{chosen['test_acc']:.4f}, full fine-tuning test {full['test_acc']:.4f}, "
          f"{chosen['trainable_pct']:.2f}% of parameters trainable")
    return write_summary(out, "lora", profile, device, rows, chosen, cfg.tolerance_points,
                         alpha_rule=f"alpha = {cfg.alpha_per_rank} * r (scaling alpha/r = {cfg.alpha_per_rank})")
