"""Ratios of times: timed in alternation while a benchmark runs (paired rounds), and the one ratio still derived
from two benchmarks' own stats once a session (or a `--repeat` pool) has run. No pytest or torch import.

Why paired: a ratio of two benchmarks timed seconds to minutes apart carries whatever the machine did in between
(on a shared 2-vCPU VM, a speedup moved by 55-76 % from run to run, and a "ceiling efficiency" read 2.09). So the
`lowrank` fixture times the model and its reference (and, in the SVD suite, the two GEMM chains that bound them)
in rounds: each round times every callable for one calibrated loop, one after the other, in an order rotated by
one place per round, so each callable holds every position equally often and no one of them always runs right
after the same other (a cache it warms, a frequency it raises). Whatever slows the machine for longer than a
round slows all of a round's loops alike and cancels in that round's ratio; the median over rounds discards the
rounds a short disturbance hit unevenly.

`paired_rounds` returns each callable's time in every round (its fastest call of the round's loop);
`paired_fields` turns them into `speedup_paired` (median over rounds of reference time / model time) with its
bounds (timing.decide.paired_ratio), and, with the two chains, `ceiling_speedup` (median of dense chain / factored chain)
and `ceiling_efficiency` (median over rounds of that round's speedup / that round's ceiling speedup).
"""
import math
import statistics
import time

from lowrank_bench.core.spec import STUDIES
from lowrank_bench.timing.decide import paired_ratio

MODEL, REFERENCE, CEILING_REFERENCE, CEILING_MODEL = "model", "reference", "ceiling_reference", "ceiling_model"
# One loop of one callable lasts about this long: enough calls of a fast callable that one of them runs undisturbed
# on a machine whose cores are shared (on the 2-vCPU VM at a load of 10, a 2.5 ms call's median time was 4 times
# its fastest; with 5 ms loops the speedups of such models still spread by 35-45 % from run to run), short enough
# that a round (all callables) seldom straddles a change of the machine's load. A slower call is one call per loop.
LOOP_SECONDS = 20e-3
# A benchmark's paired rounds last at least this long. A neighbour's busy and idle phases last seconds (the
# noisy neighbour, timing/neighbour.py, draws 1-5 s): two seconds put most benchmarks across at least one change of
# phase, so the median mixes the machine's states as a whole run does instead of catching one phase. The cost is
# about 2 s per inference benchmark (the README's table of what the smoke bench takes).
MIN_SECONDS = 2.0
MIN_ROUNDS = 20  # the sign test bounds a median of 20 by its 6th smallest and largest: informative, however slow
STUDY = "svd"  # the suite whose inference benchmarks get speedup_vs_dense from min times too, for comparison


def order(names, r):
    """The order of round `r`: `names` rotated left by r places."""
    r %= len(names)
    return [*names[r:], *names[:r]]


def _loop(fn, n, clock):
    """Seconds of the fastest of n calls of `fn`, each timed on its own: a neighbour that takes the core away
    only adds time to the calls it hits, and n calls in a row last about LOOP_SECONDS."""
    fastest = math.inf
    for _ in range(n):
        start = clock()
        fn()
        fastest = min(fastest, clock() - start)
    return fastest


def calibrate(fn, loop_seconds=LOOP_SECONDS, clock=time.perf_counter):
    """How many calls of `fn` make one loop of at least `loop_seconds` (one call at least), from its fastest of
    three calls."""
    return max(1, math.ceil(loop_seconds / max(_loop(fn, 3, clock), 1e-9)))


def paired_rounds(fns, *, seconds=MIN_SECONDS, min_rounds=MIN_ROUNDS, loop_seconds=LOOP_SECONDS,
                  clock=time.perf_counter):
    """{name: [seconds of its fastest call in round 0, 1, ...]} of the callables `fns` ({name: callable without
    arguments, synchronised where the device needs it}), timed in rounds as the module docstring says: after one warm-up call
    each and each one's calibration, rounds go on until `seconds` have passed and at least `min_rounds` ran, and
    end on a whole turn of the rotation so every order occurs equally often."""
    names = list(fns)
    for name in names:
        fns[name]()  # lazy initialisation and compilation stay out of the calibration
    calls = {name: calibrate(fns[name], loop_seconds, clock) for name in names}
    times = {name: [] for name in names}
    start, r = clock(), 0
    while r < min_rounds or clock() - start < seconds or r % len(names):
        for name in order(names, r):
            times[name].append(_loop(fns[name], calls[name], clock))
        r += 1
    return times


def paired_fields(times):
    """The ratios of paired rounds `times` (paired_rounds' output, or every run's rounds of a `--repeat` pool):
    speedup_paired, the median of reference / model over rounds, with the sign test's one-sided 95 % bounds
    (timing.decide.paired_ratio: exact for a median of independent rounds, whatever their distribution), and where
    the chains were timed, ceiling_speedup and ceiling_efficiency, each a median over rounds of that round's
    ratio."""
    bounds = paired_ratio(times[MODEL], times[REFERENCE], limit=1.0)  # head/base = reference/model
    out = {"speedup_paired": bounds.ratio, "speedup_paired_lower": bounds.lower, "speedup_paired_upper": bounds.upper}
    if CEILING_MODEL in times:
        speedup = [r / m for r, m in zip(times[REFERENCE], times[MODEL])]
        ceiling = [d / f for d, f in zip(times[CEILING_REFERENCE], times[CEILING_MODEL])]
        out |= {"ceiling_speedup": statistics.median(ceiling),
                "ceiling_efficiency": statistics.median([s / c for s, c in zip(speedup, ceiling)])}
    return out


def add_speedups(benchmarks):
    """Add speedup_vs_dense to the svd inference benchmarks in place: the dense model's min time over this one's,
    from the two benchmarks' own rounds, timed apart. It stays for comparison with speedup_paired (which the
    fixture wrote while the benchmark ran): on a shared machine it spreads far more from run to run."""
    # Only like with like: a bf16 or compiled model against the dense model of its own dtype and mode; methods that
    # share a rank are each their own model.
    key = lambda e: (e["method"], e["rank"], e["batch_size"], e.get("dtype"), e.get("mode"))
    reference = STUDIES[STUDY].reference
    infer = {key(e): b for b in benchmarks
             if (e := b.get("extra_info", {})).get("study") == STUDY and e.get("kind") == "infer"}
    for (method, k, *rest), b in infer.items():
        dense = infer.get((reference, None, *rest))
        if k is not None and dense is not None:
            b["extra_info"]["speedup_vs_dense"] = dense["stats"]["min"] / b["stats"]["min"]
