#!/usr/bin/env bash
# A quick load run for development: one estafeta (this checkout, the
# bench config plus EXTRA config lines) on a fresh data directory, loaded
# by Postfix's smtp-source; prints the accepted-and-delivered rate and the
# CPU time of every process of the daemon per message. Not a comparison
# (that is tests/bench/run.sh, interleaved with Postfix): use it to see
# where the CPU goes, or A/B two builds with CMD=.
#
#   bash tests/bench/quick.sh                    # 3000 x 1 KiB, 10 at once
#   bash tests/bench/quick.sh 4000 100 1024      # N, concurrency, size
#   EXTRA='processes: 1' bash tests/bench/quick.sh
#   CMD=/other/checkout/.venv/bin/estafeta bash tests/bench/quick.sh
#   TMPDIR=/fresh bash tests/bench/quick.sh      # data directory under /fresh (a fresh block group)
#   POLL=1 bash tests/bench/quick.sh             # meanwhile fetch /tree and /metrics every second, as a
#                                                # browser on the tree page and a Prometheus scrape would
#
# Bounded: smtp-source sends N messages (timeout 120 s), the delivery wait
# is at most 60 s. Traffic stays on 127.0.0.1.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-3000}; C=${2:-10}; SIZE=${3:-1024}; PORT=${PORT:-2700}
CMD=${CMD:-$repo/.venv/bin/estafeta}
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || bash "$repo/tests/install-deps.sh"
D=$(mktemp -d "${TMPDIR:-/tmp}/estafeta-quick.XXXXXX")
POLLER=
trap 'kill $POLLER "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$D"' EXIT
HTTP=$((PORT + 1))
sed -e "s|/tmp/smtpbench/estafeta|$D|" -e "s|127.0.0.1:2600|127.0.0.1:$PORT|" -e "s|127.0.0.1:2601|127.0.0.1:$HTTP|" \
    "$repo/tests/bench/estafeta-bench.conf" > "$D/estafeta.conf"
printf '%s\n' "${EXTRA:-}" >> "$D/estafeta.conf"
"$CMD" serve --config "$D/estafeta.conf" > "$D/estafeta.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
sleep 1  # the other serving processes
snap() {  # pid name utime stime, for the daemon and every process below it
    python3 - "$PID" <<'PY'
import os, sys
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(st[1]), []).append(int(d))
        except OSError:
            pass
todo = [int(sys.argv[1])]
while todo:
    p = todo.pop()
    todo += kids.get(p, [])
    try:
        st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        cmd = open(f"/proc/{p}/cmdline").read().split("\0")
    except OSError:
        continue
    name = "disk worker" if "estafeta.store.disk_worker" in cmd else (
        "serving process " + cmd[cmd.index("--process") + 1].split("/")[0] if "--process" in cmd else "daemon (process 0)")
    print(p, name.replace(" ", "_"), st[11], st[12])
PY
}
if [ -n "${POLL:-}" ]; then
    (for _ in $(seq 600); do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$HTTP/tree?fragment=1"
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$HTTP/metrics"
        sleep 1
    done) &
    POLLER=$!
fi
snap > "$D/cpu0"
T0=$(date +%s.%N)
timeout 120 smtp-source -4 -s "$C" -m "$N" -l "$SIZE" -f bench@client.test -t user@bench.test -M client.test "127.0.0.1:$PORT"
for _ in $(seq 6000); do
    [ "$(find "$D/mail/bench.test/user/new" -type f 2>/dev/null | wc -l)" -ge "$N" ] && break
    sleep 0.01
done
T1=$(date +%s.%N)
snap > "$D/cpu1"
python3 - "$D/cpu0" "$D/cpu1" "$N" "$T0" "$T1" "$(find "$D/mail/bench.test/user/new" -type f | wc -l)" <<'PY'
import os, sys
a = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
b = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2])}
n, dt, got = int(sys.argv[3]), float(sys.argv[5]) - float(sys.argv[4]), int(sys.argv[6])
tck = os.sysconf("SC_CLK_TCK")
print(f"{got}/{n} delivered, {n / dt:.0f} msg/s accepted and delivered")
total = 0.0
for pid, (name, u, s) in sorted(b.items(), key=lambda kv: kv[1][0]):
    u0, s0 = (int(x) for x in a.get(pid, (name, 0, 0))[1:])
    du, ds = (int(u) - u0) / tck * 1000 / n, (int(s) - s0) / tck * 1000 / n
    total += du + ds
    print(f"  {name.replace('_', ' '):22} pid {pid:>7}: user {du:.2f}  sys {ds:.2f} ms/msg")
print(f"  {'all':22}              {total:.2f} ms/msg")
PY
