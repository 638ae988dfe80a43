"""The noisy neighbour: random busy and idle phases, bounded in time, gone on SIGTERM."""
import signal
import subprocess
import sys
import time

import pytest

from lowrank_bench.timing.neighbour import PHASE_SECONDS, phases


def test_phases_alternate_from_busy_and_fill_the_time_exactly():
    got = phases(60, seed=3)
    assert [busy for busy, _ in got] == [i % 2 == 0 for i in range(len(got))]
    assert sum(d for _, d in got) == pytest.approx(60)
    assert all(PHASE_SECONDS[0] <= d <= PHASE_SECONDS[1] for _, d in got[:-1]) and 0 < got[-1][1] <= PHASE_SECONDS[1]
    assert got == phases(60, seed=3) and got != phases(60, seed=4)


@pytest.mark.parametrize("load", ["cpu", "memory"])
def test_it_ends_by_itself(load):
    done = subprocess.run([sys.executable, "-m", "lowrank_bench.timing.neighbour", "--seconds", "0.3", "--load", load],
                          timeout=60)
    assert done.returncode == 0


def test_sigterm_ends_it_at_once():
    proc = subprocess.Popen([sys.executable, "-m", "lowrank_bench.timing.neighbour", "--seconds", "600"])
    time.sleep(1)  # past the interpreter's start, inside a phase
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # not the 600 s it was asked for


def test_a_bad_duration_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "lowrank_bench.timing.neighbour", "--seconds", "-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--seconds must be a positive number" in done.stderr
