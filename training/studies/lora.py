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

from lowrank_bench.core.io import UserError
from lowrank_bench.core.spec import STUDIES, reference_key
from lowrank_bench.core.variants import variant_id
from lowrank_bench.models.lora import LoRAConfig, add_lora, merge_lora
from lowrank_bench.models.methods import check_ranks
from lowrank_bench.models.mlp import MLP
from lowrank_bench.training import checkpoint, outcomes
from lowrank_bench.training.data import load_fashion
from lowrank_bench.training.studies.common import (checkpoint_name, chosen_row, decide, median_latency_ms, print_choices,
                                     print_table, row, save_run, write_summary)
from lowrank_bench.training.train import final_metrics, train

DENSE = reference_key(STUDIES["lora"].starts_from)  # the pretrained model every variant starts from


def load_data(profile, root):
    return load_fashion(root, **profile.data.split_args("fashion"))


def job(key, profile):
    """(the settings that decide variant `key`'s result, the keys of the variants it starts from): every variant
    starts from the svd study's dense model of its seed."""
    cfg, data = profile.lora, profile.data.settings("fashion")
    method = key[1]
    if method == "pretrained":
        return {"data": data}, [DENSE]
    trained = {"data": data, "train": dataclasses.asdict(cfg.train)}
    if method == "lora":
        trained |= {"targets": cfg.targets, "alpha_per_rank": cfg.alpha_per_rank}
    return trained, [DENSE]


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
        metrics = final_metrics(base, splits, device)
        outcomes.save(work, job.name, metrics["outcomes"])
        return make_row(base, metrics, base_rel, alpha=None), {}

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
                    desc=f"fashion {variant_id(*job.key)}")
    if lora_cfg is None:
        rel = save_run(work, job, model, metrics, profile, "fashion", splits.classes)
        return make_row(model, metrics, rel, alpha=None), {}
    rel = save_run(work, job, model, metrics, profile, "fashion", splits.classes,
                   structure={"lora": vars(lora_cfg)}, base=work / base_rel)
    merged = merge_lora(copy.deepcopy(model))
    return make_row(model, metrics, rel, alpha=lora_cfg.effective_alpha,
                    latency_merged_ms=median_latency_ms(merged, latency_x)), {}


def summarize(profile, out, device, seed_rows, extras):
    """Write `summary.json`: every row decided against full fine-tuning, the reference, and the chosen r."""
    cfg = profile.lora
    rows, choices = decide(out, seed_rows, reference_key("lora"), cfg.margin_points)
    print_table(rows, ["val_acc", "test_acc", "val_diff", "val_diff_lower", "verdict", "params_trainable",
                       "trainable_pct", "epoch_seconds", "peak_mem_bytes", "latency_ms", "latency_merged_ms",
                       "checkpoint_bytes"])
    print_choices("lora", choices, cfg.margin_points)
    return write_summary(out, "lora", profile, device, rows, seed_rows, chosen_row(rows, choices), choices,
                         cfg.margin_points,
                         alpha_rule=f"alpha = {cfg.alpha_per_rank} * r (scaling alpha/r = {cfg.alpha_per_rank})")
