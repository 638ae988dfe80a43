"""The report's sentences about results, written from the numbers: what a sentence claims follows from the data,
whatever the data turns out to be. Each function takes the collector's study dict (and benchmark rows) and returns
LaTeX text; `latex.py` hands it to the templates as a macro.

Accuracies in the rows are means over seeds. Whether a model is as good as its reference is the decision each row
carries (`verdict`, from the paired difference `val_diff` and its one-sided 95 % bounds, core/decision.py), and
which rank a group of ranks settles on is the summary's `choices` (fixed-sequence testing, largest rank first): the
sentences below only read those out, so none of them can call a model "within" what its bounds do not put within.
The test split's difference is quoted beside a decision as a confirmation and never decides anything. The sentences
are LaTeX (`Tex`): numbers come checked by the readers (core/summary.py, core/benchjson.py) and every string from
data is escaped.
"""
import functools
import math
from types import SimpleNamespace

from lowrank_bench.core import decision
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report import fmt
from lowrank_bench.report.results import group_name
from lowrank_bench.report.tex import Tex, escape

SAME_COST = 0.05  # latencies within 5 % of each other are "the same cost": the spread of one benchmark on a noisy VM
# How a verdict reads after "it is" / "the rule calls it".
VERDICT_WORDS = {decision.WITHIN: "within $\\delta$", decision.WORSE: "worse (by more than $\\delta$)",
                 decision.UNDECIDED: "undecided"}


def _latex(sentence):
    """Mark what `sentence` returns as LaTeX the code composed (report/tex.py): every string from data in it is
    escaped where it is put in."""
    @functools.wraps(sentence)
    def composed(*args, **kwargs):
        return Tex(sentence(*args, **kwargs))
    return composed


def _ks(rows, prefix="k"):
    return ", ".join(f"{prefix} = {r['rank']}" for r in rows)


def _pt(fraction):
    return f"{100 * fraction:.2f}"


def _signed(fraction):
    """A difference (a fraction) in signed points, typeset: $-0.42$."""
    return f"${fmt.points(fraction)}$"


def _bounds(row, split):
    return f"bounds {_signed(row[f'{split}_diff_lower'])} and {_signed(row[f'{split}_diff_upper'])}"


@_latex
def decision_rule(d):
    """The study's margin and reference, and the sentence per rank choice."""
    spec, meta = STUDIES[d["study"]], d["meta"]
    own_table = any(r.get("embedding") for r in d["rows"])
    reference = f"the {spec.reference_label} model of its own token table" if own_table else spec.reference_label
    text = f"Here $\\delta = {meta['margin_points']:g}$ points, and every model is paired with {reference}."
    choices = meta.get("choices") or []
    for c in choices:
        text += " " + choice_sentence(d, c, named=len(choices) > 1)
    return text


def _more_data(factor):
    """What would decide an undecided stop, from core.decision.data_to_decide (None: nothing to say)."""
    if factor is None:
        return ""
    if math.isinf(factor):
        return "; its difference sits exactly on $-\\delta$, so no amount of data would decide it"
    times = f"{factor:.2f}" if factor < 10 else f"{factor:,.0f}"
    return f"; about {times} times the present data would decide it if its difference held"


@_latex
def choice_sentence(d, c, named=True):
    """One group's rank choice: which rank was chosen, why the sequence stopped (worse; undecided, with what would
    decide it; or the grid ran out with every rank within), and the chosen rank's test confirmation."""
    study = d["study"]
    spec = STUDIES[study]
    letter, reference = spec.rank_letter, spec.reference_label
    group = {r["rank"]: r for r in d["rows"] if r["rank"] is not None
             and (r["method"], r.get("init"), r.get("embedding")) == (c["method"], c["init"], c["embedding"])}
    ks = lambda ranks: f"${letter} = {', '.join(map(str, ranks))}$"  # noqa: E731
    text = f"\\emph{{{escape(group_name(study, c['method'], c['init'], c['embedding']))}}}: " if named else ""
    text += f"${letter} = {c['rank']}$ is chosen" if c["rank"] is not None else "no rank is chosen" if named \
        else "No rank is chosen"
    passed = [k for k in c["tested"] if k != c["stopped_at"]]
    if c["stopped_at"] is None:
        text += (f": every rank tested ({ks(passed)}) is within $\\delta$ of {reference}, and the grid ran out "
                 f"before the sequence stopped, so no smaller rank was tested")
    else:
        stop = group[c["stopped_at"]]
        at = f"${letter} = {c['stopped_at']}$" if passed else f"its largest rank, ${letter} = {c['stopped_at']}$"
        text += f": {ks(passed)} {'is' if len(passed) == 1 else 'are'} within $\\delta$ of {reference}, and" \
            if passed else ":"
        if c["stop_verdict"] == decision.WORSE:
            text += (f" the sequence stops at {at}, worse than {reference} by more than $\\delta$ (difference "
                     f"{_signed(stop['val_diff'])} points, upper bound {_signed(stop['val_diff_upper'])})")
        else:
            text += (f" the sequence ran out undecided at {at} (difference {_signed(stop['val_diff'])} points, "
                     f"{_bounds(stop, 'val')}, on either side of $-\\delta$){_more_data(c['more_data'])}")
    text += "."
    if c["rank"] is not None:
        text += " " + test_confirmation(group[c["rank"]], d)
    return text


