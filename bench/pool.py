"""Pool N runs of one benchmark suite, each in its own process, into one pytest-benchmark document.

A process carries a bias of its own: where its tensors land in physical memory and the caches, what the other
vCPU's neighbour is doing. On a shared 2-vCPU VM that moved single benchmarks by 30-70 % from one run to the
next while the rounds inside a run agreed within a few percent, so more rounds cannot average it away; more
processes can (pyperf spawns worker processes for the same reason). The pooled min and max are those of all
rounds together (the least and greatest over the runs): a disturbance only ever adds time, so the min of
several processes is the steadiest estimate, and `gate --stat min` on pooled files is the robust A/B test.
Every other stat is the median of that stat over the runs, so one disturbed process cannot move it.
`extra_info.run_medians` keeps every run's median so the spread stays visible, and `stats.data` every round of
every run, in run order, with `extra_info.run_rounds` saying how many came from each run (the gate resamples runs,
then rounds).
"""
import statistics

from lowrank_bench.core.benchjson import STAT_FIELDS, by_fullname, is_number, machine_summary
from lowrank_bench.bench.speedups import add_speedups
from lowrank_bench.core.io import UserError


def pool_runs(runs: list[dict], paths: list) -> dict:
    """One document from `runs` (loaded pytest-benchmark JSON, `paths` name them in errors)."""
    first, keyed = runs[0], [by_fullname(run) for run in runs]
    for run, benches, path in zip(runs[1:], keyed[1:], paths[1:]):
        if machine_summary(run) != machine_summary(first):
            raise UserError(f"{path}: machine_info differs from {paths[0]} ({machine_summary(run)} vs "
                            f"{machine_summary(first)}); pool only runs of one machine and thread count")
        if benches.keys() != keyed[0].keys():
            raise UserError(f"{path}: holds other benchmarks than {paths[0]}; pool only runs of one suite")
    pooled = []
    for name, bench in keyed[0].items():
        records = [k[name]["stats"] for k in keyed]
        stats = {field: statistics.median(r[field] for r in records) if is_number(bench["stats"][field])
                 else bench["stats"][field] for field in STAT_FIELDS if field in bench["stats"]}
        stats |= {"min": min(r["min"] for r in records), "max": max(r["max"] for r in records),
                  "rounds": sum(r["rounds"] for r in records)}
        extra = {**bench["extra_info"], "run_medians": [r["median"] for r in records]}
        if all("data" in r for r in records):  # every round, and which run it came from, for the gate's interval
            stats["data"] = [t for r in records for t in r["data"]]
            extra["run_rounds"] = [len(r["data"]) for r in records]
        pooled.append({**bench, "stats": stats, "extra_info": extra})
    add_speedups(pooled)  # from the pooled times, not any one run's
    return {**first, "benchmarks": pooled, "datetime": runs[-1].get("datetime")}
