"""What the pytest fixture `lowrank` hands a test: one model benchmarked the way the built-in suites benchmark theirs.

The timing is timing/measure.py's, the measurements training/measure.py's, and the extra_info the contract of
core/benchjson.py (`COMMON_EXTRA_INFO`), so `pytest-benchmark compare`, `lowrank-bench collect` and `lowrank-bench
gate` read a user's benchmarks exactly like the built-in ones.
"""
import contextlib
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from lowrank_bench.core import benchjson
from lowrank_bench.core.bench_outcomes import as_matrix
from lowrank_bench.core.io import UserError
from lowrank_bench.core.schema import name, validate
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.models.inputs import call
from lowrank_bench.training.measure import forward_flops, measure, param_counts
from lowrank_bench.timing import abwire
from lowrank_bench.timing.measure import cast, compiled, default_threads, for_inference, run_timed, synchronized
from lowrank_bench.timing.pair import CEILING_MODEL, CEILING_REFERENCE, MODEL, REFERENCE, paired_fields, paired_rounds


def _tensors(inputs):
    """The tensors of `inputs` (a tensor, a tuple of them or a dict of them), in order."""
    values = inputs if isinstance(inputs, tuple) else inputs.values() if isinstance(inputs, dict) else (inputs,)
    return [v for v in values if torch.is_tensor(v)]


def _seed_outcomes(over_seeds, timed_outcomes):
    """over_seeds' `outcomes`, one row per seed, checked against its n_seeds and accuracy; None without them. The
    timed model's outcomes alone (`timed_outcomes`) cannot decide for several seeds: an error."""
    if "outcomes" not in over_seeds:
        if timed_outcomes:
            raise ValueError("lowrank(...): with over_seeds, give every seed's outcomes as over_seeds['outcomes'] "
                             "(one row per seed) to decide from them, or accuracy as a number")
        return None
    matrix = as_matrix(over_seeds["outcomes"], "lowrank(...): over_seeds['outcomes']")
    accuracy = over_seeds["accuracy"]
    if len(matrix) != over_seeds["n_seeds"] or not isinstance(accuracy, numbers.Real) \
            or abs(float(matrix.mean()) - accuracy) > 1e-9:
        raise ValueError(f"lowrank(...): over_seeds['outcomes'] has {len(matrix)} rows and mean "
                         f"{float(matrix.mean())!r}; it must have n_seeds = {over_seeds['n_seeds']!r} rows whose "
                         f"mean is over_seeds['accuracy'] = {accuracy!r}")
    return matrix


def _valid(value, spec, where):
    """`value` checked as `lowrank-bench collect` and `gate` will read it (core/schema.py): a ValueError naming the
    argument or field otherwise, when the test runs and not later in a reader."""
    try:
        validate(value, spec, "lowrank(...)", "give what `lowrank-bench collect` reads", where)
    except UserError as e:
        raise ValueError(str(e)) from None


def _number(x):
    return int(x) if float(x).is_integer() else x


