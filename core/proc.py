"""Child processes that end with us: `run` starts a command in a process group of its own and ends that group
when this process is told to stop.

A plain `subprocess.call` leaves the child running when the parent gets SIGTERM (the default action exits
at once, no cleanup), so a killed `bench` left pytest timing benchmarks against the next run and writing a
temporary file nobody removed. Here SIGTERM and SIGINT end the child's whole group (pytest and anything it
started) and then leave this process through an exception, so `atomic_path` and other `finally` blocks run.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

GRACE_S = 5  # how long the group gets to end on SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1  # prctl(2)


def end_group(proc):
    """End `proc`'s process group: SIGTERM, then SIGKILL after GRACE_S."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:  # the group ended on its own meanwhile
        proc.wait()


def _end_with_parent():
    """In the child before it runs: on Linux, SIGTERM when the parent dies, SIGKILL included (nothing else tells a
    child in a session of its own; pytest timed on for 11 s and then wrote into a file nobody would read)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run(cmd, *, capture=False, **popen_kwargs):
    """(exit status, stdout or None) of `cmd`, run in its own process group; SIGTERM or SIGINT to us end the
    group, then raise KeyboardInterrupt (SIGINT) or SystemExit(128 + signal) (SIGTERM) here."""
    out = subprocess.PIPE if capture else None
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_end_with_parent, stdout=out,
                            stderr=subprocess.STDOUT if capture else None,
                            text=capture, errors="replace" if capture else None, **popen_kwargs)

    def stop(signum, frame):
        # Only signal here: the interrupted proc.communicate() still holds the Popen's wait lock, so a wait in
        # the handler would deadlock. The `finally` below waits for the group once that frame has unwound.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        name = " ".join([Path(cmd[0]).name, *map(str, cmd[1:3])])
        print(f"\n{signal.Signals(signum).name}: ended `{name}` (pid {proc.pid}) and its children", file=sys.stderr)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set from there
        handlers = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stdout, _ = proc.communicate()
        return proc.returncode, stdout
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        end_group(proc)  # any other way out (an exception) must not leave the child behind either
