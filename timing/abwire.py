"""The wire between `lowrank-bench ab` (lowrank_bench/ab.py, the driver) and the pytest process of each side.

`ab` runs one pytest process per side (base, head), each in its own git worktree, with $LOWRANK_AB naming the
driver's socket. In such a process the plugin sorts the tests by id, so both sides meet the benchmarks they share
in the same order, and says hello with the ids it collected. Each benchmark that times through
`measure.run_timed` then waits for the driver instead of running pytest-benchmark's loop: it announces its id,
runs one round whenever the driver asks (the driver alternates the sides), and returns when the driver says the
benchmark is decided, with every round it ran in its pytest-benchmark stats, so the side's JSON holds them.
Messages are pickled tuples over a Unix socket (multiprocessing's Connection); the socket lies in a folder only
this user can enter.
"""
import math
import os
import socket
import time
from multiprocessing.connection import Connection

ENV = "LOWRANK_AB"
PROTOCOL = 1  # a side answers hello with this; the driver refuses another
ROUND_SECONDS = 0.005  # a round repeats the call until it lasts about this long: short, so a pair sees one machine

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


def serve(benchmark, timed):
    """Time `timed` in rounds the driver asks for; record them in `benchmark`'s stats; return `timed`'s result."""
    driver = _driver()
    driver.send(("bench", benchmark.fullname))
    start = time.perf_counter()
    result = timed()
    iterations = max(1, math.ceil(ROUND_SECONDS / max(time.perf_counter() - start, 1e-9)))
    rounds = []
    while driver.recv() == "round":
        start = time.perf_counter()
        for _ in range(iterations):
            result = timed()
        rounds.append(time.perf_counter() - start)
        driver.send(rounds[-1] / iterations)
    # pytest-benchmark's own record of a benchmark's rounds, as its loop would have filled it
    stats = benchmark._make_stats(iterations)
    benchmark._mode = "lowrank-bench ab"
    for t in rounds:
        stats.update(t)
    return result
