"""`lowrank-bench`: the command line. It parses options into configs and calls the code that does the work."""
import argparse
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from training.io import UserError, atomic_path, write_json

REPO = Path(__file__).resolve().parent.parent
STUDIES = ("svd", "lora", "attention")
# Wall times of a whole `run` per profile, as measured (README, "Profiles"); the help texts quote them.
RUN_TIMES = "smoke about 1.5 min, quick about 17-19 min (2-core CPU); full about 16 min (one H100)"
ABOUT = f"""\
Measure what low-rank weight decomposition buys a neural network: accuracy, latency, peak memory, FLOPs and
parameter count for every rank k, in three studies (truncated SVD of an MLP on Hoda digits, LoRA onto
Fashion-MNIST, low-rank attention on IMDB). `lowrank-bench run` trains, benchmarks, tabulates and writes a PDF
report; the data sets a profile needs are fetched on first use into ~/.cache/lowrank-bench/data.

A whole `run` takes: {RUN_TIMES}.
Profile auto = full on CUDA, quick otherwise."""
DATA_IN = "data sets from --data-root, else $LOWRANK_DATA, else ~/.cache/lowrank-bench/data (fetched if missing)"


def add_common(parser):
    from training.config import available_profiles
    parser.add_argument("--profile", metavar="NAME", default="smoke", choices=available_profiles(),
                        help="profile: %(choices)s (default %(default)s; auto = full on CUDA, quick otherwise)")
    parser.add_argument("--device", metavar="DEV", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto, cpu or cuda (default %(default)s)")
    parser.add_argument("--data-root", metavar="DIR", default=None,
                        help="data sets folder (default: $LOWRANK_DATA, else ~/.cache/lowrank-bench/data)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                        help="results folder; each profile writes to OUT/<profile>/ (default %(default)s)")


def add_offline(parser):
    parser.add_argument("--offline", action="store_true",
                        help="never fetch data (also HF_HUB_OFFLINE=1): a missing data set is an error")


def fetch_data(args, profile, studies):
    """The data root, with the data sets `studies` read under `profile` fetched into it if missing (not offline)."""
    from training.data import needed, resolve_root
    from training.download import ensure
    root = resolve_root(args.data_root)
    ensure(root, needed(profile, studies), offline=args.offline)
    return root


def profile_out(args):
    from training.config import load_profile
    profile = load_profile(args.profile, args.device)
    return profile, args.out / profile.name


def cmd_data(args):
    from training.data import check, resolve_root
    root = resolve_root(args.data_root)
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
    from training.studies import attention, lora, svd
    profile, out = profile_out(args)
    device = resolve_device(args.device)
    root = fetch_data(args, profile, studies)
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
    rc = subprocess.call(cmd, cwd=REPO)
    if rc != 0:
        raise UserError(f"the benchmark suite failed (pytest exit {rc}); {target} was left as it was")


def cmd_bench(args):
    profile, out = profile_out(args)
    target = getattr(args, "json", None) or out / "bench.json"
    repeat = getattr(args, "repeat", 1)
    if repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {repeat}")
    if any(a.startswith("--benchmark-json") for a in args.pytest_args):
        raise UserError("give the output file as `lowrank-bench bench --json PATH`, not --benchmark-json")
    fetch_data(args, profile, STUDIES)  # here, not in pytest: the suites (and the training they start) read it
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


def check_run(args):
    """What `run` needs, checked before it trains anything: a writable results (and report) folder, latexmk for
    the report unless --no-report, and the profile's data (fetched now if missing)."""
    from training.io import require_writable
    profile, out = profile_out(args)
    if not args.no_report:
        from report.latex import require_latexmk
        require_latexmk("; or pass --no-report to skip the PDF")
        require_writable(args.build_dir, "--build-dir")
    require_writable(out, "--out")
    fetch_data(args, profile, STUDIES)


def cmd_run(args):
    """Everything for one profile: train every study, benchmark, collect, build the report."""
    t0 = time.perf_counter()
    check_run(args)
    train_studies(STUDIES, args)
    args.pytest_args = []
    cmd_bench(args)
    _, out = profile_out(args)
    args.bench = [out / "bench.json"]
    cmd_collect(args)
    if args.no_report:
        print("report: skipped (--no-report), no PDF built; tables and figures are in " + str(out))
    else:
        cmd_report(args)
    print(f"run --profile {args.profile} finished in {time.perf_counter() - t0:.1f}s")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="lowrank-bench", description=ABOUT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`lowrank-bench COMMAND --help` says what a command reads and writes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, summary, reads, writes, takes):
        """A subcommand whose help says what it does, reads, writes and how long it takes."""
        return sub.add_parser(name, help=summary, description=summary,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n".join(textwrap.fill(f"{key:<8}{text}", 100, subsequent_indent=" " * 8)
                                                for key, text in (("reads:", reads), ("writes:", writes),
                                                                  ("takes:", takes))))

    p = command("data", "check or download the data sets",
                "the data root (--data-root, else $LOWRANK_DATA, else ~/.cache/lowrank-bench/data)",
                "--download: the missing files into the data root (about 60 MB for all four sets); --check: "
                "decoded arrays into $LOWRANK_CACHE",
                "--check: a few minutes the first time (decodes every record), seconds after; --download: as "
                "long as the network needs")
    add_common(p)
    p.add_argument("--check", action="store_true", help="decode every record and compare counts (default)")
    p.add_argument("--download", action="store_true", help="fetch missing data sets from their public homes")
    p.set_defaults(func=cmd_data)

    p = command("train", "train one study (or all) and write checkpoints and summary.json",
                DATA_IN + "; lora also reads svd's dense checkpoint",
                "OUT/<profile>/<study>/: checkpoints (safetensors + JSON) and summary.json",
                "all studies are most of `run`: " + RUN_TIMES)
    p.add_argument("study", choices=[*STUDIES, "all"], help="%(choices)s")
    add_common(p)
    add_offline(p)
    p.set_defaults(func=cmd_train)

    p = command("bench", "run the pytest-benchmark suites; JSON to OUT/<profile>/bench.json",
                DATA_IN + "; the checkpoints in OUT/<profile>/ (missing ones are trained first)",
                "OUT/<profile>/bench.json, or --json PATH (written atomically)",
                "a fraction of `run` per repeat when trained (smoke under a minute on a 2-core CPU); untrained, "
                "plus the training: " + RUN_TIMES)
    add_common(p)
    add_offline(p)
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="where the benchmark JSON goes (default OUT/<profile>/bench.json), written atomically")
    p.add_argument("--repeat", metavar="N", type=int, default=1,
                   help="run the suite N times, each in a fresh process, and pool them: min over all rounds, "
                        "other stats the median over runs; with `gate --stat min` what makes time gates hold on "
                        "a noisy machine (default %(default)s)")
    p.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="passed on to pytest (after --)")
    p.set_defaults(func=cmd_bench)

    from report import collect, gate, latex
    p = command("collect", "turn results and benchmark JSON into tables and figures",
                "OUT/<profile>/<study>/summary.json and the benchmark JSON files (default OUT/<profile>/bench.json)",
                "OUT/<profile>/tables/ (csv, md, tex), OUT/<profile>/figures/ (pdf, png), collected.json",
                "seconds for every profile")
    add_common(p)
    collect.add_arguments(p)
    p.set_defaults(func=cmd_collect)

    p = command("report", "build the LaTeX report into report/build/report.pdf",
                "what `collect` wrote (collected again when older than the results), report/templates/*.tex; "
                "needs latexmk",
                "report/build/ (or --build-dir): the .tex sources, figures and report.pdf",
                "under a minute for every profile")
    add_common(p)
    latex.add_arguments(p)
    p.set_defaults(func=cmd_report)

    p = command("gate", "compare two benchmark JSON files and fail on regressions",
                "BASE.json HEAD.json (pytest-benchmark JSON), or --expect FILE and HEAD.json",
                "a table on stdout; --write-expect FILE writes expectations. Exit 0 pass, 1 regression, "
                "2 unusable input. CI recipe: .ci/gate.sh",
                "under a second for every profile")
    gate.add_arguments(p)
    p.set_defaults(func=cmd_gate)

    p = command("run", "check prerequisites, then train every study, benchmark, collect and build the report",
                DATA_IN + "; needs latexmk unless --no-report (checked before anything trains)",
                "OUT/<profile>/ (checkpoints, summary.json, bench.json, tables/, figures/) and "
                "report/build/report.pdf",
                RUN_TIMES)
    add_common(p)
    add_offline(p)
    p.add_argument("--no-report", action="store_true",
                   help="skip the PDF (and the check for latexmk); everything else runs")
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
