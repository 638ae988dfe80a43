"""A noisy neighbour: one core loaded in random busy and idle phases, for measuring timing under a shared machine.

    python3 -m lowrank_bench.timing.neighbour --seconds 600 --seed 1 [--load cpu|memory]

Phases alternate busy, idle, busy, ..., each lasting a random 1-5 s (uniform; `--seed` repeats the sequence), the
time scale on which a CI runner's neighbours come and go: long enough that a whole benchmark (or a whole side of
an unpaired A/B comparison) can fall into one phase, short enough that a run of a minute sees several. `cpu` spins
the interpreter (one core, little memory traffic); `memory` streams a 64 MiB array through the caches, which also
contends for the memory bandwidth the benchmarked process shares. It ends by itself after `--seconds` and at once
on SIGTERM or SIGINT, and loads one core only: one process, no threads.
"""
import argparse
import random
import signal
import sys
import time

PHASE_SECONDS = (1.0, 5.0)
STREAM_BYTES = 64 * 2 ** 20  # well beyond the last-level cache, so every pass goes to memory


def phases(seconds, seed):
    """[(busy, duration)] alternating from busy, whose durations sum to `seconds` (the last one cut short)."""
    rng, out, left, busy = random.Random(seed), [], seconds, True
    while left > 0:
        duration = min(left, rng.uniform(*PHASE_SECONDS))
        out.append((busy, duration))
        left -= duration
        busy = not busy
    return out


def _spin(until):
    while time.monotonic() < until:
        sum(range(10_000))


def _stream(until):
    import numpy as np

    a = np.ones(STREAM_BYTES // 8)
    while time.monotonic() < until:
        a *= 1.0000001  # read and write every element: memory traffic, not arithmetic


def run(seconds, seed, load="cpu"):
    work = {"cpu": _spin, "memory": _stream}[load]
    for busy, duration in phases(seconds, seed):
        until = time.monotonic() + duration
        if busy:
            work(until)
        else:
            time.sleep(max(0.0, until - time.monotonic()))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lowrank_bench.timing.neighbour", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, required=True, help="how long it runs before it ends by itself")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phases' random durations")
    parser.add_argument("--load", choices=("cpu", "memory"), default="cpu",
                        help="what a busy phase does: spin one core, or stream memory (default %(default)s)")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds must be a positive number, got {args.seconds}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.seconds, args.seed, args.load)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
