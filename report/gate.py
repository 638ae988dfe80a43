"""Regression gate: compare two pytest-benchmark runs, or one run against expectations committed in the repo.

A/B mode, `lowrank-bench gate BASE.json HEAD.json`: joins the benchmarks on fullname and checks each metric in
its own direction and tolerance (latency and memory may grow by a fraction, accuracy may drop by some points,
parameter counts may not grow at all). Timings only compare on one machine, so a machine that differs fails the
time check unless --allow-different-machine, which turns time into information.

Time is decided on the per-round times (`stats.data`, which `--benchmark-json` always writes; a `bench --repeat`
pool keeps all its runs' rounds) by timing/decide.py's `shift_ratio`: the Hodges–Lehmann ratio head/base with
Mann–Whitney one-sided 95 % bounds, and the p-value of "head/base ≤ 1 + --max-slowdown". FAIL when that p-value,
Holm-adjusted over every benchmark's time check, is at most 5 % (so the chance of any false FAIL in the run stays
at 5 %); ok when the upper bound lies at or below the limit; undecided otherwise, counted, and failing with exit 3
under `--undecided fail` (the default). Two files measured at different times cannot cancel what the machine did
in between: a drift of the whole machine is a real difference of the two samples. `lowrank-bench ab BASE HEAD`
measures both sides interleaved, which cancels it. A file without per-round times (written with
--benchmark-save and no --benchmark-save-data, or by hand) gets the point rule on the median, head/base − 1 >
--max-slowdown, outside the family, and the summary says how many benchmarks were judged so.

Accuracy is decided too where the benchmarks carry per-example outcomes (the `lowrank` fixture's, stored beside the
JSON): head's paired difference of each model to its study's reference and its verdict at the margin it was run
with, as `collect` tabulates them; a model decided "worse" in head that was not in base fails.

Expectations mode, `--expect FILE HEAD.json`: checks what does not depend on the machine (accuracy floors,
exact parameter counts), so CI can gate it on any runner. `--write-expect FILE HEAD.json` writes that file.

Exit status: 0 pass, 1 regression (a benchmark only one side has counts as one unless --allow-missing), 3 no
regression but undecided time checks under `--undecided fail`, 2 unusable
input (not pytest-benchmark JSON; a NaN or infinity in a value the gate reads; fewer than 90 % of the base's
benchmarks found in head, which is what renamed ids look like and must never pass silently; a benchmark whose dtype
or mode differs between the two runs, since only like compares with like).
"""
import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowrank_bench.core.benchjson import axes, by_fullname, is_number, load_bench, machine_summary
from lowrank_bench.core.io import UserError, read_json, require_regular_target, write_json
from lowrank_bench.report import benchstudy, fmt
from lowrank_bench.report.results import load_benches
from lowrank_bench.timing.decide import FAIL, UNDECIDED, Ratio, holm, shift_ratio, verdict

MIN_MATCHED = 0.9
DRIFT_NOTE = ("two files measured at different times cannot cancel what the machine did in between; "
              "`lowrank-bench ab BASE HEAD` times both sides interleaved, in one time window")
PARAM_FIELDS = ("params_total", "params_trainable")
EXPECT_FORMAT = "lowrank-bench-expect/1"
EXPECT_KEYS = {"accuracy_min", *PARAM_FIELDS}


@dataclass
class Check:
    """One row of the table. `verdict` is "ok", "FAIL", "undecided" (time only: the bounds straddle the limit),
    or "info" (reported, not gated). `evidence`: a time check's ratio, until the family is decided."""
    benchmark: str
    metric: str
    base: str
    head: str
    change: str
    verdict: str
    evidence: Ratio | None = None


# ---- formatting -------------------------------------------------------------------------------------------

def _percent(v):
    return f"{fmt.pct(v)}%"


def _mib(v):
    return f"{fmt.mib(v)} MiB"


def _relative(base, head):
    """head / base - 1, defined for a zero base so growth from nothing is infinite, not a crash."""
    if base == 0:
        return 0.0 if head == 0 else math.inf
    return head / base - 1


