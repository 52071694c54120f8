"""Checks benchmark, end to end (issue 10): mail on the MX port from a
remote-style client (smtp-source, HELO client.test, MAIL FROM
bench@client.test) whose domain publishes SPF, DKIM and DMARC records in a
private Knot on loopback (tests/peers/dns_server.py), into a local Maildir.
(tests/bench/checks.py measures each check alone, in µs per message.)

    bash tests/bench/checks_e2e.sh                         # every target, both workloads, 3 runs
    bash tests/bench/checks_e2e.sh --targets postfix --runs 1

(checks_e2e.sh runs this inside ../shared/bench/run.sh: loopback only.)
Targets, interleaved round-robin in one run:

  postfix            ../shared/bench/servers/postfix.sh's maildir variant
                     (the foundation benchmark's baseline): no checks
  estafeta           `estafeta serve`, resolver = the Knot, checks
                     { enabled: true }: SPF, DKIM, DMARC, ARC, iprev (every
                     check but DNSBL, off by default)
  estafeta-nochecks  the same with checks { enabled: false }

(estafeta targets are left out when `estafeta config check` refuses their
config: before the checks are in main.) Workloads, 1 KiB at c=10, one
connection per message:

  1k-c10       smtp-source's own message (-l 1024): SPF pass, no DKIM
               signature, DMARC pass through SPF alignment
  1k-c10-dkim  one message pre-signed with dkimpy by client.test (rsa-sha256
               2048 by default; --dkim rsa,ed25519 signs twice), sent as is
               by smtp-source -F: SPF, DKIM and DMARC pass

Knot serves client.test (A 127.0.0.1, SPF "v=spf1 ip4:127.0.0.1 -all",
DMARC p=reject, the DKIM keys) and 0.0.127.in-addr.arpa (127.0.0.1 PTR
client.test, for iprev). Rate = N / time until the Nth message is in the
Maildir. After each run the Authentication-Results of one delivered
message is kept, so the table shows that the checks ran and passed.
"""

from __future__ import annotations

import abc
import argparse
import base64
import email.parser
import email.policy
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import benchlib as bl

sys.path.insert(0, str(bl.REPO / "tests"))

SENDER, RECIPIENT, HELO, DOMAIN, SELECTOR = "bench@client.test", "user@bench.test", "client.test", "client.test", "b"
WORKLOADS = {"1k-c10": bl.Workload("1k-c10", 1024, 10), "1k-c10-dkim": bl.Workload("1k-c10-dkim", 1024, 10)}

ESTAFETA_CONF = """\
# estafeta on the MX port for tests/bench/checks_e2e.py
hostname: "mx.bench.test"
data_dir: "{data_dir}"
smtp_address: "127.0.0.1:{port}"
local_domain {{ name: "bench.test" }}
resolver: "{resolver}"
checks {{ enabled: {enabled} authserv_id: "mx.bench.test" }}
max_connections: 20000
log_level: "warning"
http_address: ""
"""


