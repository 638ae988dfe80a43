"""`.ci/gate.sh`, the CI gate recipe (.ci/run and the example workflow call it), on fixture benchmark JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lowrank_bench import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "fixtures" / "bench_sample.json"
CLI = f"{sys.executable} -m lowrank_bench.cli"  # this checkout's CLI, not an installed `lowrank-bench`


def gate_sh(*args, command=CLI):
    proc = subprocess.run(["bash", str(REPO / ".ci" / "gate.sh"), *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "LOWRANK_BENCH": command})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def slower(tmp_path):
    """The sample with every round of every benchmark twice as long: a time regression on the same machine."""
    bench = json.loads(SAMPLE.read_text())
    for b in bench["benchmarks"]:
        b["stats"]["median"] *= 2
        b["stats"]["data"] = [2 * t for t in b["stats"]["data"]]
    path = tmp_path / "slower.json"
    path.write_text(json.dumps(bench))
    return path


def test_gate_passes_fails_and_refuses(slower, tmp_path):
    rc, out, _ = gate_sh("--baseline", SAMPLE, "--head", SAMPLE)
    assert rc == 0 and "gate.sh: passed" in out
    # Five rounds a side: even twice as slow cannot be told at a 5 % family-wise level over 51 benchmarks
    rc, out, err = gate_sh("--baseline", SAMPLE, "--head", slower)
    assert rc == 3 and "gate.sh: UNDECIDED" in err and "lowrank-bench ab" in err
    bigger = json.loads(slower.read_text())
    bigger["benchmarks"][0]["extra_info"]["params_total"] += 1
    (tmp_path / "bigger.json").write_text(json.dumps(bigger))
    rc, out, err = gate_sh("--baseline", SAMPLE, "--head", tmp_path / "bigger.json")
    assert rc == 1 and "FAIL" in out and "gate.sh: FAILED: a regression" in err
    rc, _, err = gate_sh("--baseline", SAMPLE, "--head", tmp_path / "absent.json")
    assert rc == 2 and "absent.json" in err and "unusable input" in err
    rc, _, err = gate_sh("--head", SAMPLE)
    assert rc == 2 and "exactly one of --expect FILE and --baseline FILE" in err


@pytest.mark.parametrize("args", [["--baseline", SAMPLE, "--head"], ["--head", "", "--baseline", SAMPLE],
                                  ["--expect"]])
def test_an_option_without_its_value_is_a_usage_error(args):
    """Exit 2 with one line, never bash's "unbound variable" (exit 1, which reads as a regression)."""
    rc, out, err = gate_sh(*args)
    option = next(a for a in args if a in ("--head", "--expect"))
    assert rc == 2 and out == "" and err == f"gate.sh: {option} needs a value (see .ci/gate.sh --help)\n"


def test_expectations_mode(tmp_path):
    expect = tmp_path / "expect.json"
    assert cli.main(["gate", "--write-expect", str(expect), str(SAMPLE)]) == 0
    assert gate_sh("--expect", expect, "--head", SAMPLE)[0] == 0
    bench = json.loads(SAMPLE.read_text())
    bench["benchmarks"][0]["extra_info"]["params_total"] += 1  # a parameter count that moved
    (tmp_path / "head.json").write_text(json.dumps(bench))
    assert gate_sh("--expect", expect, "--head", tmp_path / "head.json")[0] == 1


def test_without_head_the_suite_runs_first(tmp_path):
    """With no --head, the script runs `bench` with its profile, device, repeat and out, then gates that file with
    the options after `--` (a stand-in command records both calls)."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-lowrank-bench"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [[ $1 == bench ]]; then  # the suite: copy the sample to the --json path
  while (($#)); do [[ $1 == --json ]] && mkdir -p "$(dirname "$2")" && cp {SAMPLE} "$2"; shift; done
fi
""")
    fake.chmod(0o755)
    out = tmp_path / "results"
    rc, stdout, _ = gate_sh("--baseline", SAMPLE, "--profile", "quick", "--repeat", "3", "--out", out, "--offline",
                            "--", "--undecided", "pass", command=str(fake))
    head = out / "quick" / "bench.json"
    assert rc == 0 and head.is_file()
    bench_call, gate_call = log.read_text().splitlines()
    assert bench_call == f"bench --profile quick --device cpu --out {out} --repeat 3 --json {head} --offline"
    assert gate_call == f"gate {SAMPLE} {head} --undecided pass"
    assert gate_sh("--baseline", SAMPLE, command="false")[0] == 2  # a suite that fails fails the gate
