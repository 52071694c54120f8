"""Configuration and states of the SMTP server protocol."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.replies import Reply


@dataclass(frozen=True)
class ServerParams:
    """What a listener's sessions share. Sizes in bytes.

    hostname: in the greeting, EHLO and 421 replies; max_message_size:
    advertised as SIZE (RFC 1870), checked at MAIL SIZE= and on the DATA
    content (552 5.3.4); max_recipients: accepted RCPTs per transaction,
    then 452 4.5.3 (RFC 5321 §4.5.3.1.8, at least 100 recommended);
    max_errors: 5xx replies before 421 4.7.0 and close (0: no limit);
    greeting_text: after the hostname in the 220; max_received_headers:
    more Received fields is a loop, 554 5.4.6 (RFC 5321 §6.3).
    Raises ValueError for a non-positive size or recipient limit."""

    hostname: str
    max_message_size: int
    max_recipients: int = 100
    max_errors: int = 10
    greeting_text: str = "ESMTP estafeta"
    max_received_headers: int = 50

    def __post_init__(self):
        if self.max_message_size <= 0 or self.max_recipients <= 0:
            raise ValueError("max_message_size and max_recipients must be positive")


@lru_cache(maxsize=64)
def fixed_replies(params: ServerParams) -> tuple[Reply, Reply, Reply, Reply]:
    """(greeting, EHLO reply, HELO reply, too-many-errors) for `params`,
    built once: their wire bytes are then reused by every session."""
    h = params.hostname
    ehlo = Reply(
        250,
        "",
        # RFC 5321 §4.1.1.1 ehlo-ok-rsp; the keywords: RFC 2920, RFC 1870,
        # RFC 6152, RFC 2034, RFC 6531, RFC 3461, RFC 5321 §4.1.1.8 (HELP).
        f"{h}\nPIPELINING\nSIZE {params.max_message_size}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nDSN\nHELP",
    )
    return Reply(220, "", f"{h} {params.greeting_text}"), ehlo, Reply(250, "", h), R.too_many_errors(h)


class State(enum.Enum):
    """Where the conversation is (RFC 5321 §4.1.4 ordering)."""

    CONNECTED = "connected"  # before greet()
    GREETED = "greeted"  # 220 queued, no EHLO/HELO yet
    READY = "ready"  # EHLO/HELO done, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient accepted yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # 354 sent: content being read, or MessageReceived pending
    CLOSED = "closed"


#: The states in which a mail transaction is open.
TRANSACTION_STATES = (State.MAIL, State.RCPT, State.DATA)
