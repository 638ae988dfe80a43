"""The options every command shares, declared once for the command line and for `pytest bench`.

Each entry is (flag, argparse keywords); pytest's `addoption` takes the same keywords, so `lowrank-bench bench
--profile quick` and `pytest bench --profile quick` mean the same thing and cannot drift apart.
"""
COMMON = (
    ("--profile", dict(metavar="NAME|PATH", default="smoke",
                       help="smoke, quick, full, auto (full on CUDA, quick otherwise) or a PATH.toml of your own "
                            "with the same keys (default smoke)")),
    ("--set", dict(metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one profile key, the value in TOML: --set svd.ranks=[4,8,16] "
                        "--set attention.train.epochs=1 (repeatable)")),
    ("--device", dict(metavar="DEV", default="auto", choices=["auto", "cpu", "cuda"],
                      help="auto, cpu or cuda (default auto)")),
    ("--data-root", dict(metavar="DIR", default=None, dest="data_root",
                         help="data sets folder (default: $LOWRANK_DATA, else ~/.cache/lowrank-bench/data, "
                              "where missing data sets are fetched unless --offline)")),
    ("--out", dict(metavar="DIR", default="results", help="results folder; each profile writes to "
                                                          "OUT/<profile>/ (default results)")),
)


def add_common(add):
    """Declare the common options with `add`: an argparse parser's add_argument or a pytest group's addoption."""
    for flag, keywords in COMMON:
        add(flag, **keywords)


def as_argv(args):
    """The common options of parsed `args` as command-line words, to hand them on to `pytest bench`."""
    words = [f"--profile={args.profile}", f"--device={args.device}", f"--out={args.out}"]
    words += [f"--set={o}" for o in args.overrides]
    return words + ([f"--data-root={args.data_root}"] if args.data_root else [])
