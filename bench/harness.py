"""What the three benchmark suites share: which variants each study times, the models they load, the timed call.

A suite module names its study (`STUDY = "svd"`) and holds only what differs (its tests and the extra_info of its
own); `bench/conftest.py` parametrizes every test from `variants()` and hands it a `Suite` that trains missing
results once, loads each checkpoint once and re-evaluates its test accuracy. Timing stays in pytest-benchmark:
the timed callable contains only the work and, on CUDA, ends with `torch.cuda.synchronize()` so a round measures
finished kernels, not their launches.
"""
import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lowrank_bench.io import UserError, read_json
from training import checkpoint
from training.config import Profile, load_profile, resolve_device
from training.data import resolve_root
from training.measure import forward_flops, param_counts, peak_memory, weights_bytes
from training import executors, jobs
from training.studies import STUDIES
from training.train import evaluate, make_optimizer

ARCH = {"svd": "MLP", "lora": "MLP", "attention": "Transformer"}
REFERENCE = {"svd": "dense", "lora": "full", "attention": "dense"}  # what flop_ratio divides by


def variants(study, profile):
    """(method, rank) of every model a study's suite times, the unfactored ones first."""
    cfg = getattr(profile, study)
    plain = {"svd": ["dense"], "lora": ["head", "full"], "attention": ["dense"]}[study]
    return [(m, None) for m in plain] + [("lora" if study == "lora" else "svd", r) for r in cfg.ranks]


@dataclass
class Env:
    profile: Profile
    device: torch.device
    out: Path  # results/<profile>
    root: Path
    compile: bool = False

    @classmethod
    def from_config(cls, config):
        profile = profile_of(config)
        return cls(profile, resolve_device(config.getoption("device")), Path(config.getoption("out")) / profile.name,
                   resolve_root(config.getoption("data_root")), config.getoption("compile"))

    def for_inference(self, model):
        """The callable inference is timed through: the model, or with --compile its torch.compile'd form.

        Small batches on small layers are bound by per-op launch overhead, where a factored model (twice the
        layers) loses to dense; CUDA graphs ("reduce-overhead") replay the whole forward as one launch.
        """
        if not self.compile:
            return model
        return torch.compile(model, mode="reduce-overhead" if self.device.type == "cuda" else "default")


def profile_of(config):
    return load_profile(config.getoption("profile"), config.getoption("device"), config.getoption("overrides"))


def ensure_trained(env, study, capture):
    """The study's summary, running its sweep (jobs already done are kept) first when a variant or seed the profile
    asks for is missing."""
    path = env.out / study / "summary.json"
    wanted = {(m, r, s) for m, r in variants(study, env.profile) for s in env.profile.seeds}
    if path.exists() and wanted <= {(r["method"], r["rank"], r.get("seed"))
                                    for r in read_json(path).get("seed_rows", [])}:
        return read_json(path)
    with capture.global_and_fixture_disabled():  # show the training's progress through pytest's capture
        print(f"\n[lowrank-bench] no trained {study} results for profile {env.profile.name} in {env.out}: "
              "training them once now (cached for later runs)")
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
        splits = STUDIES[study].load_data(env.profile, env.root)
        self.test = splits.x_test.to(env.device), splits.y_test.to(env.device)
        self._models = {}

    def rows(self, method, rank):
        """The timed seed's (the profile's first) summary rows of a variant: one, or one per init for factored
        attention."""
        seed = self.env.profile.seeds[0]
        rows = [r for r in self.summary["seed_rows"] if (r["method"], r["rank"], r["seed"]) == (method, rank, seed)]
        assert rows, f"{self.study}: no summary row for {method} rank {rank}"
        return rows

    def model(self, method, rank, row=None):
        """(model, its summary row, its test accuracy re-evaluated from the loaded checkpoint)."""
        row = row or self.rows(method, rank)[0]
        key = row["checkpoint"]
        if key not in self._models:
            try:
                model, _ = checkpoint.load(self.env.out / key, expect_arch=ARCH[self.study], device=self.env.device)
            except UserError as e:  # a damaged or replaced checkpoint spoils the whole run: stop it with the one line
                pytest.exit(f"error: {e}", returncode=2)
            self._models[key] = (model, row, self.accuracy(model))
        return self._models[key]

    def accuracy(self, model):
        return evaluate(model, *self.test, batch_size=256)[1]

    def batch(self, batch_size):
        """The first `batch_size` test examples, repeated when the (subset) test split is smaller."""
        x, y = self.test
        idx = torch.arange(batch_size, device=x.device) % len(x)
        return x[idx], y[idx]

    def fields(self, model, row, accuracy, batch_size, kind):
        """The extra_info every benchmark carries (`COMMON_EXTRA_INFO`) but its FLOPs."""
        return {"study": self.study, "kind": kind, "method": row["method"], "rank": row["rank"],
                "init": row.get("init"), "batch_size": batch_size, "device": self.env.device.type,
                "dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
                "profile": self.env.profile.name, "compiled": self.env.compile, "accuracy": accuracy,
                **param_counts(model), "weights_bytes": weights_bytes(model)}

    def flop_info(self, model, x):
        """The model's FLOPs per example on `x`, and their ratio to the study's reference model's."""
        flops = forward_flops(model, x[:1])
        reference = self.model(REFERENCE[self.study], None)[0]
        return {"flops": flops, "flop_ratio": flops / forward_flops(reference, x[:1])}

    def info(self, model, row, accuracy, x, kind):
        return {**self.fields(model, row, accuracy, len(x), kind), **self.flop_info(model, x)}

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


def inference_peak(model, x, device):
    def infer():
        with torch.no_grad():
            model(x)
    return peak_memory(infer, device, weights_bytes(model))


def synchronized(fn, device):
    """`fn` followed by a device synchronisation, so the timer sees finished work."""
    if torch.device(device).type != "cuda":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return call


def run_timed(benchmark, fn, device):
    """Time `fn` (synchronised) with pytest-benchmark's own calibration; record the coefficient of variation too.

    The profile's rounds and minimum round time reach the plugin through the benchmark marker (bench/conftest.py).
    """
    call = synchronized(fn, device)
    call()  # lazy initialisation and compilation stay out of the calibration
    result = benchmark(call)
    if benchmark.stats:  # None under --benchmark-disable
        stats = benchmark.stats.stats
        benchmark.extra_info["cv"] = stats.stddev / stats.mean if stats.mean else None
    return result
