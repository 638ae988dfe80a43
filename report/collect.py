"""Collect the studies' results and pytest-benchmark JSON files into tables and figures.

Writes results/<profile>/tables/*.{csv,md,tex} and results/<profile>/figures/*.{png,pdf}, plus
results/<profile>/collected.json (everything as one dict, which the LaTeX report reads). A study that was not run
is skipped, so the output grows with the studies. The first benchmark file is the reference for latency tables and
figures; with several files, a comparison table per study joins them on `fullname` and gives each file's median
latency as a ratio to the first's. Reading is `report.results`, tables `report.tables`, figures `report.figures`.
"""
import json
from pathlib import Path

from core.io import UserError, write_json
from report import benchstudy, tables as t
from report.figures import study_figures
from core.spec import STUDIES
from report.results import ( accuracy_by_axes, load_benches, load_study, primary,
                            speedup_cells)


def _written_before(results_dir):
    """The tables and figures the previous collection wrote, as listed in its collected.json (the manifest): only
    these may be removed, never a file the user put there. None when there is no readable manifest."""
    try:
        prior = json.loads((results_dir / "collected.json").read_text())
        return [results_dir / kind / Path(p).name for kind in ("tables", "figures")
                for paths in prior[kind].values() for p in paths.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def collect(results_dir: Path, bench_files: list[Path]) -> dict:
    """Read every study present under `results_dir` and the benchmark files; write tables and figures."""
    results_dir, bench_files = Path(results_dir), [Path(p) for p in bench_files]
    studies = {s: d for s in STUDIES if (d := load_study(results_dir, s))}
    bench, machines = load_benches(bench_files)
    own = benchstudy.studies(bench)  # the user's own, benchmarked with the `lowrank` fixture: no results folder
    if not studies and not own:
        raise UserError(f"{results_dir}: no study results (svd/, lora/ or attention/summary.json); "
                        f"run `lowrank-bench train <study>` for this profile first")
    labels = [m["label"] for m in machines]
    reference = [b for b in bench if b["file"] == labels[0]] if labels else []
    one_axis = primary(bench)  # latency tables and figures: one dtype and mode, never a mix
    tables_dir, figures_dir = results_dir / "tables", results_dir / "figures"
    written_before = _written_before(results_dir)
    tables, figures = {}, {}
    if machines:
        tables["machines"] = t.write_table(tables_dir, "machines", *t.machines_table(machines))
    for study, d in studies.items():
        tables[f"{study}_results"] = t.write_table(tables_dir, f"{study}_results", *t.results_table(d))
        if study == "svd" and d["layers"]:
            tables["svd_layers"] = t.write_table(tables_dir, "svd_layers", *t.layers_table(d["layers"]))
        if (table := t.latency_table(d, primary(reference))):
            tables[f"{study}_latency"] = t.write_table(tables_dir, f"{study}_latency", *table)
        if study == "svd" and (table := t.ceiling_table(reference)):  # every dtype and mode, each its own ceiling
            tables["svd_ceiling"] = t.write_table(tables_dir, "svd_ceiling", *table,
                                                  longtable_caption="\\SvdCeilingCaption")
        if (maps := speedup_cells(study, reference)):
            table = t.speedup_map_table(maps, accuracy_by_axes(study, reference), STUDIES[study].reference)
            tables[f"{study}_speedup_map"] = t.write_table(tables_dir, f"{study}_speedup_map", *table,
                                                           longtable_caption=f"\\SpeedupCaption{{{study}}}")
        if (table := t.comparison_table(d, bench, labels)):
            tables[f"{study}_comparison"] = t.write_table(tables_dir, f"{study}_comparison", *table,
                                                          longtable_caption=f"\\ComparisonCaption{{{study}}}")
        figures |= study_figures(d, one_axis, figures_dir, bench)
    for study in own:
        tables[f"{study}_bench"] = t.write_table(tables_dir, f"{study}_bench", *benchstudy.table(study, bench,
                                                                                                bench_files[0]))
        figures |= benchstudy.figures(study, one_axis, figures_dir)
    made = {Path(p).name for kind in (tables, figures) for paths in kind.values() for p in paths.values()}
    for old in written_before:
        if old.name not in made and old.is_file():  # from an earlier run with a study or benchmark file gone now
            old.unlink()
    collected = {"results_dir": str(results_dir), "profile": results_dir.name,
                 "bench_files": [str(p) for p in bench_files], "machines": machines, "studies": studies,
                 "bench_studies": own,
                 "bench": bench, "tables": tables, "figures": figures}
    write_json(results_dir / "collected.json", collected)
    return collected


def add_arguments(parser):
    """The collector's own arguments; --out and --profile come from the CLI's common options."""
    parser.add_argument("bench", nargs="*", type=Path, metavar="BENCH.json",
                        help="pytest-benchmark JSON files (default: OUT/<profile>/bench.json when it exists); "
                             "the first is the reference, the others are compared with it")


def main(results_dir, bench_files) -> int:
    """`lowrank-bench collect`: collect and say what was written."""
    c = collect(results_dir, bench_files)
    absent = [s for s in STUDIES if s not in c["studies"]] if c["studies"] else []
    print(f"collected {', '.join([*c['studies'], *c['bench_studies']])}"
          + (f" ({', '.join(absent)} not run)" if absent else "")
          + f" with {len(c['bench_files'])} benchmark file(s): {len(c['tables'])} tables in {results_dir / 'tables'}, "
            f"{len(c['figures'])} figures in {results_dir / 'figures'}")
    return 0


