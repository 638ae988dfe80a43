"""The sweep: every training run is a job (study, method, rank, init, embedding, seed) with a stable id and explicit
parents.

A job's id is a hash of the settings that decide its result (each study's `jobs(profile)` names them), its key, its
seed and its parents' ids, so changing one setting changes exactly the ids of the jobs it affects and of their
children, and nothing else. `sweep` runs the graph in dependency order on an executor (training/executors.py) and
is the only writer of the results folder:

    OUT/<profile>/<study>/seed<s>/<variant>.{safetensors,json}  a job's checkpoint (its sidecar records the job id)
    OUT/<profile>/jobs/<id>.json                                 a job's result: its row, extras, files' SHA-256
    OUT/<profile>/logs/<study>/seed<s>/<variant>.log             a job's captured output
    OUT/<profile>/<study>/summary.json                           per-seed rows and their statistics

A job runs in a private temporary folder holding its parents' checkpoint bytes and returns its own as bytes, so a
worker on another machine needs no shared file system. The driver writes the files atomically, the result last:
a job whose result exists and whose files match it is done, and an interrupted sweep resumes with the rest.
"""
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from lowrank_bench.core.io import UserError, alive, atomic_write, confined, read_json, write_json
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.training import data, embeddings, jobfiles
from lowrank_bench.training.studies import MODULES, variants
from lowrank_bench.training.studies.common import checkpoint_name


@dataclasses.dataclass(frozen=True)
class Job:
    study: str
    method: str
    rank: int | None
    init: str | None
    seed: int
    parents: tuple  # ids of the jobs whose checkpoints this one starts from
    id: str
    embedding: str | None = None  # attention's pre-defined token table ("minilm"), None for the model's own

    @property
    def key(self):
        return self.study, self.method, self.rank, self.init, self.embedding

    @property
    def name(self):
        """For people: `svd/seed0/k32`, also the stem of the job's checkpoint and log."""
        return checkpoint_name(self.key, self.seed)


def job_id(key, seed, settings, parent_ids, device_type):
    """A stable id from what decides the result (never from file names): 16 hex digits of a SHA-256."""
    text = json.dumps({"key": list(key), "seed": seed, "settings": settings, "parents": sorted(parent_ids),
                       "device": device_type}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(profile, studies, device, root):
    """Every job of `studies` and the jobs they start from (other studies' too), parents before children.

    A job's settings include the content (SHA-256) of the data files it reads under `root`: another data root
    with other files means other jobs. The profile's checks run first, so a rank that cannot fit or a split the
    data cannot hold fails here, before anything trains."""
    device_type = torch.device(device).type
    for study in studies:  # a rank that cannot fit fails here, before anything trains
        MODULES[study].check(profile)
    involved = _with_parent_studies(studies)
    data.check_splits(profile, root, involved)
    prints = data.fingerprints(root, data.needed(profile, involved))  # each data set hashed once
    graph, by_key = {}, {}
    for study in [s for s in MODULES if s in involved]:  # dependency order: lora starts from svd's dense
        for seed in profile.seeds:
            for key in variants(study, profile):
                settings, parent_keys = MODULES[study].job(key, profile)
                reads = {n: prints[n] for n in data.needed(profile, [study]) if n != embeddings.NAME or key[4]}
                parents = tuple(by_key[(k, seed)].id for k in parent_keys)
                ident = job_id(key, seed, {**settings, "data_files": reads}, parents, device_type)
                job = Job(*key[:4], seed, parents, ident, key[4])
                graph[job.id] = by_key[(key, seed)] = job
    wanted, stack = set(), [j.id for j in graph.values() if j.study in studies]
    while stack:  # the asked studies' jobs and, transitively, their parents
        i = stack.pop()
        if i not in wanted:
            wanted.add(i)
            stack.extend(graph[i].parents)
    return [j for j in graph.values() if j.id in wanted]


def _with_parent_studies(studies):
    """`studies` and every study whose jobs they start from (lora: svd)."""
    found, stack = set(), list(studies)
    while stack:
        study = stack.pop()
        if study not in found:
            found.add(study)
            stack += [STUDIES[study].starts_from] if STUDIES[study].starts_from else []
    return found


def execute(job, profile, root, device, inputs, threads=None):
    """Run one job: `inputs` are its parents' files ({name relative to OUT/<profile>: bytes}). Returns a dict with
    its row and extras, its new files as bytes, its captured log and, if it raised, the error instead of a row.

    The same function runs in the driver, in a local worker process and as a Ray task. Its temporary folder is
    named after this process, so a later job removes the folders of processes that were killed."""
    threads_before = torch.get_num_threads()  # in the driver (--jobs 1) the thread count is set back afterwards
    if threads:
        torch.set_num_threads(threads)
    log, t0 = io.StringIO(), time.perf_counter()
    result = {"id": job.id, "name": job.name, "error": None}
    remove_stale_job_folders()
    with tempfile.TemporaryDirectory(prefix=f"{JOB_FOLDER}{os.getpid()}-") as tmp, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        work = Path(tmp)
        try:
            for name, data in inputs.items():  # checked here too: on Ray this runs on another machine
                path = jobfiles.inside(work, name, f"job {job.name}: input")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            row, extra = MODULES[job.study].run_job(job, profile, root=root, work=work, device=device)
            files = {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.rglob("*"))
                     if p.is_file() and p.relative_to(work).as_posix() not in inputs}
            result |= {"row": row, "extra": extra, "files": files}
        except Exception as e:  # reported by the driver with the log; the other jobs go on
            traceback.print_exc()
            result["error"] = f"{type(e).__name__}: {e}"
    torch.set_num_threads(threads_before)
    result |= {"log": log.getvalue(), "seconds": time.perf_counter() - t0}
    return result