def format_table(checks) -> str:
    cells = [("benchmark", "metric", "base", "head", "change", "verdict")]
    cells += [(c.benchmark, c.metric, c.base, c.head, c.change, c.verdict) for c in checks]
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- A/B mode ---------------------------------------------------------------------------------------------

@dataclass
class Metric:
    """How to read one metric from a benchmark and judge it. `worse(base, head)` is positive in the bad
    direction (slower, less accurate, bigger), and the check fails when it exceeds `limit`."""
    name: str
    get: Callable
    worse: Callable
    limit: float
    show: Callable
    show_change: Callable


def metrics(max_slowdown=0.15, max_acc_drop=0.5, max_mem_growth=0.10) -> list[Metric]:
    pct = lambda d: f"{d * 100:+.1f}%"  # noqa: E731
    extra = lambda field: lambda b: b.get("extra_info", {}).get(field)  # noqa: E731
    return [
        Metric("time", time_statistic, _relative, max_slowdown, fmt.seconds, pct),
        # Accuracies are fractions; tolerance and change are in points, as the studies report them.
        Metric("accuracy", extra("accuracy"), lambda b, h: (b - h) * 100, max_acc_drop, _percent,
               lambda d: f"{-d:+.2f} pt"),
        Metric("peak_mem", extra("peak_mem_bytes"), _relative, max_mem_growth, _mib, pct),
        *(Metric(f, extra(f), lambda b, h: h - b, 0, fmt.count, lambda d: f"{d:+,}") for f in PARAM_FIELDS),
    ]


def rounds(bench) -> np.ndarray | None:
    """A benchmark's per-round times (every run's, for a `bench --repeat` pool), or None when the file has none."""
    data = bench["stats"].get("data")
    return None if data is None else np.asarray(data, float)


def time_statistic(bench):
    """The median time, from the per-round times where the file has them."""
    data = rounds(bench)
    return bench["stats"].get("median") if data is None else float(np.median(data))


def time_check(name, base, head, m) -> Check:
    """One benchmark's time ratio from its rounds; the verdict waits for the family (`decide_times`)."""
    r = shift_ratio(rounds(base), rounds(head), 1 + m.limit)
    change = f"{r.ratio - 1:+.1%} [{r.lower - 1:+.1%}, {r.upper - 1:+.1%}]"
    return Check(name, m.name, m.show(time_statistic(base)), m.show(time_statistic(head)), change, UNDECIDED, r)


def decide_times(checks, limit):
    """Verdicts of the time checks judged on rounds, FAIL at Holm-adjusted p ≤ 5 % over all of them."""
    timed = [c for c in checks if c.evidence is not None]
    for c, p in zip(timed, holm([c.evidence.p for c in timed])):
        c.verdict = verdict(c.evidence, limit, p)
        c.change += f" p={p:.2g}"


def compare_pair(name, base, head, metric_list) -> list[Check]:
    """Check every metric of one benchmark present in both runs."""
    checks = []
    for m in metric_list:
        if m.name == "time" and rounds(base) is not None and rounds(head) is not None:
            checks.append(time_check(name, base, head, m))
            continue
        b, h = m.get(base), m.get(head)
        if b is None and h is None:
            continue  # not measured for this benchmark kind (e.g. accuracy of a bare GEMM)
        if h is None:  # a metric that disappears is a regression: it can no longer be watched
            checks.append(Check(name, m.name, m.show(b), "-", "missing in head", "FAIL"))
            continue
        if b is None:
            checks.append(Check(name, m.name, "-", m.show(h), "new", "info"))
            continue
        d = m.worse(b, h)
        verdict = "FAIL" if d > m.limit + 1e-9 else "ok"  # a drop of exactly the tolerance passes despite float noise
        checks.append(Check(name, m.name, m.show(b), m.show(h), m.show_change(d), verdict))
    return checks


def machine_checks(base, head, allow_different) -> list[Check]:
    """One row per machine fact that differs; a failure unless the user said timings are not gated."""
    b, h = machine_summary(base), machine_summary(head)
    return [Check("(machine)", label, str(b[label]), str(h[label]), "differs", "info" if allow_different else "FAIL")
            for label in b if b[label] != h[label]]


