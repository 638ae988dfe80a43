"""`lowrank-bench`: the command line. It parses options into configs and calls the code that does the work."""
import argparse
import sys
import time
from pathlib import Path

from training import proc
from training.io import UserError, atomic_path, require_writable_dir, write_json

REPO = Path(__file__).resolve().parent.parent
STUDIES = ("svd", "lora", "attention")


def add_common(parser):
    from training.config import available_profiles
    parser.add_argument("--profile", metavar="NAME", default="smoke", choices=available_profiles(),
                        help="profile: %(choices)s (default %(default)s; auto = full on CUDA, quick otherwise)")
    parser.add_argument("--device", metavar="DEV", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto, cpu or cuda (default %(default)s)")
    parser.add_argument("--data-root", metavar="DIR", default=None,
                        help="data sets folder (default: $LOWRANK_DATA, else ./data)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                        help="results folder; each profile writes to OUT/<profile>/ (default %(default)s)")


def require_cache():
    from training.data import cache_dir
    require_writable_dir(cache_dir(), "cache folder (LOWRANK_CACHE)")


def profile_out(args):
    from training.config import load_profile
    profile = load_profile(args.profile, args.device)
    return profile, args.out / profile.name


def cmd_data(args):
    from training.data import check, resolve_root
    root = resolve_root(args.data_root)
    require_cache()
    if args.download:
        from training.download import download
        for path in download(root):
            print(f"downloaded {path}")
    if args.check or not args.download:
        t0 = time.perf_counter()
        table, ok = check(root)
        print(table)
        print(f"data check {'passed' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f}s ({root})")
        return 0 if ok else 1
    return 0


def train_studies(studies, args):
    from training.config import resolve_device
    from training.data import resolve_root
    from training.studies import attention, lora, svd
    profile, out = profile_out(args)
    device, root = resolve_device(args.device), resolve_root(args.data_root)
    for folder in (args.out, out):  # before any training: a bad --out must not cost minutes of it
        require_writable_dir(folder, "--out")
    require_cache()
    modules = {"svd": svd, "lora": lora, "attention": attention}
    for study in studies:
        t0 = time.perf_counter()
        print(f"== train {study} (profile {profile.name}, device {device}) ==")
        modules[study].run(profile, root=root, out=out, device=device)
        print(f"== {study} done in {time.perf_counter() - t0:.1f}s, results in {out / study} ==")
    return 0


def cmd_train(args):
    return train_studies(STUDIES if args.study == "all" else [args.study], args)


def run_suite(args, profile, json_path, target):
    """One `pytest bench` process writing its JSON to `json_path`; `target` is what the user will be told about."""
    cmd = [sys.executable, "-m", "pytest", str(REPO / "bench"), "-q", f"--profile={profile.name}",
           f"--device={args.device}", f"--out={args.out}", f"--benchmark-json={json_path}", *args.pytest_args]
    if args.data_root:
        cmd.append(f"--data-root={args.data_root}")
    print("$ " + " ".join(cmd))
    rc, _ = proc.run(cmd, cwd=REPO)
    if rc != 0:
        raise UserError(f"the benchmark suite failed (pytest exit {rc}); {target} was left as it was")
    # pytest exits 0 when every benchmark was skipped or deselected (--co, --benchmark-skip), leaving the file
    # empty: only a run that measured something may replace the target.
    from report.benchjson import load_bench
    if Path(json_path).stat().st_size == 0:
        raise UserError(f"pytest wrote no benchmark results (all skipped or deselected?); {target} was left as it was")
    try:
        measured = load_bench(json_path)["benchmarks"]
    except UserError as e:
        raise UserError(f"pytest wrote no valid benchmark JSON ({e}); {target} was left as it was") from None
    if not measured:
        raise UserError(f"pytest measured no benchmark (all skipped or deselected?); {target} was left as it was")


def cmd_bench(args):
    from training.config import resolve_device
    profile, out = profile_out(args)
    resolve_device(args.device)  # --device cuda without CUDA would skip every benchmark: refuse it here
    target = getattr(args, "json", None) or out / "bench.json"
    repeat = getattr(args, "repeat", 1)
    if repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {repeat}")
    if any(a.startswith("--benchmark-json") for a in args.pytest_args):
        raise UserError("give the output file as `lowrank-bench bench --json PATH`, not --benchmark-json")
    if Path(target).is_dir():
        raise UserError(f"--json {target} is a folder; give a file path such as {Path(target) / 'bench.json'}")
    require_writable_dir(Path(target).parent, "--json's folder" if getattr(args, "json", None) else "--out")
    with atomic_path(target) as tmp:  # pytest-benchmark writes in place; an interrupted run keeps the old file
        if repeat == 1:
            run_suite(args, profile, tmp, target)
        else:
            from report.benchjson import load_bench
            from report.pool import pool_runs
            runs = [tmp.with_name(f"{tmp.name}.run{i}") for i in range(1, repeat + 1)]
            try:
                for i, run_json in enumerate(runs, 1):
                    print(f"== benchmark run {i} of {repeat}, in a fresh process ==")
                    run_suite(args, profile, run_json, target)
                write_json(tmp, pool_runs([load_bench(r) for r in runs], runs))
            finally:
                for run_json in runs:
                    run_json.unlink(missing_ok=True)
    pooled = f" (pooled from {repeat} runs in separate processes)" if repeat > 1 else ""
    print(f"benchmark results in {target}{pooled}")
    return 0


def cmd_collect(args):
    from report import collect
    return collect.main(args)


def cmd_report(args):
    from report import latex
    return latex.main(args)


def cmd_gate(args):
    from report import gate
    return gate.run(args)


def cmd_run(args):
    """Everything for one profile: train every study, benchmark, collect, build the report."""
    t0 = time.perf_counter()
    train_studies(STUDIES, args)
    args.pytest_args = []
    cmd_bench(args)
    _, out = profile_out(args)
    args.bench = [out / "bench.json"]
    cmd_collect(args)
    cmd_report(args)
    print(f"run --profile {args.profile} finished in {time.perf_counter() - t0:.1f}s")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="lowrank-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="check or download the data sets")
    add_common(p)
    p.add_argument("--check", action="store_true", help="decode every record and compare counts (default)")
    p.add_argument("--download", action="store_true", help="fetch missing data sets from their public homes")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train one study (or all) and write checkpoints and summary.json")
    p.add_argument("study", choices=[*STUDIES, "all"], help="%(choices)s")
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="run the pytest-benchmark suites; JSON to OUT/<profile>/bench.json")
    add_common(p)
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="where the benchmark JSON goes (default OUT/<profile>/bench.json), written atomically")
    p.add_argument("--repeat", metavar="N", type=int, default=1,
                   help="run the suite N times, each in a fresh process, and pool them: min over all rounds, "
                        "other stats the median over runs; with `gate --stat min` what makes time gates hold on "
                        "a noisy machine (default %(default)s)")
    p.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="passed on to pytest (after --)")
    p.set_defaults(func=cmd_bench)

    from report import collect, gate, latex
    p = sub.add_parser("collect", help="turn results and benchmark JSON into tables and figures")
    add_common(p)
    collect.add_arguments(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("report", help="build the LaTeX report into report/build/report.pdf")
    add_common(p)
    latex.add_arguments(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("gate", help="compare two benchmark JSON files and fail on regressions")
    gate.add_arguments(p)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("run", help="train every study, benchmark, collect and build the report")
    add_common(p)
    collect.add_arguments(p)
    latex.add_arguments(p)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results already written are intact", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
