#!/usr/bin/env bash
# The pull-request benchmark gate: run the suite on the change, gate it against a baseline, fail on exit 1 or 2.
#
#   .ci/gate.sh --expect bench/expected/smoke.json [--head HEAD.json]      accuracy floors and exact parameter
#                                                                           counts: holds on any machine
#   .ci/gate.sh --baseline BASE.json [--head HEAD.json] [-- GATE_OPTION…]  latency, memory, accuracy against a run
#                                                                           of the base commit on this machine
#
# Without --head the suite runs first: `lowrank-bench bench --profile P --device D --repeat N --json HEAD.json`
# (it trains missing checkpoints and fetches missing data unless --offline); HEAD.json defaults to
# OUT/<profile>/bench.json. With --head an existing file is gated as it is (.ci/run gates its pipeline's file).
# Keep the baseline as a committed file (--expect) or as an artifact of the base branch (--baseline). Two files
# measured at different times cannot cancel the machine's drift: for a time gate prefer `lowrank-bench ab BASE HEAD`,
# which times both commits interleaved (docs/timing.md).
#
# Options: --profile NAME (smoke), --device DEV (cpu), --repeat N (1), --out DIR (results), --offline.
# $LOWRANK_BENCH is the command to call (default `lowrank-bench`; the tests use `python3 -m lowrank_bench.cli`).
# Exit status: the gate's, 0 pass, 1 regression, 2 unusable input, 3 undecided time checks (with the gate's
# `--undecided fail`, its default); a failed suite run exits 2 as well.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
# The value of option $1, which must follow it: a missing or empty one is a usage error (exit 2), never an
# "unbound variable" (exit 1, which reads as a regression).
value() {
  if (($# < 2)) || [[ -z $2 ]]; then
    echo "gate.sh: $1 needs a value (see .ci/gate.sh --help)" >&2
    exit 2
  fi
}
expect="" baseline="" head="" profile=smoke device=cpu repeat=1 out=results offline=() gate_args=()
while (($#)); do
  case "$1" in
    --expect) value "$@"; expect="$2"; shift 2 ;;
    --baseline) value "$@"; baseline="$2"; shift 2 ;;
    --head) value "$@"; head="$2"; shift 2 ;;
    --profile) value "$@"; profile="$2"; shift 2 ;;
    --device) value "$@"; device="$2"; shift 2 ;;
    --repeat) value "$@"; repeat="$2"; shift 2 ;;
    --out) value "$@"; out="$2"; shift 2 ;;
    --offline) offline=(--offline); shift ;;
    --) shift; gate_args=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "gate.sh: unknown argument $1 (see .ci/gate.sh --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $expect && -n $baseline ]] || [[ -z $expect && -z $baseline ]]; then
  echo "gate.sh: give exactly one of --expect FILE and --baseline FILE (see .ci/gate.sh --help)" >&2
  exit 2
fi
read -r -a bench <<<"${LOWRANK_BENCH:-lowrank-bench}"  # split on purpose: "python3 -m lowrank_bench.cli" is 3 words

if [[ -z $head ]]; then
  head="$out/$profile/bench.json"
  echo "gate.sh: running the suite on the change into $head"
  "${bench[@]}" bench --profile "$profile" --device "$device" --out "$out" --repeat "$repeat" --json "$head" \
    ${offline[@]+"${offline[@]}"} || { echo "gate.sh: FAILED: the benchmark suite did not finish" >&2; exit 2; }
fi

rc=0
if [[ -n $expect ]]; then
  "${bench[@]}" gate --expect "$expect" "$head" ${gate_args[@]+"${gate_args[@]}"} || rc=$?
else
  "${bench[@]}" gate "$baseline" "$head" ${gate_args[@]+"${gate_args[@]}"} || rc=$?
fi
case $rc in
  0) echo "gate.sh: passed ($head against ${expect:-$baseline})" ;;
  1) echo "gate.sh: FAILED: a regression against ${expect:-$baseline} (the table above names it)" >&2 ;;
  3) echo "gate.sh: UNDECIDED: the two files cannot tell some times apart; measure with lowrank-bench ab" >&2 ;;
  *) echo "gate.sh: FAILED: unusable input (gate exit $rc; the line above says which file)" >&2 ;;
esac
exit "$rc"
