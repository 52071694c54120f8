"""The SMTP/LMTP client's public types (actors/smtp/client.py): what the
driver configures (ClientParams, TlsPolicy, Credentials), what decides a
recipient (Verdict, Step), and the events SmtpClient.next_event() returns
besides NEED_DATA and CLOSED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from estafeta.actors.smtp.events import Event
from estafeta.actors.smtp.replies import Reply


class Step(enum.Enum):
    """The command a reply answers (the greeting answers the connection)."""

    GREETING = "greeting"
    EHLO = "EHLO"  # or LHLO
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    DOT = "."  # the end of the content
    QUIT = "QUIT"


class TlsPolicy(enum.Enum):
    """STARTTLS (RFC 3207) policy, as Postfix's smtp_tls_security_level.

    NONE: never; OPPORTUNISTIC ("may"): when offered, verified or not, and
    in plaintext when it is not offered or refused; REQUIRED ("encrypt"):
    no delivery without TLS, any certificate; VERIFY ("secure"): no
    delivery without TLS and a certificate that verifies for the host name
    (the driver checks it; to this machine VERIFY is REQUIRED)."""

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    VERIFY = "verify"


@dataclass(frozen=True)
class Credentials:
    """SMTP AUTH (RFC 4954) credentials, sent only over TLS, with PLAIN
    (RFC 4616) or else LOGIN. The password never appears in repr() or
    traces."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ClientParams:
    """helo_name: our name in EHLO/HELO/LHLO (RFC 5321 §4.1.1.1);
    peer: how our own reply texts name the server, e.g.
    "mx.example.net[192.0.2.1]"; lmtp: speak LMTP (RFC 2033); tls: the
    STARTTLS policy; credentials: AUTH after TLS, or None."""

    helo_name: str
    peer: str = "the server"
    lmtp: bool = False
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What decided a recipient, or ended a session.

    reply: the reply (a 4xx is temporary, a 5xx permanent, for a recipient;
    a session error is always temporary); step: the command it answers, or
    None for the client's own decision before sending (SIZE, 8BITMIME,
    SMTPUTF8: transaction.refusal); remote: the server sent this reply
    (False: the client made it — a refusal, a timeout, a lost connection,
    a TLS failure), so a DSN says "smtp; <reply>" only when True."""

    reply: Reply
    step: Step | None
    remote: bool


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class ReplyReceived(Event):
    """A reply arrived. command: the command line it answers as sent, with
    credentials masked ("" for the greeting); recipient: the address for a
    RCPT reply and for each LMTP end-of-data reply, else ""."""

    step: Step
    command: str
    reply: Reply
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    """The server said 220 to STARTTLS: the driver does the TLS handshake
    on the connection and calls tls_started() or tls_failed(). Whatever was
    received after the 220 in plaintext is already discarded (RFC 3207
    §4.2)."""


@dataclass(frozen=True, slots=True)
class SendContent(Event):
    """The server said 354 to DATA: the driver sends the message through
    send_content() and end_content()."""
