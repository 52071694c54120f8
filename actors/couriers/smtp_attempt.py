"""What goes into one SMTP/LMTP delivery attempt and what comes out of it
(the driver is actors/couriers/smtp_client_io.py, which re-exports all of
these): Timeouts (RFC 5321 §4.5.3.2), ClientOptions (per route: our name,
TLS policy and contexts, AUTH, LMTP), Transaction (envelope and body file),
AttemptResult and TlsInfo.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import BinaryIO

from gevent import ssl as gssl

from estafeta.actors.smtp.clientevents import Credentials, Step, TlsPolicy, Verdict
from estafeta.actors.smtp.clientreplies import Extensions
from estafeta.actors.smtp.transaction import Envelope


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait, RFC 5321 §4.5.3.2 (and Postfix's smtp_*_timeout
    where the RFC names none: EHLO, STARTTLS, AUTH)."""

    connect: float = 30.0  # Postfix smtp_connect_timeout
    greeting: float = 300.0  # §4.5.3.2.1 initial 220: 5 min
    ehlo: float = 300.0  # Postfix smtp_helo_timeout (also HELO, LHLO)
    starttls: float = 300.0  # Postfix smtp_starttls_timeout: the reply and the handshake
    auth: float = 300.0  # each AUTH reply
    mail: float = 300.0  # §4.5.3.2.2: 5 min
    rcpt: float = 300.0  # §4.5.3.2.3: 5 min
    data: float = 120.0  # §4.5.3.2.4 DATA initiation: 2 min
    data_block: float = 180.0  # §4.5.3.2.5: each write of the content, 3 min
    final_dot: float = 600.0  # §4.5.3.2.6 DATA termination: 10 min
    quit: float = 60.0  # the 221 (every verdict is in by then)

    def for_step(self, step: Step | None) -> float:
        """The timeout of the reply to `step`."""
        return _STEP_TIMEOUT.get(step, _default)(self)


def _default(t: Timeouts) -> float:
    return t.greeting


_STEP_TIMEOUT: dict[Step | None, Callable[[Timeouts], float]] = {
    Step.GREETING: lambda t: t.greeting,
    Step.EHLO: lambda t: t.ehlo,
    Step.HELO: lambda t: t.ehlo,
    Step.STARTTLS: lambda t: t.starttls,
    Step.AUTH: lambda t: t.auth,
    Step.MAIL: lambda t: t.mail,
    Step.RCPT: lambda t: t.rcpt,
    Step.DATA: lambda t: t.data,
    Step.DOT: lambda t: t.final_dot,
    Step.QUIT: lambda t: t.quit,
}


def default_tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context (TLS 1.2 or later): verifying the chain against
    `ca_file` (or the system's trust store) and the host name when `verify`,
    accepting any certificate otherwise."""
    ctx = gssl.create_default_context(cafile=ca_file)
    # Said, not assumed: a Python built with the system's cipher defaults
    # (Debian's) leaves the minimum to OpenSSL's configuration.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class ClientOptions:
    """How to deliver, per route.

    helo_name: our name in EHLO/LHLO; timeouts; tls: the STARTTLS policy
    (OPPORTUNISTIC for MX delivery, REQUIRED or VERIFY for smarthosts, NONE
    for LMTP on a unix socket); credentials: AUTH after TLS (smarthosts);
    lmtp: speak LMTP (RFC 2033); ca_file: trust anchors for verification
    (None: the system's); tls_context_factory: verify -> SSLContext,
    replacing default_tls_context (made once per ClientOptions and kept)."""

    helo_name: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    credentials: Credentials | None = None
    lmtp: bool = False
    ca_file: str | None = None
    tls_context_factory: Callable[[bool], ssl.SSLContext] | None = None

    @cached_property
    def _contexts(self) -> dict[bool, ssl.SSLContext]:
        return {}

    def tls_context(self, verify: bool) -> ssl.SSLContext:
        """The (cached) context for a verifying or a non-verifying handshake."""
        ctx = self._contexts.get(verify)
        if ctx is None:
            factory = self.tls_context_factory
            ctx = factory(verify) if factory else default_tls_context(verify, self.ca_file)
            self._contexts[verify] = ctx
        return ctx


@dataclass(frozen=True)
class Transaction:
    """What to deliver: the envelope (with the message's size) and the
    queue's body file, the message exactly as queued with CRLF line ends
    (read in chunks while sending, never held whole)."""

    envelope: Envelope
    body_path: str


@dataclass(frozen=True)
class TlsInfo:
    """The TLS of the connection that carried the session. version: as
    OpenSSL names it ("TLSv1.3"); cipher: its name; verified: the
    certificate verified for the host name; verify_error: why not."""

    version: str
    cipher: str
    verified: bool
    verify_error: str = ""


@dataclass
class AttemptResult:
    """The outcome of one attempt at one server address.

    recipients: one entry per envelope recipient, in order: the Verdict
    that decided it (its reply's class says delivered 2xx / temporary 4xx /
    permanent 5xx; a 4xx may be retried at the next MX, as Postfix does, or
    later), or None: undecided.
    session_error: applies to every undecided recipient, always as a
    temporary failure (even a 5xx greeting or AUTH refusal, as Postfix's
    smtp_skip_5xx_greeting and smtp_sasl_auth_soft_bounce); None when every
    recipient was decided.
    try_next: the undecided recipients should be tried at the next address
    or MX now (connection refused or timed out, a 421 or refused greeting,
    a lost connection before the end of data, TLS required and failed...);
    False: the attempt reached its verdict (retry the undecided later).
    unknown_after_dot: the connection broke after the final dot and before
    its reply: the message may have been delivered; retrying may deliver it
    twice (at-least-once). The caller counts and logs it.
    tls: of the connection that carried the session (None: plaintext);
    tls_fallback: "" or what the TLS policy had to settle for, e.g.
    "plaintext after a failed TLS handshake: ..."; extensions: the server's
    last EHLO/LHLO keywords (None if it never got that far); connections:
    how many were opened (1 to 3)."""

    host_name: str
    address: str
    port: int
    recipients: list[Verdict | None]
    session_error: Verdict | None = None
    try_next: bool = False
    unknown_after_dot: bool = False
    tls: TlsInfo | None = None
    tls_fallback: str = ""
    extensions: Extensions | None = None
    connections: int = 0

    def verdict(self, i: int) -> Verdict | None:
        """Recipient i's verdict, or the session error that applies to it."""
        return self.recipients[i] or self.session_error


def peer_name(host_name: str, address: str, port: int) -> str:
    """ "mx.example.net[192.0.2.1]:25" (Postfix's way), or "[/path]" for a
    unix socket."""
    if address.startswith("/"):
        return f"{host_name}[{address}]"
    return f"{host_name or address}[{address}]:{port}"


def header_section_non_ascii(body: BinaryIO) -> bool:
    """True if the message's header section (up to the first empty line,
    RFC 5322 §2.1) holds a non-ASCII octet. Reads from the start; leaves
    the file position anywhere."""
    body.seek(0)
    carry = b"\n"
    while True:
        chunk = body.read(65536)
        if not chunk:
            return False
        data = carry + chunk
        end = data.find(b"\n\r\n")
        if not (data if end < 0 else data[:end]).isascii():
            return True
        if end >= 0:
            return False
        carry = data[-2:]
