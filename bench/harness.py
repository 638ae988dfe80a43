"""What the three benchmark suites share: which variants each study times, the models they load, the timed call.

A suite module names its study (`STUDY = "svd"`) and holds only what differs (its tests and the extra_info of its
own); `bench/conftest.py` parametrizes every test from `training.studies.timed` and hands it a `Suite` that trains
missing results once, loads each checkpoint once and re-evaluates its test accuracy. A model's inference is timed
through the pytest plugin's `lowrank` fixture (`Suite.time_inference`), as a user's model is; other benchmarks time
their callable with timing/measure.py, which the fixture times with too. Timing stays in pytest-benchmark: the
timed callable contains only the work and, on CUDA, ends with `torch.cuda.synchronize()` so a round measures
finished kernels, not their launches.
"""
import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lowrank_bench.core.io import UserError, read_json
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.core.variants import key
from lowrank_bench.training import checkpoint
from lowrank_bench.training.config import Profile, load_profile, resolve_device
from lowrank_bench.training.data import resolve_root
from lowrank_bench.training.measure import forward_flops, param_counts, peak_memory, weights_bytes
from lowrank_bench.timing import measure
from lowrank_bench.training import executors, jobs
from lowrank_bench.training.studies import MODULES, timed
from lowrank_bench.training.train import evaluate, make_optimizer


def axes(config, study):
    """(dtypes, modes) of a study's inference benchmarks: the options, else the profile, else the device default."""
    bench = getattr(profile_of(config), study).bench
    try:
        device = resolve_device(config.getoption("device")).type
    except ValueError:  # --device cuda without CUDA: the env fixture skips every benchmark with the reason
        device = "cuda"
    return measure.axes(device, config.getoption("dtypes") or bench.dtypes, config.getoption("modes") or bench.modes)


@dataclass
class Env:
    profile: Profile
    device: torch.device
    out: Path  # results/<profile>
    root: Path

    @classmethod
    def from_config(cls, config):
        profile = profile_of(config)
        return cls(profile, resolve_device(config.getoption("device")), Path(config.getoption("out")) / profile.name,
                   resolve_root(config.getoption("data_root")))

    def compiled(self, fn, mode):
        """`fn` as timed in `mode` on this device (timing.measure.compiled)."""
        return measure.compiled(fn, mode, self.device)

    def for_inference(self, model, dtype="fp32", mode="eager"):
        """(the model in `dtype`, the callable inference is timed through in `mode`). The loaded fp32 model is
        shared by the suite's benchmarks, so another dtype converts a copy."""
        return measure.for_inference(model, dtype, mode, self.device)


def profile_of(config):
    return load_profile(config.getoption("profile"), config.getoption("device"), config.getoption("overrides"))


def ensure_trained(env, study, capture):
    """The study's summary, after running its sweep (jobs already done are kept) unless the summary holds exactly
    the rows of the jobs the profile plans now: a job id covers the settings and data that decide a result, so a
    changed setting, subset or data file retrains what it affects instead of timing old models under new labels."""
    path = env.out / study / "summary.json"
    planned = [j for j in jobs.plan(env.profile, [study], env.device, env.root) if j.study == study]
    done = [jobs.stored(env.out, j) for j in planned]
    if path.exists() and None not in done and read_json(path).get("seed_rows") == [r["row"] for r in done]:
        return read_json(path)
    with capture.global_and_fixture_disabled():  # show the training's progress through pytest's capture
        print(f"\n[lowrank-bench] the {study} results in {env.out} are not those of profile {env.profile.name} "
              "as set now: training what differs (cached for later runs)")
        failed = jobs.sweep(env.profile, [study], out=env.out, root=env.root, device=env.device,
                            executor=executors.InProcess(env.profile, env.root, env.device))
    if failed:
        pytest.exit(f"error: training failed for {', '.join(failed)}; logs in {env.out / 'logs'}", returncode=2)
    return read_json(path)


