#!/usr/bin/env bash
# Benchmark estafeta against Postfix (and the other anchors) in ONE
# interleaved run of ../shared/bench, as ratios. Run as root from anywhere:
#
#   bash tests/bench/run.sh                                  # estafeta + postfix-maildir, all workloads
#   bash tests/bench/run.sh smtp-sink postfix-maildir chasquid aiosmtpd-fsync   # more anchors
#   EXTRA="--idle-n 5000" bash tests/bench/run.sh            # idle test with 5,000 sessions
#   SMTPBENCH_TMP=/smtpbench bash tests/bench/run.sh         # the harness's work tree elsewhere
#   ALSO='p1|processes: 1' bash tests/bench/run.sh           # plus a target "estafeta-p1": the same config
#                                                            # with that line added (port 2610), in the same run
#   POLL=1 bash tests/bench/run.sh                           # while estafeta runs, fetch its tree page's fragment
#                                                            # and /metrics every second (a browser on the tree
#                                                            # page, a Prometheus scrape), inside the run's namespace
#
# SMTPBENCH_TMP (default /tmp/smtpbench) is the harness's own variable: every
# target's queue and Maildir live under it. A fresh top-level directory
# gives every target file system block groups without the inodes freed by
# earlier runs, which ext4 without a journal scans past on each file
# creation (docs/PERFORMANCE.md).
#
# estafeta runs with tracing on (the default) and fsyncs every message
# before 250; its config is tests/bench/estafeta-bench.conf (port 2600,
# local domain bench.test, Maildir under /tmp/smtpbench/estafeta/mail).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bench=${SHARED_BENCH:-$repo/../shared/bench}
[ -x "$repo/.venv/bin/estafeta" ] || bash "$repo/tests/install-deps.sh"
bash "$bench/setup.sh" >/dev/null
tmp=${SMTPBENCH_TMP:-/tmp/smtpbench}
export SMTPBENCH_TMP=$tmp
rm -rf "$tmp/estafeta"
mkdir -p "$tmp/estafeta/mail/bench.test/user/new"
sed -e "s|/tmp/smtpbench/estafeta|$tmp/estafeta|" "$repo/tests/bench/estafeta-bench.conf" >"$tmp/estafeta.conf"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(postfix-maildir)
poller=""
if [ -n "${POLL:-}" ]; then  # bounded: ends with the daemon (or after 3,600 fetches)
    # no "|" in it: the harness splits --custom on "|"
    poller="(for _ in \$(seq 3600); do if [ ! -d /proc/\$p ]; then break; fi; curl -s -o /dev/null --max-time 5 http://127.0.0.1:2601/tree?fragment=1; curl -s -o /dev/null --max-time 5 http://127.0.0.1:2601/metrics; sleep 1; done) >/dev/null 2>&1 &"
fi
start="cd $repo && (.venv/bin/estafeta serve --config $tmp/estafeta.conf >$tmp/estafeta.log 2>&1 & p=\$!; $poller echo \$p)"
custom=(--custom "estafeta|2600|$start|$tmp/estafeta/mail/bench.test/user/new")
if [ -n "${ALSO:-}" ]; then  # a variant of the config, as a target of its own
    name=${ALSO%%|*}; line=${ALSO#*|}; d=$tmp/estafeta-$name
    rm -rf "$d"; mkdir -p "$d/mail/bench.test/user/new"
    sed -e "s|/tmp/smtpbench/estafeta|$d|" -e "s|127.0.0.1:2600|127.0.0.1:2610|" -e "s|127.0.0.1:2601|127.0.0.1:2611|" \
        "$repo/tests/bench/estafeta-bench.conf" >"$d.conf"
    printf '%s\n' "$line" >>"$d.conf"
    custom+=(--custom "estafeta-$name|2610|cd $repo && (.venv/bin/estafeta serve --config $d.conf >$d.log 2>&1 & echo \$!)|$d/mail/bench.test/user/new")
fi
exec "$bench/run.sh" --interleave "${targets[@]}" "${custom[@]}" \
    --baseline postfix-maildir ${EXTRA:-}
