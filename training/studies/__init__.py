"""One module per study: each trains its models, writes checkpoints and `summary.json` under results/<profile>/.

What a study is (its data, reference, variants, names) is core/spec.py's entry; this package holds how it trains.
`variants` is the one enumeration of what a study trains: its jobs and the benchmark parametrization read it.
"""
import importlib

from lowrank_bench.core.spec import STUDIES as SPECS
from lowrank_bench.models.methods import METHODS

# training/studies/<name>.py of every study in the spec, in its order (dependency order)
MODULES = {name: importlib.import_module(f"lowrank_bench.training.studies.{name}") for name in SPECS}


def methods(study, profile):
    """The decomposition methods `study` runs: the spec's own, else the profile's `methods`."""
    return list(SPECS[study].methods or getattr(profile, study).methods)


def variants(study, profile):
    """The key (study, method, rank, init, embedding) of every variant `study` trains under `profile`: per token
    table (attention's `embeddings`; "learned" is the model's own, None), the unfactored models, then every method,
    start (attention's `inits`) and rank. A calibrated method needs a trained start: a random model's inputs say
    nothing about the data."""
    spec, cfg = SPECS[study], getattr(profile, study)
    keys = []
    for embedding in (None if e == "learned" else e for e in getattr(cfg, "embeddings", ["learned"])):
        keys += [(study, m, None, None, embedding) for m in spec.plain]
        for init in getattr(cfg, "inits", [None]):
            keys += [(study, m, k, init, embedding) for m in methods(study, profile) for k in cfg.ranks
                     if not (init == "random" and m in METHODS and METHODS[m].calibrated)]
    return keys


def timed(study, profile):
    """(method, rank) of every model `study`'s suite times, the unfactored ones first. Models with a pre-defined
    token table are trained and reported, not timed; attention's two starts share one architecture."""
    spec = SPECS[study]
    keys = [(m, r) for _, m, r, _, e in variants(study, profile) if e is None and (r is not None or m in spec.timed)]
    return list(dict.fromkeys(keys))
