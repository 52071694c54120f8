"""Relay benchmark (issue 8): Postfix's smtp-source -> the MTA under test ->
a remote MX that is Postfix's smtp-sink on loopback, counted at the sink.

    bash tests/bench/relay.sh                        # Postfix and estafeta, 1 KiB c=10 and c=100, 3 runs
    bash tests/bench/relay.sh --targets postfix      # one MTA
    bash tests/bench/relay.sh --sink-probe           # smtp-sink's own cost, -c counter vs -d dump files

(relay.sh runs this inside ../shared/bench/run.sh: a network namespace
with loopback only.) Targets, interleaved round-robin in one run:

  postfix   a private Postfix relay (benchlib.PostfixInstance: its own
            main.cf/master.cf and queue under $SMTPBENCH_TMP/relay/postfix):
            mynetworks 127.0.0.0/8, relayhost = [127.0.0.1]:<its sink>;
            cleanup(8) fsyncs the queue file before smtpd's 250; smtp(8)
            with its defaults (20 connections per destination, connection
            cache on demand)
  estafeta  `estafeta serve` of this checkout, relay_network 127.0.0.0/8,
            tracing on (the default), every message fsync'd before 250;
            --estafeta-route smarthost (default): transport "sink" =
            smarthost 127.0.0.1:<its sink>, route "*" -> sink; mx: a private
            Knot (tests/peers/dns_server.py) serving remote.test MX ->
            127.0.0.1, resolver = Knot, remote_smtp_port = <its sink>

Each target has its own smtp-sink. Per run: smtp-source sends N messages
(one connection each, -s C, -l SIZE) to user@remote.test; relayed msg/s =
N / (time from smtp-source's start until the sink has counted all N). N is
calibrated so a run lasts ~--run-secs. CPU per relayed message: the MTA's
whole process tree (with reaped children), the sink, smtp-source.
"""

from __future__ import annotations

import abc
import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import benchlib as bl

sys.path.insert(0, str(bl.REPO / "tests"))

SENDER, RECIPIENT, DOMAIN = "bench@client.test", "user@remote.test", "remote.test"
WORKLOADS = {"1k-c10": bl.Workload("1k-c10", 1024, 10), "1k-c100": bl.Workload("1k-c100", 1024, 100)}

ESTAFETA_CONF = """\
# estafeta as a relay for tests/bench/relay.py
hostname: "relay.estafeta.test"
data_dir: "{data_dir}"
smtp_address: "127.0.0.1:{port}"
relay_network: "127.0.0.0/8"
max_connections: 20000
log_level: "warning"
"""
SMARTHOST_CONF = """\
transport {{ name: "sink" smarthost {{ address: "127.0.0.1:{sink}" }} }}
route {{ domain: "*" transport: "sink" }}
"""
MX_CONF = """\
resolver: "{resolver}"
remote_smtp_port: {sink}
"""


class RelayTarget(abc.ABC):
    """An MTA with its own sink: name, port (its SMTP listener), pid (the
    root of its process tree), start(), stop()."""

    def __init__(self, name: str, sink: bl.SmtpSink):
        self.name = name
        self.sink = sink
        self.port = bl.free_port()

    @property
    @abc.abstractmethod
    def pid(self) -> int | None: ...

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...


class PostfixRelay(RelayTarget):
    def __init__(self, base: Path, sink: bl.SmtpSink):
        super().__init__("postfix", sink)
        self.base = base
        self.pf: bl.PostfixInstance | None = None

    @property
    def pid(self) -> int | None:
        return self.pf.pid if self.pf else None

    def start(self) -> None:
        self.sink.start()
        main = [
            "myhostname = relay.postfix.test",
            "mydomain = postfix.test",
            "myorigin = $myhostname",
            "mydestination =",
            "local_recipient_maps =",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            f"relayhost = [{bl.HOST}]:{self.sink.port}",
            "smtp_tls_security_level = none",
        ]
        self.pf = bl.PostfixInstance(self.base, self.port, main).start()

    def stop(self) -> None:
        if self.pf:
            self.pf.stop()
        self.sink.stop()


class EstafetaRelay(RelayTarget):
    def __init__(self, base: Path, sink: bl.SmtpSink, route: str, extra: str):
        super().__init__("estafeta", sink)
        self.base = base
        self.route = route
        self.extra = extra
        self.knot = None
        self.mta: bl.Estafeta | None = None

    @property
    def pid(self) -> int | None:
        return self.mta.pid if self.mta else None

    def config(self, sink_port: int, resolver: str = "127.0.0.1:53") -> str:
        conf = ESTAFETA_CONF.format(data_dir=self.base / "data", port=self.port)
        if self.route == "mx":
            conf += MX_CONF.format(resolver=resolver, sink=sink_port)
        else:
            conf += SMARTHOST_CONF.format(sink=sink_port)
        return conf + self.extra

    def check(self) -> str | None:
        """`estafeta config check` of the config this target would run."""
        return bl.Estafeta(self.base / "data", self.config(1025), self.port).check()

    def start(self) -> None:
        self.sink.start()
        resolver = "127.0.0.1:53"
        if self.route == "mx":
            from peers.dns_server import DnsServer

            self.knot = DnsServer(self.base / "knot")
            self.knot.set_zone(DOMAIN, "@ MX 10 mx\nmx A 127.0.0.1\n")
            self.knot.start()
            resolver = self.knot.address
        self.mta = bl.Estafeta(self.base / "data", self.config(self.sink.port, resolver), self.port)
        self.mta.write_config()
        self.mta.start()

    def stop(self) -> None:
        if self.mta:
            self.mta.stop()
        if self.knot is not None:
            self.knot.stop()
        self.sink.stop()


