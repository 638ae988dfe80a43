"""Collect the studies' results and pytest-benchmark JSON files into tables and figures.

Writes results/<profile>/tables/*.{csv,md,tex} and results/<profile>/figures/*.{png,pdf}, plus
results/<profile>/collected.json (everything as one dict, which the LaTeX report reads). A study that was not run
is skipped, so the output grows with the studies. The first benchmark file is the reference for latency tables and
figures; with several files, a comparison table per study joins them on `fullname` and gives each file's median
latency as a ratio to the first's. Reading is `report.results`, tables `report.tables`, figures `report.figures`.

collected.json names files relative to the results folder (a benchmark file outside it by its absolute path), so
a copied results folder reads its own files; it is also the manifest of what the collector wrote there. A collection
replaces an earlier one in its folder only when it has the same reference file (or the earlier one's is gone): a
user's file collected into a profile's folder would remove that profile's latency tables and figures, and the next
report would read the user's file alone. `lowrank-bench collect` therefore gives a user's own benchmark files a
folder of their own (`own_folder`).
"""
from pathlib import Path

from lowrank_bench.core.benchjson import load_bench
from lowrank_bench.core.io import UserError, confined, read_json, remove_leftovers, write_json
from lowrank_bench.core.schema import boolean, dict_of, list_of, name, record, relative_path, text, validate
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report import benchstudy, tables as t
from lowrank_bench.report.figures import study_figures
from lowrank_bench.report.results import accuracy_by_axes, load_benches, load_study, primary, speedup_cells, timed_seeds


def _bench_file(v):
    """A benchmark file as collected.json names it: relative to the results folder, or absolute (outside it)."""
    if isinstance(v, str) and v.startswith("/") and ".." not in v.split("/"):
        return text(v)
    return relative_path(v)


def _written_file(v):
    """A table or figure collected.json lists: only its file name is used (so an older, absolute path reads)."""
    name(Path(text(v)).name)
    return v


_WRITTEN = dict_of(name, dict_of(name, _written_file))
_COLLECTED = record({"bench_files": list_of(_bench_file), "tables": _WRITTEN, "figures": _WRITTEN},
                    {"across_profiles": boolean})


def read_collected(results_dir):
    """The last collection's collected.json in `results_dir`, checked; None when there is none."""
    path = Path(results_dir) / "collected.json"
    if not path.exists():
        return None
    return validate(read_json(path), _COLLECTED, path, "delete it and run `lowrank-bench collect` again")


def _written_before(prior, results_dir):
    """The tables and figures the previous collection wrote (its collected.json is the manifest): only these may be
    removed, never a file the user put there."""
    return [confined(results_dir, f"{kind}/{Path(p).name}") for kind in ("tables", "figures") if prior
            for paths in prior[kind].values() for p in paths.values()]


def own_folder(bench_files):
    """The folder name for benchmark files that hold only users' own studies (no built-in study's benchmark): the
    first file's name without .json (`out.json` -> `out`); None for the built-in suites' files (or none given), whose
    results are a profile's."""
    studies = {b["extra_info"].get("study") for f in bench_files for b in load_bench(f)["benchmarks"]}
    if not bench_files or studies & set(STUDIES):
        return None
    folder = Path(bench_files[0]).stem
    if not folder or folder.startswith("."):
        raise UserError(f"{bench_files[0]}: its name makes no folder name (it starts with a dot); rename it, e.g. "
                        f"mine.json")
    return folder


def _refuse_another_reference(prior, results_dir, bench_files):
    """A UserError when `results_dir` holds an earlier collection of another reference file that still exists:
    collecting here would remove the tables and figures it wrote and make its report read these files instead."""
    before = prior["bench_files"][0] if prior and prior["bench_files"] else None
    now = _stored(bench_files[0], results_dir) if bench_files else None
    if before is not None and before != now and (results_dir / before).is_file():
        raise UserError(f"{results_dir} holds the tables and figures collected from {before}; collecting "
                        f"{now or 'without a benchmark file'} there would replace them: give --out another folder, "
                        f"or delete {results_dir / 'collected.json'} to collect this folder afresh")


def _stored(path, results_dir):
    """How collected.json names `path`: relative to the results folder when inside it, else absolute."""
    path, root = Path(path).resolve(), Path(results_dir).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def check_profiles(machines, profiles, results_dir, bench):
    """Refuse a benchmark file measured under another profile than the results', or whose built-in studies'
    benchmarks do not say which: its timings would be tabulated beside accuracies they were not measured with."""
    for m in machines:
        if m["profile"] is None and any(b["file"] == m["label"] and b["study"] in STUDIES for b in bench):
            raise UserError(f"{m['file']}: its benchmarks carry no extra_info.profile, so nothing says they were "
                            f"measured under profile {', '.join(sorted(profiles))} of the results in {results_dir}; "
                            f"give the benchmark file `lowrank-bench bench` wrote, or pass --across-profiles")
        if m["profile"] is not None and m["profile"] not in profiles:
            raise UserError(f"{m['file']}: benchmarks of profile {m['profile']}, but the results in {results_dir} are "
                            f"of profile {', '.join(sorted(profiles))}; give that profile's benchmark file, or pass "
                            f"--across-profiles to compare across profiles")


