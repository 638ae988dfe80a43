"""Where sweep jobs run: in this process, in N local worker processes, or as Ray tasks on a cluster.

Every executor runs the same function (`training.jobs.execute`) and hands its result back to the driver, which
alone writes files. The interface is three calls: `submit(job, inputs)` returns a handle, `wait(handles)` returns
the finished ones (at least one), `result(handle)` its dict.
"""
import concurrent.futures
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time

import psutil
import torch

from lowrank_bench.core.io import UserError
from lowrank_bench.training.jobs import execute, remove_stale_job_folders

RAY_INSTALL = "pip install 'lowrank-bench[ray]'"


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_jobs(device):
    """`--jobs auto`: on a CPU two workers when there are two cores or more, else one; on CUDA two per visible GPU.

    Measured (README, "Parallel sweeps"): on 2 CPU cores the smoke sweep's small jobs leave a core idle between
    their single-threaded stretches (data loading, evaluation, checkpointing), so two one-thread workers beat one
    two-thread worker; more workers than cores only oversubscribe. On a GPU one worker leaves it idle between kernel
    launches of a small model; two overlap them."""
    if torch.device(device).type == "cuda":
        return 2 * max(1, torch.cuda.device_count())
    return 2 if cores() >= 2 else 1


WORKER_BYTES = 1 << 30  # what one worker may hold: torch, a job's data set and models (smoke and quick stay below)