def one_run(t: RelayTarget, wl: bl.Workload, n: int, args) -> dict:
    """Send n messages through t; the run's numbers (benchlib.RunFn)."""
    c0, sess0, tree0 = t.sink.count(), t.sink.sessions(), bl.tree_breakdown(t.pid)
    cpu0, sink0, st0, busy0 = bl.cpu_seconds(t.pid), t.sink.cpu(), bl.steal_snapshot(), bl.machine_busy()
    src = bl.smtp_source(
        t.port, size=wl.size, conc=wl.conc, count=n, limit_s=args.run_limit, sender=SENDER, recipient=RECIPIENT
    )
    done = bl.wait_count(t.sink.count, c0 + n, args.drain_limit) if src.rc == 0 else None
    time.sleep(args.settle)  # the MTA's work after the last relay (queue file removal) counts for the run
    got = t.sink.count() - c0
    sess, tree1 = t.sink.sessions(), bl.tree_breakdown(t.pid)
    cpu1, sink1, st1, busy1 = bl.cpu_seconds(t.pid), t.sink.cpu(), bl.steal_snapshot(), bl.machine_busy()
    error = None
    if src.rc != 0:
        error = f"smtp-source rc={src.rc}: {src.err}"
    elif done is None:
        error = f"only {got} of {n} relayed after {args.drain_limit} s"
    return dict(
        rate=round(n / (done - src.t0), 1) if done and not error else None,
        accept_rate=round(n / (src.t1 - src.t0), 1),
        relayed=got,
        secs=round((done or time.perf_counter()) - src.t0, 2),
        mta_cpu_ms_per_msg=round(1000 * (cpu1 - cpu0) / max(1, got), 3),
        sink_cpu_ms_per_msg=round(1000 * (sink1 - sink0) / max(1, got), 3),
        msgs_per_connection=round(got / (sess - sess0), 2) if sess and sess0 is not None and sess > sess0 else None,
        cpu_by_process=bl.breakdown_delta(tree0, tree1, got),
        source_cpu_ms_per_msg=round(1000 * src.cpu_s / n, 3),
        steal_pct=bl.steal_pct(st0, st1),
        kernel_ms_per_msg=bl.kernel_ms_per_msg(busy0, busy1, got),
        other_load_pct=bl.other_load_pct(busy0, busy1, (cpu1 - cpu0) + (sink1 - sink0) + src.cpu_s),
        error=error,
        cmd=src.cmd,
    )


