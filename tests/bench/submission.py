"""Submission benchmark (issue 9): 1 KiB messages at c=10 over STARTTLS
with AUTH PLAIN, one connection per message, into a local Maildir; and
memory per session with N sessions idle after STARTTLS + EHLO.

    bash tests/bench/submission.sh                      # ceiling, postfix + estafeta, idle 1,000
    bash tests/bench/submission.sh --targets postfix --runs 1 --idle-n 200

(submission.sh runs this inside ../shared/bench/run.sh: loopback only.)
The load client is tests/bench/smtpload.py (gevent): EHLO, STARTTLS, EHLO,
AUTH PLAIN, MAIL, RCPT, DATA, QUIT per message. First it is measured alone
against its own TLS sink (smtpload.py sink, 2 processes): its ceiling on
this machine and its CPU per message. Then, interleaved round-robin:

  postfix   a private Postfix (benchlib.PostfixInstance) whose port is a
            submission service: smtpd_tls_security_level=encrypt,
            smtpd_tls_auth_only, SASL through a private Dovecot's auth
            socket (DovecotAuth: passwd-file with --dovecot-scheme hashes,
            by default doveadm pw's own, CRYPT = bcrypt cost 5; auth cache
            on). Dovecot verifies the hash at every login even from its
            cache, so ARGON2ID (estafeta's hash, which estafeta verifies
            once per user and password per process and hour) costs Postfix
            ~80 ms of CPU per message here; delivery by virtual(8) to a
            Maildir; CPU = Postfix's tree + Dovecot's
  estafeta  `estafeta serve`: listener { mode: SUBMISSION }, the same
            certificate (tests/peers/certs.py, ECDSA P-256) in cert_dir,
            user@bench.test added with `estafeta user add`, per-user hourly
            limits off; left out when `estafeta config check` refuses its
            config (before the listener modes are in main)

Rate = N / (time until the Nth message is in the Maildir), accepted and
delivered, as ../shared/bench's e2e rate. Idle: tests/bench/idle_tls.py
holds --idle-n sessions after STARTTLS + EHLO; KiB per session from the
PSS sum of the server's process tree (Postfix's smtpd process limit is
raised to --idle-n + 50 for it: its default of 100 would cap the test).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib as bl

sys.path.insert(0, str(bl.REPO / "tests"))

HERE = Path(__file__).resolve().parent
USER, PASSWORD = "user@bench.test", "bench-password-1"
WORKLOAD = bl.Workload("1k-c10", 1024, 10)

DOVECOT_CONF = """\
# Private auth-only Dovecot for tests/bench/submission.py (nothing from /etc/dovecot).
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = none
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_cache_size = 10M
auth_cache_ttl = 1 hour
passdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener {dir}/auth {{
    mode = 0666
  }}
}}
"""

ESTAFETA_CONF = """\
# estafeta's submission listener for tests/bench/submission.py
hostname: "mx.bench.test"
data_dir: "{data_dir}"
smtp_address: "127.0.0.1:{smtp_port}"
listener {{ address: "127.0.0.1:{port}" mode: SUBMISSION }}
tls {{ cert_dir: "{cert_dir}" self_signed: false }}
local_domain {{ name: "bench.test" }}
limits {{ messages_per_user_hour: 0 recipients_per_user_hour: 0 }}
max_connections: 20000
log_level: "warning"
"""


class DovecotAuth:
    """A private Dovecot running only its auth service, as Postfix's SASL
    backend: passwd-file users (`scheme` hashes made by doveadm pw), the
    auth socket at <dir>/auth. Started in the foreground (-F) as our child."""

    def __init__(self, directory: Path, users: dict[str, str], scheme: str):
        self.dir = directory
        self.users = users
        self.scheme = scheme
        self.socket = directory / "auth"
        self.proc: subprocess.Popen | None = None

    def start(self) -> DovecotAuth:
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in ("run", "state"):
            (self.dir / d).mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        lines = []
        for user, pw in self.users.items():
            h = subprocess.run(["doveadm", "pw", "-s", self.scheme, "-p", pw], capture_output=True, text=True)
            if h.returncode != 0:
                raise RuntimeError(f"doveadm pw -s {self.scheme}: {h.stderr}")
            lines.append(f"{user}:{h.stdout.strip()}::::::\n")
        (self.dir / "users").write_text("".join(lines))
        conf = self.dir / "dovecot.conf"
        conf.write_text(DOVECOT_CONF.format(instance=f"bench-{os.getpid()}", dir=self.dir))
        with open(self.dir / "stderr.log", "wb") as log:
            self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start:\n{(self.dir / 'stderr.log').read_text()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc:
            bl.stop_pid(self.proc.pid, self.proc)
            self.proc = None


class Target:
    """name, port, pids (process-tree roots whose CPU and memory count),
    maildir (new/ of the recipient), start(), stop()."""

    name = ""
    port = 0
    maildir = Path()

    @property
    def pids(self) -> list[int]:
        return []

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PostfixSubmission(Target):
    def __init__(self, base: Path, cert, scheme: str, idle_n: int):
        self.name = "postfix"
        self.base = base
        self.port = bl.free_port()
        self.maildir = base / "postfix" / "mail" / "user" / "new"
        self.dovecot = DovecotAuth(base / "dovecot", {USER: PASSWORD}, scheme)
        main = [
            "myhostname = mx.bench.test",
            "mydomain = bench.test",
            "myorigin = $myhostname",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "virtual_mailbox_domains = bench.test",
            f"virtual_mailbox_base = {base / 'postfix' / 'mail'}",
            "virtual_mailbox_maps = static:user/",
            "virtual_uid_maps = static:65534",
            "virtual_gid_maps = static:65534",
            "virtual_minimum_uid = 100",
            f"smtpd_tls_chain_files = {cert.key_path}, {cert.fullchain_path}",
            "smtpd_sasl_type = dovecot",
            f"smtpd_sasl_path = {self.dovecot.socket}",
        ]
        opts = (
            "smtpd_tls_security_level=encrypt",
            "smtpd_sasl_auth_enable=yes",
            "smtpd_tls_auth_only=yes",
            "smtpd_client_restrictions=permit_sasl_authenticated,reject",
            "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        )
        self.pf = bl.PostfixInstance(base / "postfix", self.port, main, smtpd_options=opts, maxproc=str(idle_n + 50))

    @property
    def pids(self) -> list[int]:
        return [p for p in (self.pf.pid, self.dovecot.pid) if p]

    def start(self) -> None:
        self.dovecot.start()
        self.pf.start()

    def stop(self) -> None:
        self.pf.stop()
        self.dovecot.stop()


class EstafetaSubmission(Target):
    def __init__(self, base: Path, cert):
        self.name = "estafeta"
        self.port = bl.free_port()
        cert_dir = base / "certs"
        cert.install_certbot(cert_dir, "mx.bench.test")
        data = base / "data"
        self.maildir = data / "mail" / "bench.test" / "user" / "new"
        conf = ESTAFETA_CONF.format(data_dir=data, smtp_port=bl.free_port(), port=self.port, cert_dir=cert_dir)
        self.mta = bl.Estafeta(data, conf, self.port)

    def check(self) -> str | None:
        return self.mta.check()

    @property
    def pids(self) -> list[int]:
        return [self.mta.pid] if self.mta.pid else []

    def start(self) -> None:
        self.mta.write_config()
        added = self.mta.run_cli("user", "add", USER, stdin=PASSWORD + "\n")
        if added.returncode != 0:
            raise RuntimeError(f"estafeta user add: {added.stdout}{added.stderr}")
        self.mta.start()

    def stop(self) -> None:
        self.mta.stop()


def send(port: int, n: int, args, pwfile: Path) -> tuple[dict, float, float]:
    """Run smtpload.py send; (its JSON result, perf_counter at start, its CPU s)."""
    cmd = [
        sys.executable, str(HERE / "smtpload.py"), "send", "--port", str(port), "-n", str(n), "-c", str(WORKLOAD.conc),
        "--size", str(WORKLOAD.size), "--user", USER, "--password-file", str(pwfile), "--cafile", str(args.ca_path),
        "--limit", str(args.run_limit),
    ]  # fmt: skip
    import json

    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_limit + 60)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res = dict(sent=0, errors={"client": p.stderr[-300:]}, rate=None, cpu_s=0.0)
    return res, t0, res.get("cpu_s", 0.0)


def one_run(t: Target, wl: bl.Workload, n: int, args, pwfile: Path) -> dict:
    shared = bl.shared
    shared.clear_dir(str(t.maildir))
    cpu0, st0, busy0 = sum(bl.cpu_seconds(p) for p in t.pids), bl.steal_snapshot(), bl.machine_busy()
    res, t0, ccpu = send(t.port, n, args, pwfile)
    ok = res.get("sent", 0) == n and not res.get("errors")
    done = bl.wait_count(lambda: shared.count_files(str(t.maildir)), n, args.drain_limit) if ok else None
    time.sleep(args.settle)
    cpu1, st1, busy1 = sum(bl.cpu_seconds(p) for p in t.pids), bl.steal_snapshot(), bl.machine_busy()
    got = shared.count_files(str(t.maildir))
    error = None if ok else f"client: {res.get('errors')}"
    if ok and done is None:
        error = f"only {got} of {n} delivered after {args.drain_limit} s"
    return dict(
        rate=round(n / (done - t0), 1) if done and not error else None,
        accept_rate=res.get("rate"),
        delivered=got,
        mta_cpu_ms_per_msg=round(1000 * (cpu1 - cpu0) / max(1, got), 3),
        client_cpu_ms_per_msg=round(1000 * ccpu / n, 3),
        steal_pct=bl.steal_pct(st0, st1),
        kernel_ms_per_msg=bl.kernel_ms_per_msg(busy0, busy1, got),
        other_load_pct=bl.other_load_pct(busy0, busy1, (cpu1 - cpu0) + ccpu),
        error=error,
    )


def ceiling(args, cert, pwfile: Path, log) -> dict:
    """The load client alone against smtpload.py's TLS sink."""
    port = bl.free_port()
    cmd = [sys.executable, str(HERE / "smtpload.py"), "sink", "--port", str(port), "--cert", str(cert.fullchain_path)]
    cmd += ["--key", str(cert.key_path), "--procs", "2"]
    sink = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bl.wait_port(port, 15, sink, "smtpload sink")
        rows = []
        for n in (500, 3000, 3000, 3000):
            c0, st0 = bl.cpu_seconds(sink.pid), bl.steal_snapshot()
            res, _t0, ccpu = send(port, n, args, pwfile)
            row = dict(
                n=n,
                rate=res.get("rate"),
                client_cpu_ms_per_msg=round(1000 * ccpu / n, 3),
                sink_cpu_ms_per_msg=round(1000 * (bl.cpu_seconds(sink.pid) - c0) / n, 3),
                steal_pct=bl.steal_pct(st0, bl.steal_snapshot()),
                errors=res.get("errors"),
            )
            log(f"[ceiling] {row}")
            rows.append(row)
        rows = rows[1:]  # the first warms up
        med = lambda k: sorted(r[k] for r in rows)[len(rows) // 2]  # noqa: E731
        return dict(rate=med("rate"), client_cpu_ms_per_msg=med("client_cpu_ms_per_msg"),
                    sink_cpu_ms_per_msg=med("sink_cpu_ms_per_msg"), runs=rows)  # fmt: skip
    finally:
        bl.stop_pid(sink.pid, sink)


def table(summary: dict, ceil: dict | None, idle: dict, info: dict, args) -> str:
    lines = [
        "Submission: 1 KiB at c=10, one connection per message: EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, "
        f"DATA, QUIT (tests/bench/smtpload.py), into a Maildir; median of {args.runs} runs (min–max).",
        "",
        bl.info_line(info) + f"; Dovecot passdb scheme {args.dovecot_scheme}, auth cache on",
        "",
    ]
    if ceil:
        lines += [
            f"Client ceiling (smtpload.py against its own TLS sink): {bl.fmt_num(ceil['rate'])} msg/s, client "
            f"{ceil['client_cpu_ms_per_msg']:.2f} ms CPU/msg, sink {ceil['sink_cpu_ms_per_msg']:.2f} ms CPU/msg.",
            "",
        ]
    lines += [
        "| MTA | delivered msg/s | ×Postfix | MTA CPU ms/msg | client CPU ms/msg | kernel threads + irq ms/msg "
        "| accepted msg/s | N | steal % | other load % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = summary.get("postfix", {}).get("rate")
    for name, s in summary.items():
        cell, ratio = bl.rate_cells(s, base, name)
        lines.append(
            f"| {name} | {cell} | {ratio} | {bl.fmt_num(s.get('mta_cpu_ms_per_msg'), 2)} "
            f"| {bl.fmt_num(s.get('client_cpu_ms_per_msg'), 2)} | {bl.fmt_num(s.get('kernel_ms_per_msg'), 2)} "
            f"| {bl.fmt_num(s.get('accept_rate'))} "
            f"| {s.get('count', '–')} | {bl.fmt_num(s.get('steal_pct'), 1)} | {bl.fmt_num(s.get('other_load_pct'), 1)} |"
        )
    if idle:
        lines += [
            "",
            f"Idle sessions after STARTTLS + EHLO (tests/bench/idle_tls.py, N = {args.idle_n}); PSS summed over "
            "the process tree:",
            "",
            "| MTA | sessions held / N | handshake p50 / max ms | PSS before → held | processes | KiB per session |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in idle.items():
            h = r["held"]
            lines.append(
                f"| {name} | {r['ok']}/{r['requested']} | {h.get('p50_ms')} / {h.get('max_ms')} "
                f"| {r['pss_before_kib'] / 1024:.1f} → {r['pss_held_kib'] / 1024:.1f} MiB "
                f"| {r['procs_before']} → {r['procs_held']} | {bl.fmt_num(r['kib_per_session'], 1)} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="postfix,estafeta")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--run-secs", type=float, default=8.0)
    ap.add_argument("--run-limit", type=int, default=120)
    ap.add_argument("--drain-limit", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--min-msgs", type=int, default=200)
    ap.add_argument("--max-msgs", type=int, default=30000)
    ap.add_argument("--idle-n", type=int, default=1000, help="idle sessions after STARTTLS (0: no idle test)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the client-alone measurement")
    ap.add_argument(
        "--dovecot-scheme", default="CRYPT", help="doveadm pw -s scheme of Dovecot's passdb (CRYPT: its default)"
    )
    ap.add_argument("--out", type=Path, default=bl.TMP / "results")
    args = ap.parse_args()
    log = bl.make_logger(args.out, "submission")
    bl.check_namespace(log)
    info = bl.machine_info()
    log(bl.info_line(info))

    from peers.certs import TestCA

    root = bl.TMP / "submission"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    ca = TestCA(root / "ca")
    cert = ca.issue(["mx.bench.test"], ips=["127.0.0.1"])
    args.ca_path = ca.cert_path
    pwfile = root / "password"
    pwfile.write_text(PASSWORD + "\n")

    ceil = None if args.no_ceiling else ceiling(args, cert, pwfile, log)
    targets: list[Target] = []
    for name in args.targets.split(","):
        if name == "postfix":
            targets.append(PostfixSubmission(root, cert, args.dovecot_scheme, args.idle_n))
        elif name == "estafeta":
            t = EstafetaSubmission(root / "estafeta", cert)
            problem = t.check()
            if problem:
                log(f"estafeta left out: config check failed:\n{problem}")
                continue
            targets.append(t)
        else:
            sys.exit(f"unknown target {name!r}")
    started: list[Target] = []
    idle: dict = {}
    try:
        for t in targets:
            t.start()
            started.append(t)
            log(f"started {t.name}: pids {t.pids}, port {t.port}")
        plans = bl.run_interleaved(
            started,
            [WORKLOAD],
            lambda t, wl, n: one_run(t, wl, n, args, pwfile),
            runs=args.runs,
            run_secs=args.run_secs,
            min_msgs=args.min_msgs,
            max_msgs=args.max_msgs,
            log=log,
        )
        if args.idle_n:
            for t in started:
                idle[t.name] = bl.idle_test(HERE / "idle_tls.py", t.port, t.pids, args.idle_n, log)
    finally:
        for t in reversed(started):
            t.stop()
            log(f"stopped {t.name}")
    summary = {name: bl.summarize(per[WORKLOAD.name]) for name, per in plans.items()}
    md = table(summary, ceil, idle, info, args)
    runs = {name: per[WORKLOAD.name].runs for name, per in plans.items()}
    path = bl.save(
        args.out, "submission", info, vars(args), dict(summary=summary, ceiling=ceil, idle=idle, runs=runs), md
    )
    log("\n" + md)
    log(f"\nresults: {path}")


if __name__ == "__main__":
    main()
