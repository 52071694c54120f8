"""The sans-I/O SMTP server state machine (RFC 5321), like h11: bytes in,
events and reply bytes out, no sockets, no clock.

Driver contract (actors/session.py is the driver)::

    proto = SmtpServer(params, peer_address)
    proto.greet()                               # queues "220 <host> ESMTP estafeta"
    while True:
        event = proto.next_event()
        if event is NEED_DATA:
            sock.sendall(proto.data_to_send())  # one write per pipelined group
            data = sock.recv(65536)             # (timeouts: proto.close(timed_out(host)))
            proto.receive_data(data) if data else proto.receive_eof()
        elif event is CLOSED:
            sock.sendall(proto.data_to_send()); break
        elif isinstance(event, DECISIONS):      # MailFrom, RcptTo, DataStart, MessageReceived
            proto.accept() or proto.reject(reply)   # exactly one, before next_event()
        else:                                   # Helo, Reset, MessageRejected, Quit, ConnectionClosed
            ...                                 # informational: reply already queued

PIPELINING (RFC 2920): next_event() works through every complete command
already received before it returns NEED_DATA, and replies are only queued,
so a client's group (MAIL, RCPT, RCPT, DATA in one packet) is answered by
one data_to_send() at the next NEED_DATA, in order. Flush at NEED_DATA and
CLOSED (at least); flushing more often is allowed but costs writes.

Errors: every 5xx sent counts, the driver's rejects included (as Postfix's
error limit does); the reply that reaches max_errors is followed by
421 4.7.0 and CLOSED. Any 421 (a driver's reject or close) ends the
session (RFC 5321 §3.8).

DATA: the content is read in bulk (actors/smtp/data.py). The protocol
itself refuses a message that is too big (552 5.3.4), has a line over 1000
octets (554 5.6.0), holds a smuggling sequence (554 5.5.2) or more than
max_received_headers Received fields (554 5.4.6): it then emits
MessageRejected (a Reset), not MessageReceived.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.data import DataReader, count_received
from estafeta.actors.smtp.events import (
    CLOSED,
    DECISIONS,
    NEED_DATA,
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
)
from estafeta.actors.smtp.parser import (
    PARAM_SYNTAX,
    ParseError,
    has_control_characters,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    split_command,
)
from estafeta.actors.smtp.replies import Reply

#: RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
MAX_COMMAND_LINE = 512

BAD_BODY = Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
BAD_SIZE = Reply(501, "5.5.4", "SIZE must be a number of octets")


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
def _fixed_replies(params: ServerParams) -> tuple[Reply, Reply, Reply, Reply]:
    """(greeting, EHLO reply, HELO reply, too-many-errors) for `params`,
    built once: their wire bytes are then reused by every session."""
    h = params.hostname
    ehlo = Reply(
        250, "",
        # RFC 5321 §4.1.1.1 ehlo-ok-rsp; the keywords: RFC 2920, RFC 1870,
        # RFC 6152, RFC 2034, RFC 6531, RFC 5321 §4.1.1.8 (HELP).
        f"{h}\nPIPELINING\nSIZE {params.max_message_size}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nHELP",
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


_TRANSACTION = (State.MAIL, State.RCPT, State.DATA)
#: MessageRejected.reason by the enhanced code of the protocol's own refusals.
_REASONS = {
    R.SMUGGLING.enhanced: "smuggling",
    R.MESSAGE_TOO_BIG.enhanced: "size",
    R.MAIL_LOOP.enhanced: "loop",
    R.TEXT_LINE_TOO_LONG.enhanced: "line-length",
}


class SmtpServer:
    """One SMTP server conversation (RFC 5321), without I/O. See the module
    docstring for the driver contract.

    Attributes the driver reads: state (State), in_data (reading DATA
    content), esmtp (EHLO rather than HELO), helo_name, smtputf8 and
    body_type (of the open transaction: MAIL's SMTPUTF8 and BODY=, "" when
    none), recipient_count (accepted in the transaction), error_count,
    protocol_name (RFC 3848 / RFC 6531 §4.3 "with" keyword). Settable:
    tls (the connection is encrypted, e.g. port 465), authenticated.
    """

    def __init__(self, params: ServerParams, peer_address: str = "", *, tls: bool = False):
        self.params = params
        self.peer_address = peer_address
        self.state = State.CONNECTED
        self.esmtp = False
        self.helo_name = ""
        self.tls = tls
        self.authenticated = False
        self.smtputf8 = False
        self.body_type = ""
        self.recipient_count = 0
        self.error_count = 0
        self._rcpt_attempts = 0
        self._greeting, self._ehlo_reply, self._helo_reply, self._too_many_errors = _fixed_replies(params)
        self._buf = bytearray()
        self._pos = 0  # start of the unprocessed input in _buf
        self._crlf = True  # the last command line ended in CRLF (not a bare LF)
        self._discarding = False  # inside an over-long command line
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: Event | None = None
        self._eof = False
        self._refused = False  # greeted with 554 (RFC 5321 §3.1)
        self._data: DataReader | None = None

    # ------------------------------------------------------------ properties
    @property
    def in_data(self) -> bool:
        """True while DATA content is being read (after 354, before its end)."""
        return self._data is not None

    @property
    def protocol_name(self) -> str:
        """The Received "with" keyword: SMTP (HELO), ESMTP, ESMTPS, ESMTPA,
        ESMTPSA (RFC 3848), or UTF8SMTP[S][A] in an SMTPUTF8 transaction
        (RFC 6531 §4.3)."""
        if not self.esmtp:
            return "SMTP"
        return ("UTF8SMTP" if self.smtputf8 else "ESMTP") + ("S" if self.tls else "") + ("A" if self.authenticated else "")

    # ------------------------------------------------------------ driver API
    def greet(self, reply: Reply | None = None) -> None:
        """Queue the greeting: "220 <hostname> <greeting_text>" by default;
        a 554 means "no service here" (every command but QUIT then gets
        503, RFC 5321 §3.1); a 421 closes at once. Raises ProtocolUsageError
        if called twice or with another code."""
        if self.state is not State.CONNECTED:
            raise ProtocolUsageError("greet() may be called once, first")
        reply = reply or self._greeting
        if reply.code not in (220, 421, 554):
            raise ProtocolUsageError(f"a greeting is 220, 421 or 554, not {reply.code}")
        self.state = State.GREETED
        self._refused = reply.code == 554
        self._out.append(reply.wire)
        if reply.code == 421:
            self._close_now()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer, in any chunking. Ignored once
        CLOSED (what a client sends after QUIT is not read). Raises
        ProtocolUsageError after receive_eof()."""
        if self._eof:
            raise ProtocolUsageError("receive_data() after receive_eof()")
        if self.state is not State.CLOSED:
            self._buf += data

    def receive_eof(self) -> None:
        """The peer closed its side: once the input is processed,
        next_event() returns ConnectionClosed, then CLOSED."""
        self._eof = True

    def next_event(self) -> Event | type[NEED_DATA] | type[CLOSED]:
        """The next event, NEED_DATA (flush, then feed more) or CLOSED.
        Raises ProtocolUsageError while a decision is pending or before
        greet()."""
        if self._pending is not None:
            raise ProtocolUsageError(f"accept() or reject() {type(self._pending).__name__} first")
        events = self._events
        if not events:
            if self.state is State.CONNECTED:
                raise ProtocolUsageError("greet() first")
            self._process()
            if not events:
                return CLOSED if self.state is State.CLOSED else NEED_DATA
        event = events.popleft()
        if isinstance(event, DECISIONS):
            self._pending = event
        return event

    def accept(self, reply: Reply | None = None) -> None:
        """Accept the pending decision event, answering `reply` or its
        default (250 2.1.0 / 250 2.1.5 / 354 / 250 2.0.0). Raises
        ProtocolUsageError with nothing pending, or for a reply that does
        not accept (2xx; 354 for DataStart)."""
        event = self._pending
        if event is None:
            raise ProtocolUsageError("no event is waiting for a decision")
        kind = type(event)
        if kind is DataStart:
            reply = reply or R.START_DATA
            if reply.code != 354:
                raise ProtocolUsageError("DataStart is accepted with 354")
            self._pending = None
            self._start_data()
        else:
            if reply is not None and not 200 <= reply.code < 300:
                raise ProtocolUsageError(f"accept() needs a 2xx reply, not {reply.code}")
            self._pending = None
            if kind is MailFrom:
                reply = reply or R.MAIL_OK
                self.state = State.MAIL
                self.smtputf8 = event.smtputf8
                self.body_type = event.body or ""
            elif kind is RcptTo:
                reply = reply or R.RCPT_OK
                self.state = State.RCPT
                self.recipient_count += 1
            else:  # MessageReceived: RFC 5321 §4.1.1.4, the transaction ends
                reply = reply or R.MESSAGE_OK
                self._reset_transaction()
        self._reply(reply)

    def reject(self, reply: Reply) -> None:
        """Refuse the pending decision event with a 4xx/5xx `reply`. A
        refused MAIL, RCPT or DATA leaves the state as it was; a refused
        message ends the transaction. Raises ProtocolUsageError with nothing
        pending or for a reply below 400."""
        if reply.code < 400:
            raise ProtocolUsageError(f"reject() needs a 4xx or 5xx reply, not {reply.code}")
        event = self._take_pending()
        if type(event) is MessageReceived:
            self._reset_transaction()
        self._reply(reply)

    def data_to_send(self) -> bytes:
        """The replies queued so far (then forgotten); b"" if none."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def close(self, reply: Reply) -> None:
        """Queue a last reply (421 4.3.2 shutting down, 421 4.4.2 timeout:
        see replies.shutting_down / timed_out) and go CLOSED, whatever was
        pending or unread."""
        self._out.append(reply.wire)
        self._events.clear()
        self._close_now()

    # ------------------------------------------------------------ internals
    def _take_pending(self) -> Event:
        event = self._pending
        if event is None:
            raise ProtocolUsageError("no event is waiting for a decision")
        self._pending = None
        return event

    def _close_now(self) -> None:
        self.state = State.CLOSED
        self._pending = None
        self._data = None
        self._buf.clear()
        self._pos = 0

    def _reply(self, reply: Reply) -> None:
        """Queue a reply; count 5xx toward max_errors; a 421 closes."""
        self._out.append(reply.wire)
        code = reply.code
        if code >= 500:
            self.error_count += 1
            limit = self.params.max_errors
            if 0 < limit <= self.error_count:
                self._out.append(self._too_many_errors.wire)
                self._close_now()
        elif code == 421:
            self._close_now()

    def _reset_transaction(self) -> None:
        """RFC 5321 §4.1.1.5 / §4.1.4: forget the envelope."""
        if self.state in _TRANSACTION:
            self.state = State.READY
        self.smtputf8 = False
        self.body_type = ""
        self.recipient_count = 0
        self._rcpt_attempts = 0

    def _process(self) -> None:
        """Work through the input until an event is queued, the input runs
        out, or the session closes."""
        buf = self._buf
        events = self._events
        while not events and self.state is not State.CLOSED:
            if self._data is not None:
                if not self._read_data():
                    return
                continue
            start = self._pos
            i = buf.find(b"\n", start)
            if i < 0:
                self._need_line()
                return
            self._pos = i + 1
            if self._discarding:  # the end of an over-long line
                self._discarding = False
                self._reply(R.LINE_TOO_LONG)
            elif i + 1 - start > MAX_COMMAND_LINE:
                self._reply(R.LINE_TOO_LONG)
            elif i > start and buf[i - 1] == 13:  # CRLF
                self._crlf = True
                self._command(bytes(buf[start : i - 1]))
            else:  # a bare LF ends a command line too, as deployed servers allow
                self._crlf = False
                self._command(bytes(buf[start:i]))

    def _need_line(self) -> None:
        """No complete line in the buffer: drop what is consumed, and the
        start of a line already over 512 octets (RFC 5321 §4.5.3.1.4), so an
        endless line costs no memory; at EOF the conversation ends."""
        buf = self._buf
        if self._discarding or len(buf) - self._pos >= MAX_COMMAND_LINE:
            self._discarding = True
            buf.clear()
        elif self._pos:
            del buf[: self._pos]
        self._pos = 0
        if self._eof:
            self._close_now()
            self._events.append(ConnectionClosed())

    def _command(self, line: bytes) -> None:
        if has_control_characters(line):
            self._reply(R.BAD_CHARACTERS)
            return
        verb, arg = split_command(line)
        handler = _HANDLERS.get(verb)
        if handler is None:
            self._reply(R.UNKNOWN_COMMAND if line.strip() else R.SYNTAX_ERROR)
        elif self._refused and verb != b"QUIT":
            self._reply(R.NO_SERVICE)
        else:
            handler(self, arg)

    # ------------------------------------------------------------ commands
    def _ehlo(self, arg: bytes, extended: bool = True) -> None:
        try:
            name = parse_helo(arg)
        except ParseError as e:
            self._reply(e.reply)
            return
        # RFC 5321 §4.1.4: EHLO/HELO in a transaction resets it, like RSET.
        if self.state in _TRANSACTION:
            self._events.append(Reset())
        self._reset_transaction()
        self.state = State.READY
        self.esmtp = extended
        self.helo_name = name
        self._out.append((self._ehlo_reply if extended else self._helo_reply).wire)
        self._events.append(Helo(name, extended))

    def _helo(self, arg: bytes) -> None:
        self._ehlo(arg, extended=False)

    def _mail(self, arg: bytes) -> None:
        state = self.state
        if state is not State.READY:
            self._reply(R.NEED_HELO if state is State.GREETED else R.NESTED_MAIL)
            return
        try:
            path, params = parse_mail_from(arg.decode("utf-8"))
        except UnicodeDecodeError:
            self._reply(R.BAD_CHARACTERS)
            return
        except ParseError as e:
            self._reply(e.reply)
            return
        size = body = None
        utf8 = False
        if params:
            if not self.esmtp:
                self._reply(R.PARAMS_NEED_EHLO)
                return
            for key, value in params.items():
                if key == "SIZE":  # RFC 1870 §3
                    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
                        self._reply(BAD_SIZE)
                        return
                    size = int(value)
                elif key == "BODY":  # RFC 6152 §2 (BINARYMIME is not offered)
                    body = (value or "").upper()
                    if body not in ("7BIT", "8BITMIME"):
                        self._reply(BAD_BODY)
                        return
                elif key == "SMTPUTF8" and value is None:  # RFC 6531 §3.4
                    utf8 = True
                else:
                    self._reply(PARAM_SYNTAX if key == "SMTPUTF8" else R.UNKNOWN_PARAMETER)
                    return
            if size is not None and size > self.params.max_message_size:
                self._reply(R.MESSAGE_TOO_BIG)  # RFC 1870 §6.1
                return
        if not utf8 and not path.isascii():
            self._reply(R.NON_ASCII_ADDRESS)  # RFC 6531 §3.7.4.1
            return
        self._events.append(MailFrom(path, params, size, utf8, body))

    def _rcpt(self, arg: bytes) -> None:
        if self.state is not State.MAIL and self.state is not State.RCPT:
            self._reply(R.NEED_MAIL)
            return
        try:
            path, params = parse_rcpt_to(arg.decode("utf-8"))
        except UnicodeDecodeError:
            self._reply(R.BAD_CHARACTERS)
            return
        except ParseError as e:
            self._reply(e.reply)
            return
        if params:  # no RCPT parameter is offered (DSN's NOTIFY/ORCPT not yet)
            self._reply(R.UNKNOWN_PARAMETER if self.esmtp else R.PARAMS_NEED_EHLO)
        elif not self.smtputf8 and not path.isascii():
            self._reply(R.NON_ASCII_ADDRESS)  # RFC 6531 §3.7.4.1
        elif self.recipient_count >= self.params.max_recipients:
            self._reply(R.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
        else:
            self._rcpt_attempts += 1
            self._events.append(RcptTo(path, params))

    def _data_cmd(self, arg: bytes) -> None:
        state = self.state
        if arg:
            self._reply(R.NO_ARGUMENTS)
        elif state is State.RCPT:
            self._events.append(DataStart())
        elif state is State.MAIL:
            # RFC 5321 §3.3: all RCPTs refused -> 554 "no valid recipients".
            self._reply(R.NO_VALID_RECIPIENTS if self._rcpt_attempts else R.NEED_RCPT)
        else:
            self._reply(R.NEED_HELO if state is State.GREETED else R.NEED_MAIL)

    def _rset(self, arg: bytes) -> None:
        if arg:
            self._reply(R.NO_ARGUMENTS)
            return
        self._reset_transaction()  # RFC 5321 §4.1.1.5
        self._out.append(R.OK.wire)
        self._events.append(Reset())

    def _noop(self, arg: bytes) -> None:
        self._out.append(R.OK.wire)  # RFC 5321 §4.1.1.9: an argument is ignored

    def _vrfy(self, arg: bytes) -> None:
        self._reply(R.CANNOT_VRFY if arg.strip() else R.NEED_ARGUMENT)

    def _help(self, arg: bytes) -> None:
        self._out.append(R.HELP.wire)

    def _expn(self, arg: bytes) -> None:
        self._reply(R.NOT_IMPLEMENTED)  # RFC 5321 §3.5.2: EXPN is optional

    def _quit(self, arg: bytes) -> None:
        self._out.append(R.BYE.wire)
        self._close_now()
        self._events.append(Quit())

    # ------------------------------------------------------------ DATA
    def _start_data(self) -> None:
        """After 354: the input from here on is content. The buffer is cut
        so it begins with the DATA line's CRLF (a bare LF gets its CR), so
        the first content line is found after a CRLF like all others."""
        buf = self._buf
        pos = self._pos
        if self._crlf:
            del buf[: pos - 2]
        else:
            del buf[: pos - 1]
            buf[0:0] = b"\r"
        self._pos = 0
        self._data = DataReader(self.params.max_message_size)
        self.state = State.DATA

    def _read_data(self) -> bool:
        """Scan the content; False when more is needed. At the end, queue
        MessageReceived, or refuse the message (MessageRejected)."""
        reader = self._data
        buf = self._buf
        end = reader.feed(buf)
        if end < 0:
            if self._eof:
                self._close_now()
                self._events.append(ConnectionClosed())
            return False
        error = reader.error
        body = b""
        count = 0
        if error is None:
            body = reader.take(buf, end)
            count = count_received(body)
            if count > self.params.max_received_headers:
                error = R.MAIL_LOOP  # RFC 5321 §6.3
        del buf[: end + 5]
        self._data = None
        if error is None:
            self._events.append(MessageReceived(body, count))
            return True
        self._reset_transaction()
        self._events.append(MessageRejected(error, _REASONS[error.enhanced]))
        self._reply(error)
        return True


_HANDLERS = {
    b"EHLO": SmtpServer._ehlo,
    b"HELO": SmtpServer._helo,
    b"MAIL": SmtpServer._mail,
    b"RCPT": SmtpServer._rcpt,
    b"DATA": SmtpServer._data_cmd,
    b"RSET": SmtpServer._rset,
    b"NOOP": SmtpServer._noop,
    b"QUIT": SmtpServer._quit,
    b"VRFY": SmtpServer._vrfy,
    b"HELP": SmtpServer._help,
    b"EXPN": SmtpServer._expn,
}