def dkim_keys(algorithms: list[str]) -> list[tuple[str, str, bytes, str]]:
    """[(algorithm, selector, private key for dkimpy, DNS TXT value)]."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    out = []
    for alg in algorithms:
        if alg == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            priv = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
            pub = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            out.append(("rsa-sha256", f"{SELECTOR}rsa", priv, f"v=DKIM1; k=rsa; p={base64.b64encode(pub).decode()}"))
        elif alg == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
            seed = key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            out.append(
                (
                    "ed25519-sha256",
                    f"{SELECTOR}ed",
                    base64.b64encode(seed),
                    f"v=DKIM1; k=ed25519; p={base64.b64encode(pub).decode()}",
                )
            )
        else:
            raise SystemExit(f"--dkim: rsa or ed25519, not {alg!r}")
    return out


def txt(value: str) -> str:
    """A TXT record's value as zone-file strings of at most 255 octets."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def signed_message(path: Path, keys, size: int) -> Path:
    """Write a 1 KiB message from SENDER, signed by each key (dkimpy,
    relaxed/relaxed, From/To/Subject/Date/Message-ID), with LF line ends
    (smtp-source -F sends each line with CRLF)."""
    from email.utils import formatdate

    import dkim

    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n"
    body = line * max(1, size // len(line))
    msg = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: signed load\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <signed.{os.getpid()}@client.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode() + body
    sigs = b""
    for alg, selector, priv, _txt in keys:
        sigs += dkim.sign(
            msg,
            selector.encode(),
            DOMAIN.encode(),
            priv,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=alg.encode(),
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
    path.write_bytes((sigs + msg).replace(b"\r\n", b"\n"))
    return path


class Target(abc.ABC):
    """name, port, pid, maildir (new/), start(), stop()."""

    def __init__(self, name: str, port: int, maildir: Path):
        self.name, self.port, self.maildir = name, port, maildir
        self.pid: int | None = None

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...


class PostfixMaildir(Target):
    """../shared/bench/servers/postfix.sh start maildir PORT (stopped with
    its stop)."""

    def __init__(self):
        super().__init__("postfix", bl.free_port(), bl.TMP / "postfix-maildir" / "mail" / "user" / "new")
        self.script = str(bl.SHARED / "servers" / "postfix.sh")

    def start(self) -> None:
        p = subprocess.run(
            [self.script, "start", "maildir", str(self.port)], capture_output=True, text=True, timeout=60
        )
        if p.returncode != 0:
            raise RuntimeError(f"postfix.sh start: {p.stderr[-2000:]}")
        self.pid = int(p.stdout.strip().splitlines()[-1])
        bl.wait_port(self.port, 15, what="postfix-maildir")

    def stop(self) -> None:
        subprocess.run([self.script, "stop", "maildir"], capture_output=True, timeout=60)


class EstafetaChecks(Target):
    def __init__(self, name: str, base: Path, checks_on: bool, resolver: str):
        data = base / name
        super().__init__(name, bl.free_port(), data / "mail" / "bench.test" / "user" / "new")
        conf = ESTAFETA_CONF.format(
            data_dir=data, port=self.port, resolver=resolver, enabled="true" if checks_on else "false"
        )
        self.mta = bl.Estafeta(data, conf, self.port)

    def start(self) -> None:
        self.mta.write_config()
        self.mta.start()
        self.pid = self.mta.pid

    def stop(self) -> None:
        self.mta.stop()


def verify_signed(message_file: Path, knot) -> bool:
    """Does dkimpy verify every signature of the message, with the keys
    from the Knot? (Checks the harness, whatever the MTA says.)"""
    import dkim

    def dnsfunc(name, timeout=5):
        r = knot.ask(name.decode().rstrip("."), "TXT", timeout=timeout)
        return b"".join(b"".join(rd.strings) for rrset in r.answer for rd in rrset)

    msg = message_file.read_bytes().replace(b"\n", b"\r\n")
    d = dkim.DKIM(msg)
    n = msg.count(b"DKIM-Signature:")
    return all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n))


def auth_results(maildir: Path) -> str | None:
    """The Authentication-Results of one message in maildir (None: none)."""
    with os.scandir(maildir) as it:
        for e in it:
            with open(e.path, "rb") as f:
                head = f.read(16384).split(b"\n\n", 1)[0]
            msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
            values = msg.get_all("Authentication-Results") or []
            return " | ".join(" ".join(v.split()) for v in values) or None
    return None


def one_run(t: Target, wl: bl.Workload, n: int, args, message_file: Path) -> dict:
    shared = bl.shared
    shared.clear_dir(str(t.maildir))
    cpu0, st0, busy0 = bl.cpu_seconds(t.pid), bl.steal_snapshot(), bl.machine_busy()
    src = bl.smtp_source(
        t.port,
        size=wl.size,
        conc=wl.conc,
        count=n,
        limit_s=args.run_limit,
        sender=SENDER,
        recipient=RECIPIENT,
        helo=HELO,
        message_file=str(message_file) if wl.name.endswith("-dkim") else None,
    )
    count = lambda: shared.count_files(str(t.maildir))  # noqa: E731
    done = bl.wait_count(count, n, args.drain_limit) if src.rc == 0 else None
    time.sleep(args.settle)
    cpu1, st1, busy1 = bl.cpu_seconds(t.pid), bl.steal_snapshot(), bl.machine_busy()
    got = count()
    error = f"smtp-source rc={src.rc}: {src.err}" if src.rc else None
    if not error and done is None:
        error = f"only {got} of {n} delivered after {args.drain_limit} s"
    return dict(
        rate=round(n / (done - src.t0), 1) if done and not error else None,
        accept_rate=round(n / (src.t1 - src.t0), 1),
        delivered=got,
        mta_cpu_ms_per_msg=round(1000 * (cpu1 - cpu0) / max(1, got), 3),
        source_cpu_ms_per_msg=round(1000 * src.cpu_s / n, 3),
        steal_pct=bl.steal_pct(st0, st1),
        kernel_ms_per_msg=bl.kernel_ms_per_msg(busy0, busy1, got),
        other_load_pct=bl.other_load_pct(busy0, busy1, (cpu1 - cpu0) + src.cpu_s),
        auth_results=auth_results(t.maildir) if got else None,
        error=error,
        cmd=src.cmd,
    )


