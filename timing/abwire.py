"""The wire between `lowrank-bench ab` (lowrank_bench/ab.py, the driver) and the pytest process of each side.

`ab` runs pytest processes for each side (base, head), in that side's git worktree, with $LOWRANK_AB naming
the driver's socket. In such a process the plugin sorts the tests by id, so both sides meet the benchmarks they share
in the same order, and says hello with the ids it collected. Each benchmark that times through
`measure.run_timed` then waits for the driver instead of running pytest-benchmark's loop: it announces its id and
how long one call took, runs one round whenever the driver asks (the driver alternates the sides), and returns
when the driver says the benchmark is decided, with every round in its pytest-benchmark stats: its own, and those
the driver hands it from the side's other processes, so the side's JSON holds all of them.
Messages are pickled tuples over a Unix socket (multiprocessing's Connection); the socket lies in a folder only
this user can enter.
"""
import os
import socket
import time
from multiprocessing.connection import Connection

ENV = "LOWRANK_AB"
CPUS_ENV = "LOWRANK_AB_CPUS"  # the cores every process of a run times on
PROTOCOL = 2  # a side answers hello with this; the driver refuses another

_connection = None


def active() -> bool:
    return bool(os.environ.get(ENV))


def _driver() -> Connection:
    global _connection
    if _connection is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.environ[ENV])
        _connection = Connection(sock.detach())
    return _connection


def hello(test_ids):
    """Tell the driver this side speaks the protocol and which tests it collected (in the order it runs them)."""
    _driver().send(("hello", PROTOCOL, list(test_ids)))


def _set_affinity(cores: dict) -> dict:
    """Set each thread's cores, {thread id: cores}; return what each had. A thread that ended meanwhile is left
    out."""
    before = {}
    for tid, cpus in cores.items():
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            before.pop(tid, None)
    return before


def serve(benchmark, timed):
    """Time `timed` in the rounds the driver asks for; record them in `benchmark`'s stats; return `timed`'s result.

    Every round starts with one untimed call, so it times warm calls even though the other side just ran on the
    same core, and repeats the call as often as the driver says: the same count on both sides of a pair. The rounds
    run on the driver's cores; between benchmarks the process has all its cores back, so the set-up of every
    process of the run (loading, accuracy, memory) spreads over the machine instead of queueing on those."""
    driver = _driver()
    cpus = {int(c) for c in os.environ[CPUS_ENV].split(",")}
    pinned = _set_affinity({int(tid): cpus for tid in os.listdir("/proc/self/task")})  # torch's pool too
    start = time.perf_counter()
    result = timed()
    driver.send(("bench", benchmark.fullname, time.perf_counter() - start))
    rounds, iterations = [], 1
    while (message := driver.recv())[0] == "round":
        iterations = message[1]
        timed()
        start = time.perf_counter()
        for _ in range(iterations):
            result = timed()
        rounds.append(time.perf_counter() - start)
        driver.send(rounds[-1] / iterations)
    _set_affinity(pinned)
    others = message[1]  # ("done", per-call times of the side's other processes)
    # pytest-benchmark's own record of a benchmark's rounds, as its loop would have filled it
    stats = benchmark._make_stats(iterations)
    benchmark._mode = "lowrank-bench ab"
    for t in [*rounds, *(t * iterations for t in others)]:
        stats.update(t)
    return result
