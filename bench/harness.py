"""What the three benchmark files share: the session's settings, cached training, and the timed call.

Timing stays in pytest-benchmark. The callable it times contains only the work and, on CUDA, ends with
`torch.cuda.synchronize()` so a round measures finished kernels, not their launches. Calls shorter than about
5 ms run several iterations per round so the timer's resolution and one-off hiccups do not dominate.
"""
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training import checkpoint
from training.config import Profile, load_profile, resolve_device
from training.data import resolve_root
from training.io import UserError, read_json
from training.measure import peak_memory, weights_bytes
from training.train import make_optimizer


@dataclass
class Env:
    profile: Profile
    device: torch.device
    out: Path  # results/<profile>
    root: Path
    compile: bool = False

    @classmethod
    def from_config(cls, config):
        profile = load_profile(config.getoption("profile"), config.getoption("device"))
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
    return load_profile(config.getoption("profile"), config.getoption("device"))


def ensure_trained(env, study, expected_rows, capture):
    """The study's summary, training it first when it is missing or lacks a row the profile asks for."""
    path = env.out / study / "summary.json"
    if path.exists() and set(expected_rows) <= {r["name"] for r in read_json(path)["rows"]}:
        return read_json(path)
    from training.studies import attention, lora, svd
    study_module = {"svd": svd, "lora": lora, "attention": attention}[study]
    with capture.global_and_fixture_disabled():  # show the training's progress through pytest's capture
        print(f"\n[lowrank-bench] no trained {study} results for profile {env.profile.name} in {env.out}: "
              "training them once now (cached for later runs)")
        study_module.run(env.profile, root=env.root, out=env.out, device=env.device)
    return read_json(path)


def synchronized(fn, device):
    """`fn` followed by a device synchronisation, so the timer sees finished work."""
    if torch.device(device).type != "cuda":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return call


def iterations_for(fn, target_seconds=5e-3, cap=1000):
    """Iterations per round so that a round lasts about `target_seconds` (from the fastest of a few calls)."""
    fn()  # first call: lazy initialisation, compilation
    once = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        once = min(once, time.perf_counter() - t0)
    return max(1, min(cap, math.ceil(target_seconds / max(once, 1e-9))))


def run_timed(benchmark, fn, device, bench_cfg):
    """Time `fn` (synchronised) with the profile's rounds; record the coefficient of variation too."""
    call = synchronized(fn, device)
    result = benchmark.pedantic(call, rounds=bench_cfg.rounds, warmup_rounds=bench_cfg.warmup_rounds,
                                iterations=iterations_for(call))
    if benchmark.stats:  # None under --benchmark-disable
        stats = benchmark.stats.stats
        benchmark.extra_info["cv"] = stats.stddev / stats.mean if stats.mean else None
    return result


def inference_peak(model, x, device):
    def infer():
        with torch.no_grad():
            model(x)
    return peak_memory(infer, device, weights_bytes(model))


def common_info(env, model, batch_size):
    return {"device": env.device.type, "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "batch_size": batch_size, "profile": env.profile.name,
            "compiled": env.compile}


def device_test_split(env, load_data):
    """The profile's test split on the device, loaded once per suite."""
    splits = load_data(env.profile, env.root)
    return splits.x_test.to(env.device), splits.y_test.to(env.device)


def batch_of(data, batch_size):
    """The first `batch_size` test examples, repeated when the (subset) test split is smaller."""
    x, y = data
    idx = torch.arange(batch_size, device=x.device) % len(x)
    return x[idx], y[idx]


def load_row(env, summary, name, arch):
    """(model, row) of the summary row called `name`, loaded from its checkpoint onto the device."""
    row = next(r for r in summary["rows"] if r["name"] == name)
    try:
        model, _ = checkpoint.load(env.out / row["checkpoint"], expect_arch=arch, device=env.device)
    except UserError as e:  # a damaged or replaced checkpoint spoils the whole run: stop it with the one line
        pytest.exit(f"error: {e}", returncode=2)
    return model, row


def train_step(env, model, train_cfg, x, y):
    """One optimizer step (forward, backward, AdamW) on a copy of `model`, and that first step's peak memory,
    which allocates the gradients and the optimizer state: frozen weights get neither."""
    model = copy.deepcopy(model).train()  # the cached model stays as loaded for the inference benchmarks
    optimizer, _ = make_optimizer(model, train_cfg, total_steps=1000)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, peak_memory(step, env.device, weights_bytes(model))