def table(summary: dict, samples: dict, info: dict, args) -> str:
    lines = [
        "Checks end to end: smtp-source (HELO client.test, MAIL FROM bench@client.test) → MTA → Maildir, "
        f"1 KiB, c=10, one connection per message; median of {args.runs} runs (min–max); records in a "
        f"loopback Knot; DKIM: {args.dkim}.",
        "",
        bl.info_line(info),
        "",
        "| workload | MTA | delivered msg/s | ×Postfix | MTA CPU ms/msg | smtp-source CPU ms/msg "
        "| kernel threads + irq ms/msg | accepted msg/s | N | steal % | other load % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for wl in args.workloads.split(","):
        base = summary.get("postfix", {}).get(wl, {}).get("rate")
        for name, per in summary.items():
            s = per.get(wl, {})
            cell, ratio = bl.rate_cells(s, base, name)
            lines.append(
                f"| {wl} | {name} | {cell} | {ratio} | {bl.fmt_num(s.get('mta_cpu_ms_per_msg'), 2)} "
                f"| {bl.fmt_num(s.get('source_cpu_ms_per_msg'), 3)} | {bl.fmt_num(s.get('kernel_ms_per_msg'), 2)} "
                f"| {bl.fmt_num(s.get('accept_rate'))} "
                f"| {s.get('count', '–')} | {bl.fmt_num(s.get('steal_pct'), 1)} "
                f"| {bl.fmt_num(s.get('other_load_pct'), 1)} |"
            )
    lines += ["", "Authentication-Results of a delivered message (last run):", ""]
    for (name, wl), ar in samples.items():
        warn = " — **no Authentication-Results: the checks did not run**" if name == "estafeta" and not ar else ""
        lines.append(f"- {name}, {wl}: `{ar}`{warn}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="postfix,estafeta,estafeta-nochecks")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--dkim", default="rsa", help="comma-separated signatures of the -dkim message: rsa, ed25519")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--run-secs", type=float, default=8.0)
    ap.add_argument("--run-limit", type=int, default=120)
    ap.add_argument("--drain-limit", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--min-msgs", type=int, default=200)
    ap.add_argument("--max-msgs", type=int, default=60000)
    ap.add_argument("--out", type=Path, default=bl.TMP / "results")
    args = ap.parse_args()
    log = bl.make_logger(args.out, "checks")
    bl.check_namespace(log)
    info = bl.machine_info()
    log(bl.info_line(info))
    from peers.dns_server import DnsServer

    root = bl.TMP / "checks"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    root.mkdir(parents=True)
    keys = dkim_keys(args.dkim.split(","))
    message_file = signed_message(root / "signed.eml", keys, 1024)
    zone = textwrap.dedent("""\
        @ A 127.0.0.1
        @ TXT "v=spf1 ip4:127.0.0.1 -all"
        _dmarc TXT "v=DMARC1; p=reject"
        """)
    zone += "".join(f"{sel}._domainkey TXT {txt(value)}\n" for _alg, sel, _priv, value in keys)
    knot = DnsServer(root / "knot")
    knot.set_zone(DOMAIN, zone)
    knot.set_zone("0.0.127.in-addr.arpa", "1 PTR client.test.\n")
    knot.start()
    log(f"dkimpy verifies the signed message with the keys in Knot: {verify_signed(message_file, knot)}")
    targets: list[Target] = []
    try:
        for name in args.targets.split(","):
            if name == "postfix":
                targets.append(PostfixMaildir())
            elif name in ("estafeta", "estafeta-nochecks"):
                t = EstafetaChecks(name, root, name == "estafeta", knot.address)
                problem = t.mta.check()
                if problem:
                    log(f"{name} left out: config check failed:\n{problem}")
                    continue
                targets.append(t)
            else:
                sys.exit(f"unknown target {name!r}")
        started: list[Target] = []
        try:
            for t in targets:
                t.start()
                started.append(t)
                log(f"started {t.name}: pid {t.pid}, port {t.port}")
            plans = bl.run_interleaved(
                started,
                [WORKLOADS[w] for w in args.workloads.split(",")],
                lambda t, wl, n: one_run(t, wl, n, args, message_file),
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
    finally:
        knot.stop()
    summary = {name: {wl: bl.summarize(p) for wl, p in per.items()} for name, per in plans.items()}
    samples = {
        (name, wl): next((r.get("auth_results") for r in reversed(p.runs) if r.get("auth_results")), None)
        for name, per in plans.items()
        for wl, p in per.items()
    }
    md = table(summary, samples, info, args)
    runs = {name: {wl: p.runs for wl, p in per.items()} for name, per in plans.items()}
    path = bl.save(args.out, "checks", info, vars(args), dict(summary=summary, runs=runs), md)
    log("\n" + md)
    log(f"\nresults: {path}")


if __name__ == "__main__":
    main()
