"""The report's sentences about results, written from the numbers: what a sentence claims follows from the data,
whatever the data turns out to be. Each function takes the collector's study dict (and benchmark rows) and returns
LaTeX text; `latex.py` hands it to the templates as a macro.

Accuracies in the rows are means over seeds with their 95 % half-widths (`*_ci95`) and the difference to the
study's reference paired by seed (`*_diff`, `*_diff_ci95`); see `training/stats.py`.
"""
from core.spec import STUDIES
from report import fmt

SAME_COST = 0.05  # latencies within 5 % of each other are "the same cost": the spread of one benchmark on a noisy VM


def _ks(rows, prefix="k"):
    return ", ".join(f"{prefix} = {r['rank']}" for r in rows)


def _pt(fraction):
    return f"{100 * fraction:.2f}"


def within_tolerance(row, tolerance_points, metric="val_acc"):
    """Whether `row` is within `tolerance_points` of its reference with 95 % confidence: the lower end of its paired
    difference's interval is above -tolerance. None when there is no interval (one seed, or the reference)."""
    diff, ci95 = row.get(f"{metric}_diff"), row.get(f"{metric}_diff_ci95")
    if diff is None or ci95 is None:
        return None
    return diff - ci95 >= -tolerance_points / 100


def chosen_rule(d):
    """The decision rule, and how sure the chosen rank's place inside the tolerance is."""
    tol, chosen, reference = d["meta"].get("tolerance_points"), d["chosen"], STUDIES[d["study"]].reference_label
    rule = (f"The rule: the smallest rank whose mean validation accuracy over the seeds is within {tol:g} points "
            f"of {reference}'s.")
    if chosen is None:
        return rule + " No rank of the grid meets it."
    n, diff, ci95 = chosen.get("n_seeds") or 1, chosen.get("val_acc_diff"), chosen.get("val_acc_diff_ci95")
    verdict = within_tolerance(chosen, tol)
    if diff is None:
        return rule
    if verdict is None:
        return (rule + f" Its validation accuracy differs from {reference}'s by {fmt.points(diff)} points, from one "
                "seed: no interval, so the choice rests on a single run.")
    said = (f" Its paired difference to {reference}, {fmt.points(diff, ci95)} points on validation over {n} seeds "
            f"(95\\,\\% interval), ")
    if verdict:
        return rule + said + f"lies inside the {tol:g}-point tolerance with 95\\,\\% confidence."
    return rule + said + (f"reaches below $-{tol:g}$: it is within the tolerance on average, not with 95\\,\\% "
                          "confidence.")


def retraining_schedule(d):
    """How retraining was set up, from the summary (what the study ran, not what the defaults say today)."""
    cfg = d["meta"].get("retrain")
    if not cfg:
        return ""
    warmup = "without warm-up" if not cfg["warmup_frac"] else f"after a {100 * cfg['warmup_frac']:g}\\,\\% warm-up"
    chosen = d["meta"].get("augmentation", {}).get("chosen")
    augment = {None: "with the baseline's augmentation setting", "none": "without augmentation, as the baseline"}.get(
        chosen, f"with the baseline's augmentation ({chosen})")
    distilled = "" if not cfg.get("distill") else (
        f", and distilled from the dense model (loss weight {cfg['distill']:g} on its outputs at temperature "
        f"{cfg['distill_temperature']:g}, the rest on the labels)")
    return (f"Retraining runs up to {cfg['epochs']} epochs from learning rate {cfg['lr']:g}, cosine-decayed {warmup}, "
            f"{augment}{distilled}; the truncated start is evaluated as epoch 0 and kept unless "
            "an epoch beats it on validation's stop part, so retraining cannot end below its start there.")