def table(results: dict, info: dict, args) -> str:
    lines = [
        "Relay: smtp-source → MTA → smtp-sink on loopback, counted at the sink; one connection per "
        f"message; median of {args.runs} runs (min–max); CPU in ms per relayed message.",
        "",
        bl.info_line(info) + f"; estafeta route: {args.estafeta_route}; sink count: {args.sink_count}",
        "",
        "| workload | MTA | relayed msg/s | ×Postfix | MTA CPU ms/msg | sink CPU ms/msg "
        "| smtp-source CPU ms/msg | kernel threads + irq ms/msg | accepted msg/s | msgs per connection to the sink "
        "| N | steal % | other load % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for wl in args.workloads.split(","):
        base = results.get("postfix", {}).get(wl, {}).get("rate")
        for name, per in results.items():
            s = per.get(wl, {})
            cell, ratio = bl.rate_cells(s, base, name)
            lines.append(
                f"| {wl} | {name} | {cell} | {ratio} | {bl.fmt_num(s.get('mta_cpu_ms_per_msg'), 2)} "
                f"| {bl.fmt_num(s.get('sink_cpu_ms_per_msg'), 3)} | {bl.fmt_num(s.get('source_cpu_ms_per_msg'), 3)} "
                f"| {bl.fmt_num(s.get('kernel_ms_per_msg'), 2)} "
                f"| {bl.fmt_num(s.get('accept_rate'))} | {bl.fmt_num(s.get('msgs_per_connection'), 2)} "
                f"| {s.get('count', '–')} | {bl.fmt_num(s.get('steal_pct'), 1)} "
                f"| {bl.fmt_num(s.get('other_load_pct'), 1)} |"
            )
    lines += ["", "Where the MTA's CPU goes, ms per relayed message (median of the runs), by process:", ""]
    for wl in args.workloads.split(","):
        for name, per in results.items():
            by = per.get(wl, {}).get("cpu_by_process") or {}
            parts = sorted(by.items(), key=lambda kv: -kv[1])
            lines.append(f"- {wl}, {name}: " + ", ".join(f"{label} {ms:.2f}" for label, ms in parts if ms >= 0.005))
    return "\n".join(lines)


def sink_probe(args, log) -> None:
    """smtp-source straight into smtp-sink, counting with -c and with -d:
    the sink's CPU per message either way (which one costs the sink less)."""
    base = bl.TMP / "relay" / "probe"
    rows = []
    for mode in ("counter", "dump", "counter", "dump", "counter", "dump"):
        sink = bl.SmtpSink(base, mode, f"sink-{mode}").start()
        try:
            c0, s0 = sink.count(), sink.cpu()
            n = args.probe_msgs
            src = bl.smtp_source(
                sink.port, size=1024, conc=10, count=n, limit_s=args.run_limit, sender=SENDER, recipient=RECIPIENT
            )
            done = bl.wait_count(sink.count, c0 + n, args.drain_limit)
            time.sleep(0.2)
            rows.append((mode, n / ((done or src.t1) - src.t0), 1000 * (sink.cpu() - s0) / n, 1000 * src.cpu_s / n))
            log(f"probe {mode}: {rows[-1][1]:.0f} msg/s, sink {rows[-1][2]:.3f} ms/msg, source {rows[-1][3]:.3f}")
        finally:
            sink.stop()
            shutil.rmtree(sink.dump, ignore_errors=True)
    print("\n| sink count | msg/s (smtp-source c=10 → sink) | sink CPU ms/msg | smtp-source CPU ms/msg |")
    print("|---|---|---|---|")
    for mode in ("counter", "dump"):
        r = [x for x in rows if x[0] == mode]
        print(
            f"| {mode} | {statistics.median(x[1] for x in r):,.0f} | {statistics.median(x[2] for x in r):.3f} "
            f"| {statistics.median(x[3] for x in r):.3f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="postfix,estafeta", help="comma-separated: postfix, estafeta")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated of {', '.join(WORKLOADS)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--run-secs", type=float, default=8.0, help="target length of a timed run")
    ap.add_argument("--run-limit", type=int, default=120, help="smtp-source is killed after this (s)")
    ap.add_argument("--drain-limit", type=float, default=60.0, help="wait for the sink's count (s)")
    ap.add_argument("--settle", type=float, default=0.5, help="after the last relay, before reading CPU (s)")
    ap.add_argument("--min-msgs", type=int, default=200)
    ap.add_argument("--max-msgs", type=int, default=60000)
    ap.add_argument("--sink-count", choices=("counter", "dump"), default="counter")
    ap.add_argument("--estafeta-route", choices=("smarthost", "mx"), default="smarthost")
    ap.add_argument("--estafeta-extra", default="", help="config lines appended to estafeta's config")
    ap.add_argument("--sink-probe", action="store_true", help="only measure smtp-sink's cost per counting mode")
    ap.add_argument("--probe-msgs", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=bl.TMP / "results")
    args = ap.parse_args()

    log = bl.make_logger(args.out, "relay")
    bl.check_namespace(log)
    if args.sink_probe:
        sink_probe(args, log)
        return
    info = bl.machine_info()
    log(bl.info_line(info))
    root = bl.TMP / "relay"
    targets: list[RelayTarget] = []
    for name in args.targets.split(","):
        sink = bl.SmtpSink(root / f"{name}-sink", args.sink_count)
        if name == "postfix":
            targets.append(PostfixRelay(root / "postfix", sink))
        elif name == "estafeta":
            t = EstafetaRelay(root / "estafeta", sink, args.estafeta_route, args.estafeta_extra)
            problem = t.check()
            if problem:
                log(f"estafeta left out: config check failed:\n{problem}")
                continue
            targets.append(t)
        else:
            sys.exit(f"unknown target {name!r}")
    workloads = [WORKLOADS[w] for w in args.workloads.split(",")]
    started: list[RelayTarget] = []
    try:
        for t in targets:
            t.start()
            started.append(t)
            log(f"started {t.name}: pid {t.pid}, port {t.port}, sink {t.sink.port} (pid {t.sink.pid})")
        plans = bl.run_interleaved(
            started,
            workloads,
            lambda t, wl, n: one_run(t, wl, n, args),
            runs=args.runs,
            run_secs=args.run_secs,
            min_msgs=args.min_msgs,
            max_msgs=args.max_msgs,
            log=log,
        )
    finally:
        for t in reversed(started):
            t.stop()
            log(f"stopped {t.name}")
    results = {name: {wl: bl.summarize(p) for wl, p in per.items()} for name, per in plans.items()}
    md = table(results, info, args)
    runs = {name: {wl: p.runs for wl, p in per.items()} for name, per in plans.items()}
    path = bl.save(args.out, "relay", info, vars(args), dict(summary=results, runs=runs), md)
    log("\n" + md)
    log(f"\nresults: {path}")


if __name__ == "__main__":
    main()