def machine_drift(base_by, head_by) -> float:
    """Median head/base time ratio over the matched benchmarks: how much slower the whole machine ran."""
    pairs = [(time_statistic(b), time_statistic(head_by[n])) for n, b in base_by.items() if n in head_by]
    ratios = sorted(h / b for b, h in pairs if b and h)
    return ratios[len(ratios) // 2] if ratios else 1.0


def _scaled(bench, factor):
    stats = {**bench["stats"], "median": bench["stats"]["median"] / factor}
    if "data" in stats:
        stats["data"] = [t / factor for t in stats["data"]]
    return {**bench, "stats": stats}


def check_rounds(bench, path):
    """Per-round times, where present, must be positive finite numbers."""
    for b in bench["benchmarks"]:
        data = b["stats"].get("data")
        if data is not None and (not isinstance(data, list) or not data or
                                 not all(is_number(t) and math.isfinite(t) and t > 0 for t in data)):
            raise UserError(f"{path}: benchmark {b['fullname']} has stats.data that is not a list of positive "
                            f"per-round times; rerun the benchmarks (lowrank-bench bench)")


def load_gated(path) -> dict:
    bench = load_bench(path)
    check_rounds(bench, path)
    return bench


def check_like_with_like(base_by, head_by, base_path, head_path):
    """Refuse to compare a benchmark across dtypes or modes: a bf16 row against an fp32 row (or compiled against
    eager) under one name measures the change of precision, not of the code, and would pass or fail for that."""
    for name, b in base_by.items():
        if name not in head_by:
            continue
        was, now = axes(b.get("extra_info", {})), axes(head_by[name].get("extra_info", {}))
        if was != now:
            raise UserError(f"{head_path}: benchmark {name} ran in {' '.join(now)} but in {' '.join(was)} in "
                            f"{base_path}; only like compares with like: gate two runs with the same --dtypes "
                            f"and --modes")


def gate_ab(base_path, head_path, args) -> int:
    base, head = load_gated(base_path), load_gated(head_path)
    base_by, head_by = by_fullname(base), by_fullname(head)
    if not base_by:
        raise UserError(f"{base_path}: holds no benchmarks; nothing to gate against")
    check_like_with_like(base_by, head_by, base_path, head_path)
    unmatched = [n for n in base_by if n not in head_by]
    added = [n for n in head_by if n not in base_by]
    for n in unmatched:
        print(f"unmatched: {n} (in base, not in head)")
    for n in added:
        print(f"new: {n} (in head, not in base)")
    matched = len(base_by) - len(unmatched)
    if matched < MIN_MATCHED * len(base_by):
        raise UserError(f"{head_path}: only {matched} of {len(base_by)} benchmarks of {base_path} found by fullname "
                        f"(< {MIN_MATCHED:.0%}); were ids renamed? rerun the base with the same suite")

    checks = machine_checks(base, head, args.allow_different_machine)
    # A benchmark only one side has can no longer be watched: a failure unless the user says the suites differ.
    one_sided = "info" if args.allow_missing else "FAIL"
    checks += [Check(n, "present", "yes", "-", "missing in head", one_sided) for n in unmatched]
    checks += [Check(n, "present", "-", "yes", "missing in base", one_sided) for n in added]
    gate_time = not (checks and args.allow_different_machine)
    ms = metrics(args.max_slowdown, args.max_acc_drop, args.max_mem_growth)
    drift = machine_drift(base_by, head_by) if args.normalize else 1.0
    if args.normalize:
        print(f"machine drift: head ran {drift:.3f}x base over all benchmarks; head times divided by it")
    for name, b in base_by.items():
        if name in head_by:
            checks += compare_pair(name, b, _scaled(head_by[name], drift), ms)
    decide_times(checks, 1 + args.max_slowdown)
    if not gate_time:
        for c in checks:
            c.verdict = "info" if c.metric == "time" else c.verdict
    checks += decision_checks(base_path, head_path)
    print(format_table(checks))
    failed = sum(c.verdict == FAIL for c in checks)
    undecided = sum(c.verdict == UNDECIDED for c in checks)
    point_rule = sum(rounds(b) is None or rounds(head_by[n]) is None for n, b in base_by.items() if n in head_by)
    if gate_time:
        time_note = f"time gated at +{args.max_slowdown:.0%}: FAIL when head/base lies above it at a Holm-adjusted " \
                    f"5 % over the {matched - point_rule} benchmarks with rounds, {undecided} undecided"
        if point_rule:
            time_note += f"; {point_rule} benchmark(s) without per-round times judged on the median alone"
    else:
        time_note = "time reported, not gated (different machine)"
    if gate_time:
        print(f"note: {DRIFT_NOTE}")
    print(f"gate: {'FAIL' if failed else 'ok'}, {failed} of {len(checks)} checks failed; "
          f"{matched}/{len(base_by)} base benchmarks matched, {len(added)} new; {time_note}")
    return exit_status(failed, undecided, args.undecided)


def exit_status(failed, undecided, policy) -> int:
    """0 pass, 1 a regression, 3 no regression but undecided checks under the policy `fail` (gate and ab alike)."""
    return 1 if failed else 3 if undecided and policy == "fail" else 0


def decisions(path) -> dict:
    """{fullname: report.benchstudy.DECIDED fields} of every benchmark of `path` decided from per-example outcomes
    against its study's reference; {} when none carries outcomes."""
    if not any(b.get("extra_info", {}).get("outcomes") for b in load_bench(path)["benchmarks"]):
        return {}
    rows, _ = load_benches([path])
    return {name: d for study in benchstudy.studies(rows)
            for name, d in benchstudy.decide(study, rows, path)[0].items()}


def decision_checks(base_path, head_path) -> list[Check]:
    """One row per benchmark of head decided against its study's reference (core/decision.py, as `collect`):
    FAIL when head is decided "worse" and base was not, undecided (counted with the time checks' undecided) when
    head cannot tell where base was "within", ok otherwise; the change is head's paired difference with its one-sided 95 % bounds."""
    base, head = decisions(base_path), decisions(head_path)
    checks = []
    for name, d in head.items():
        was = (base.get(name) or {}).get("verdict")
        verdict = FAIL if d["verdict"] == "worse" and was != "worse" else \
            UNDECIDED if d["verdict"] == "undecided" and was == "within" else "ok"
        change = f"{fmt.points(d['diff'])} [{fmt.points(d['diff_lower'])}, {fmt.points(d['diff_upper'])}] pt, " \
                 f"δ {d['margin_points']:g}"
        checks.append(Check(name, "verdict", was or "-", d["verdict"], change, verdict))
    return checks


# ---- expectations mode ------------------------------------------------------------------------------------

def load_expect(path) -> dict:
    """Load and check an expectations file (format EXPECT_FORMAT).

    {"format", "margin_points", "source", "benchmarks": {FULLNAME: ENTRY}, "selectors": [{"match": {FIELD:
    VALUE}, **ENTRY}]} where ENTRY holds any of "accuracy_min", "params_total", "params_trainable" (an empty entry
    only requires the benchmark to exist). A selector applies its entry to every benchmark whose extra_info has
    all the `match` fields ({"study": "svd", "kind": "infer", "rank": 4}) and must match at least one.
    """
    exp = read_json(path)
    write_hint = f"write it with `lowrank-bench gate --write-expect {path} BENCH.json`"
    if not isinstance(exp, dict) or exp.get("format") != EXPECT_FORMAT or not isinstance(exp.get("benchmarks"), dict):
        raise UserError(f"{path}: not a lowrank-bench expectations file (format {EXPECT_FORMAT}); {write_hint}")
    selectors = exp.setdefault("selectors", [])
    if not isinstance(selectors, list) or not all(isinstance(s, dict) and isinstance(s.get("match"), dict)
                                                  and s["match"] for s in selectors):
        raise UserError(f"{path}: 'selectors' must be a list of objects, each with a non-empty 'match' object")
    if not exp["benchmarks"] and not selectors:
        raise UserError(f"{path}: holds no expectations, so it would pass anything; {write_hint}")
    entries = [(key, entry) for key, entry in exp["benchmarks"].items()]
    entries += [(json.dumps(s["match"]), {k: v for k, v in s.items() if k != "match"}) for s in selectors]
    for key, entry in entries:
        if not isinstance(entry, dict) or entry.keys() - EXPECT_KEYS:
            raise UserError(f"{path}: entry {key} must be an object with only {sorted(EXPECT_KEYS)}")
        if any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in entry.values()):
            raise UserError(f"{path}: entry {key} holds a value that is not a finite number; {write_hint}")
    return exp


