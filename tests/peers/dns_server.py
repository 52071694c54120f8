"""A real authoritative DNS server for the tests: a private Knot DNS
(Debian's knot: /usr/sbin/knotd, knotc) on 127.0.0.1 and a free port, with
its own configuration, zone files, control socket and run directory in a
temporary directory. It runs as the current user (root in CI) and serves
UDP and TCP.

    with DnsServer() as server:                      # started, stopped at the end
        server.set_zone("example.test", '''
            @     MX 10 mx
            mx    A  127.0.0.2
        ''')                                          # SOA and NS added, serial bumped
        server.fail_zone("broken.test")               # answers SERVFAIL
        resolver = Resolver([server.address])         # "127.0.0.1:<port>"

or, in a test module, a fixture made by the factory:

    knot = dns_server_fixture("knot", scope="module", zones={"example.test": "..."})

What it answers (Knot's behaviour, checked by tests/integration/test_dns_knot.py):
a name in a zone: its records (NOERROR, AA; NODATA with the SOA when it
has none of the type; CNAMEs within the server followed); a name under a
zone that does not exist: NXDOMAIN; a zone configured whose zone file
fails to load (fail_zone): SERVFAIL; a name outside every zone: REFUSED.
Zones are given as zone-file text relative to their origin; an IDN origin
may be a U-label (it is converted to its A-label). Changes while running
are applied with `knotc reload` and waited for (the served SOA serial, or
the SERVFAIL / REFUSED expected). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import idna
import pytest

from peers.ports import free_port

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
#: Seconds to wait for the server to start, stop, or apply a change.
WAIT_SECONDS = 15.0
#: A Unix socket path is at most 108 octets (sun_path) on Linux.
_MAX_SOCKET_PATH = 100


def _a_label(origin: str) -> str:
    origin = origin.strip().rstrip(".")
    if origin.isascii():
        return origin.lower()
    return idna.encode(origin, uts46=True).decode("ascii").lower()


def free_udp_tcp_port(host: str = "127.0.0.1", tries: int = 50) -> int:
    """A port free for both UDP and TCP on `host` at the time of asking
    (a DNS server needs both). Raises RuntimeError after `tries`."""
    for _ in range(tries):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


@contextlib.contextmanager
def silent_udp_server(host: str = "127.0.0.1") -> Iterator[str]:
    """A UDP socket that receives DNS queries and never answers: a
    nameserver that times out. Yields its "host:port"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        yield f"{host}:{s.getsockname()[1]}"


class DnsServer:
    """A private knotd. `directory`: where its files go (default: a new
    temporary directory, removed by stop()). Start with start() or `with`.

    Zones (origin -> zone-file text relative to the origin) are set with
    set_zone(), made to answer SERVFAIL with fail_zone(), dropped with
    remove_zone(); before start() they are written and loaded at start,
    after it they are applied at once.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="estafeta-knot-") if directory is None else directory)
        self.host = host
        #: A fixed port (e.g. 53 in a network namespace of its own, for
        #: peers that use the system resolver); 0: a free one at start().
        self.fixed_port = port
        self.port = port
        self._proc: subprocess.Popen | None = None
        self._serial = int(time.time()) % 1_000_000_000
        #: origin (A-label) -> zone text as written; None for a failing zone.
        self._zones: dict[str, str | None] = {}
        #: origin -> SOA serial written (normal zones).
        self._serials: dict[str, int] = {}
        for sub in ("zones", "db", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        sock = self.dir / "run" / "knot.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            self._sock_dir: str | None = tempfile.mkdtemp(prefix="knotc-")
            sock = Path(self._sock_dir) / "knot.sock"
        else:
            self._sock_dir = None
        self.socket_path = sock

    # -------------------------------------------------------------- zones
    @property
    def address(self) -> str:
        """ "127.0.0.1:<port>", as Config.resolver and Resolver take it."""
        return f"{self.host}:{self.port}"

    def set_zone(self, origin: str, records: str, *, ttl: int = 300, negative_ttl: int = 60, soa: bool = True) -> None:
        """Serve zone `origin` with `records` (zone-file lines, names
        relative to the origin; indentation is removed). soa=True puts an
        SOA (a fresh serial, `negative_ttl` seconds as its minimum: the TTL
        of NXDOMAIN and NODATA answers, RFC 2308 §4) and an NS first, and a
        $TTL of `ttl` seconds; soa=False writes `records` as they are (they
        must then hold the SOA)."""
        name = _a_label(origin)
        body = textwrap.dedent(records).strip("\n")
        if soa:
            self._serial += 1
            self._serials[name] = self._serial
            head = (
                f"$ORIGIN {name}.\n$TTL {ttl}\n"
                f"@ SOA ns.{name}. hostmaster.{name}. {self._serial} 3600 600 86400 {negative_ttl}\n"
                "@ NS localhost.\n"
            )
            body = head + body
        else:
            self._serials.pop(name, None)
        self._zone_path(name).write_text(body + "\n")
        self._zones[name] = body
        if self.running:
            self._apply(changed=name)

    def fail_zone(self, origin: str) -> None:
        """Make `origin` answer SERVFAIL: it is configured with a zone file
        that cannot load (Knot answers SERVFAIL for a configured zone it
        could not load)."""
        name = _a_label(origin)
        if self.running and self._zones.get(name) is not None:
            # Knot keeps serving the last good version when a reload fails:
            # drop the zone first.
            del self._zones[name]
            self._apply(removed=name)
        self._zones[name] = None
        self._serials.pop(name, None)
        self._zone_path(name).write_text("this is not a zone file\n")
        if self.running:
            self._apply()

    def remove_zone(self, origin: str) -> None:
        """Stop serving `origin` (its names then get REFUSED)."""
        name = _a_label(origin)
        self._zones.pop(name, None)
        self._serials.pop(name, None)
        if self.running:
            self._apply(removed=name)

    def _zone_path(self, name: str) -> Path:
        return self.dir / "zones" / f"{name}.zone"

    def _write_config(self) -> Path:
        zones = "".join(f"  - domain: {name}.\n" for name in sorted(self._zones)) or ""
        conf = f"""\
