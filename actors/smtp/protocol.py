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
            proto.accept()  # or proto.reject(reply): exactly one, before next_event()
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
itself refuses a message that is too big (552 5.3.4), holds a smuggling
sequence (554 5.5.2) or more than max_received_headers Received fields
(554 5.4.6): it then emits MessageRejected (a Reset), not MessageReceived.
A text line over 1000 octets is accepted and kept whole (data.py says
why). Between the 354 and the end of the content, every byte is content:
nothing in it is ever taken as a command (that is what makes smuggling
harmless here).

Recipients: a RCPT repeating a forward-path already accepted in the
transaction (same local part, domain in any case) is answered 250 2.1.5
by the protocol, with no event: the driver sees each address once.

STARTTLS (RFC 3207) and AUTH (RFC 4954) follow the listener's Mode
(ServerParams.mode) and the connection's state; the EHLO keywords say
what is offered now::

    StartTls     -> proto.accept(); sock.sendall(proto.data_to_send())
                    tls_sock = context.wrap_socket(sock, server_side=True)   # handshake
                    proto.tls_started(channel_binding=cb is not None)      # back to before EHLO
    AuthStart    -> mech = mechanisms.start(event.mechanism, creds, cb)  # actors/auth/mechanisms.py
                    step = mech.step(event.initial_response)
    AuthResponse -> step = mech.step(event.response)
                    Challenge -> proto.auth_challenge(step.data)
                    Success   -> proto.auth_succeeded(step.identity, step.data)
                    Failure   -> proto.reject(step.reply)
    Authenticated, AuthAborted: informational.

In SUBMISSION and SUBMISSIONS modes MAIL needs AUTH first (530 5.7.0).