def expectations(exp, benches):
    """(what to call it in the table, the benchmarks it applies to, the entry) for every fullname and selector."""
    for name, entry in exp["benchmarks"].items():
        yield name, [benches[name]] if name in benches else [], entry
    for selector in exp["selectors"]:
        match = selector["match"]
        found = [b for b in benches.values() if all(b.get("extra_info", {}).get(f, object()) == v
                                                   for f, v in match.items())]
        yield json.dumps(match), found, {k: v for k, v in selector.items() if k != "match"}


def expect_checks(exp, head) -> list[Check]:
    checks = []
    for key, found, entry in expectations(exp, by_fullname(head)):
        if not found:
            checks.append(Check(key, "present", "expected", "missing", "", "FAIL"))
        for b in found:
            extra = b.get("extra_info", {})
            if "accuracy_min" in entry:
                floor, acc = entry["accuracy_min"], extra.get("accuracy")
                ok = acc is not None and acc >= floor
                checks.append(Check(b["fullname"], "accuracy", f">= {_percent(floor)}",
                                    "-" if acc is None else _percent(acc),
                                    "missing" if acc is None else f"{(acc - floor) * 100:+.2f} pt",
                                    "ok" if ok else "FAIL"))
            for f in PARAM_FIELDS:
                if f in entry:  # exact: a parameter count that moves either way means the model changed
                    want, got = entry[f], extra.get(f)
                    checks.append(Check(b["fullname"], f, fmt.count(want), fmt.count(got),
                                        "missing" if got is None else f"{got - want:+,}",
                                        "ok" if got == want else "FAIL"))
    return checks