@contextlib.contextmanager
def pinned_threads():
    """torch's intra-op thread count set to timing.measure.default_threads() inside, and back to what it was
    after: the fixture measures at the thread count every benchmark of the harness uses and leaves the session's
    own as it found it. Also a decorator."""
    before = torch.get_num_threads()
    torch.set_num_threads(default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LowRank:
    """Call it once per test: `lowrank(model, inputs, reference=..., study=..., method=..., rank=...)`.

    Arguments:
      model      the nn.Module to time, or a function without arguments that builds it; put in eval mode.
      inputs     one batch: a tensor, a tuple of positional arguments or a dict of keyword arguments (a Hugging
                 Face model's input_ids and attention_mask); its first dimension is the batch size. The model is
                 timed on it, on the device it is on (CUDA synchronised).
      reference  the model `model` is compared against (the dense one; itself when it is the dense one):
                 `flop_ratio` divides by its FLOPs, and unless it is `model` itself, it is timed in alternation
                 with `model` (paired rounds, timing/pair.py) for `speedup_paired`.
      study      the name of your study; benchmarks of one study are tabulated together by `lowrank-bench collect`.
      method     how the model was made: "dense", "svd", "whiten", "lora", or a name of your own.
      rank       the rank k (an int), or None for a model that is not low rank.
      accuracy   optional: a number in [0, 1], or a function that takes the model as timed (in this test's dtype
                 and mode; it casts floating inputs to the dtype itself) and returns its accuracy in [0, 1], or a
                 dict of it ("accuracy") and more fields of your own for extra_info (one evaluation pass for all).
                 The accuracy may be per-example outcomes instead: a boolean array or tensor, one entry per
                 example in a fixed order, the same for every model of the study. With --benchmark-json FILE they
                 are stored beside it (core/bench_outcomes.py) and `lowrank-bench collect` and `gate` decide from
                 them whether the model is within --margin-points of the study's reference.
                 Compiled models are specialised to the batch's shape: evaluate them on batches of that size.
      init       optional: where the factors started, for studies that compare initialisations.
      over_seeds optional, when the model is one of several trained alike with different seeds: {"accuracy": their
                 mean accuracy, "accuracy_ci95": its 95 % half-width or None, "n_seeds": how many, "seed_timed":
                 this model's seed}. `accuracy` then stays this model's and is written as `accuracy_timed`. With
                 "outcomes" besides: a boolean array of one row per seed (a fixed seed order, the same for every
                 model of the study), whose mean is "accuracy": the seeds' outcomes, stored and decided from.
      extra_info optional: more fields of your own for the benchmark's extra_info (numbers or strings). A built-in
                 study's name (core.spec.STUDIES) is only for benchmarks that carry that study's own fields.
      ceiling    optional: (reference_bound, model_bound), two functions without arguments doing the bare work that
                 bounds each model's speed (the SVD suite: the dense and the factored GEMM chains), in this test's
                 dtype; timed in the same rounds, in this test's mode, for `ceiling_speedup` and
                 `ceiling_efficiency`.

    Returns what the model returned on `inputs`. Writes into the benchmark's extra_info every field of
    core.benchjson.COMMON_EXTRA_INFO (kind "infer"; FLOPs per example; peak memory of one eager no-grad forward
    pass, weights included; `accuracy` and `accuracy_timed` both what `accuracy` gave and n_seeds 1, unless
    `over_seeds` says otherwise),
    `reference_params_total`, `reference_flops` (per example), pytest-benchmark's `cv`, then `extra_info`; unless
    `reference` is `model`, core.benchjson.PAIRED_EXTRA_INFO: the paired rounds' `paired_times` (seconds of the
    fastest call of each callable, per round), `paired_rounds`, and their ratios (the ceiling's only with
    `ceiling`).
    The benchmark's group, unless a benchmark mark names one, is `<study>-b<batch>-<dtype>-<mode>`.
    It runs at timing.measure.default_threads() threads and restores the session's thread count after.
    """

    def __init__(self, benchmark, dtype: str, mode: str, references: dict,
                 store: Callable[[Any], Mapping[str, Any]] | None = None, paired: Mapping[str, Any] | None = None):
        self.benchmark, self.dtype, self.mode = benchmark, dtype, mode
        self._paired_span = dict(paired or {})  # paired_rounds' seconds and min_rounds, where not its defaults
        self._references = references  # {(id, input shapes): (reference, its params and FLOPs)}, per session
        # store(outcomes) -> the extra_info naming them once stored beside the benchmark JSON (the plugin's)
        self._store = store

    @pinned_threads()  # everything it runs, the model's accuracy and memory too
    def __call__(self, model: nn.Module | Callable[[], nn.Module], inputs: Any, *, reference: nn.Module,
                 study: str, method: str, rank: int | None = None,
                 accuracy: float | Callable[[Callable], float] | None = None, init: str | None = None,
                 over_seeds: Mapping[str, Any] | None = None, extra_info: Mapping[str, Any] | None = None,
                 ceiling: tuple[Callable[[], Any], Callable[[], Any]] | None = None) -> Any:
        for field, value in (("study", study), ("method", method)):  # they name files and tables
            _valid(value, name, field)
        if study in STUDIES and not set(STUDIES[study].extra_info) <= set(extra_info or {}):
            raise ValueError(f"lowrank(...): study {study!r} is a built-in study's name; give yours another")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"lowrank(...): rank must be a positive int or None, got {rank!r}")
        if not isinstance(model, nn.Module):
            model = model()
        tensors = _tensors(inputs)
        if not tensors or tensors[0].dim() == 0:
            raise ValueError("lowrank(...): inputs must be a batch: a tensor, or a tuple or dict holding tensors")
        device, batch_size = tensors[0].device, tensors[0].shape[0]
        if batch_size < 1:
            raise ValueError("lowrank(...): inputs is an empty batch (its first dimension is 0); give one example "
                             "or more")
        ref_params, ref_flops = self._reference(reference, inputs)

        converted, forward = for_inference(model.eval(), self.dtype, self.mode, device)
        timed_inputs = cast(inputs, self.dtype)
        as_timed = lambda *args, **kwargs: forward(*cast(args, self.dtype), **cast(kwargs, self.dtype))  # noqa: E731
        own_info = dict(extra_info or {})
        if callable(accuracy):
            with torch.no_grad():
                accuracy = accuracy(as_timed)
            if isinstance(accuracy, Mapping):
                if "accuracy" not in accuracy:
                    raise ValueError(f"lowrank(...): the accuracy function returned {sorted(accuracy)}, without "
                                     "the key 'accuracy'")
                own_info |= {k: v for k, v in accuracy.items() if k != "accuracy"}
                accuracy = accuracy["accuracy"]
        clash = sorted(benchjson.RESERVED_EXTRA_INFO & set(own_info))
        if clash:
            raise ValueError(f"lowrank(...): extra_info may not set {clash}: the fixture writes them")
        outcomes = None
        if accuracy is not None and not isinstance(accuracy, numbers.Real):  # one outcome per example
            outcomes = as_matrix(accuracy, "lowrank(...): accuracy")
            if len(outcomes) != 1:
                raise ValueError("lowrank(...): accuracy must hold one outcome per example (a 1-D array); give "
                                 "several seeds' as over_seeds['outcomes']")
            accuracy = float(outcomes.mean())
        if accuracy is not None:
            if isinstance(accuracy, bool) or not isinstance(accuracy, numbers.Real) or not 0 <= accuracy <= 1:
                raise ValueError(f"lowrank(...): accuracy must be a fraction in [0, 1], got {accuracy!r}")
            accuracy = float(accuracy)  # a numpy scalar too: the JSON takes plain numbers
        seeds = {"accuracy": accuracy, "accuracy_ci95": None, "n_seeds": 1, "seed_timed": None}
        if over_seeds is not None:
            given = {k: v for k, v in over_seeds.items() if k != "outcomes"}
            if set(given) != set(seeds):
                raise ValueError(f"lowrank(...): over_seeds must hold exactly {sorted(seeds)} (and optionally "
                                 f"'outcomes'), got {sorted(over_seeds)}")
            seeds, outcomes = given, _seed_outcomes(over_seeds, outcomes is not None)
        _valid({"study": study, "method": method, "rank": rank, "init": init, **seeds, **own_info},
               benchjson.extra_info, "")
        own = measure(converted, timed_inputs, device)
        self.benchmark.extra_info.update({
            "study": study, "kind": "infer", "method": method, "rank": rank, "init": init, "batch_size": batch_size,
            "device": device.type, "dtype": self.dtype, "mode": self.mode, "threads": torch.get_num_threads(),
            **seeds, "accuracy_timed": accuracy,
            "params_total": own.params_total, "params_trainable": own.params_trainable,
            "flops": _number(own.flops / batch_size), "weights_bytes": own.weights_bytes,
            "peak_mem_bytes": own.peak_mem_bytes, "flop_ratio": own.flops / batch_size / ref_flops,
            "reference_params_total": ref_params, "reference_flops": ref_flops, **own_info})
        if outcomes is not None and self._store is not None:
            self.benchmark.extra_info.update(self._store(outcomes))
        if self.benchmark.group is None:  # dtypes and modes never share a group, so `compare` never mixes them
            self.benchmark.group = f"{study}-b{batch_size}-{self.dtype}-{self.mode}"

        def infer():
            with torch.no_grad():
                return call(forward, timed_inputs)
        result = run_timed(self.benchmark, infer, device)
        # Under `lowrank-bench ab` the pairs that count are this model's rounds against the other commit's; the
        # speedup over the reference is `bench`'s to measure, and would cost every process seconds per benchmark.
        if reference is not model and not self.benchmark.disabled and not abwire.active():
            self._paired(infer, reference, timed_inputs, ceiling, device)
        return result

    def _paired(self, infer, reference, inputs, ceiling, device):
        """Time `infer` (the model), `reference` (and the `ceiling` pair) in paired rounds; their ratios into
        extra_info."""
        reference_forward = for_inference(reference.eval(), self.dtype, self.mode, device)[1]
        fns = {MODEL: infer, REFERENCE: lambda: call(reference_forward, inputs)}
        if ceiling is not None:
            fns |= {CEILING_REFERENCE: compiled(ceiling[0], self.mode, device),
                    CEILING_MODEL: compiled(ceiling[1], self.mode, device)}
        with torch.no_grad():
            times = paired_rounds({name: synchronized(fn, device) for name, fn in fns.items()}, **self._paired_span)
        self.benchmark.extra_info.update(paired_times=times, paired_rounds=len(times[MODEL]), **paired_fields(times))

    def _reference(self, reference, inputs):
        """(parameters, FLOPs per example) of `reference` on `inputs` in fp32, measured once per session."""
        if not isinstance(reference, nn.Module):
            raise ValueError(f"lowrank(...): reference must be the nn.Module compared against, got {reference!r}")
        key = (id(reference), tuple((tuple(t.shape), t.dtype) for t in _tensors(inputs)))
        if key not in self._references:  # the model is kept with its numbers, so its id is never reused
            flops = forward_flops(reference.eval(), inputs) / _tensors(inputs)[0].shape[0]
            self._references[key] = (reference, param_counts(reference)["params_total"], _number(flops))
        return self._references[key][1:]
