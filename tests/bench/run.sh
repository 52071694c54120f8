#!/usr/bin/env bash
# Benchmark estafeta against Postfix (and the other anchors) in ONE
# interleaved run of ../shared/bench, as ratios. Run as root from anywhere:
#
#   bash tests/bench/run.sh                                  # estafeta + postfix-maildir, all workloads
#   bash tests/bench/run.sh smtp-sink postfix-maildir chasquid aiosmtpd-fsync   # more anchors
#   EXTRA="--idle-n 5000" bash tests/bench/run.sh            # idle test with 5,000 sessions
#
# estafeta runs with tracing on (the default) and fsyncs every message
# before 250; its config is tests/bench/estafeta-bench.conf (port 2600,
# local domain bench.test, Maildir under /tmp/smtpbench/estafeta/mail).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bench=${SHARED_BENCH:-$repo/../shared/bench}
[ -x "$repo/.venv/bin/estafeta" ] || bash "$repo/tests/install-deps.sh"
bash "$bench/setup.sh" >/dev/null
rm -rf /tmp/smtpbench/estafeta
mkdir -p /tmp/smtpbench/estafeta/mail/bench.test/user/new
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(postfix-maildir)
start="cd $repo && (.venv/bin/estafeta serve --config tests/bench/estafeta-bench.conf >/tmp/smtpbench/estafeta.log 2>&1 & echo \$!)"
exec "$bench/run.sh" --interleave "${targets[@]}" \
    --custom "estafeta|2600|$start|/tmp/smtpbench/estafeta/mail/bench.test/user/new" \
    --baseline postfix-maildir ${EXTRA:-}