JOB_FOLDER = "lowrank-job-"  # + the pid of the process running the job + a random part


def remove_stale_job_folders(pid=None):
    """Delete this user's job folders in the temporary directory whose process has ended (a SIGKILL leaves them,
    holding parents' checkpoints), or, given `pid`, that process's own (a worker whose driver died)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{JOB_FOLDER}*-*"):
        owner = folder.name[len(JOB_FOLDER):].split("-", 1)[0]
        try:
            mine = folder.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and owner.isdigit() and (int(owner) == pid if pid else not alive(int(owner))):
            shutil.rmtree(folder, ignore_errors=True)


def result_path(out, job):
    return confined(out, f"jobs/{job.id}.json")


def log_path(out, job):
    return confined(out, f"logs/{job.name}.log")


def stored(out, job):
    """The job's stored result when it is complete: its job file fits the schema (training/jobfiles.py), names
    this job, and every file it lists is there with the SHA-256 it recorded. None means the job must run; a job file
    that does not fit is said in one line and replaced when the job has run again."""
    path = result_path(out, job)
    if not path.exists():
        return None
    try:
        result = read_json(path)
        jobfiles.check(result, job, str(path))
        for name, digest in result["files"].items():
            f = jobfiles.inside(out, name, f"{path}: files")
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                return None
    except UserError as e:
        print(f"{e}; the job runs again", file=sys.stderr)
        return None
    return result


def record(out, job, result):
    """The job file of a finished job's `result`, after checking it and every file name it hands over: a worker
    (on Ray, another machine) writes only the job's own files, inside `out`. UserError if anything does not fit."""
    where = f"job {job.name}'s result"
    for name in result["files"]:
        jobfiles.own_file(job, name, f"{where}: files")
        jobfiles.inside(out, name, f"{where}: files")
    kept = jobfiles.record(job, result, {n: hashlib.sha256(d).hexdigest() for n, d in result["files"].items()})
    jobfiles.check(kept, job, where)
    return kept


def store(out, job, result, kept):
    """Write a finished job's files, log and (last, so a kill in between reruns the job) its job file `kept`."""
    atomic_write(log_path(out, job), result["log"])
    for name, data in result["files"].items():
        atomic_write(confined(out, name), data)
    write_json(result_path(out, job), kept)
    return kept


def inputs_of(out, job, results):
    """The files a job starts from: every file of each parent's result, as bytes."""
    return {name: jobfiles.inside(out, name, f"job {job.name}: input").read_bytes()
            for p in job.parents for name in results[p]["files"]}


class Progress:
    """One live line: jobs done / running / total, failures, elapsed, ETA from the mean time per finished job."""

    def __init__(self, total, skipped, stream=None):
        self.total, self.skipped, self.t0 = total, skipped, time.perf_counter()
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def show(self, done, running, failed):
        elapsed = time.perf_counter() - self.t0
        ran, left = done - self.skipped, self.total - done - failed
        eta = f"{elapsed / ran * left:.0f}s" if ran else "?"  # jobs finished per second so far, workers included
        line = (f"[sweep] {done}/{self.total} done, {running} running, {failed} failed, "
                f"elapsed {elapsed:.0f}s, ETA {eta}")
        self.stream.write(f"\r{line}\033[K" if self.live else line + "\n")
        self.stream.flush()

    def close(self):
        if self.live:
            self.stream.write("\n")


def sweep(profile, studies, *, out, root, device, executor, force=False):
    """Run the jobs of `studies` (and their parents) not already done, then write each asked study's summary.

    Returns the names of the failed jobs (and of the jobs that could not start because a parent failed)."""
    out = Path(out)
    jobs = plan(profile, studies, device, root)
    for job in jobs:  # where each job writes, before any trains: a symbolic link there fails now, not after it
        result_path(out, job), log_path(out, job), confined(out, str(Path(job.name).parent))
    graph = {j.id: j for j in jobs}
    results = {} if force else {j.id: r for j in jobs if (r := stored(out, j)) is not None}
    print(f"== sweep: {len(jobs)} jobs ({len(results)} already done), {executor.describe()}, results in {out} ==")
    progress = Progress(len(jobs), len(results))
    failed, running = {}, {}
    while True:
        for job in jobs:  # start every job whose parents are done
            if job.id in results or job.id in running.values() or job.id in failed:
                continue
            if any(p in failed for p in job.parents):
                failed[job.id] = "not run: a parent failed"
            elif all(p in results for p in job.parents) and len(running) < executor.slots:
                running[executor.submit(job, inputs_of(out, job, results))] = job.id
        progress.show(len(results), len(running), len(failed))
        if not running:
            break
        for handle in executor.wait(list(running)):
            job = graph[running.pop(handle)]
            result = executor.result(handle)
            if not result["error"]:
                try:
                    kept = record(out, job, result)
                except UserError as e:  # refused before any of it was written
                    result["error"] = str(e)
                else:
                    results[job.id] = store(out, job, result, kept)
                    continue
            atomic_write(log_path(out, job), result["log"])
            failed[job.id] = result["error"]
            progress.stream.write(f"\nFAILED {job.name}: {result['error']} (log: {log_path(out, job)})\n")
    progress.close()
    for study in studies:
        mine = [j for j in jobs if j.study == study]
        if any(j.id in failed for j in mine):
            continue
        extras = {}
        for j in mine:
            extras.setdefault(j.key, []).append(results[j.id]["extra"])
        MODULES[study].summarize(profile, out, device, [results[j.id]["row"] for j in mine], extras)
    return [graph[i].name for i in failed]
