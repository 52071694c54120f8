"""Events the SMTP server protocol hands to its driver, and its sentinels.

Decision events (MailFrom, RcptTo, DataStart, MessageReceived) wait for the
driver's accept() or reject() before anything else happens; the others are
informational: their reply, if any, is already queued.
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
    or None when neither was given."""

    reverse_path: str
    params: dict[str, str | None] = field(default_factory=dict)
    size: int | None = None
    smtputf8: bool = False
    body: str | None = None
    dsn: MailDsn | None = None


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    """RCPT TO (RFC 5321 §4.1.1.3): decide. accept() answers 250 2.1.5.

    forward_path: the mailbox as written (source route dropped), or a bare
    "postmaster" in the case it was sent (§4.5.1); params: as in MailFrom;
    dsn: NOTIFY and ORCPT decoded (RFC 3461 §4.1, §4.2), or None."""

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

    body: the message, dot-unstuffed, with CRLF line ends exactly as
    received (the driver prepends its Received header);
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
    "size" (552 5.3.4), "line-length" (554 5.6.0), "smuggling" (554 5.5.2) or
    "loop" (554 5.4.6). A Reset subclass, so a driver that ends its
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


DECISIONS = (MailFrom, RcptTo, DataStart, MessageReceived)
