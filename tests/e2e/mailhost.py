"""A mail host for the end-to-end tests of issue 9: `estafeta serve` with
an SMTP, a SUBMISSION and a SUBMISSIONS listener on free loopback ports,
TLS certificates a test CA issued (tests/peers/certs.py, certbot's
layout), users added with `estafeta user add`, alias files, and — with
`remote` — a Knot DNS on loopback that makes remote.test's MX an
smtp-sink on 127.0.0.2, so a message that leaves the host is seen.

    host = start_host(tmp_path / "h", aliases={"example.test": "sales: alice, bob\\n"})
    host.submit("alice@example.test", "alice-pw", "alice@example.test", ["bob@example.test"], msg)
    host.daemon.wait_delivered("example.test", "bob", 1)
    host.close()

Users (USERS): alice@example.test and bob@example.test with passwords,
carol@example.test receive-only. Local domains: example.test (its users
file makes it a domain with a user list) and localhost (every local
part). Every wait is bounded (the Daemon's).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from e2e_harness import Daemon, estafeta_cli
from peers.certs import TestCA
from peers.dns_server import DnsServer
from peers.ports import free_port
from peers.smtp_sink import SmtpSink

HOSTNAME = "mx.e2e.test"
#: Address -> password (None: receive-only).
USERS: dict[str, str | None] = {
    "alice@example.test": "alice-pw",
    "bob@example.test": "bob-pw",
    "carol@example.test": None,
}
#: The address remote.test's MX listens on (on lo).
REMOTE_MX = "127.0.0.2"


@dataclass
class MailHost:
    """A running daemon and its TLS material; `sink`: remote.test's MX
    (with remote=True)."""

    daemon: Daemon
    ca: TestCA
    cert_dir: Path
    submission: int
    submissions: int
    knot: DnsServer | None = None
    sink: SmtpSink | None = None
    extra: list = field(default_factory=list)

    @property
    def smtp(self) -> int:
        return self.daemon.port

    def context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and checks the name)."""
        return ssl.create_default_context(cafile=str(self.ca.cert_path))

    def starttls(self, port: int | None = None, source: str = "127.0.0.1") -> smtplib.SMTP:
        """A client on the SUBMISSION port (or `port`) after STARTTLS and EHLO."""
        c = smtplib.SMTP(
            "127.0.0.1",
            port or self.submission,
            local_hostname="client.e2e.test",
            timeout=30,
            source_address=(source, 0),
        )
        c._host = HOSTNAME  # the name smtplib gives TLS (SNI, certificate check); it connected to the address
        c.starttls(context=self.context())
        c.ehlo()
        return c

    def implicit_tls(self) -> smtplib.SMTP_SSL:
        """A client on the SUBMISSIONS port (TLS from the first byte), after EHLO."""
        c = smtplib.SMTP_SSL(
            "127.0.0.1", self.submissions, local_hostname="client.e2e.test", timeout=30, context=self.context()
        )  # fmt: skip (the certificate names 127.0.0.1 too)
        c.ehlo()
        return c

    def submit(self, user: str, password: str, sender: str, rcpts: list[str], msg: bytes, **kw) -> dict:
        """STARTTLS, AUTH (PLAIN), one transaction; smtplib's sendmail result."""
        with self.starttls() as c:
            c.login(user, password)
            return c.sendmail(sender, rcpts, msg, **kw)

    def close(self) -> None:
        self.daemon.close()
        for thing in (self.sink, self.knot):
            if thing is not None:
                thing.stop()


def start_host(
    root: Path,
    *,
    aliases: dict[str, str] | None = None,
    remote: bool = False,
    start: bool = True,
    users: dict[str, str | None] | None = None,
    tls_poll_seconds: float | None = None,
    **fields,
) -> MailHost:
    """Make (and with `start`, start) a MailHost under `root`. `aliases`:
    domain -> the text of its aliases file; `remote`: Knot and the sink for
    remote.test (Config.resolver, remote_smtp_port); `tls_poll_seconds`:
    Tls.reload_poll_seconds; `fields`: more Config fields (Daemon's)."""
    root = Path(root)
    ca = TestCA(root / "ca")
    cert_dir = root / "live"
    ca.issue([HOSTNAME], ips=["127.0.0.1"]).install_certbot(cert_dir, HOSTNAME)
    submission, submissions = free_port(), free_port()
    knot = sink = None
    if remote:
        port = free_port(REMOTE_MX)
        knot = DnsServer(root / "knot").start()
        knot.set_zone("remote.test", f"@ MX 10 mx\nmx A {REMOTE_MX}\n")
        sink = SmtpSink(root / "sink", address=REMOTE_MX, port=port).start()
        fields.setdefault("resolver", knot.address)
        fields.setdefault("remote_smtp_port", port)
    fields.setdefault("hostname", HOSTNAME)
    fields.setdefault("local_domain", ['{ name: "example.test" }', '{ name: "localhost" }'])
    poll = f" reload_poll_seconds: {tls_poll_seconds}" if tls_poll_seconds else ""
    fields.setdefault("tls", f'{{ cert_dir: "{cert_dir}"{poll} }}')
    fields.setdefault(
        "listener",
        [
            f'{{ address: "127.0.0.1:{submission}" mode: SUBMISSION }}',
            f'{{ address: "127.0.0.1:{submissions}" mode: SUBMISSIONS }}',
        ],
    )
    fields.setdefault("directory_poll_seconds", 0.2)
    d = Daemon(root / "d", **fields)
    for address, password in (USERS if users is None else users).items():
        args = ["user", "add", address, "--config", str(d.config_path)]
        if password is None:
            r = estafeta_cli(*args, "--receive-only")
        else:
            r = estafeta_cli(*args, input=f"{password}\n".encode())
        assert r.returncode == 0, r.stderr
    for domain, text in (aliases or {}).items():
        path = d.data_dir / "domains" / domain / "aliases"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    host = MailHost(d, ca, cert_dir, submission, submissions, knot, sink)
    if start:
        try:
            d.start()
            # Every listener, not only the first that answered wait_ready.
            d.wait_log(r"INFO started hostname=\S+ .* process=0/")
        except BaseException:
            host.close()
            raise
    return host
