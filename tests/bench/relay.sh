#!/usr/bin/env bash
# Relay benchmark (issue 8): smtp-source -> Postfix relay | estafeta ->
# smtp-sink on loopback, interleaved in one run; prints a markdown table
# for docs/PERFORMANCE.md. Run as root from anywhere:
#
#   bash tests/bench/relay.sh                            # postfix + estafeta, 1 KiB c=10 and c=100, 3 runs each
#   bash tests/bench/relay.sh --targets postfix --runs 1 # a quick look at one MTA
#   bash tests/bench/relay.sh --estafeta-route mx        # estafeta finds the sink by MX in a private Knot
#   bash tests/bench/relay.sh --sink-probe               # smtp-sink's cost: -c counter vs -d one file per message
#   bash tests/bench/relay.sh --help                     # every knob
#
# Inside ../shared/bench/run.sh: a fresh network namespace with loopback
# only. Work files under $SMTPBENCH_TMP/relay (default /tmp/smtpbench),
# results (JSON, table, log) under $SMTPBENCH_TMP/results.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bench=${SHARED_BENCH:-}
# the shared harness beside the checkout (../shared/bench), or beside its parent for a worktree
for d in "$repo/../shared/bench" "$repo/../../shared/bench"; do [ -n "$bench" ] || [ ! -x "$d/run.sh" ] || bench=$(cd "$d" && pwd); done
[ -n "$bench" ] || { echo "no ../shared/bench: set SHARED_BENCH" >&2; exit 2; }
[ -x "$repo/.venv/bin/estafeta" ] && [ -x /usr/sbin/smtp-sink ] || bash "$repo/tests/install-deps.sh"
export SMTPBENCH_TMP=${SMTPBENCH_TMP:-/tmp/smtpbench}
export SHARED_BENCH=$bench
RUN="$repo/.venv/bin/python $repo/tests/bench/${BENCH_SCRIPT:-relay.py}" exec "$bench/run.sh" "$@"