def collect(results_dir: Path, bench_files: list[Path], across_profiles=False) -> dict:
    """Read every study present under `results_dir` and the benchmark files; write tables and figures. A benchmark
    file of another profile is refused unless `across_profiles`."""
    results_dir, bench_files = Path(results_dir), [Path(p) for p in bench_files]
    prior = read_collected(results_dir)
    _refuse_another_reference(prior, results_dir, bench_files)
    studies = {s: d for s in STUDIES if (d := load_study(results_dir, s))}
    bench, machines = load_benches(bench_files)
    own = benchstudy.studies(bench)  # the user's own, benchmarked with the `lowrank` fixture: no results folder
    if not studies and not own:
        raise UserError(f"{results_dir}: no study results (svd/, lora/ or attention/summary.json); "
                        f"run `lowrank-bench train <study>` for this profile first")
    if not across_profiles and studies:
        check_profiles(machines, {d["meta"]["profile"] for d in studies.values()}, results_dir, bench)
    labels = [m["label"] for m in machines]
    reference = [b for b in bench if b["file"] == labels[0]] if labels else []
    one_axis = primary(bench)  # latency tables and figures: one dtype and mode, never a mix
    tables_dir, figures_dir = confined(results_dir, "tables"), confined(results_dir, "figures")
    target = confined(results_dir, "collected.json")
    written_before = _written_before(prior, results_dir)
    for folder in (results_dir, tables_dir, figures_dir):  # what a killed collection left
        remove_leftovers(folder)
    tables, figures = {}, {}
    if machines:
        tables["machines"] = t.write_table(tables_dir, "machines", *t.machines_table(machines))
    for study, d in studies.items():
        tables[f"{study}_results"] = t.write_table(tables_dir, f"{study}_results", *t.results_table(d))
        if (table := t.verdict_table(d)):
            tables[f"{study}_verdicts"] = t.write_table(tables_dir, f"{study}_verdicts", *table)
        if study == "svd" and d["layers"]:
            tables["svd_layers"] = t.write_table(tables_dir, "svd_layers", *t.layers_table(d["layers"]))
        if (table := t.latency_table(d, primary(reference))):
            tables[f"{study}_latency"] = t.write_table(tables_dir, f"{study}_latency", *table)
        if study == "svd" and (table := t.ceiling_table(reference)):  # every dtype and mode, each its own ceiling
            tables["svd_ceiling"] = t.write_table(tables_dir, "svd_ceiling", *table,
                                                  longtable_caption="\\SvdCeilingCaption")
        if (maps := speedup_cells(study, reference)):
            table = t.speedup_map_table(maps, accuracy_by_axes(study, reference), STUDIES[study].reference,
                                        timed_seeds(study, reference))
            tables[f"{study}_speedup_map"] = t.write_table(tables_dir, f"{study}_speedup_map", *table,
                                                           longtable_caption=f"\\SpeedupCaption{{{study}}}")
        if (table := t.comparison_table(d, bench, labels)):
            tables[f"{study}_comparison"] = t.write_table(tables_dir, f"{study}_comparison", *table,
                                                          longtable_caption=f"\\ComparisonCaption{{{study}}}")
        figures |= study_figures(d, one_axis, figures_dir, bench)
    choices = {}
    for study in own:
        decided, choices[study] = benchstudy.decide(study, bench, bench_files[0])
        tables[f"{study}_bench"] = t.write_table(tables_dir, f"{study}_bench",
                                                 *benchstudy.table(study, bench, bench_files[0], decided))
        figures |= benchstudy.figures(study, one_axis, figures_dir, decided)
    made = {Path(p).name for kind in (tables, figures) for paths in kind.values() for p in paths.values()}
    for old in written_before:
        if old.name not in made and old.is_file():  # from an earlier run with a study or benchmark file gone now
            old.unlink()
    tables, figures = ({key: {ext: _stored(p, results_dir) for ext, p in paths.items()} for key, paths in kind.items()}
                       for kind in (tables, figures))
    for m in machines:
        m["file"] = _stored(m["file"], results_dir)
    collected = {"profile": results_dir.name, "bench_files": [_stored(p, results_dir) for p in bench_files],
                 "across_profiles": across_profiles, "machines": machines, "studies": studies,
                 "bench_studies": own, "bench_choices": choices, "bench": bench,
                 "tables": tables, "figures": figures}
    write_json(target, collected)
    return collected


def add_arguments(parser):
    """The collector's own arguments; --out and --profile come from the CLI's common options."""
    parser.add_argument("bench", nargs="*", type=Path, metavar="BENCH.json",
                        help="pytest-benchmark JSON files (default: OUT/<profile>/bench.json when it exists); "
                             "the first is the reference, the others are compared with it")
    parser.add_argument("--across-profiles", action="store_true",
                        help="accept benchmark files measured under another profile than the results' (their "
                             "extra_info.profile); without it such a file is refused")


def describe(c, results_dir) -> str:
    """What collection `c` of `results_dir` wrote, in one line."""
    absent = [s for s in STUDIES if s not in c["studies"]] if c["studies"] else []
    return (f"collected {', '.join([*c['studies'], *c['bench_studies']])}"
            + (f" ({', '.join(absent)} not run)" if absent else "")
            + f" with {len(c['bench_files'])} benchmark file(s): {len(c['tables'])} tables in "
              f"{results_dir / 'tables'}, {len(c['figures'])} figures in {results_dir / 'figures'}")


def main(results_dir, bench_files, across_profiles=False) -> int:
    """`lowrank-bench collect`: collect and say what was written."""
    c = collect(results_dir, bench_files, across_profiles)
    print(describe(c, results_dir))
    for study, choices in c["bench_choices"].items():
        for choice in choices:
            print(benchstudy.choice_line(study, choice))
    return 0