@_latex
def test_confirmation(row, d):
    """The chosen row's paired difference on test, with its bounds and what the same rule would call it there: a
    confirmation beside the decision, never a decision. Empty when the summary has no test difference."""
    if row.get("test_diff") is None or row.get("test_diff_lower") is None or row.get("test_diff_upper") is None:
        return ""
    spec = STUDIES[d["study"]]
    said = decision.verdict(SimpleNamespace(lower=row["test_diff_lower"], upper=row["test_diff_upper"]),
                            d["meta"]["margin_points"] / 100)
    return (f"On test, which decides nothing, ${spec.rank_letter} = {row['rank']}$ differs from "
            f"{spec.reference_label} by {_signed(row['test_diff'])} points ({_bounds(row, 'test')}): the same rule "
            f"there calls it {VERDICT_WORDS[said]}.")


@_latex
def chosen_test_diff(d):
    """The overall chosen row's paired test difference to its reference with its bounds."""
    c = d["chosen"] or {}
    if c.get("test_diff") is None or c.get("test_diff_lower") is None or c.get("test_diff_upper") is None:
        return "--"
    return (f"{_signed(c['test_diff'])} points against {STUDIES[d['study']].reference_label} on test, "
            f"{_bounds(c, 'test')}")


@_latex
def retraining_schedule(d):
    """How retraining was set up, from the summary (what the study ran, not what the defaults say today)."""
    cfg = d["meta"].get("retrain")
    if not cfg:
        return ""
    warmup = "without warm-up" if not cfg["warmup_frac"] else f"after a {100 * cfg['warmup_frac']:g}\\,\\% warm-up"
    chosen = d["meta"].get("augmentation", {}).get("chosen")
    augment = {None: "with the baseline's augmentation setting", "none": "without augmentation, as the baseline"}.get(
        chosen, f"with the baseline's augmentation ({escape(chosen)})")
    distilled = "" if not cfg.get("distill") else (
        f", and distilled from the dense model (loss weight {cfg['distill']:g} on its outputs at temperature "
        f"{cfg['distill_temperature']:g}, the rest on the labels)")
    return (f"Retraining runs up to {cfg['epochs']} epochs from learning rate {cfg['lr']:g}, cosine-decayed {warmup}, "
            f"{augment}{distilled}; the truncated start is evaluated as epoch 0 and kept unless "
            "an epoch beats it on validation's stop part, so retraining cannot end below its start there.")


@_latex
def svd_retraining(d):
    """Whether retraining ended above truncation (which ranks are within the margin of dense is the decision's,
    `decision_rule`)."""
    ranked = sorted((r for r in d["rows"] if r["rank"] is not None), key=lambda r: r["rank"])
    with_start = [r for r in ranked if r.get("val_acc_truncated") is not None]
    if not with_start:
        return ""
    below = [r for r in with_start if r["val_acc"] < r["val_acc_truncated"] - 1e-9]
    gains = [r["val_acc"] - r["val_acc_truncated"] for r in with_start]
    text = (f"Retraining changed mean validation accuracy by {_pt(min(gains))} to {_pt(max(gains))} points against "
            "the truncated start; ")
    return text + (f"it ended below its start at {_ks(below)}." if below else "it never ended below its start.")


@_latex
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


