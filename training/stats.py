"""Statistics over seeds: per variant, the mean, spread and 95 % confidence interval of its accuracies, and the
difference to the study's reference paired by seed.

Every variant is trained once per seed on the same validation split, and each seed's fine-tuning starts from that
seed's baseline, so two variants' results pair up by seed: the per-seed difference cancels what a seed does to both
(initialisation, data order, dropout, augmentation) and its interval is the one that says whether a variant is
really worse than its reference. Intervals are Student t (scipy), half-widths in the metric's own unit (a fraction
of 1 for accuracies); with one seed there is no interval (None), never a made-up one.
"""
import math
import statistics

from scipy import stats as scipy_stats

from core.variants import KEY_FIELDS

# What gets a mean, a spread, an interval and a paired difference (a row without the field: None throughout).
METRICS = ("val_acc", "test_acc", "acc_truncated")
CONFIDENCE = 0.95


def interval(values):
    """(mean, sample standard deviation, 95 % half-width) of `values`; the last two None for fewer than 2."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    std = statistics.stdev(values)
    t = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, df=len(values) - 1)
    return mean, std, float(t) * std / math.sqrt(len(values))


def _variant_key(row):
    return tuple(row.get(f) for f in KEY_FIELDS)


def over_seeds(seed_rows, reference):
    """One row per variant (first-seen order) from the per-seed rows of a study.

    Each holds the key fields, `n_seeds`, `seeds`, every numeric field's mean over seeds where the seeds differ (so
    `val_acc` and `test_acc` are means; a parameter count stays the integer it is), `<metric>_std` and `<metric>_ci95` for the METRICS, and `<metric>_diff` with `<metric>_diff_ci95`:
    the difference to the variant whose key (study, method, rank, init, embedding) is `reference`, paired by seed (None for
    the reference itself and where fewer than two seeds pair up for an interval). Non-numeric fields come from the first seed.
    """
    groups = {}
    for row in seed_rows:
        groups.setdefault(_variant_key(row), []).append(row)
    reference = tuple(reference)
    ref_rows = groups.get(reference, [])
    ref_by_seed = {r["seed"]: r for r in ref_rows}
    variants = []
    for key, rows in groups.items():
        variant = {f: v for f, v in rows[0].items() if f != "seed"}
        for field, value in variant.items():
            values = [r[field] for r in rows if r.get(field) is not None]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and len(set(values)) > 1:
                variant[field] = statistics.fmean(values)  # sizes agree across seeds and stay as they are
        variant |= {"n_seeds": len(rows), "seeds": [r["seed"] for r in rows]}
        for metric in METRICS:
            mean, std, ci95 = interval([r.get(metric) for r in rows])
            variant |= {metric: mean, f"{metric}_std": std, f"{metric}_ci95": ci95}
            is_reference = key == reference
            diffs = [r[metric] - ref_by_seed[r["seed"]][metric] for r in rows
                     if not is_reference and r["seed"] in ref_by_seed and r.get(metric) is not None
                     and ref_by_seed[r["seed"]].get(metric) is not None]
            diff, _, diff_ci95 = interval(diffs)
            variant |= {f"{metric}_diff": diff, f"{metric}_diff_ci95": diff_ci95}
        variants.append(variant)
    return variants