def gate_expect(expect_path, head_path) -> int:
    exp, head = load_expect(expect_path), load_bench(head_path)
    checks = expect_checks(exp, head)
    print(format_table(checks))
    failed = sum(c.verdict == "FAIL" for c in checks)
    missing = sum(c.metric == "present" for c in checks)
    print(f"gate: {'FAIL' if failed else 'ok'}, {failed} of {len(checks)} checks failed against {expect_path} "
          f"({missing} expected benchmark(s) missing)")
    return 1 if failed else 0


def write_expect(path, head, head_path, margin_points) -> int:
    """Write expectations for every benchmark of `head`: accuracy floors `margin_points` below the measured
    value (rounded down to 0.01 point), exact parameter counts. Returns the number of entries."""
    entries = {}
    for b in head["benchmarks"]:
        extra, entry = b.get("extra_info", {}), {}
        if extra.get("accuracy") is not None:
            floor = math.floor(round((extra["accuracy"] * 100 - margin_points) * 100, 6)) / 10_000
            entry["accuracy_min"] = max(0.0, floor)
        entry |= {f: extra[f] for f in PARAM_FIELDS if extra.get(f) is not None}
        entries[b["fullname"]] = entry
    if not entries:
        raise UserError(f"{head_path}: holds no benchmarks; nothing to write to {path}")
    commit = head.get("commit_info") or {}
    write_json(path, {"format": EXPECT_FORMAT, "margin_points": margin_points,
                      "source": {"bench": str(head_path), "commit": commit.get("id"), "datetime": head.get("datetime")},
                      "benchmarks": entries})
    return len(entries)


# ---- command line -----------------------------------------------------------------------------------------

