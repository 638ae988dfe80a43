"""`lowrank-bench ab BASE HEAD`: is HEAD slower than BASE? Both commits' benchmarks, interleaved in one time window.

Each side runs its own code: a git worktree of its commit in a temporary folder (removed afterwards, on Ctrl-C
too) and --processes pytest processes in it, whose benchmarks take their rounds from this driver
(timing/abwire.py). For each benchmark both sides have, the driver asks for pairs of rounds, base and head back to
back in random order, so whatever the machine does lands on both rounds of a pair and cancels in the pair's ratio
head/base. What a pair does not cancel is a bias of one process (where its tensors landed in physical memory and
the caches: unchanged code once read +9.5 % over 512 pairs of one base and one head process), so base's k-th
process is paired with head's k-th, the pairings taking turns. After 16, 32, 64, … pairs per pairing it looks:
the median ratio, with each pairing's sign-test bounds taken together (timing/decide.py's `pairings_ratio`): FAIL
when every pairing's lower bound lies above 1 + --max-slowdown, ok when every upper bound lies at or below it. A
decided benchmark stops; an undecided one goes on until its share of --budget is spent (what earlier benchmarks
leave over goes to those after them) and then gets a last look. Every look of every benchmark tests at 5 % /
(benchmarks × looks), a Bonferroni split: however often the driver looks, the chance of any false FAIL in the run
stays at 5 %. A benchmark only one side has is timed for MIN_PAIRS rounds and reported, not compared.
"""
import math
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from lowrank_bench.core import proc
from lowrank_bench.core.io import UserError, atomic_path
from lowrank_bench.report.gate import add_time_options, exit_status
from lowrank_bench.timing import abwire
from lowrank_bench.timing.decide import ALPHA, FAIL, OK, UNDECIDED, pairings_ratio, verdict

SIDES = ("base", "head")
MIN_PAIRS = 16  # the first look: with fewer pairs the sign test decides nothing at the levels used here
LOOKS = tuple(MIN_PAIRS * 2 ** j for j in range(9))  # 16 … 4096 pairs, and one more when the budget ends
MIN_SPAN_S = 2.0  # no look before the pairs span this long: a neighbour's phase of a second must not decide alone
ROUND_S = 0.005  # a round repeats the call about this long: short, so both rounds of a pair see one machine
HELLO_S = 600  # how long a side may take to start and collect its tests before it counts as one without `ab`


def git(repo, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def resolve(cwd, revisions):
    """(repository root, `cwd` relative to it, {side: commit id}); UserError for what cannot be compared."""
    top = git(cwd, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UserError(f"{cwd}: not in a git repository; run `lowrank-bench ab` inside the repository whose commits "
                        f"it compares")
    root = Path(top.stdout.strip())
    commits = {}
    for side, rev in zip(SIDES, revisions):
        found = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if found.returncode != 0:
            raise UserError(f"{side} {rev!r}: not a commit of {root}; give a branch, tag or commit id")
        commits[side] = found.stdout.strip()
    return root, git(cwd, "rev-parse", "--show-prefix").stdout.strip(), commits


class Process:
    """One pytest process of a side: its socket and the benchmark it waits at (`current`, None once it ended)."""

    def __init__(self, side, index, folder, cwd, pytest_argv, cpus):
        self.side, self.name, self.current, self.tests = side, f"{side} process {index + 1}", None, []
        stem = folder / f"{side}{index + 1}"
        self.log, self.json = stem.with_suffix(".log"), stem.with_suffix(".json")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(stem.with_suffix(".sock")))
        self.listener.listen(1)
        env = {**os.environ, abwire.ENV: str(stem.with_suffix(".sock")), abwire.CPUS_ENV: ",".join(map(str, cpus))}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen([*pytest_argv, f"--benchmark-json={self.json}"], cwd=cwd, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.conn = None

    def accept(self):
        self.conn = Connection(self.listener.accept()[0].detach())
        kind, protocol, tests = self.conn.recv()
        if protocol != abwire.PROTOCOL:
            raise UserError(f"{self.side} speaks ab protocol {protocol}, this lowrank-bench {abwire.PROTOCOL}")
        self.tests = tests
        self.advance()

    def advance(self):
        """Wait for the next benchmark this process reaches (None: its session ended) and how long one call took."""
        try:
            _, self.current, self.once = self.conn.recv()
        except (EOFError, OSError):
            self.current = None

    def round(self, iterations) -> float:
        try:
            self.conn.send(("round", iterations))
            return self.conn.recv()
        except (EOFError, OSError):
            raise UserError(f"{self.name}: its pytest stopped while timing {self.current}; its output ends:\n"
                            f"{self.tail()}") from None

    def finish(self, others=()):
        """End this process's benchmark; `others`: per-call times its side's other processes measured, for its JSON."""
        self.conn.send(("done", list(others)))
        self.advance()

    def tail(self, lines=12) -> str:
        return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])


