"""What the three studies share: a summary row per trained model, the chosen rank, the summary file."""
import platform
import time
from pathlib import Path

import cpuinfo
import torch

from lowrank_bench.core.decision import choose_rank, data_to_decide
from lowrank_bench.core.io import confined, write_json
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.core.variants import key, row_id, variant_id
from lowrank_bench.models.methods import METHODS, calibrate, factorize
from lowrank_bench.training import checkpoint, outcomes
from lowrank_bench.training.measure import forward_flops, param_counts
from lowrank_bench.training.stats import over_seeds


def device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpuinfo.get_cpu_info().get("brand_raw") or platform.machine()  # py-cpuinfo: pytest-benchmark's own


def row(job, model, metrics, sample, checkpoint_name, **extra):
    """One per-seed summary row: the variant's key fields and seed, then accuracies (`val_acc`: the decide part's,
    `stop_acc`: the best on the stop part, None where nothing trained), sizes, FLOPs per sample, seconds and
    memory; `outcomes` names the job's per-example outcomes (training/outcomes.py `load_outcomes`)."""
    return {"study": job.study, "method": job.method, "rank": job.rank, "init": job.init,
            "embedding": job.embedding, "seed": job.seed,
            "val_acc": metrics["val_acc"], "test_acc": metrics["test_acc"], "stop_acc": metrics.get("stop_acc"),
            "outcomes": job.name,
            **param_counts(model), "flops": forward_flops(model.eval(), sample),
            "epoch_seconds": metrics.get("epoch_seconds"), "train_seconds": metrics.get("train_seconds"),
            "peak_mem_bytes": metrics.get("peak_mem_bytes"), "train_state_bytes": metrics.get("train_state_bytes"),
            "train_dtype": metrics.get("train_dtype"),  # the training step's autocast dtype; None: not trained here
            "checkpoint": checkpoint_name, **extra}