def _non_negative(s, parse, example):
    """Parse an option value; negative tolerances make no sense and are refused here, not at the end."""
    try:
        v = parse(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not {example}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{s!r} must be >= 0")
    return v


def _fraction(s):
    """'0.15' or '15%' -> 0.15."""
    return _non_negative(s, lambda t: float(t[:-1]) / 100 if t.endswith("%") else float(t),
                         "a fraction (e.g. 0.15 or 15%)")


def _points(s):
    return _non_negative(s, float, "a number of accuracy points (e.g. 0.5)")


def add_time_options(parser, default_slowdown):
    """--max-slowdown and --undecided, shared by `gate` and `ab`."""
    parser.add_argument("--max-slowdown", metavar="FRACTION", type=_fraction, default=default_slowdown,
                        help="fail when head/base time lies above 1 + this with its one-sided bound, at a 5%% "
                             "family-wise level over all benchmarks, 0.05 or 5%%; ok when the upper bound "
                             "lies at or below it, else undecided (default: %(default)s)")
    parser.add_argument("--undecided", choices=["pass", "fail"], default="fail",
                        help="what undecided time checks mean when nothing regressed: fail exits 3, pass exits 0 "
                             "(default: %(default)s)")


def add_arguments(parser):
    """The gate's options, on any parser (the lowrank-bench CLI adds them to its `gate` subcommand)."""
    parser.add_argument("bench", nargs="+", metavar="BENCH.json", type=Path,
                        help="BASE.json HEAD.json to compare; HEAD.json alone with --expect or --write-expect")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--expect", metavar="FILE", type=Path, default=None,
                      help="check HEAD.json against committed expectations (accuracy floors, exact parameter "
                           "counts) instead of a base run; machine independent, for CI")
    mode.add_argument("--write-expect", metavar="FILE", type=Path, default=None,
                      help="write expectations for every benchmark of HEAD.json to FILE (atomically) and exit")
    parser.add_argument("--margin", metavar="POINTS", type=_points, default=2.0,
                        help="with --write-expect: accuracy floor = measured accuracy minus POINTS "
                             "(default: %(default)s)")
    add_time_options(parser, default_slowdown=0.15)
    parser.add_argument("--max-acc-drop", metavar="POINTS", type=_points, default=0.5,
                        help="fail when accuracy drops by more than this many percentage points "
                             "(default: %(default)s)")
    parser.add_argument("--max-mem-growth", metavar="FRACTION", type=_fraction, default=0.10,
                        help="fail when peak memory grows by more than this fraction (default: %(default)s)")
    parser.add_argument("--normalize", action="store_true", default=False,
                        help="divide head times by the median head/base time ratio over all benchmarks, so a "
                             "machine-wide drift cancels and only relative regressions fail (a slowdown of "
                             "every benchmark alike then passes)")
    parser.add_argument("--allow-missing", action="store_true", default=False,
                        help="report benchmarks that only base or only head has instead of failing (the 90%% "
                             "match floor still holds)")
    parser.add_argument("--allow-different-machine", action="store_true", default=False,
                        help="when machine_info differs (cpu, gpu, threads, torch), report time instead of "
                             "failing; other metrics stay gated")
    return parser


def run(args) -> int:
    """Dispatch on the mode; raises UserError for bad input (the CLI prints it, exit 2)."""
    single = args.expect or args.write_expect
    if len(args.bench) != (1 if single else 2):
        raise UserError(f"gate takes BASE.json HEAD.json, or one HEAD.json with --expect/--write-expect; "
                        f"got {len(args.bench)} file(s)")
    if args.write_expect:
        require_regular_target(args.write_expect, "--write-expect")
        head = load_bench(args.bench[0])
        n = write_expect(args.write_expect, head, args.bench[0], args.margin)
        print(f"wrote {n} expectations to {args.write_expect} (accuracy floors {args.margin} points below "
              f"{args.bench[0]})")
        return 0
    if args.expect:
        return gate_expect(args.expect, args.bench[0])
    return gate_ab(args.bench[0], args.bench[1], args)


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="lowrank-bench gate", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