server:
    rundir: "{self.dir / "run"}"
    pidfile: "{self.dir / "run" / "knot.pid"}"
    listen: {self.host}@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{self.socket_path}"
database:
    storage: "{self.dir / "db"}"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "{self.dir / "zones"}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
"""
        if zones:
            conf += "zone:\n" + zones
        path = self.dir / "knot.conf"
        path.write_text(conf)
        return path

    # ---------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, attempts: int = 3) -> DnsServer:
        """Start knotd on a free port and wait until every zone answers as
        expected. Retries on another port if the one chosen was taken
        meanwhile (knotd exits when it cannot bind). Raises RuntimeError
        with the server's log when it does not come up."""
        last = ""
        for _ in range(attempts):
            self.port = self.fixed_port or free_udp_tcp_port(self.host)
            conf = self._write_config()
            log = open(self.dir / "knot.log", "ab")  # noqa: SIM115 - closed in stop()
            self._log = log
            self._proc = subprocess.Popen(
                [KNOTD, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                self._wait_ready()
                return self
            except RuntimeError as e:
                last = str(e)
                self._kill()
        raise RuntimeError(f"knotd did not start: {last}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"knotd exited with {self._proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket_path) and self._answers_as_configured():
                return
            time.sleep(0.05)
        raise RuntimeError(f"knotd not ready after {WAIT_SECONDS} s:\n{self.log()}")

    def _answers_as_configured(self, removed: str | None = None) -> bool:
        """Does every zone answer as it should (the SOA serial written;
        SERVFAIL for a failing zone), and `removed` no longer as a zone?"""
        for name, text in [*self._zones.items(), *([(removed, "")] if removed else [])]:
            try:
                response = self.ask(name, "SOA", timeout=0.5)
            except (dns.exception.Timeout, OSError):
                return False
            rcode = response.rcode()
            soa = response.get_rrset(response.answer, response.question[0].name, 1, dns.rdatatype.SOA)
            if name == removed:
                ok = soa is None
            elif text is None:
                ok = rcode == dns.rcode.SERVFAIL
            elif name in self._serials:
                ok = rcode == dns.rcode.NOERROR and soa is not None and soa[0].serial == self._serials[name]
            else:
                ok = rcode == dns.rcode.NOERROR
            if not ok:
                return False
        return True

    def _apply(self, changed: str | None = None, removed: str | None = None) -> None:
        """Rewrite the configuration, `knotc reload` (and force a reload of
        the `changed` zone's file), and wait until the zones answer as
        configured (bounded)."""
        self._write_config()
        self.knotc("reload")
        if changed is not None:
            self.knotc("-b", "zone-reload", f"{changed}.", check=False)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self._answers_as_configured(removed):
                return
            time.sleep(0.05)
        raise RuntimeError(f"knotd did not apply the change in {WAIT_SECONDS} s:\n{self.log()}")

    def knotc(self, *args: str, check: bool = True) -> str:
        """Run knotc on this server's control socket; its output. Raises
        RuntimeError when it fails and `check`."""
        p = subprocess.run(
            [KNOTC, "-s", str(self.socket_path), "-t", "10", *args],
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"knotc {' '.join(args)}: {p.stdout}{p.stderr}\n{self.log()}")
        return p.stdout

    def ask(self, name: str, rdtype: str, *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
        """One query straight to the server (no resolver, no cache): the
        response message. Raises dns.exception.Timeout."""
        q = dns.message.make_query(_a_label(name) + ".", rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        return send(q, self.host, port=self.port, timeout=timeout)

    def log(self) -> str:
        """The server's log so far."""
        try:
            return (self.dir / "knot.log").read_text(errors="replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT_SECONDS)
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop knotd (SIGTERM, then SIGKILL after WAIT_SECONDS) and remove
        the temporary directories this object made."""
        self._kill()
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def dns_server_fixture(
    name: str,
    *,
    scope: str = "function",
    zones: dict[str, str] | None = None,
    failing: tuple[str, ...] = (),
):
    """Make a pytest fixture called `name` that yields a started DnsServer
    serving `zones` (origin -> records, as set_zone takes them), with the
    `failing` zones answering SERVFAIL; stopped after its scope. Assign it
    to a module-level name in a test module:

        knot = dns_server_fixture("knot", scope="module", zones={...})
    """

    @pytest.fixture(name=name, scope=scope)  # type: ignore[call-overload]
    def _fixture(tmp_path_factory):
        server = DnsServer(tmp_path_factory.mktemp("knot"))
        for origin, records in (zones or {}).items():
            server.set_zone(origin, records)
        for origin in failing:
            server.fail_zone(origin)
        with server:
            yield server

    return _fixture