def factorize_job(model, job, cfg, x_train, layer, device):
    """`model` factored at the job's rank by the job's method, and what that cost: `factorize_seconds` (the SVDs)
    and, for a calibrated method, `calibration_seconds` (its inputs' Gram matrices from `cfg.calibration_samples`
    training examples, drawn with the job's seed, run through `model` on `device`)."""
    cost, calibration = {"calibration_seconds": None}, None
    if METHODS[job.method].calibrated:
        t0 = time.perf_counter()
        pick = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(job.seed))
        batches = (b.to(device) for b in x_train[pick[:cfg.calibration_samples]].split(cfg.calibration_batch_size))
        calibration = calibrate(model, cfg.targets, batches)
        cost["calibration_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = factorize(model, job.rank, cfg.targets, method=job.method, layer=layer, calibration=calibration)
    return model, cost | {"factorize_seconds": time.perf_counter() - t0}


def decide(out, seed_rows, reference, margin_points):
    """(one row per variant with its decision against `reference`: training/stats.py `over_seeds`; the choices)

    One choice per group of ranks tested together (a method, with its start and token table): core/decision.py's
    fixed-sequence `choose_rank`, its rank (None: none within), where and why the sequence stopped, and, when it
    stopped undecided, how many times more data `data_to_decide` says would decide it."""
    margin = margin_points / 100
    rows, diffs = over_seeds(seed_rows, reference, lambda r: outcomes.load_outcomes(out, r["outcomes"]), margin)
    groups = {}
    for r in rows:
        if r["rank"] is not None and key(r) in diffs:
            groups.setdefault((r["method"], r["init"], r["embedding"]), []).append(r)
    choices = []
    for (method, init, embedding), members in groups.items():
        grid = {r["rank"]: diffs[key(r)][0] for r in members}
        c = choose_rank(list(grid.items()), margin)
        more = data_to_decide(grid[c.stopped_at], margin) if c.stop_verdict == "undecided" else None
        choices.append({"method": method, "init": init, "embedding": embedding, "rank": c.rank,
                        "stopped_at": c.stopped_at, "stop_verdict": c.stop_verdict,
                        "tested": [rank for rank, _ in c.tested], "more_data": more})
    return rows, choices


def print_choices(study, choices, margin_points):
    """One line per choice: the chosen rank, or that none was within, and where and why testing stopped."""
    spec = STUDIES[study]
    for c in choices:
        group = ", ".join(str(v) for v in (c["embedding"], c["init"], c["method"]) if v)
        stop = "" if c["stopped_at"] is None else \
            f"; stopped at {spec.rank_letter} = {c['stopped_at']}: {c['stop_verdict']}"
        more = f" (about {c['more_data']:.1f} times the data would decide it)" if c["more_data"] else ""
        if c["rank"] is None:
            print(f"no {spec.rank_letter} ({group}) within {margin_points:g} points of {spec.reference_label}"
                  f"{stop}{more}")
        else:
            print(f"chosen {spec.rank_letter} ({group}) = {c['rank']}: the smallest within {margin_points:g} points of "
                  f"{spec.reference_label}, testing from the largest rank down{stop}{more}")


def chosen_row(rows, choices):
    """The row of the smallest chosen rank among `choices` (the first on a tie), None when none chose one."""
    picks = [c for c in choices if c["rank"] is not None]
    if not picks:
        return None
    c = min(picks, key=lambda c: c["rank"])
    return next(r for r in rows if (r["method"], r["rank"], r["init"], r["embedding"]) ==
                (c["method"], c["rank"], c["init"], c["embedding"]))


def checkpoint_name(key, seed):
    """Where the checkpoint of variant `key` (study, method, rank, init, embedding) and `seed` lives, relative to
    the results folder: `<study>/seed<s>/<variant id>`."""
    return f"{key[0]}/seed{seed}/{variant_id(*key)}"


def save_run(out, job, model, metrics, profile, dataset, classes, **save_args):
    """Checkpoint `model` with its job's key fields, seed, id and training history, and write its per-example
    outcomes beside it; returns the checkpoint name relative to `out`. `save_args` go to `checkpoint.save`
    (structure, base)."""
    rel = checkpoint_name(job.key, job.seed)
    outcomes.save(out, job.name, metrics["outcomes"])
    meta = {k: v for k, v in metrics.items() if k not in ("history", "confusion", "outcomes")}
    checkpoint.save(Path(out) / rel, model, **save_args, study=job.study, method=job.method, rank=job.rank,
                    init=job.init, embedding=job.embedding, dataset=dataset, profile=profile.name, seed=job.seed,
                    job_id=job.id,
                    train_dtype=metrics.get("train_dtype"), metrics=meta,
                    history=metrics.get("history", []), confusion=metrics.get("confusion"), classes=classes)
    return rel


def median_latency_ms(model, x, repeats=20):
    """Median wall time of one forward pass on `x` (synchronised on CUDA), for the printed Pareto front."""
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 2):
            t0 = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times[2:])[repeats // 2]


def chosen_key(chosen_row):
    """What a summary records of its chosen row: the key fields (None when no rank qualified)."""
    return {f: chosen_row.get(f) for f in ("method", "rank", "init", "embedding")} if chosen_row else None


def write_summary(out, study, profile, device, rows, seed_rows, chosen, choices, margin_points, **extra):
    """`summary.json`: `rows` one per variant (means over seeds and the decision: `decide`), `seed_rows` one per
    (variant, seed), the `choices` and the chosen variant's key fields."""
    summary = {"study": study, "profile": profile.name, "device": torch.device(device).type,
               "device_name": device_name(device), "seeds": list(profile.seeds), "chosen": chosen_key(chosen),
               "choices": choices, "margin_points": margin_points, "rows": rows, "seed_rows": seed_rows, **extra}
    write_json(confined(out, f"{study}/summary.json"), summary)
    return summary


def print_table(rows, columns):
    """A plain fixed-width table on stdout, each row led by its readable id."""
    rows = [{"name": row_id(r), **r} for r in rows]
    columns = ["name", *columns]
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "-" if v is None else str(v)