def capped(n):
    """`n` workers, or as many as this machine runs side by side, said in a line: one per core (more only queue)
    and WORKER_BYTES of available memory each (more get killed)."""
    memory = psutil.virtual_memory().available
    most = min(cores(), max(1, int(memory // WORKER_BYTES)))
    if n > most:
        why = f"{cores()} cores" if most == cores() else f"{memory / 2**30:.1f} GiB of memory available, " \
                                                           f"{WORKER_BYTES / 2**30:g} GiB per worker"
        print(f"--jobs {n}: capped at {most} ({why})", file=sys.stderr)
    return min(n, most)


def threads_per_worker(n, device):
    """Torch threads per job. On the CPU always one: a job's arithmetic then does not depend on how many jobs run
    beside it (the smoke profile's checkpoints differed bit for bit between 2 threads and 1, through the GEMM and SVD
    kernels' blocking), and one thread per job never oversubscribes N <= cores workers; parallelism comes from
    --jobs. On CUDA the GPU does the work: the cores are shared out, cores // n each."""
    return max(1, cores() // n) if torch.device(device).type == "cuda" else 1


class InProcess:
    """`--jobs 1`: jobs run one at a time in this process, with every core."""

    slots = 1  # jobs handed over at a time: more would only queue, and the progress line counts them as running

    def __init__(self, profile, root, device):
        self.args = profile, root, device

    def describe(self):
        return "1 job at a time in this process"

    def submit(self, job, inputs):
        return lambda: execute(job, *self.args, inputs, threads=threads_per_worker(1, self.args[2]))

    def wait(self, handles):
        return handles[:1]  # run when its result is asked for: one at a time, the progress line after each

    def result(self, handle):
        return handle()

    def close(self, abort=False):
        """Release the executor; `abort` (an interrupt, an error) ends running jobs instead of waiting for them."""


WATCH_S = 1.0  # how often a worker checks that its driver is alive


def _watch_driver(driver):
    """End this worker once its driver is gone (SIGKILL, a crash: nothing tells the pool), removing the job folder
    it was using: otherwise it stays, blocked on the pool's queue or finishing a job no one will read, holding its
    memory and keeping the resource tracker alive. A dead driver's children are re-parented, so the parent id
    changes."""
    while os.getppid() == driver:
        time.sleep(WATCH_S)
    remove_stale_job_folders(pid=os.getpid())
    os._exit(1)


def _pin(threads, counter, gpus, driver):
    """A worker's start: the watch on its driver, its thread count and, on CUDA, its GPU (workers take the visible
    GPUs in turn, and a job's `cuda` device is then that worker's current GPU)."""
    threading.Thread(target=_watch_driver, args=(driver,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver decides, and ends us
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    if gpus:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        torch.cuda.set_device(index % gpus)


class LocalPool(InProcess):
    """`--jobs N`: N spawned worker processes on this machine (threads: `threads_per_worker`); on CUDA worker i
    uses GPU i mod the number of visible GPUs, so every GPU is used and several workers share each."""

    def __init__(self, profile, root, device, n):
        super().__init__(profile, root, device)
        self.n, self.slots, self.threads = n, n, threads_per_worker(n, device)
        # spawn, not fork: a forked child inherits the parent's torch thread pools and CUDA state, which deadlock
        context = multiprocessing.get_context("spawn")
        gpus = torch.cuda.device_count() if torch.device(device).type == "cuda" else 0
        self.pool = concurrent.futures.ProcessPoolExecutor(n, mp_context=context, initializer=_pin,
                                                           initargs=(self.threads, context.Value("i", 0), gpus,
                                                                     os.getpid()))

    def describe(self):
        return f"{self.n} worker processes with {self.threads} thread(s) each"

    def submit(self, job, inputs):
        return self.pool.submit(execute, job, *self.args, inputs, self.threads)

    def wait(self, handles):
        return concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED).done

    def result(self, handle):
        try:
            return handle.result()
        except concurrent.futures.process.BrokenProcessPool as e:  # a worker died (killed, out of memory)
            raise UserError(f"a sweep worker process died ({e}); rerun the command: finished jobs are kept") from None

    def close(self, abort=False):
        if abort:  # the workers may be minutes into a job whose result no one will read
            for process in list((self.pool._processes or {}).values()):  # the pool has no public way to end them
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if abort:
            remove_stale_job_folders()  # the ended workers' job folders


class RayTasks:
    """`--executor ray`: each job a Ray task on the cluster at `address` (else $RAY_ADDRESS, else a local one),
    with 1 CPU and, on CUDA, `gpu_share` of a GPU so several jobs share one. From a source checkout the code travels
    with the task (runtime_env working_dir); the data root must exist at the same path on every node."""

    def __init__(self, profile, root, device, address=None, gpu_share=0.5, num_cpus=None):
        if address is not None:  # before Ray, which takes seconds to import and retries for minutes
            check_reachable(address)
        try:
            import ray  # here: an optional extra that takes seconds to import
        except ImportError:
            raise UserError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
        # Ray queues and places the tasks itself: every ready job is handed over at once
        self.ray, self.args, self.slots = ray, (profile, root, device), float("inf")
        # From a source checkout the code travels with the tasks; an installed package must be installed on every
        # node (uploading site-packages as a working_dir would be absurd).
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {"working_dir": repo, "excludes": [".git", "results", "report/build", "*.safetensors"]} \
            if os.path.exists(os.path.join(repo, "pyproject.toml")) else {}
        local = {"num_cpus": num_cpus} if address is None else {}  # a cluster has its own resources
        ray.init(address=address, runtime_env=env, ignore_reinit_error=True, log_to_driver=False, **local)
        gpus = gpu_share if torch.device(device).type == "cuda" else 0
        self.task = ray.remote(num_cpus=1, num_gpus=gpus)(execute)

    def describe(self):
        return f"Ray tasks on {self.ray.get_runtime_context().gcs_address}"

    def submit(self, job, inputs):
        return self.task.remote(job, *self.args, inputs, threads_per_worker(1, "cpu"))  # its 1 CPU

    def wait(self, handles):
        return self.ray.wait(handles, num_returns=1)[0]

    def result(self, handle):
        return self.ray.get(handle)

    def close(self, abort=False):
        self.ray.shutdown()


CONNECT_S = 10  # how long a Ray address gets to accept a connection, and again to answer on it
# Ray's cluster speaks gRPC, over HTTP/2: a client's connection preface (RFC 9113 3.4) with an empty SETTINGS frame.
# A server answers with a SETTINGS frame of its own (frame type 4, the 4th byte of its 9-byte header).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS = 4


def check_reachable(address):
    """Raise UserError unless the Ray cluster at `address` (HOST:PORT, or ray://HOST:PORT) accepts a connection and
    answers it as an HTTP/2 (gRPC) server does, each within CONNECT_S: Ray itself retries an address that does not
    answer for minutes, without a word."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    hint = ("start one with `ray start --head`, or leave out --ray-address (and RAY_ADDRESS) for a local one")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S) as conn:
            conn.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9 and (chunk := conn.recv(9 - len(head))):
                head += chunk
    except TimeoutError:
        raise UserError(f"--ray-address {address}: something there took the connection but did not answer within "
                        f"{CONNECT_S} s, as no Ray cluster does; {hint}") from None
    except OSError as e:
        raise UserError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); {hint}") from None
    if len(head) < 9 or head[3] != SETTINGS:
        raise UserError(f"--ray-address {address}: what answers there is not a Ray cluster (no gRPC server); {hint}")


def make(kind, jobs, profile, root, device, ray_address=None, num_cpus=None):
    """The executor for `--executor kind --jobs jobs` (an int, or "auto")."""
    if kind == "ray":
        return RayTasks(profile, root, device, address=ray_address or os.environ.get("RAY_ADDRESS"),
                        num_cpus=num_cpus)
    n = auto_jobs(device) if jobs == "auto" else int(jobs) if str(jobs).isdigit() and len(str(jobs)) < 10 else 0
    if n < 1:
        raise UserError(f"--jobs must be a whole number >= 1 or auto, got {jobs!r}")
    n = capped(n)
    return InProcess(profile, root, device) if n == 1 else LocalPool(profile, root, device, n)