def connect(processes, labels):
    """Each process's hello; one whose pytest ends (or runs HELLO_S) without one lacks the protocol."""
    deadline = time.monotonic() + HELLO_S
    waiting = {process.listener: process for process in processes}
    while waiting:
        for listener in select.select(list(waiting), [], [], 0.5)[0]:
            waiting.pop(listener).accept()
        for process in waiting.values():
            if select.select([process.listener], [], [], 0)[0]:
                continue  # its hello came in the meantime (a side without benchmarks may then end at once)
            if process.process.poll() is not None or time.monotonic() > deadline:
                ended = process.process.poll()
                raise UserError(f"{process.name} ({labels[process.side]}): its pytest "
                                f"{f'ended (status {ended})' if ended is not None else f'ran {HELLO_S} s'} without "
                                f"speaking ab's protocol (a lowrank-bench plugin older than `ab`, or an error "
                                f"before its first test); its output ends:\n{process.tail()}")


def compare(pairings, limit, alpha, seconds, rng):
    """Pairs of rounds, taking the pairings of processes in turn, until a look decides or `seconds` are spent:
    (Ratio, verdict, [(base times, head times) per pairing])."""
    times = [([], []) for _ in pairings]
    once = max(process.once for pairing in pairings for process in pairing)
    iterations = max(1, math.ceil(ROUND_S / max(once, 1e-9)))  # the same on both sides
    start = time.monotonic()
    looks = iter(LOOKS)
    look = next(looks)
    while True:
        for pairing, (base_times, head_times) in zip(pairings, times):
            for process in rng.sample(pairing, 2):
                (head_times if process.side == "head" else base_times).append(process.round(iterations))
        n, now = len(times[0][0]), time.monotonic()
        last = now > start + seconds or n >= LOOKS[-1]
        if n >= look and not last:
            look = next(looks)
        elif not last:
            continue
        if last or now >= start + MIN_SPAN_S:  # a look skipped for a short span still counts in the error budget
            r = pairings_ratio(times, limit, alpha)
            v = verdict(r, limit)
            if v != UNDECIDED or last:
                return r, v, times


def current(processes):
    """The benchmark a side's processes wait at: they run the same tests in the same order."""
    ids = {process.current for process in processes}
    if len(ids) > 1:
        raise UserError(f"{processes[0].side}'s processes reached different benchmarks ("
                        f"{', '.join(sorted(map(str, ids)))}): a test that fails or skips in one process only; see "
                        f"its output with `pytest` in that commit")
    return ids.pop()


def drive(sides, budget, limit, rng, report):
    """Walk both sides' processes through their benchmarks in id order, comparing the shared ones; `report` gets
    each row. Returns the size of the family the error budget is split over (the tests both sides collected)."""
    base, head = sides
    shared = len(set(base[0].tests) & set(head[0].tests))
    alpha = ALPHA / max(1, shared) / (len(LOOKS) + 1)
    left, spent = shared, 0.0  # the budget pays for pairs only, not for a side's set-up between benchmarks
    while current(base) or current(head):
        if current(base) == current(head):
            start = time.monotonic()
            r, v, times = compare(list(zip(base, head)), limit, alpha, max(0.0, budget - spent) / max(1, left),
                                     rng)
            spent += time.monotonic() - start
            report(current(base), r, v, r.n, time.monotonic() - start)
            left -= 1
            for k, processes in enumerate(sides):  # the first process of a side writes the side's JSON
                processes[0].finish([t for pairing in times[1:] for t in pairing[k]])
                for process in processes[1:]:
                    process.finish()
        else:  # the side whose benchmark sorts first has it alone: the other has passed that id
            alone = base if current(head) is None or (current(base) is not None and current(base) < current(head)) \
                else head
            iterations = max(1, math.ceil(ROUND_S / max(alone[0].once, 1e-9)))
            times = [[process.round(iterations) for _ in range(math.ceil(MIN_PAIRS / len(alone)))]
                     for process in alone]  # every process times it, so each one's pytest-benchmark stats hold rounds
            report(current(alone), None, f"only in {alone[0].side}", sum(map(len, times)), 0.0)
            alone[0].finish([t for other in times[1:] for t in other])
            for process in alone[1:]:
                process.finish()
    return shared