Cost: a whole EHLO / MAIL / RCPT / DATA (1 KiB) / QUIT conversation,
driver loop included, takes about 32 us of CPU (CPython 3.11, this
project's 2-vCPU machine); bulk content is scanned at roughly 200-250 MB/s.
To measure again::

    import timeit
    from estafeta.actors import smtp
    p = smtp.ServerParams("mx.test", 10_000_000)
    wire = [b"EHLO c.test\\r\\n", b"MAIL FROM:<a@c.test>\\r\\n", b"RCPT TO:<b@mx.test>\\r\\n",
            b"DATA\\r\\n", b"Subject: x\\r\\n\\r\\n" + (b"x" * 76 + b"\\r\\n") * 13 + b".\\r\\n", b"QUIT\\r\\n"]
    def conversation():
        s = smtp.SmtpServer(p); s.greet()
        for chunk in wire:
            s.receive_data(chunk)
            while (e := s.next_event()) is not smtp.NEED_DATA and e is not smtp.CLOSED:
                if isinstance(e, smtp.DECISIONS):
                    s.accept()
            s.data_to_send()
    print(timeit.timeit(conversation, number=10_000) / 10_000 * 1e6, "us")
"""

from __future__ import annotations

from collections import deque

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.commands import HANDLERS, Commands
from estafeta.actors.smtp.data import DataReader, count_received
from estafeta.actors.smtp.events import (
    CLOSED,
    DECISIONS,
    NEED_DATA,
    AuthResponse,
    AuthStart,
    ConnectionClosed,
    DataStart,
    Event,
    MailFrom,
    MessageReceived,
    MessageRejected,
    ProtocolUsageError,
    RcptTo,
    StartTls,
)
from estafeta.actors.smtp.params import TRANSACTION_STATES, ServerParams, State
from estafeta.actors.smtp.parser import has_control_characters, split_command
from estafeta.actors.smtp.replies import Reply
from estafeta.actors.smtp.security import Security, is_loopback

#: Longest command line taken, octets with its CRLF. RFC 5321 §4.5.3.1.4
#: sets 512 and lets extensions raise it (§4.1.2, §4.5.3.1): RFC 3461 adds
#: up to 500 to RCPT (NOTIFY, ORCPT) and 100 to MAIL (RET, ENVID), RFC 4954
#: §5 500 to MAIL (AUTH=). 2048 covers them all, as Postfix's
#: line_length_limit does.
MAX_COMMAND_LINE = 2048
#: RFC 4954 §4: an AUTH command or response line may be longer; 12288
#: octets is "sufficient for deployed authentication mechanisms".
MAX_AUTH_LINE = 12288

#: MessageRejected.reason by the enhanced code of the protocol's own refusals.
_REASONS = {
    R.SMUGGLING.enhanced: "smuggling",
    R.MESSAGE_TOO_BIG.enhanced: "size",
    R.MAIL_LOOP.enhanced: "loop",
}


class SmtpServer(Commands, Security):
    """One SMTP server conversation (RFC 5321), without I/O. See the module
    docstring for the driver contract.

    Attributes the driver reads: state (State), in_data (reading DATA
    content), esmtp (EHLO rather than HELO), helo_name, smtputf8 and
    body_type (of the open transaction: MAIL's SMTPUTF8 and BODY=, "" when
    none), recipient_count (accepted in the transaction), error_count,
    protocol_name (RFC 3848 / RFC 6531 §4.3 "with" keyword), tls (the
    connection is encrypted), authenticated, auth_identity and
    auth_mechanism (after AUTH; "" before), starttls_discarded (octets
    received behind the last STARTTLS and dropped unread, RFC 3207 §4.2).

    `tls=True` for a connection that is TLS from the start (SUBMISSIONS,
    port 465); `channel_binding=True` when its tls-exporter data is
    available (then SCRAM-SHA-256-PLUS may be offered).
    """

    # Rarely changed state lives in class attributes until it changes, so a
    # plain port-25 session does not pay for setting it up.
    auth_identity = ""
    auth_mechanism = ""
    starttls_discarded = 0
    _channel_binding = False  # tls-exporter data available (SCRAM-PLUS)
    _loopback = False  # the client is on this host (AUTH without TLS)
    _mechanisms: tuple[str, ...] = ()  # SASL mechanisms offered now
    _auth: str | None = None  # mechanism of the AUTH exchange in progress
    _auth_final = ""  # success data sent: the identity, waiting for the empty line
    _rcpt_first: str | None = None  # the transaction's first accepted forward-path
    _rcpt_seen: set[str] | None = None  # its recipients' keys, from the second RCPT on
    _rcpt_key = ""  # the pending RcptTo's key (from the second RCPT on)

    def __init__(
        self, params: ServerParams, peer_address: str = "", *, tls: bool = False, channel_binding: bool = False
    ):
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
        self._greeting, self._ehlo_reply, self._helo_reply, self._too_many_errors = params.fixed
        # No attribute more than needed is set here: one more instance
        # attribute made the whole plain conversation ~5 us slower (CPython
        # 3.11's shared-key instance dicts), so what can be derived is.
        if not params.auth_required:
            if params.starttls and not tls:  # the MX with a certificate: STARTTLS, no AUTH
                self._ehlo_reply = params.ehlo_starttls
        else:
            self._channel_binding = channel_binding
            self._loopback = is_loopback(peer_address)
            self._refresh_offers()
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
        return (
            ("UTF8SMTP" if self.smtputf8 else "ESMTP") + ("S" if self.tls else "") + ("A" if self.authenticated else "")
        )

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
        state = self.state
        if state is not State.CLOSED:
            if state is State.TLS:
                raise ProtocolUsageError("receive_data() before tls_started(): plaintext after STARTTLS")
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
            if self.state is State.CONNECTED or self.state is State.TLS:
                raise ProtocolUsageError("greet() first" if self.state is State.CONNECTED else "tls_started() first")
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
            if isinstance(event, MailFrom):
                reply = reply or R.MAIL_OK
                self.state = State.MAIL
                self.smtputf8 = event.smtputf8
                self.body_type = event.body or ""
            elif kind is RcptTo:
                reply = reply or R.RCPT_OK
                self.state = State.RCPT
                self.recipient_count += 1
                if self._rcpt_first is None:
                    self._rcpt_first = event.forward_path  # type: ignore[attr-defined]
                else:  # _rcpt made the set
                    self._rcpt_seen.add(self._rcpt_key)
            elif kind is MessageReceived:  # RFC 5321 §4.1.1.4, the transaction ends
                reply = reply or R.MESSAGE_OK
                self._reset_transaction()
            elif kind is StartTls:
                self._start_tls(reply or R.READY_FOR_TLS)
                return
            else:
                self._pending = event
                raise ProtocolUsageError(f"{kind.__name__} is answered by auth_challenge/auth_succeeded/reject")
        self._reply(reply)

    def reject(self, reply: Reply) -> None:
        """Refuse the pending decision event with a 4xx/5xx `reply`. A
        refused MAIL, RCPT or DATA leaves the state as it was; a refused
        message ends the transaction. Raises ProtocolUsageError with nothing
        pending or for a reply below 400."""
        if reply.code < 400:
            raise ProtocolUsageError(f"reject() needs a 4xx or 5xx reply, not {reply.code}")
        event = self._take_pending()
        kind = type(event)
        if kind is MessageReceived:
            self._reset_transaction()
        elif kind is AuthStart or kind is AuthResponse:
            self._end_auth()
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
        if self.state in TRANSACTION_STATES:
            self.state = State.READY
        self.smtputf8 = False
        self.body_type = ""
        self.recipient_count = 0
        self._rcpt_attempts = 0
        if self._rcpt_first is not None:
            self._rcpt_first = self._rcpt_seen = None

    def _line_limit(self, start: int) -> int:
        """The longest line allowed from buf[start]: MAX_AUTH_LINE in an AUTH
        exchange or for an AUTH command line, else MAX_COMMAND_LINE. Only
        asked about lines already over MAX_COMMAND_LINE."""
        if self._auth_waiting or self._buf[start : start + 5].upper() == b"AUTH ":
            return MAX_AUTH_LINE
        return MAX_COMMAND_LINE

    def _too_long(self) -> None:
        if self._auth_waiting:
            self._abort_auth("too-long", R.AUTH_LINE_TOO_LONG)
        else:
            self._reply(R.LINE_TOO_LONG)

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
                self._too_long()
            elif i + 1 - start > MAX_COMMAND_LINE and i + 1 - start > self._line_limit(start):
                self._too_long()
            elif i > start and buf[i - 1] == 13:  # CRLF
                self._crlf = True
                self._command(bytes(buf[start : i - 1]))
            else:  # a bare LF ends a command line too, as deployed servers allow
                self._crlf = False
                self._command(bytes(buf[start:i]))  # or _auth_line, see _await_auth_line

    def _need_line(self) -> None:
        """No complete line in the buffer: drop what is consumed, and the
        start of a line already over 512 octets (RFC 5321 §4.5.3.1.4), so an
        endless line costs no memory; at EOF the conversation ends."""
        buf = self._buf
        pos = self._pos
        if self._discarding or (len(buf) - pos >= MAX_COMMAND_LINE and len(buf) - pos >= self._line_limit(pos)):
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
        handler = HANDLERS.get(verb)
        if handler is None:
            self._reply(R.UNKNOWN_COMMAND if line.strip() else R.SYNTAX_ERROR)
        elif self._refused and verb != b"QUIT":
            self._reply(R.NO_SERVICE)
        else:
            handler(self, arg)

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
