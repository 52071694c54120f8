"""The sans-I/O SMTP/LMTP client state machine (RFC 5321, RFC 2033), like
h11 and the server side (actors/smtp/protocol.py): bytes in, events and
command bytes out, explicit states, no sockets, no clock.

One object is one connection carrying at most one mail transaction
(greeting, EHLO/LHLO, STARTTLS and EHLO again, AUTH, MAIL, RCPT..., DATA,
content, QUIT). Driver contract (actors/couriers/smtp_client_io.py is the
driver)::

    client = SmtpClient(params, envelope)
    while True:
        event = client.next_event()
        if event is NEED_DATA:
            sock.sendall(client.data_to_send())     # a whole pipelined group
            sock.settimeout(timeout_for[client.awaiting])
            data = sock.recv(65536)                 # timeout: client.timed_out(seconds)
            client.receive_data(data) if data else client.receive_eof()
        elif event is CLOSED:
            sock.sendall(client.data_to_send()); break   # (usually nothing)
        elif isinstance(event, StartTls):           # 220 to STARTTLS
            sock = handshake(sock)                  # then client.tls_started(),
                                                    # or client.tls_failed(reason)
        elif isinstance(event, SendContent):        # 354 to DATA
            for chunk in message: sock.sendall(client.send_content(chunk))
            sock.sendall(client.end_content())
        else:                                       # ReplyReceived: trace it
            ...
    # any OSError on the socket: client.connection_lost(str(error))
    # the results: client.verdicts, session_error, try_next, unknown_after_dot

Outcomes. Each recipient ends with a `Verdict` in `verdicts` (the reply to
its RCPT; the MAIL, DATA or end-of-data reply that applied to it; or the
client's own refusal), or None: undecided. `session_error` (a Verdict)
applies to every undecided recipient, always as a temporary failure: the
session broke down (connection lost, timeout, a refused greeting, EHLO,
STARTTLS or AUTH, a 421) before a verdict was reached for them. With
`try_next` the caller should try them at the next address or MX first;
without it (`unknown_after_dot`, or the driver's abort()) it should not.
`unknown_after_dot`: the connection broke after the final dot was sent and
before its reply: the message may have been delivered (RFC 5321 §6.1
accepts the duplicate this can cause: at-least-once).

PIPELINING (RFC 2920): when offered, MAIL, every RCPT and DATA go in one
write, and the replies are matched to them in order; without it each
command waits for its reply. LMTP (RFC 2033 §4.2): LHLO instead of EHLO
(no HELO fallback), and after the content one reply per accepted
recipient, in RCPT order.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from dataclasses import dataclass

from estafeta.actors.smtp.clientevents import (
    ClientParams,
    Credentials,
    ReplyReceived,
    SendContent,
    StartTls,
    Step,
    TlsPolicy,
    Verdict,
)
from estafeta.actors.smtp.clientreplies import Extensions, ReplyError, ReplyReader
from estafeta.actors.smtp.events import CLOSED, NEED_DATA, Event, ProtocolUsageError
from estafeta.actors.smtp.replies import Reply
from estafeta.actors.smtp.transaction import DotStuffer, Envelope, mail_command, rcpt_command, refusal, uses_smtputf8


class _Phase(enum.Enum):
    RUNNING = 1  # commands and replies
    TLS = 2  # the driver's handshake
    CONTENT = 3  # the driver sends the message
    CLOSED = 4


@dataclass(slots=True)
class _Sent:
    step: Step
    command: str  # as shown in events (masked)
    index: int = -1  # the recipient, for RCPT and an LMTP end of data
    discard: bool = False  # an end of data sent only to close a refused DATA


class SmtpClient:
    """One client connection (see the module docstring).

    Attributes the driver reads: verdicts (list, one per recipient of the
    envelope), session_error, try_next, unknown_after_dot, extensions (of
    the last EHLO/LHLO, None before one), tls, authenticated, dot_sent,
    awaiting (the Step whose reply is next, for its timeout; None when no
    reply is awaited)."""

    def __init__(self, params: ClientParams, envelope: Envelope, *, headers_non_ascii: bool = False):
        self.params = params
        self.envelope = envelope
        self.headers_non_ascii = headers_non_ascii
        self.verdicts: list[Verdict | None] = [None] * len(envelope.recipients)
        self.session_error: Verdict | None = None
        self.try_next = False
        self.unknown_after_dot = False
        self.extensions: Extensions | None = None
        self.tls = False
        self.authenticated = False
        self.dot_sent = False
        self._phase = _Phase.RUNNING
        self._reader = ReplyReader()
        self._pending: deque[_Sent] = deque([_Sent(Step.GREETING, "")])
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._eof = False
        self._helo_tried = False
        self._auth = ""  # SASL exchange state: plain, user, pass, done, cancel
        self._pipelined = False
        self._utf8 = False  # MAIL carried SMTPUTF8
        self._mail_failed = False
        self._next_rcpt = 0
        self._accepted: list[int] = []  # recipients accepted at RCPT, in order
        self._stuffer = DotStuffer()

    # ------------------------------------------------------------ driver API
    @property
    def awaiting(self) -> Step | None:
        """The step whose reply is read next (for its timeout), or None."""
        if self._phase is not _Phase.RUNNING or not self._pending:
            return None
        return self._pending[0].step

    @property
    def accepted(self) -> tuple[int, ...]:
        """The recipients (indexes) the server accepted at RCPT, in order:
        those the end of data is for."""
        return tuple(self._accepted)

    @property
    def closed(self) -> bool:
        return self._phase is _Phase.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server, in any chunking (ignored once closed)."""
        if self._eof:
            raise ProtocolUsageError("receive_data() after receive_eof()")
        if self._phase is not _Phase.CLOSED:
            self._reader.feed(data)

    def receive_eof(self) -> None:
        """The server closed the connection."""
        self._eof = True

    def next_event(self) -> Event | type[NEED_DATA] | type[CLOSED]:
        """The next event, NEED_DATA (send data_to_send(), then read) or
        CLOSED. Raises ProtocolUsageError while the driver owes a TLS
        handshake or the content."""
        if self._events:
            return self._events.popleft()
        if self._phase is _Phase.TLS:
            raise ProtocolUsageError("tls_started() or tls_failed() first")
        if self._phase is _Phase.CONTENT:
            raise ProtocolUsageError("send the content and end_content() first")
        if self._phase is _Phase.RUNNING:
            self._process()
            if self._events:
                return self._events.popleft()
        return CLOSED if self._phase is _Phase.CLOSED else NEED_DATA

    def data_to_send(self) -> bytes:
        """The command lines queued so far (then forgotten); b"" if none."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def tls_started(self) -> None:
        """The handshake succeeded: the conversation starts over with EHLO
        (RFC 3207 §4.2: forget what the server said before)."""
        self._need(_Phase.TLS)
        self._phase = _Phase.RUNNING
        self.tls = True
        self.extensions = None
        self._helo_tried = False
        self._reader.clear()
        self._hello()

    def tls_failed(self, reason: str) -> None:
        """The handshake failed (or the certificate did not pass the
        VERIFY policy): the session ends, try_next (the driver may retry
        the same host in plaintext under OPPORTUNISTIC)."""
        self._need(_Phase.TLS)
        text = f"TLS handshake with {self.params.peer} failed: {reason}"
        self._fail(Verdict(Reply(421, "4.7.5", text), Step.STARTTLS, False), try_next=True)
        self._close()

    def send_content(self, chunk: bytes) -> bytes:
        """The wire bytes for the next chunk of the message (CRLF line
        ends, as queued): dot-stuffed (RFC 5321 §4.5.2)."""
        self._need(_Phase.CONTENT)
        return self._stuffer.feed(chunk)

    def end_content(self) -> bytes:
        """The end-of-data bytes; from here on a lost connection means
        unknown_after_dot."""
        self._need(_Phase.CONTENT)
        self._phase = _Phase.RUNNING
        self.dot_sent = True
        if self.params.lmtp:  # RFC 2033 §4.2: one reply per accepted recipient
            for i in self._accepted:
                self._pending.append(_Sent(Step.DOT, ".", i))
        else:
            self._pending.append(_Sent(Step.DOT, "."))
        return self._stuffer.end()

    def timed_out(self, seconds: float) -> None:
        """Nothing came (or could be sent) within `seconds`: the session
        ends (421 4.4.2)."""
        self._lost(f"timeout after {seconds:g} s {self._doing()} ({self.params.peer})")

    def connection_lost(self, error: str) -> None:
        """The connection failed under the driver (reset, broken pipe)."""
        self._lost(f"connection with {self.params.peer} lost {self._doing()}: {error}")

    def abort(self, reason: str) -> None:
        """A local failure (e.g. the queued message cannot be read): the
        session ends without QUIT, every undecided recipient gets 451 4.3.0,
        and try_next is False (another server would fare no better)."""
        if self._phase is not _Phase.CLOSED:
            self._fail(Verdict(Reply(451, "4.3.0", reason), self.awaiting, False), try_next=False)
            self._close()

    # ------------------------------------------------------------ internals
    def _doing(self) -> str:
        """What the session was doing, for error texts."""
        if self._phase is _Phase.CONTENT:
            return "while sending the message"
        if self._phase is _Phase.TLS:
            return "during the TLS handshake"
        step = self.awaiting
        return f"waiting for the reply to {_name(step)}" if step else "with nothing pending"

    def _need(self, phase: _Phase) -> None:
        if self._phase is not phase:
            raise ProtocolUsageError(f"not allowed in phase {self._phase.name}")

    def _send(self, step: Step, line: str, index: int = -1, *, shown: str | None = None) -> None:
        self._out.append(line.encode("utf-8") + b"\r\n")
        self._pending.append(_Sent(step, line if shown is None else shown, index))

    def _fail(self, verdict: Verdict, *, try_next: bool) -> None:
        """Record the session's error (the first one counts)."""
        if self.session_error is None:
            self.session_error = verdict
            self.try_next = try_next

    def _fail_and_quit(self, verdict: Verdict) -> None:
        self._fail(verdict, try_next=True)
        self._quit()

    def _quit(self) -> None:
        self._send(Step.QUIT, "QUIT")

    def _close(self) -> None:
        self._phase = _Phase.CLOSED
        self._pending.clear()
        self._out.clear()
        if self.session_error is None and None in self.verdicts:  # never expected: a safe default
            self._fail(Verdict(Reply(451, "4.3.0", "session ended without a verdict"), None, False), try_next=True)

    def _lost(self, text: str) -> None:
        """The connection ended without the reply awaited."""
        if self._phase is _Phase.CLOSED:
            return
        step = self.awaiting
        if step is Step.QUIT or (step is None and self._phase is _Phase.RUNNING):
            self._close()  # everything was decided
            return
        after_dot = self.dot_sent and any(self.verdicts[i] is None for i in self._accepted)
        self.unknown_after_dot = after_dot
        self._fail(Verdict(Reply(421, "4.4.2", text), step, False), try_next=not after_dot)
        self._close()

    def _process(self) -> None:
        while not self._events and self._phase is _Phase.RUNNING:
            try:
                reply = self._reader.next_reply()
            except ReplyError as e:
                self._lost(f"{self.params.peer} sent a malformed reply: {e}")
                return
            if reply is None:
                if self._eof:
                    self._lost(f"connection closed by {self.params.peer} {self._doing()}")
                return
            if not self._pending:
                self._lost(f"{self.params.peer} sent a reply to no command: {reply}")
                return
            sent = self._pending.popleft()
            rcpt = ""
            if sent.index >= 0:
                rcpt = self.envelope.recipients[sent.index].address
            self._events.append(ReplyReceived(sent.step, sent.command, reply, rcpt))
            self._handle(sent, reply)

    def _handle(self, sent: _Sent, reply: Reply) -> None:
        step = sent.step
        if reply.code == 421 and step not in (Step.DOT, Step.QUIT):
            # RFC 5321 §3.8: the server is closing the channel.
            self._fail(Verdict(reply, step, True), try_next=True)
            self._close()
            return
        if step is Step.GREETING:
            if reply.code // 100 == 2:
                self._hello()
            else:  # RFC 5321 §3.1: a 554 greeting; QUIT and go
                self._fail_and_quit(Verdict(reply, step, True))
        elif step is Step.EHLO:
            self._on_ehlo(reply)
        elif step is Step.HELO:
            if reply.code // 100 == 2:
                self.extensions = Extensions({}, esmtp=False)
                self._after_hello()
            else:
                self._fail_and_quit(Verdict(reply, step, True))
        elif step is Step.STARTTLS:
            self._on_starttls(reply)
        elif step is Step.AUTH:
            self._on_auth(reply)
        elif step is Step.MAIL:
            self._on_mail(reply)
        elif step is Step.RCPT:
            self._on_rcpt(sent.index, reply)
        elif step is Step.DATA:
            self._on_data(reply)
        elif step is Step.DOT:
            self._on_dot(sent, reply)
        else:  # QUIT
            self._close()

    # ------------------------------------------------------------ session
    def _hello(self) -> None:
        verb = "LHLO" if self.params.lmtp else "EHLO"
        self._send(Step.EHLO, f"{verb} {self.params.helo_name}")

    def _on_ehlo(self, reply: Reply) -> None:
        if reply.code // 100 == 2:
            self.extensions = Extensions.from_reply(reply)
            self._after_hello()
        elif reply.code >= 500 and not self.params.lmtp and not self._helo_tried:
            # RFC 5321 §3.2, §4.1.4: a server without EHLO answers 5xx; HELO.
            self._helo_tried = True
            self._send(Step.HELO, f"HELO {self.params.helo_name}")
        else:
            self._fail_and_quit(Verdict(reply, Step.EHLO, True))

    def _after_hello(self) -> None:
        policy = self.params.tls
        if not self.tls and policy is not TlsPolicy.NONE:
            if self.extensions.starttls:
                self._send(Step.STARTTLS, "STARTTLS")
                return
            if policy is not TlsPolicy.OPPORTUNISTIC:
                text = f"TLS is required, but {self.params.peer} does not offer STARTTLS"
                self._fail_and_quit(Verdict(Reply(451, "4.7.4", text), Step.STARTTLS, False))
                return
        self._proceed()

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code // 100 == 2:
            # RFC 3207 §4.2: nothing received before the handshake counts.
            self._reader.clear()
            self._phase = _Phase.TLS
            self._events.append(StartTls())
        elif self.params.tls is TlsPolicy.OPPORTUNISTIC:
            self._proceed()  # RFC 3207 §4: e.g. 454, continue without TLS
        else:
            self._fail_and_quit(Verdict(reply, Step.STARTTLS, True))

    def _proceed(self) -> None:
        if self.params.credentials is not None and not self.authenticated:
            self._start_auth()
        else:
            self._start_transaction()

    # ------------------------------------------------------------ AUTH
    def _start_auth(self) -> None:
        """RFC 4954: PLAIN with an initial response (RFC 4616), else LOGIN.
        Credentials never go over plaintext; a server that offers neither
        mechanism fails the session (the route needs AUTH)."""
        creds = self.params.credentials
        peer = self.params.peer
        if not self.tls:
            text = f"refusing to send credentials to {peer} over an unencrypted connection"
            self._fail_and_quit(Verdict(Reply(451, "4.7.11", text), Step.AUTH, False))
            return
        mechanisms = self.extensions.auth
        if "PLAIN" in mechanisms:
            token = f"\0{creds.username}\0{creds.password}".encode()
            self._auth = "plain"
            self._send(Step.AUTH, "AUTH PLAIN " + base64.b64encode(token).decode(), shown="AUTH PLAIN ****")
        elif "LOGIN" in mechanisms:
            self._auth = "user"
            self._send(Step.AUTH, "AUTH LOGIN")
        else:
            offered = " ".join(sorted(mechanisms)) or "none"
            text = f"{peer} offers no AUTH mechanism estafeta supports (PLAIN, LOGIN); offered: {offered}"
            self._fail_and_quit(Verdict(Reply(451, "4.7.0", text), Step.AUTH, False))

    def _on_auth(self, reply: Reply) -> None:
        creds = self.params.credentials
        state = self._auth
        if reply.code // 100 == 2 and state != "cancel":
            self.authenticated = True
            self._start_transaction()
        elif reply.code == 334 and state in ("user", "pass"):  # RFC 4954 §4 challenges of LOGIN
            value = creds.username if state == "user" else creds.password
            self._auth = "pass" if state == "user" else "done"
            self._send(Step.AUTH, base64.b64encode(value.encode()).decode(), shown="****")
        elif reply.code == 334 and state != "cancel":  # a challenge we cannot answer: cancel
            self._auth = "cancel"
            self._send(Step.AUTH, "*")
        elif state == "cancel":
            text = f"{self.params.peer} sent an unexpected SASL challenge"
            self._fail_and_quit(Verdict(Reply(451, "4.7.0", text), Step.AUTH, False))
        else:  # Postfix's smtp_sasl_auth_soft_bounce: a refusal defers
            self._fail_and_quit(Verdict(reply, Step.AUTH, True))

    # ------------------------------------------------------------ transaction
    def _start_transaction(self) -> None:
        env, ext = self.envelope, self.extensions
        refused = refusal(env, ext, self.params.peer, self.headers_non_ascii)
        if refused is not None:
            verdict = Verdict(refused, None, False)
            self.verdicts = [verdict] * len(self.verdicts)
            self._quit()
            return
        self._send(Step.MAIL, mail_command(env, ext))
        self._utf8 = uses_smtputf8(env, ext)
        self._pipelined = ext.pipelining
        if self._pipelined:  # RFC 2920 §3.1: DATA ends the group
            for i in range(len(env.recipients)):
                self._send_rcpt(i)
            self._send(Step.DATA, "DATA")

    def _send_rcpt(self, i: int) -> None:
        rcpt = self.envelope.recipients[i]
        self._send(Step.RCPT, rcpt_command(rcpt, self.extensions, smtputf8=self._utf8), i)

    def _on_mail(self, reply: Reply) -> None:
        if reply.code // 100 == 2:
            if not self._pipelined:
                self._send_rcpt(0)
            return
        self._mail_failed = True  # every recipient shares MAIL's fate
        self.verdicts = [Verdict(reply, Step.MAIL, True)] * len(self.verdicts)
        if not self._pipelined:
            self._quit()  # (pipelined: the RCPT and DATA replies still come)

    def _on_rcpt(self, i: int, reply: Reply) -> None:
        if not self._mail_failed:
            if reply.code // 100 == 2:  # 250, 251 (RFC 5321 §3.4)
                self._accepted.append(i)
            else:
                self.verdicts[i] = Verdict(reply, Step.RCPT, True)
        if self._pipelined:
            return
        if i + 1 < len(self.verdicts):
            self._send_rcpt(i + 1)
        elif self._accepted:
            self._send(Step.DATA, "DATA")
        else:
            self._quit()

    def _on_data(self, reply: Reply) -> None:
        if reply.code // 100 == 3:
            if self._accepted and not self._mail_failed:
                self._phase = _Phase.CONTENT
                self._events.append(SendContent())
                return
            # RFC 2920 §3.1: 354 with no valid recipient: end it empty.
            self._out.append(b".\r\n")
            self._pending.append(_Sent(Step.DOT, ".", discard=True))
            return
        verdict = Verdict(reply, Step.DATA, True)
        for i in self._accepted:
            self.verdicts[i] = verdict
        self._quit()

    def _on_dot(self, sent: _Sent, reply: Reply) -> None:
        if not sent.discard:
            verdict = Verdict(reply, Step.DOT, True)
            if self.params.lmtp:
                self.verdicts[sent.index] = verdict
                if reply.code == 421:  # closing: the rest get it too
                    for later in self._pending:
                        if later.step is Step.DOT:
                            self.verdicts[later.index] = verdict
            else:
                for i in self._accepted:
                    self.verdicts[i] = verdict
        if reply.code == 421:
            self._close()
        elif not self._pending:
            self._quit()


def _name(step: Step) -> str:
    if step is Step.GREETING:
        return "the greeting"
    if step is Step.DOT:
        return "the end of data"
    return step.value


__all__ = [
    "CLOSED",
    "NEED_DATA",
    "ClientParams",
    "Credentials",
    "ReplyReceived",
    "SendContent",
    "SmtpClient",
    "StartTls",
    "Step",
    "TlsPolicy",
    "Verdict",
]
