"""The noisy-neighbour benchmark of the in-run ratios: N bench runs of the same checkpoints while the neighbour
(timing/neighbour.py) loads one core, then how far the paired and the unpaired speedups spread across the runs.

    python3 -m lowrank_bench.timing.experiment --profile smoke --out DIR [--runs 3] [--load cpu|memory] [-- -k svd]

Trains what DIR lacks first (without the neighbour), then runs `lowrank-bench bench --json DIR/neighbour-N.json`
N times with the neighbour running, and prints per figure: the largest `ceiling_efficiency`, and the spread
(max / min − 1 across the runs) of `speedup_paired` and of `speedup_vs_dense` at the median benchmark and the 90th
percentile. `--analyse FILE...` prints the same figures for files measured before.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from lowrank_bench.core.benchjson import by_fullname, load_bench


def spreads(files, field):
    """{fullname: max / min − 1 of `field` across the files}, for the benchmarks that have it in every file."""
    runs = [by_fullname(load_bench(f)) for f in files]
    out = {}
    for name in runs[0]:
        values = [r[name]["extra_info"].get(field) if name in r else None for r in runs]
        if None not in values:
            out[name] = max(values) / min(values) - 1
    return out


def analyse(files):
    lines = [f"{len(files)} runs: {', '.join(map(str, files))}"]
    efficiencies = [(b["extra_info"]["ceiling_efficiency"], b["fullname"]) for f in files
                    for b in load_bench(f)["benchmarks"] if b["extra_info"].get("ceiling_efficiency") is not None]
    if efficiencies:
        worst = max(efficiencies)
        lines.append(f"ceiling_efficiency: max {worst[0]:.3f} ({worst[1]}), above 1.05: "
                     f"{sum(e > 1.05 for e, _ in efficiencies)} of {len(efficiencies)}")
    for field in ("speedup_paired", "speedup_vs_dense"):
        s = spreads(files, field)
        if s:
            v = np.array(list(s.values()))
            lines.append(f"{field}: spread at the median benchmark {100 * np.median(v):.1f} %, 90th percentile "
                         f"{100 * np.quantile(v, 0.9):.1f} %, max {100 * v.max():.1f} % ({len(v)} benchmarks)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lowrank_bench.timing.experiment", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load", choices=("cpu", "memory"), default="cpu", help="the neighbour's busy phases")
    parser.add_argument("--analyse", nargs="+", type=Path, metavar="FILE", help="only print the figures of FILEs")
    args, rest = parser.parse_known_args(argv)
    pytest_args = ["--", *(a for a in rest if a != "--")] if rest else []
    if args.analyse:
        print(analyse(args.analyse))
        return 0
    cli = [sys.executable, "-m", "lowrank_bench.cli"]
    subprocess.run([*cli, "train", "all", "--profile", args.profile, "--out", str(args.out)], check=True)
    files = []
    for n in range(args.runs):
        neighbour = subprocess.Popen([sys.executable, "-m", "lowrank_bench.timing.neighbour", "--seconds", "3600",
                                      "--seed", str(n), "--load", args.load])
        try:
            files.append(args.out / f"neighbour-{n}.json")
            subprocess.run([*cli, "bench", "--profile", args.profile, "--out", str(args.out), "--json",
                            str(files[-1]), *pytest_args], check=True)
        finally:
            neighbour.terminate()
            neighbour.wait()
    print(analyse(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
