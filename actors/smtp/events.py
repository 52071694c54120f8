"""Events the SMTP server protocol hands to its driver, and its sentinels.

Decision events wait for the driver before anything else happens:
MailFrom, RcptTo, DataStart, MessageReceived and StartTls for accept() or
reject(); AuthStart and AuthResponse for auth_challenge(),
auth_succeeded() or reject(). The others are informational: their reply,
if any, is already queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from estafeta.actors.smtp.replies import Reply

if TYPE_CHECKING:
    from estafeta.actors.smtp.dsnparams import MailDsn, RcptDsn


class _SentinelType(type):
    def __repr__(cls) -> str:
        return cls.__name__


class NEED_DATA(metaclass=_SentinelType):
    """next_event() result: all input is processed. Send data_to_send(),
    then read more and call receive_data() / receive_eof()."""


class CLOSED(metaclass=_SentinelType):
    """next_event() result: the conversation is over. Send data_to_send()
    (the last reply, e.g. 221 or 421) and close the connection."""


class ProtocolUsageError(RuntimeError):
    """The driver broke the protocol object's contract (e.g. next_event()
    while a decision is pending, accept() with nothing pending, a reject
    with a 2xx reply). A bug in the driver, never caused by the peer."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class Helo(Event):
    """EHLO (extended=True) or HELO was accepted (RFC 5321 §4.1.1.1); the
    250 reply is queued. `name` is the client's first word, as sent."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    """MAIL FROM (RFC 5321 §4.1.1.2): decide. accept() answers 250 2.1.0.

    reverse_path: the mailbox as written, "" for the null reverse-path <>
    (§4.5.5); params: upper-case keyword -> value or None; size: SIZE= in
    bytes (RFC 1870) or None, already checked against max_message_size;
    smtputf8: the SMTPUTF8 parameter (RFC 6531); body: "7BIT", "8BITMIME"
    (RFC 6152) or None; dsn: RET and ENVID decoded (RFC 3461 §4.3, §4.4),
    or None when neither was given; auth: the AUTH= parameter (RFC 4954
    §5), xtext decoded — "" for <>, a mailbox, or None when not given
    (accepted only where AUTH is offered). Whether to trust it is the
    driver's call (actors/policy.py auth_parameter)."""

    reverse_path: str
    params: dict[str, str | None] = field(default_factory=dict)
    size: int | None = None
    smtputf8: bool = False
    body: str | None = None
    dsn: MailDsn | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    """RCPT TO (RFC 5321 §4.1.1.3): decide. accept() answers 250 2.1.5.

    forward_path: the mailbox as written (source route dropped), or a bare
    "postmaster" in the case it was sent (§4.5.1); params: as in MailFrom;
    dsn: NOTIFY and ORCPT decoded (RFC 3461 §4.1, §4.2), or None.

    A repeat of a forward-path already accepted in this transaction (the
    same local part, the domain in any case) is not an event: the protocol
    answers it 250 2.1.5 itself, so each address is delivered once (as
    Postfix's cleanup does). Addresses that differ only in ways a local
    domain's rules make equal (case of the local part, drop characters,
    suffixes, aliases to the same user) are the driver's to merge when it
    resolves them."""

    forward_path: str
    params: dict[str, str | None] = field(default_factory=dict)
    dsn: RcptDsn | None = None

    @property
    def is_postmaster(self) -> bool:
        """True for postmaster or postmaster@<domain>, any case (§4.5.1)."""
        local, at, _ = self.forward_path.rpartition("@")
        return (local if at else self.forward_path).lower() == "postmaster"


@dataclass(frozen=True, slots=True)
class DataStart(Event):
    """DATA with at least one accepted recipient: decide. accept() answers
    354 and the content follows (RFC 5321 §4.1.1.4)."""


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """The whole content arrived and passed the protocol's own checks
    (size, line length, smuggling, Received count): decide. accept() answers
    "250 2.0.0 Ok"; accept(Reply(250, "2.0.0", "Ok: queued as <id>")) once
    the message is durable (RFC 5321 §6.1).

    body: the message, dot-unstuffed, with its line ends exactly as
    received (the driver prepends its Received header); lines may be longer
    than 1000 octets (accepted and kept whole, see actors/smtp/data.py);
    received_header_count: "Received:" fields in the header section (at most
    max_received_headers: more is refused by the protocol itself)."""

    body: bytes
    received_header_count: int = 0


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The transaction, if any, was abandoned: RSET (250 queued), or
    EHLO/HELO in the middle of one (emitted just before its Helo)."""


@dataclass(frozen=True, slots=True)
class MessageRejected(Reset):
    """The protocol refused the message at the end of DATA by itself and
    reset the transaction (RFC 5321 §4.1.1.4); `reply` is queued. reason:
    "size" (552 5.3.4), "smuggling" (554 5.5.2) or "loop" (554 5.4.6). A Reset subclass, so a driver that ends its
    transaction on Reset needs nothing more."""

    reply: Reply
    reason: str


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """QUIT (RFC 5321 §4.1.1.10): 221 is queued; the state is CLOSED."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed its side (receive_eof) with no QUIT; any partial
    command or message is dropped. The state is CLOSED."""


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    """STARTTLS (RFC 3207 §4), offered and valid here: decide. accept()
    queues "220 2.0.0 Ready to start TLS", forgets every byte received after
    the command (RFC 3207 §4.2: a plaintext command pipelined behind
    STARTTLS must never run inside TLS — the injection class of
    CVE-2011-0411) and goes to State.TLS. The driver then sends
    data_to_send(), does the TLS handshake on the socket, and calls
    tls_started(); on a failed handshake it closes the connection without
    a reply. reject(Reply(454, "4.7.0", ...)) refuses (TLS_NOT_AVAILABLE)."""


@dataclass(frozen=True, slots=True)
class AuthStart(Event):
    """AUTH <mechanism> [initial-response] (RFC 4954 §4), for a mechanism
    offered on this connection: decide by running the mechanism
    (actors/auth/mechanisms.py). mechanism: upper case; initial_response:
    base64-decoded, b"" for "=", None when none was sent. Answer with
    auth_challenge(data), auth_succeeded(identity[, data]) or reject(reply)
    (535 5.7.8 bad credentials, 432 4.7.12, 454 4.7.0, ...)."""

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """The client's answer to a 334 challenge, base64-decoded: decide as for
    AuthStart. ("*", bad base64 and over-long lines are handled by the
    protocol: AuthAborted.)"""

    response: bytes


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """235 2.7.0 is queued (RFC 4954 §4): the session is authenticated as
    `identity` (what auth_succeeded() was given) with `mechanism`."""

    identity: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthAborted(Event):
    """The client ended an AUTH exchange, and `reply` is queued: reason
    "cancelled" ("*", 501 5.0.0), "bad-base64" (501 5.5.2), "too-long"
    (500 5.5.6) or "bad-final" (a non-empty answer to the last 334 that
    carried the mechanism's success data, 501 5.5.2). Drop the mechanism
    object; it is not a failed login (nothing was checked)."""

    reason: str
    reply: Reply


DECISIONS = (MailFrom, RcptTo, DataStart, MessageReceived, StartTls, AuthStart, AuthResponse)
