"""Sans-I/O SMTP server protocol (RFC 5321 and the extensions estafeta
offers: PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8,
STARTTLS, AUTH).

Bytes in, events and reply bytes out; no sockets, no gevent, no actors.
`SmtpServer` is the state machine (its module docstring gives the driver
contract); `Reply` and the standard replies live in `replies`.

The client side (outbound SMTP and LMTP) is in the same style: `client`
(SmtpClient, its events and Verdict), `clientreplies` (reading replies and
EHLO keywords) and `transaction` (Envelope, the MAIL/RCPT lines, the
client's own refusals, dot-stuffing); import them from those modules.
"""

from estafeta.actors.smtp import replies
from estafeta.actors.smtp.events import (
    CLOSED,
    DECISIONS,
    NEED_DATA,
    AuthAborted,
    Authenticated,
    AuthResponse,
    AuthStart,
    ConnectionClosed,
    DataStart,
    Event,
    Helo,
    MailFrom,
    MessageReceived,
    MessageRejected,
    ProtocolUsageError,
    Quit,
    RcptTo,
    Reset,
    StartTls,
)
from estafeta.actors.smtp.params import Mode, ServerParams, State
from estafeta.actors.smtp.parser import ParseError, is_postmaster
from estafeta.actors.smtp.protocol import MAX_AUTH_LINE, MAX_COMMAND_LINE, SmtpServer
from estafeta.actors.smtp.replies import Reply, shutting_down, timed_out, too_many_errors

__all__ = [
    "CLOSED",
    "DECISIONS",
    "MAX_AUTH_LINE",
    "MAX_COMMAND_LINE",
    "NEED_DATA",
    "AuthAborted",
    "AuthResponse",
    "AuthStart",
    "Authenticated",
    "ConnectionClosed",
    "DataStart",
    "Event",
    "Helo",
    "MailFrom",
    "MessageReceived",
    "MessageRejected",
    "Mode",
    "ParseError",
    "ProtocolUsageError",
    "Quit",
    "RcptTo",
    "Reply",
    "Reset",
    "ServerParams",
    "SmtpServer",
    "StartTls",
    "State",
    "is_postmaster",
    "replies",
    "shutting_down",
    "timed_out",
    "too_many_errors",
]