def run(args) -> int:
    if args.budget <= 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget}")
    if args.processes < 1:
        raise UserError(f"--processes must be 1 or more, got {args.processes}")
    root, prefix, commits = resolve(Path.cwd(), (args.base, args.head))
    labels = {side: f"{rev} = {commits[side][:12]}" for side, rev in zip(SIDES, (args.base, args.head))}
    if git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        print(f"note: {root} has uncommitted changes; ab compares the commits as committed, without them")
    print(f"ab: base {labels['base']}, head {labels['head']}; budget {args.budget:g} s, allowed slowdown "
          f"{args.max_slowdown:.0%}, {args.processes} process(es) a side")
    pytest_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    if args.profile:  # the built-in suites: both sides read the checkpoints of one --profile/--out
        pytest_argv += [f"--profile={args.profile}", f"--out={args.out}"]
    # Every process times on the same cores (as many as a benchmark session uses): a neighbour that loads one core
    # then slows both rounds of a pair alike, where processes on different cores would see different neighbours.
    from lowrank_bench.timing.measure import default_threads  # torch: imported only when ab runs
    cpus = sorted(os.sched_getaffinity(0))[-default_threads():]
    rows, rng = [], random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="lowrank-ab-") as tmp:
        folder, sides = Path(tmp), []
        try:
            for side in SIDES:
                tree = folder / side
                added = git(root, "worktree", "add", "--detach", "--quiet", str(tree), commits[side])
                if added.returncode != 0:
                    raise UserError(f"git worktree add {commits[side][:12]}: {added.stderr.strip()}")
                sides.append([Process(side, i, folder, tree / prefix, pytest_argv, cpus)
                              for i in range(args.processes)])
            connect([process for processes in sides for process in processes], labels)
            start = time.monotonic()

            def report(name, r, v, n, seconds):
                rows.append((name, r, v, n))
                shown = "" if r is None else f"{r.ratio - 1:+7.1%} [{r.lower - 1:+.1%}, {r.upper - 1:+.1%}]"
                print(f"{name}  {shown}  {v}  {n} pairs  {seconds:.1f} s", flush=True)
            family = drive(sides, args.budget, 1 + args.max_slowdown, rng, report)
            for process in (process for processes in sides for process in processes):
                if process.process.wait() not in (0, 5):  # 5: pytest collected nothing
                    raise UserError(f"{process.name} ({labels[process.side]}): pytest exited "
                                    f"{process.process.returncode}; its output ends:\n{process.tail()}")
            if not rows:
                raise UserError("neither side timed a benchmark through the lowrank fixture (all deselected, or "
                                "tests without it?); nothing written")
            for processes in sides:
                with atomic_path(getattr(args, f"{processes[0].side}_json")) as path:
                    shutil.copyfile(processes[0].json, path)
        finally:
            for process in (process for processes in sides for process in processes):
                proc.end_group(process.process)
            for side in SIDES:
                git(root, "worktree", "remove", "--force", str(folder / side))
            git(root, "worktree", "prune")
    verdicts = [v for _, _, v, _ in rows]
    failed, undecided = verdicts.count(FAIL), verdicts.count(UNDECIDED)
    print(f"ab: {'FAIL' if failed else 'ok'}: {failed} slower than +{args.max_slowdown:.0%}, {verdicts.count(OK)} "
          f"ok, {undecided} undecided, {len(rows) - failed - undecided - verdicts.count(OK)} on one side only, in "
          f"{time.monotonic() - start:.0f} s; every look tested at 5 % / ({family} shared test(s) x {len(LOOKS) + 1} "
          f"looks) in each of {args.processes} pairing(s) of processes, a FAIL only where all of them fail, so any "
          f"false FAIL has at most 5 % chance; JSON: {args.base_json}, {args.head_json}")
    if undecided:
        print(f"undecided: the budget ended before the pairs could tell; give a larger --budget, or raise "
              f"--max-slowdown to what you must detect" + (" (counted as passing: --undecided pass)"
                                                         if args.undecided == "pass" else ""))
    return exit_status(failed, undecided, args.undecided)


def add_arguments(parser):
    parser.add_argument("base", metavar="BASE", help="the git revision to compare against (branch, tag, commit)")
    parser.add_argument("head", metavar="HEAD", help="the git revision that may be slower")
    parser.add_argument("--budget", metavar="SECONDS", type=float, default=300,
                        help="wall time for the paired rounds of all benchmarks together, after both sides have "
                             "started (default: %(default)s)")
    add_time_options(parser, default_slowdown=0.05)
    parser.add_argument("--profile", metavar="NAME|PATH", default=None,
                        help="for this project's built-in suites: the profile both sides benchmark (with --out)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                        help="with --profile: the results folder whose checkpoints both sides read; train them "
                             "first (default: %(default)s)")
    parser.add_argument("--base-json", metavar="PATH", type=Path, default=Path("ab-base.json"),
                        help="where base's pytest-benchmark JSON goes (default: %(default)s)")
    parser.add_argument("--head-json", metavar="PATH", type=Path, default=Path("ab-head.json"),
                        help="where head's pytest-benchmark JSON goes (default: %(default)s)")
    parser.add_argument("--processes", metavar="N", type=int, default=2,
                        help="pytest processes a side; pair k times base's k-th against head's k-th, and a benchmark "
                             "FAILs only when every pairing fails on its own: a bias of one process (where its "
                             "tensors landed in memory) cannot fail it alone (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the order within pairs (default: random)")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="passed on to both sides' pytest "
                                                                             "(after --)")
    return parser