def svd_retraining(d):
    """Whether retraining ended above truncation, and which ranks it brings within tolerance of dense."""
    ranked = sorted((r for r in d["rows"] if r["rank"] is not None), key=lambda r: r["rank"])
    with_start = [r for r in ranked if r.get("val_acc_truncated") is not None]
    if not with_start:
        return ""
    below = [r for r in with_start if r["val_acc"] < r["val_acc_truncated"] - 1e-9]
    gains = [r["val_acc"] - r["val_acc_truncated"] for r in with_start]
    text = (f"Retraining changed mean validation accuracy by {_pt(min(gains))} to {_pt(max(gains))} points against "
            "the truncated start; ")
    text += (f"it ended below its start at {_ks(below)}. " if below else "it never ended below its start. ")
    tol, dense = d["meta"].get("tolerance_points"), d.get("baseline")
    diff = lambda r: r["val_acc_diff"] if r.get("val_acc_diff") is not None else (  # noqa: E731
        r["val_acc"] - dense["val_acc"] if dense else None)  # a summary of one seed: the plain difference
    close = [r for r in ranked if diff(r) is not None and diff(r) >= -tol / 100]
    if not close:
        return text + f"No rank comes within {tol:g} points of dense on mean validation accuracy after retraining."
    if len(close) == len(ranked):
        return text + f"After retraining every rank comes within {tol:g} points of dense on mean validation accuracy."
    return text + (f"After retraining {_ks(close)} come within {tol:g} points of dense on mean validation accuracy; "
                   f"{_ks([r for r in ranked if r not in close])} do not.")


def lora_merged(d, bench):
    """What the chosen adapter costs at inference, merged and unmerged, against the full fine-tuned network."""
    chosen = d["chosen"]
    infer = [b for b in bench if b["study"] == "lora" and b["kind"] == "infer" and b["file"] == bench[0]["file"]]
    if not chosen or not infer:
        return ""
    bs = max(b["batch_size"] for b in infer)
    at = {(b["method"], b["rank"], b["variant"]): b["median_ms"] for b in infer if b["batch_size"] == bs}
    full = next((ms for (method, _, _), ms in at.items() if method == "full"), None)
    merged, unmerged = (at.get(("lora", chosen["rank"], v)) for v in ("merged", "unmerged"))
    if full is None or merged is None:
        return ""
    ratio = merged / full
    text = f"At batch size {bs}, merged, the chosen adapter takes {merged:.3g}\\,ms per batch against {full:.3g}\\,ms "
    text += "for the fully fine-tuned network: " + (
        "the same cost within 5\\,\\%" if abs(ratio - 1) <= SAME_COST else
        f"{ratio:.2f} times its time")
    return text + (f"; unmerged, {unmerged:.3g}\\,ms." if unmerged is not None else ".")


def attention_inits(d):
    """Which starting point of the factors wins on mean validation accuracy, rank by rank (the learned table's
    models; `attention_embedding` compares the pre-defined one)."""
    by_rank = {}
    for r in d["rows"]:
        if r["rank"] is not None and r.get("init") and not r.get("embedding"):
            by_rank.setdefault(r["rank"], {})[r["init"]] = r["val_acc"]
    pairs = {k: v for k, v in sorted(by_rank.items()) if {"random", "trained"} <= set(v)}
    if not pairs:
        return ""
    trained = [k for k, v in pairs.items() if v["trained"] > v["random"]]
    random = [k for k, v in pairs.items() if v["random"] > v["trained"]]
    parts = []
    for name, ks in (("trained", trained), ("random", random)):
        if ks:
            parts.append(f"the {name} start at k = {', '.join(map(str, ks))}")
    tie = len(pairs) - len(trained) - len(random)
    text = "On mean validation accuracy " + (" and ".join(parts) if parts else "neither start") + " wins"
    return text + (f", with {tie} tie(s)." if tie else ".") + (
        f" Over all {len(pairs)} ranks the trained start wins {len(trained)} times." if parts else "")


def _than(a, b, unit="points"):
    """`a` against `b` in words: "0.42 points higher than", "the same as"."""
    gap = 100 * (a - b)
    return "the same as" if round(gap, 2) == 0 else f"{abs(gap):.2f} {unit} {'higher' if gap > 0 else 'lower'} than"