@_latex
def attention_inits(d):
    """Which starting point of the factors has the higher mean validation accuracy, rank by rank, for each method
    that ran from both (the learned table's models; `attention_embedding` compares the pre-defined one)."""
    by_rank = {}
    for r in d["rows"]:
        if r["rank"] is not None and r.get("init") and not r.get("embedding"):
            by_rank.setdefault((r["method"], r["rank"]), {})[r["init"]] = r["val_acc"]
    pairs = {k: v for k, v in sorted(by_rank.items()) if {"random", "trained"} <= set(v)}
    if not pairs:
        return ""
    one_method = len({method for method, _ in pairs}) == 1
    name = lambda k: str(k[1]) if one_method else escape(f"{k[0]}-k{k[1]}")  # noqa: E731
    trained = [name(k) for k, v in pairs.items() if v["trained"] > v["random"]]
    random = [name(k) for k, v in pairs.items() if v["random"] > v["trained"]]
    parts = []
    for start, ks in (("trained", trained), ("random", random)):
        if ks:
            parts.append(f"the {start} start at {'k = ' if one_method else ''}{', '.join(ks)}")
    tie = len(pairs) - len(trained) - len(random)
    text = "On mean validation accuracy " + (" and ".join(parts) if parts else "neither start") + " wins"
    return text + (f", with {tie} tie(s)." if tie else ".") + (
        f" Over all {len(pairs)} ranks the trained start wins {len(trained)} times." if parts else "")


@_latex
def attention_best(d):
    """The learned table's models with the highest mean validation accuracy from each start, every one of them
    where several tie, with their test accuracy."""
    said = []
    for init, start in (("random", "the random initialisation"), ("trained", "the trained weights")):
        rows = [r for r in d["rows"] if r.get("init") == init and not r.get("embedding") and r["val_acc"] is not None]
        if not rows:
            continue
        top = max(r["val_acc"] for r in rows)
        best = [r for r in rows if math.isclose(r["val_acc"], top, rel_tol=0, abs_tol=1e-12)]
        names = " and ".join(f"\\texttt{{{escape(r['label'])}}} ({_pt(r['test_acc'])}\\,\\% test)"
                             for r in best)
        said.append(f"from {start}, by {names}{', tied' if len(best) > 1 else ''}")
    return "The highest mean validation accuracy is reached " + "; ".join(said) + "." if said else ""


def _than(a, b, unit="points"):
    """`a` against `b` in words: "0.42 points higher than", "the same as"."""
    gap = 100 * (a - b)
    return "the same as" if round(gap, 2) == 0 else f"{abs(gap):.2f} {unit} {'higher' if gap > 0 else 'lower'} than"


@_latex
def attention_embedding(d):
    """How the models on MiniLM's pre-defined token table compare with those on the model's own learned table:
    dense against dense, then every (rank, init) pair, on mean validation accuracy (test for the record); its own
    rank choices are `decision_rule`'s. Empty when that variant did not run."""
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


def _pays(speedup):
    """Whether a speedup shows the model pays: its lower bound above 1 where it has bounds (report.results.Speedup),
    else the speedup itself."""
    lower = getattr(speedup, "lower", None)
    return (speedup if lower is None else lower) > 1


def speedup_sentence(dtype, mode, cells, le="<=", times="x"):
    """One sentence that reads a speedup map {(rank, batch_size): speedup}: which ranks pay (speedup > 1, and its
    lower bound too where it has one) at which batch sizes, the best and worst measured, and the cells whose interval
    holds 1, which cannot be told from break-even. Generated from the numbers only, so it says what they say."""
    ranks, sizes = sorted({k for k, _ in cells}), sorted({b for _, b in cells})
    said = [(bs, _ranks_that_pay([k for k in ranks if (k, bs) in cells and _pays(cells[k, bs])],
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
    even = [f"rank {k} at batch {bs}" for (k, bs), v in sorted(cells.items(), key=lambda kv: kv[0][::-1])
            if getattr(v, "lower", None) is not None and v.lower <= 1 <= v.upper]
    return (f"In {dtype} {mode}, {'; '.join(clauses)} (best {best:.2f}{times} at rank {k_best}, batch {b_best}; "
            f"worst {worst:.2f}{times} at rank {k_worst}, batch {b_worst})."
            + (f" Not told apart from break-even (their interval holds 1): {', '.join(even)}." if even else ""))


@_latex
def speedup_text(maps):
    """Every (dtype, mode) of a study's speedup map in sentences, for the report (LaTeX math for <= and x)."""
    return " ".join(speedup_sentence(escape(dtype), escape(mode), cells, r"$\le$", r"$\times$")
                    for (dtype, mode), cells in maps.items())


@_latex
def where_low_rank_pays(svd_maps):
    """The conclusion's sentence: Study 1's speedup map read out, or that nothing was measured."""
    if not svd_maps:
        return "No inference benchmarks were run, so the report cannot say where low rank pays on this machine."
    return "For the factored MLP: " + speedup_text(svd_maps)
