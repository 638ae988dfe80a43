"""Statistics over seeds and examples: per variant, the mean and spread of its accuracies over seeds, and the
decision against the study's reference.

Every variant is trained once per seed on the same splits, and each seed's fine-tuning starts from that seed's
baseline, so two variants' results pair up by seed and, through their per-example outcomes (training/outcomes.py),
by example. The decision is core/decision.py's one rule: the paired difference (variant − reference) on the decide
part of validation, with one-sided 95 % bounds from a bootstrap over seeds and examples, is "within" the margin δ,
"worse", or "undecided"; the same difference on test is the confirmation, printed beside it and never used for it.
Each mean's spread over seeds is its sample standard deviation (`<metric>_std`); an interval over seeds alone is not
given: with two seeds that tie it has width 0, as if the accuracy were exact. The bootstrap bounds are the intervals.
"""
import statistics

from lowrank_bench.core.decision import paired_difference, verdict
from lowrank_bench.core.variants import KEY_FIELDS
from lowrank_bench.training.outcomes import stack

# What gets a mean, a spread and a paired difference (a row without the field: None throughout).
METRICS = ("val_acc", "test_acc", "acc_truncated")
DECISION_FIELDS = ("val_diff", "val_diff_lower", "val_diff_upper", "verdict", "test_diff", "test_diff_lower",
                   "test_diff_upper")


def spread(values):
    """(mean, sample standard deviation) of `values`; the deviation None for fewer than 2."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else None


def _variant_key(row):
    return tuple(row.get(f) for f in KEY_FIELDS)


def over_seeds(seed_rows, reference, outcomes, margin):
    """(one row per variant, first-seen order; {variant key: (val, test) PairedDifference}) from a study's per-seed
    rows.

    Each row holds the key fields, `n_seeds`, `seeds`, every numeric field's mean over seeds where the seeds differ
    (so `val_acc` and `test_acc` are means; a parameter count stays the integer it is), `<metric>_std` for the
    METRICS; and, except for the variant whose key is `reference`, the decision:
    `val_diff`, `val_diff_lower`, `val_diff_upper`, `verdict` (against `margin`, a fraction) and the confirmation
    `test_diff`, `test_diff_lower`, `test_diff_upper`, from the seeds both ran. `outcomes(row)` is a per-seed row's
    `training.outcomes.Outcomes`. Non-numeric fields come from the first seed.
    """
    groups = {}
    for row in seed_rows:
        groups.setdefault(_variant_key(row), []).append(row)
    reference = tuple(reference)
    ref_by_seed = {r["seed"]: r for r in groups.get(reference, [])}
    variants, diffs = [], {}
    for key, rows in groups.items():
        variant = {f: v for f, v in rows[0].items() if f != "seed"}
        for field, value in variant.items():
            values = [r[field] for r in rows if r.get(field) is not None]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and len(set(values)) > 1:
                variant[field] = statistics.fmean(values)  # sizes agree across seeds and stay as they are
        variant |= {"n_seeds": len(rows), "seeds": [r["seed"] for r in rows]}
        for metric in METRICS:
            mean, std = spread([r.get(metric) for r in rows])
            variant |= {metric: mean, f"{metric}_std": std}
        paired = [(outcomes(r), outcomes(ref_by_seed[r["seed"]])) for r in rows if r["seed"] in ref_by_seed]
        decision = dict.fromkeys(DECISION_FIELDS)
        if key != reference and paired:
            val, test = (paired_difference(stack([v for v, _ in paired], part), stack([r for _, r in paired], part))
                         for part in ("val", "test"))
            diffs[key] = val, test
            decision = {"val_diff": val.mean, "val_diff_lower": val.lower, "val_diff_upper": val.upper,
                        "verdict": verdict(val, margin), "test_diff": test.mean, "test_diff_lower": test.lower,
                        "test_diff_upper": test.upper}
        variants.append(variant | decision)
    return variants, diffs