def attention_embedding(d):
    """How the models on MiniLM's pre-defined token table compare with those on the model's own learned table:
    dense against dense, then every (rank, init) pair, on mean validation accuracy (test for the record); and the
    pre-defined table's own chosen k. Empty when that variant did not run."""
    rows = {(r["method"], r["rank"], r.get("init"), r.get("embedding")): r for r in d["rows"]}
    pre = rows.get(("dense", None, None, "minilm"))
    own = rows.get(("dense", None, None, None))
    if pre is None:
        return ""
    frozen = {True: "frozen", False: "fine-tuned with the rest"}.get(d["meta"].get("embedding_frozen"), "")
    text = (f"With the pre-defined word-piece table of all-MiniLM-L6-v2 ({frozen + ', ' if frozen else ''}projected "
            f"to the model width; rows \\texttt{{minilm-}}), the dense model reaches {_pt(pre['test_acc'])}\\,\\% test "
            f"and {_pt(pre['val_acc'])}\\,\\% validation accuracy")
    if own is not None:
        text += (f", {_than(pre['val_acc'], own['val_acc'])} the learned table's dense model on validation "
                 f"({_pt(own['val_acc'])}\\,\\%) and {_than(pre['test_acc'], own['test_acc'])} it on test "
                 f"({_pt(own['test_acc'])}\\,\\%)")
    text += "."
    pairs = [(r, rows[(m, k, i, None)]) for (m, k, i, e), r in rows.items()
             if e == "minilm" and k is not None and (m, k, i, None) in rows]
    if pairs:
        ahead = sum(p["val_acc"] > o["val_acc"] for p, o in pairs)
        text += (f" Among the factored models the pre-defined table is ahead on validation in {ahead} of "
                 f"{len(pairs)} (rank, initialisation) pairs.")
    chosen = (d["meta"].get("chosen_by_embedding") or {}).get("minilm") or {}
    said = [f"k = {c['rank']} ({init} initialisation)" for init, c in chosen.items() if c]
    if chosen:
        tol = d["meta"].get("tolerance_points")
        text += (f" Against its own dense model, the smallest rank within {tol:g} validation points is "
                 + (" and ".join(said) if said else "none of the grid") + ".")
    return text


def _ranks_that_pay(paying, ranks, le):
    """What a set of paying ranks is, in words: none, all, a prefix (`rank <= 64`) or a list."""
    if not paying:
        return "no rank pays"
    if paying == ranks:
        return f"every rank measured pays ({ranks[0]} to {ranks[-1]})" if len(ranks) > 1 else f"rank {ranks[0]} pays"
    if paying == ranks[:len(paying)]:
        return f"rank {le} {paying[-1]} pays"
    return f"rank{'s' if len(paying) > 1 else ''} {', '.join(map(str, paying))} pay{'' if len(paying) > 1 else 's'}"


def speedup_sentence(dtype, mode, cells, le="<=", times="x"):
    """One sentence that reads a speedup map {(rank, batch_size): speedup}: which ranks pay (speedup > 1) at which
    batch sizes, and the best and worst measured. Generated from the numbers only, so it says what they say."""
    ranks, sizes = sorted({k for k, _ in cells}), sorted({b for _, b in cells})
    said = [(bs, _ranks_that_pay([k for k in ranks if cells.get((k, bs), 0) > 1],
                                 [k for k in ranks if (k, bs) in cells], le)) for bs in sizes]
    groups = []  # runs of consecutive batch sizes that say the same thing
    for bs, text in said:
        if groups and groups[-1][1] == text:
            groups[-1][0].append(bs)
        else:
            groups.append(([bs], text))
    clauses = []
    for batch, text in groups:
        if len(groups) == 1:
            where = f"at batch {sizes[0]}" if len(sizes) == 1 else \
                ("at any batch size measured" if text == "no rank pays" else "at every batch size measured")
        elif batch[-1] == sizes[-1] and len(batch) > 1:
            where = f"from batch {batch[0]} up"
        elif len(batch) > 1:
            where = f"at batches {batch[0]} to {batch[-1]}"
        else:
            where = f"at batch {batch[0]}"
        clauses.append(f"{text} {where}")
    (k_best, b_best), best = max(cells.items(), key=lambda kv: kv[1])
    (k_worst, b_worst), worst = min(cells.items(), key=lambda kv: kv[1])
    return (f"In {dtype} {mode}, {'; '.join(clauses)} (best {best:.2f}{times} at rank {k_best}, batch {b_best}; "
            f"worst {worst:.2f}{times} at rank {k_worst}, batch {b_worst}).")


def speedup_text(maps):
    """Every (dtype, mode) of a study's speedup map in sentences, for the report (LaTeX math for <= and x)."""
    return " ".join(speedup_sentence(dtype, mode, cells, r"$\le$", r"$\times$") for (dtype, mode), cells in maps.items())


def where_low_rank_pays(svd_maps):
    """The conclusion's sentence: Study 1's speedup map read out, or that nothing was measured."""
    if not svd_maps:
        return "No inference benchmarks were run, so the report cannot say where low rank pays on this machine."
    return "For the factored MLP: " + speedup_text(svd_maps)