class Suite:
    """One study's trained results on the benchmark device: models loaded once, accuracy evaluated once."""

    def __init__(self, env, study, capture):
        self.env, self.study = env, study
        self.cfg = getattr(env.profile, study)
        self.summary = ensure_trained(env, study, capture)
        splits = MODULES[study].load_data(env.profile, env.root)
        self.test = splits.x_test.to(env.device), splits.y_test.to(env.device)
        self._models = {}

    def rows(self, method, rank):
        """The timed seed's (the profile's first) summary rows of a variant: one, or one per init for factored
        attention. Attention's models with the pre-defined MiniLM table (`embedding`) are trained and reported, not
        timed: the benchmarks time the models with their own table."""
        seed = self.env.profile.seeds[0]
        rows = [r for r in self.summary["seed_rows"] if (r["method"], r["rank"], r["seed"]) == (method, rank, seed)
                and r.get("embedding") is None]
        assert rows, f"{self.study}: no summary row for {method} rank {rank}"
        return rows

    def model(self, method, rank, row=None):
        """(model, its summary row, its test accuracy re-evaluated from the loaded checkpoint)."""
        row = row or self.rows(method, rank)[0]
        key = row["checkpoint"]
        if key not in self._models:
            try:
                model, _ = checkpoint.load(self.env.out / key, expect_arch=STUDIES[self.study].arch,
                                           device=self.env.device)
            except UserError as e:  # a damaged or replaced checkpoint spoils the whole run: stop it with the one line
                pytest.exit(f"error: {e}", returncode=2)
            self._models[key] = (model, row, self.accuracy(model))
        return self._models[key]

    def accuracy(self, model):
        return evaluate(model, *self.test, batch_size=256)[1]

    def accuracy_through(self, forward, batch_size):
        """Test accuracy of `forward` (a model as timed), in chunks of the benchmark's batch size, the last one
        padded, so a compiled model sees only the shape it was compiled for."""
        x, y = self.test
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                idx = torch.arange(i, i + batch_size, device=x.device) % len(x)
                keep = min(batch_size, len(x) - i)
                correct += (forward(x[idx]).argmax(1)[:keep] == y[idx][:keep]).sum()
        return correct.item() / len(x)

    def timed_accuracy(self, accuracy, dtype, mode, batch_size):
        """The test accuracy of a benchmark in `dtype` and `mode`, as the `lowrank` fixture takes it: `accuracy`,
        the fp32 eager model's, as it is; in any other dtype or mode a function that evaluates the timed callable
        again, so the accuracy belongs to exactly what was timed."""
        if (dtype, mode) == ("fp32", "eager"):
            return accuracy
        return functools.partial(self.accuracy_through, batch_size=batch_size)

    def time_inference(self, lowrank, model, inputs, row, accuracy, extra_info, reference=None, ceiling=None):
        """Time `model` on `inputs` through the `lowrank` fixture, as a user's model is timed: against `reference`
        (default: the study's reference model as loaded), with `row`'s method, rank and start, the accuracy over
        seeds, the study's own fields, and the fixture's `ceiling` where given."""
        reference = reference or self.model(STUDIES[self.study].reference, None)[0]
        return lowrank(model, inputs, reference=reference, study=self.study, method=row["method"], rank=row["rank"],
                       init=row.get("init"), over_seeds=self.over_seeds(row),
                       accuracy=self.timed_accuracy(accuracy, lowrank.dtype, lowrank.mode, len(inputs)),
                       extra_info={"profile": self.env.profile.name, **extra_info}, ceiling=ceiling)

    def batch(self, batch_size):
        """The first `batch_size` test examples, repeated when the (subset) test split is smaller."""
        x, y = self.test
        idx = torch.arange(batch_size, device=x.device) % len(x)
        return x[idx], y[idx]

    def variant(self, row):
        """The summary's row for `row`'s variant over every seed: means, standard deviations, n."""
        return next(v for v in self.summary["rows"] if key(v) == key(row))

    def over_seeds(self, row):
        """The test accuracy of `row`'s variant over every seed (the summary's mean and n; no interval: an interval
        over seeds alone is 0 wide where two seeds tie, and the summary gives none), and the seed of `row`, the
        checkpoint timed."""
        v = self.variant(row)
        return {"accuracy": v["test_acc"], "accuracy_ci95": None, "n_seeds": v.get("n_seeds", 1),
                "seed_timed": row.get("seed")}

    def fields(self, model, row, accuracy, batch_size, kind, dtype="fp32", mode="eager"):
        """The extra_info every benchmark carries (`COMMON_EXTRA_INFO`) but its FLOPs, for a benchmark that times
        something else than inference (which `time_inference` times); `model` in `dtype`.

        `accuracy` is that of the one checkpoint timed, in the benchmark's dtype and mode (`accuracy_timed`),
        beside the accuracy over seeds. A bare GEMM (`accuracy` None) has neither."""
        seeds = self.over_seeds(row)
        if accuracy is None:
            seeds |= {"accuracy": None, "accuracy_ci95": None}
        return {"study": self.study, "kind": kind, "method": row["method"], "rank": row["rank"],
                "init": row.get("init"), "batch_size": batch_size, "device": self.env.device.type,
                "dtype": dtype, "mode": mode, "threads": torch.get_num_threads(),
                "profile": self.env.profile.name, **seeds, "accuracy_timed": accuracy,
                **param_counts(model), "weights_bytes": weights_bytes(model)}

    def flop_info(self, model, x):
        """The model's FLOPs per example on `x`, and their ratio to the study's reference model's."""
        flops = forward_flops(model, x[:1])
        reference = self.model(STUDIES[self.study].reference, None)[0]
        return {"flops": flops, "flop_ratio": flops / forward_flops(reference, x[:1])}

    def info(self, model, row, accuracy, x, kind, dtype="fp32", mode="eager", converted=None):
        """fields() of `converted` (the model in `dtype`; default `model`) and flop_info() of the fp32 `model` on
        the fp32 `x`: the count does not depend on the dtype."""
        return {**self.fields(converted or model, row, accuracy, len(x), kind, dtype, mode),
                **self.flop_info(model, x)}

    def train_step(self, model, train_cfg, x, y):
        """One optimizer step (forward, backward, AdamW) on a copy of `model`, and that first step's peak memory,
        which allocates the gradients and the optimizer state: frozen weights get neither."""
        model = copy.deepcopy(model).train()  # the cached model stays as loaded for the inference benchmarks
        optimizer, _ = make_optimizer(model, train_cfg, total_steps=1000)

        def step():
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step, peak_memory(step, self.env.device, weights_bytes(model))
