"""Configuration and states of the SMTP server protocol."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.replies import Reply


class Mode(enum.IntEnum):
    """What a listener is for (config_pb2.Listener.Mode, same values).

    SMTP: MX (RFC 5321): STARTTLS when a certificate exists, no AUTH.
    SUBMISSION: RFC 6409 (port 587): STARTTLS, AUTH over TLS or from
    loopback, AUTH required before MAIL (530 5.7.0, RFC 4954 §6).
    SUBMISSIONS: RFC 8314 §3.3 (port 465): the connection is TLS from its
    first byte (the driver says so: SmtpServer(tls=True)), then as
    SUBMISSION."""

    SMTP = 0
    SUBMISSION = 1
    SUBMISSIONS = 2


@dataclass(frozen=True)
class ServerParams:
    """What a listener's sessions share. Sizes in bytes.

    hostname: in the greeting, EHLO and 421 replies; max_message_size:
    advertised as SIZE (RFC 1870), checked at MAIL SIZE= and on the DATA
    content (552 5.3.4); max_recipients: accepted RCPTs per transaction,
    then 452 4.5.3 (RFC 5321 §4.5.3.1.8, at least 100 recommended);
    max_errors: 5xx replies before 421 4.7.0 and close (0: no limit);
    greeting_text: after the hostname in the 220; max_received_headers:
    more Received fields is a loop, 554 5.4.6 (RFC 5321 §6.3);
    mode: the listener's Mode; starttls: a certificate is available, so
    STARTTLS is offered (SMTP and SUBMISSION, before TLS); auth_mechanisms:
    the SASL mechanisms offered where AUTH is (SUBMISSION and SUBMISSIONS,
    over TLS or from loopback; a "-PLUS" one only on a connection with
    channel binding), upper case, in order; () offers no AUTH.
    Raises ValueError for a non-positive size or recipient limit.

    The EHLO replies of every (STARTTLS?, mechanisms) variant are built
    once per ServerParams and reused by every session (ehlo_reply())."""

    hostname: str
    max_message_size: int
    max_recipients: int = 100
    max_errors: int = 10
    greeting_text: str = "ESMTP estafeta"
    max_received_headers: int = 50
    mode: Mode = Mode.SMTP
    starttls: bool = False
    auth_mechanisms: tuple[str, ...] = ()
    #: (greeting, plain EHLO reply, HELO reply, too-many-errors), built in __post_init__.
    fixed: tuple[Reply, Reply, Reply, Reply] = field(init=False, compare=False, hash=False, repr=False)
    #: The EHLO reply with STARTTLS and no AUTH (an SMTP listener before TLS).
    ehlo_starttls: Reply = field(init=False, compare=False, hash=False, repr=False)
    #: SUBMISSION and SUBMISSIONS: AUTH before MAIL (RFC 4954 §6, 530 5.7.0).
    auth_required: bool = field(init=False, compare=False, hash=False, repr=False)
    _ehlo: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)

    def __post_init__(self):
        if self.max_message_size <= 0 or self.max_recipients <= 0:
            raise ValueError("max_message_size and max_recipients must be positive")
        h = self.hostname
        fixed = (
            Reply(220, "", f"{h} {self.greeting_text}"),
            self.ehlo_reply(False, ()),
            Reply(250, "", h),
            R.too_many_errors(h),
        )
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "ehlo_starttls", self.ehlo_reply(True, ()))
        object.__setattr__(self, "auth_required", self.mode is not Mode.SMTP)

    def ehlo_reply(self, starttls: bool, mechanisms: tuple[str, ...]) -> Reply:
        """The EHLO reply (RFC 5321 §4.1.1.1 ehlo-ok-rsp) listing STARTTLS
        (RFC 3207) and AUTH <mechanisms> (RFC 4954) as asked; cached."""
        key = (starttls, mechanisms)
        reply = self._ehlo.get(key)
        if reply is None:
            # The keywords: RFC 2920, RFC 1870, RFC 6152, RFC 2034, RFC 6531,
            # RFC 3461 (DSN), RFC 3207, RFC 4954, RFC 5321 §4.1.1.8 (HELP).
            lines = [
                self.hostname,
                "PIPELINING",
                f"SIZE {self.max_message_size}",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "SMTPUTF8",
                "DSN",
            ]
            if starttls:
                lines.append("STARTTLS")
            if mechanisms:
                lines.append("AUTH " + " ".join(mechanisms))
            lines.append("HELP")
            reply = self._ehlo[key] = Reply(250, "", "\n".join(lines))
        return reply


def fixed_replies(params: ServerParams) -> tuple[Reply, Reply, Reply, Reply]:
    """(greeting, EHLO reply without STARTTLS and AUTH, HELO reply,
    too-many-errors) for `params`, built once: their wire bytes are then
    reused by every session."""
    return params.fixed


class State(enum.Enum):
    """Where the conversation is (RFC 5321 §4.1.4 ordering)."""

    CONNECTED = "connected"  # before greet()
    GREETED = "greeted"  # 220 queued, no EHLO/HELO yet (also after STARTTLS, RFC 3207 §4.2)
    READY = "ready"  # EHLO/HELO done, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient accepted yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # 354 sent: content being read, or MessageReceived pending
    TLS = "tls"  # 220 to STARTTLS queued: the driver's TLS handshake, then tls_started()
    CLOSED = "closed"


#: The states in which a mail transaction is open.
TRANSACTION_STATES = (State.MAIL, State.RCPT, State.DATA)
