"""The options every command shares, declared once for the command line and for `pytest bench`.

Each entry is (flag, argparse keywords); pytest's `addoption` takes the same keywords, so `lowrank-bench bench
--profile quick` and `pytest bench --profile quick` mean the same thing and cannot drift apart.
"""
import argparse
import os
from pathlib import Path

from lowrank_bench.core.spec import DTYPES, MODES

COMMON = (
    ("--profile", dict(metavar="NAME|PATH", default="smoke",
                       help="smoke, quick, full, auto (full on CUDA, quick otherwise) or a PATH.toml of your own "
                            "with the same keys (default smoke)")),
    ("--set", dict(metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one profile key, the value in TOML: --set svd.ranks=[4,8,16] "
                        "--set attention.train.epochs=1 (repeatable)")),
    ("--device", dict(metavar="DEV", default="auto", choices=["auto", "cpu", "cuda"],
                      help="auto, cpu or cuda (default auto)")),
    ("--data-root", dict(metavar="DIR", type=Path, default=None, dest="data_root",
                         help="data sets folder (default: $LOWRANK_DATA, else ~/.cache/lowrank-bench/data, "
                              "where missing data sets are fetched unless --offline)")),
    ("--out", dict(metavar="DIR", type=Path, default="results", help="results folder; each profile writes to "
                                                          "OUT/<profile>/ (default results)")),
)


def _axis(choices, what):
    """An argparse `type`: a comma-separated list of `choices`, each at most once."""
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values or len(set(values)) < len(values):
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list of distinct values from {', '.join(choices)}; "
                             f"got {text!r}")
        return values
    parse.__name__ = what  # argparse names the type in its error message
    return parse


# Default None: the profile's bench.dtypes/bench.modes, else the device's default (timing/measure.py AXES).
BENCH_AXES = (
    ("--dtypes", dict(metavar="LIST", default=None, type=_axis(DTYPES, "--dtypes"),
                      help="inference benchmarks in these dtypes, comma-separated from fp32, bf16, fp16 (default: "
                           "the profile's bench.dtypes, else fp32 on a CPU and all three on CUDA)")),
    ("--modes", dict(metavar="LIST", default=None, type=_axis(MODES, "--modes"),
                     help="and in these execution modes, from eager, compiled (torch.compile; CUDA graphs on CUDA) "
                          "(default: the profile's bench.modes, else eager on a CPU and both on CUDA)")),
)


def add_common(add):
    """Declare the common options with `add`: an argparse parser's add_argument or a pytest group's addoption."""
    for flag, keywords in COMMON:
        add(flag, **keywords)


def add_bench_axes(add):
    """Declare --dtypes and --modes (`pytest bench`, `lowrank-bench bench` and `run`)."""
    for flag, keywords in BENCH_AXES:
        add(flag, **keywords)


def absolute_paths(args):
    """Make every path of parsed `args` absolute, from the current folder, before anything runs: each option typed
    Path (or a list of them) and a `--profile PATH.toml`. Whatever runs later in another folder (the suites' pytest,
    the sweep's workers) then reads and writes where the user meant."""
    def absolute(path):
        return Path(os.path.abspath(Path(path).expanduser()))
    for key, value in vars(args).items():
        if isinstance(value, Path):
            setattr(args, key, absolute(value))
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            setattr(args, key, [absolute(v) for v in value])
    if (getattr(args, "profile", None) or "").endswith(".toml"):  # ab: None unless given
        args.profile = str(absolute(args.profile))
    return args


def as_argv(args):
    """The common options of parsed `args` as command-line words, to hand them on to `pytest bench`."""
    words = [f"--profile={args.profile}", f"--device={args.device}", f"--out={args.out}"]
    words += [f"--set={o}" for o in args.overrides]
    return words + ([f"--data-root={args.data_root}"] if args.data_root else [])


def bench_axes_argv(args):
    """--dtypes/--modes of parsed `args` as words for `pytest bench`; none where left to the profile."""
    return [f"--{name}={','.join(v)}" for name in ("dtypes", "modes") if (v := getattr(args, name, None))]
