"""The SMTP/LMTP client's I/O: one delivery attempt to one server address,
on gevent sockets, driving the sans-I/O client (actors/smtp/client.py).

    result = deliver("192.0.2.1", 25, "mx.example.net", Transaction(envelope, body_path),
                     ClientOptions(helo_name="mail.example.org"), attempt_span, tracer)

`deliver` never raises for anything the network or the server does: every
outcome is in the `AttemptResult` (see its docstring). It blocks only the
calling greenlet.

TLS (RFC 3207), as chasquid and maddy do it for MX delivery:

- OPPORTUNISTIC (default for MX): STARTTLS when offered, with a verifying
  handshake (the certificate must verify for `host_name`, the MX name). If
  verification fails the handshake is over (OpenSSL sends an alert), so the
  driver reconnects and encrypts without verifying, and records why
  (`TlsInfo.verify_error`); if the handshake itself fails, it reconnects
  and delivers in plaintext, and records that (`tls_fallback`). At most
  three connections per attempt.
- REQUIRED (Postfix "encrypt", for smarthosts): the same, but never in
  plaintext: a failed handshake or no STARTTLS is a session error, try_next.
- VERIFY (Postfix "secure"): TLS with a verified certificate or nothing.
- NONE: plaintext (LMTP on a unix socket, tests).

Timeouts: RFC 5321 §4.5.3.2 (`Timeouts`); each read waits at most the
timeout of the reply awaited, each write of the content the data-block
timeout.

Tracing: under the caller's attempt span, one `smtp.connect` span per TCP
(or unix) connection, from connect to close (server.address = host name,
network.peer.address, network.peer.port, estafeta.smtp.extensions), with
one event per reply: `smtp.greeting`, then `smtp.command` (smtp.command: the
command as sent, AUTH arguments masked; smtp.reply.code,
smtp.reply.enhanced, smtp.reply.text; estafeta.recipient for RCPT and each
LMTP end-of-data reply); and an `smtp.starttls` child span for the
handshake (tls.protocol.name, tls.protocol.version, tls.cipher,
estafeta.tls.verified). A session error sets the connection span's status.
"""

from __future__ import annotations

import socket as _stdsocket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent import socket
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors.couriers.smtp_attempt import (
    AttemptResult,
    ClientOptions,
    Timeouts,
    TlsInfo,
    Transaction,
    default_tls_context,
    header_section_non_ascii,
    peer_name,
)
from estafeta.actors.smtp.client import (
    CLOSED,
    NEED_DATA,
    ClientParams,
    Credentials,
    ReplyReceived,
    SendContent,
    SmtpClient,
    StartTls,
    Step,
    TlsPolicy,
    TransactionDone,
    Verdict,
)
from estafeta.actors.smtp.replies import Reply

if TYPE_CHECKING:
    from estafeta.actors.couriers.smtp_cache import ConnectionCache

__all__ = [
    "AttemptResult",
    "ClientOptions",
    "Credentials",
    "Step",
    "TlsInfo",
    "TlsPolicy",
    "Timeouts",
    "Transaction",
    "Verdict",
    "default_tls_context",
    "deliver",
    "peer_name",
]

#: Octets of the message read and sent at a time.
CHUNK = 256 * 1024


# ---------------------------------------------------------------- the attempt
_VERIFIED, _UNVERIFIED, _PLAINTEXT = "verified", "unverified", "plaintext"


def deliver(
    address: str,
    port: int,
    host_name: str,
    transaction: Transaction,
    options: ClientOptions,
    span: trace.Span,
    tracer: trace.Tracer | None = None,
    before_dot: Callable[[tuple[int, ...]], None] | None = None,
    cache: ConnectionCache | None = None,
) -> AttemptResult:
    """One delivery attempt of `transaction` to the server at `address`
    (an IP address, or a unix socket path starting with "/" for LMTP) and
    `port`, named `host_name` (the MX name: TLS verification, texts,
    server.address). Spans go under `span` (the caller's attempt span),
    made with `tracer`. `before_dot(indexes)` is called just before the
    final dot goes out, with the recipients the server accepted (the
    in-flight journal, store/inflight.py); an OSError from it aborts the
    transaction instead (451 4.3.0, no dot sent). With a `cache`, an open
    connection to the same server (same options) left by an earlier
    delivery is used first, and the connection is left open in it
    afterwards (actors/couriers/smtp_cache.py). Returns the AttemptResult;
    raises nothing for network or server failures (a bug in the caller,
    e.g. a bad envelope, still raises)."""
    tracer = tracer or trace.get_tracer("estafeta.courier.smtp")
    peer = peer_name(host_name, address, port)
    result = AttemptResult(host_name, address, port, [None] * len(transaction.envelope.recipients))
    try:
        body = open(transaction.body_path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        text = f"cannot read the queued message: {e}"
        result.session_error = Verdict(Reply(451, "4.3.0", text), None, False)
        return result
    key = (address, port, host_name, id(options))
    with body:
        non_ascii = transaction.envelope.smtputf8 and header_section_non_ascii(body)
        while cache is not None and (cached := cache.take(key)) is not None:
            cached.tracer = tracer
            cached.run_again(span, transaction.envelope, body, before_dot, non_ascii)
            if cached.stale:  # the server closed it while it was idle: nothing was delivered
                cached.close()
                continue
            cached.fill(result)
            cache.give_back(key, cached)
            return result
        policy = options.tls
        mode = _PLAINTEXT if policy is TlsPolicy.NONE else _VERIFIED
        verify_error = ""
        while True:
            conn = _Connection(address, port, host_name, peer, transaction.envelope, body, options, tracer)
            conn.before_dot = before_dot
            conn.keep_open = cache is not None
            conn.run(span, mode, non_ascii, verify_error)
            result.connections += 1
            failure = conn.tls_failure
            if failure is None:
                break
            kind, reason = failure
            if kind == "verify" and mode == _VERIFIED and policy is not TlsPolicy.VERIFY:
                mode, verify_error = _UNVERIFIED, reason  # encrypt anyway, and say it was not verified
            elif policy is TlsPolicy.OPPORTUNISTIC and mode != _PLAINTEXT:
                mode = _PLAINTEXT  # chasquid, maddy: the same host, in plaintext
                result.tls_fallback = f"plaintext after a failed TLS handshake: {reason}"
            else:
                break
    conn.fill(result)
    if result.tls is not None and not result.tls.verified:
        result.tls_fallback = f"encrypted, certificate not verified: {result.tls.verify_error}"
    if cache is not None and conn.client is not None and conn.client.idle:
        cache.give_back(key, conn)
    return result


class _Connection:
    """One connection of an attempt: connect, converse, close."""

    def __init__(self, address, port, host_name, peer, envelope, body, options: ClientOptions, tracer):
        self.address = address
        self.port = port
        self.host_name = host_name
        self.peer = peer
        self.envelope = envelope
        self.body = body
        self.options = options
        self.tracer = tracer
        self.client: SmtpClient | None = None
        self.connect_error: Verdict | None = None
        self.tls_failure: tuple[str, str] | None = None  # ("verify" | "handshake", reason)
        self.tls: TlsInfo | None = None
        self.before_dot: Callable[[tuple[int, ...]], None] | None = None
        #: Keep the connection open after the transaction (a cache holds it).
        self.keep_open = False
        #: time.monotonic() of the connect, for the cache's reuse time limit.
        self.opened = time.monotonic()
        self.sock: Any = None  # the connected socket (TLS-wrapped after STARTTLS), None once closed

    def fill(self, result: AttemptResult) -> None:
        c = self.client
        if c is None:
            result.session_error = self.connect_error
            result.try_next = True
            return
        result.recipients = list(c.verdicts)
        result.session_error = c.session_error
        result.try_next = c.try_next and c.session_error is not None
        result.unknown_after_dot = c.unknown_after_dot
        result.extensions = c.extensions
        result.tls = self.tls

    def run(self, parent: trace.Span, mode: str, non_ascii: bool, verify_error: str) -> None:
        o = self.options
        self.verify_error = verify_error
        self.mode = mode
        params = ClientParams(
            o.helo_name,
            self.peer,
            o.lmtp,
            TlsPolicy.NONE if mode == _PLAINTEXT else o.tls,
            o.credentials,
        )
        attributes = {"server.address": self.host_name, "network.peer.address": self.address}
        if not self.address.startswith("/"):
            attributes["network.peer.port"] = self.port
        context = trace.set_span_in_context(parent)
        with self.tracer.start_span("smtp.connect", context, SpanKind.CLIENT, attributes) as cspan:
            try:
                sock = self._connect()
            except OSError as e:
                text = f"connect to {self.peer}: {e.strerror or e}"
                self.connect_error = Verdict(Reply(421, "4.4.1", text), None, False)
                cspan.set_status(Status(StatusCode.ERROR, text))
                return
            self.client = SmtpClient(params, self.envelope, headers_non_ascii=non_ascii, keep_open=self.keep_open)
            self.sock = sock
            self._converse_and_trace(cspan)
            if self.client.extensions is not None:
                cspan.set_attribute("estafeta.smtp.extensions", str(self.client.extensions))

    def run_again(self, parent: trace.Span, envelope, body, before_dot, non_ascii: bool) -> None:
        """Another transaction on this idle connection (from the cache), in
        a `smtp.connect` span of the new message's trace marked reused."""
        self.envelope, self.body, self.before_dot = envelope, body, before_dot
        self.stale = False
        attributes = {
            "server.address": self.host_name,
            "network.peer.address": self.address,
            "estafeta.smtp.reused": self.client.transactions + 1,  # this transaction is the connection's n-th
        }
        if not self.address.startswith("/"):
            attributes["network.peer.port"] = self.port
        if self.tls is not None:
            attributes["tls.protocol.version"] = self.tls.version.removeprefix("TLSv")
            attributes["estafeta.tls.verified"] = self.tls.verified
        context = trace.set_span_in_context(parent)
        with self.tracer.start_span("smtp.connect", context, SpanKind.CLIENT, attributes) as cspan:
            self.client.start(envelope, headers_non_ascii=non_ascii)
            self._converse_and_trace(cspan)
            err = self.client.session_error
            # Lost, or 421, before MAIL was answered: the server had closed the
            # idle connection; the caller tries a fresh one (nothing was sent
            # that could have been delivered).
            self.stale = err is not None and err.step is Step.MAIL and (not err.remote or err.reply.code == 421)

    def _converse_and_trace(self, cspan: trace.Span) -> None:
        """Run the conversation; close the socket unless the client waits
        idle for the next transaction; record the outcome on the span."""
        try:
            self._converse(cspan)
        finally:
            if not self.client.idle:
                self.close()
        c = self.client
        if c.unknown_after_dot:
            cspan.set_attribute("estafeta.smtp.unknown_after_dot", True)
        if c.session_error is not None:
            err = c.session_error.reply
            cspan.set_attribute("error.type", f"{err.code} {err.enhanced}".strip())
            cspan.set_status(Status(StatusCode.ERROR, str(err)))

    def close(self) -> None:
        """Close the socket (an idle connection first says QUIT, without
        waiting for the 221: every verdict is in)."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        c = self.client
        if c is not None and c.idle:
            c.quit()
            try:
                sock.settimeout(1.0)
                sock.sendall(c.data_to_send())
            except OSError:
                pass
        sock.close()

    def _connect(self) -> socket.socket:
        """A connected socket: unix for a path, else TCP to the IP address
        (no name lookup: gevent's create_connection would ask its resolver
        in a thread even for a literal)."""
        timeout = self.options.timeouts.connect
        if self.address.startswith("/"):
            family, target = socket.AF_UNIX, self.address
        else:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            target = (self.address, self.port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
            if family != socket.AF_UNIX:
                sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def _converse(self, cspan: trace.Span) -> None:
        client = self.client
        timeouts = self.options.timeouts
        while True:
            event = client.next_event()
            if event is NEED_DATA:
                seconds = timeouts.for_step(client.awaiting)
                try:
                    out = client.data_to_send()
                    sock = self.sock
                    if sock.timeout != seconds:
                        sock.settimeout(seconds)
                    if out:
                        _send(sock, out)
                        data = _recv_reply(sock)
                    else:
                        data = sock.recv(65536)
                except TimeoutError:
                    client.timed_out(seconds)
                except OSError as e:
                    client.connection_lost(_why(e))
                else:
                    if data:
                        client.receive_data(data)
                    else:
                        client.receive_eof()
            elif event is CLOSED:
                out = client.data_to_send()
                if out:
                    try:
                        self.sock.sendall(out)
                    except OSError:
                        pass
                return
            elif isinstance(event, ReplyReceived):
                _trace_reply(cspan, event)
            elif isinstance(event, TransactionDone):
                return  # the connection stays open for the next transaction
            elif isinstance(event, StartTls):
                self._starttls(cspan)
            elif isinstance(event, SendContent):
                self._send_content()

    def _starttls(self, cspan: trace.Span) -> None:
        verify = self.mode == _VERIFIED and bool(self.host_name)
        ctx = self.options.tls_context(verify)
        timeout = self.options.timeouts.starttls
        with self.tracer.start_span("smtp.starttls", trace.set_span_in_context(cspan), SpanKind.CLIENT) as tspan:
            if self.options.tls is TlsPolicy.VERIFY and not verify:
                reason = "no host name to verify the certificate against"
                self.tls_failure = ("verify", reason)
                tspan.set_status(Status(StatusCode.ERROR, reason))
                self.client.tls_failed(reason)
                return
            try:
                self.sock.settimeout(timeout)
                tls = ctx.wrap_socket(self.sock, server_hostname=self.host_name or None)
            except ssl.SSLCertVerificationError as e:
                reason = e.verify_message or str(e)
                self.tls_failure = ("verify", reason)
                tspan.set_status(Status(StatusCode.ERROR, f"certificate verification failed: {reason}"))
                self.client.tls_failed(f"certificate verification failed: {reason}")
                return
            except (ssl.SSLError, OSError) as e:  # TimeoutError included
                reason = _why(e)
                self.tls_failure = ("handshake", reason)
                tspan.set_status(Status(StatusCode.ERROR, reason))
                self.client.tls_failed(reason)
                return
            self.sock = tls
            version = tls.version() or ""
            cipher = (tls.cipher() or ("",))[0]
            self.tls = TlsInfo(version, cipher, verify, "" if verify else self.verify_error)
            tspan.set_attributes(
                {
                    "tls.protocol.name": "tls",
                    "tls.protocol.version": version.removeprefix("TLSv"),
                    "tls.cipher": cipher,
                    "estafeta.tls.verified": verify,
                }
            )
            if not verify and self.verify_error:
                tspan.set_attribute("estafeta.tls.verify_error", self.verify_error)
        self.client.tls_started()

    def _send_content(self) -> None:
        """Send the message in chunks (the data-block timeout per write),
        then the end of data, with the last chunk when it fits."""
        client = self.client
        body = self.body
        seconds = self.options.timeouts.data_block
        try:
            body.seek(0)
        except OSError as e:
            client.abort(f"cannot read the queued message: {e}")
            return
        try:
            if self.sock.timeout != seconds:
                self.sock.settimeout(seconds)
            while True:
                try:
                    chunk = body.read(CHUNK)
                except OSError as e:
                    client.abort(f"cannot read the queued message: {e}")
                    return
                if len(chunk) < CHUNK:
                    last = client.send_content(chunk)
                    if self.before_dot is not None:
                        try:
                            self.before_dot(client.accepted)
                        except OSError as e:
                            client.abort(f"cannot record the end of data as in flight: {_why(e)}")
                            return
                    _send(self.sock, last + client.end_content())
                    return
                _send(self.sock, client.send_content(chunk))
        except TimeoutError:
            client.timed_out(seconds)
        except OSError as e:
            client.connection_lost(_why(e))


def _send(sock, data: bytes) -> None:
    """sendall, one send() first: a command group or a small message fits
    the socket buffer, and gevent's sendall() asks the kernel for SO_SNDBUF
    (a getsockopt) on every call. Raises OSError, TimeoutError."""
    n = sock.send(data)
    if n < len(data):
        sock.sendall(memoryview(data)[n:])


def _recv_reply(sock) -> bytes:
    """recv() right after sending a command: the reply cannot be there yet,
    so wait for the socket to be readable first instead of letting
    gevent's recv() try, fail with EAGAIN (an exception raised and caught)
    and then wait. A TLS socket may hold decrypted bytes already: it is
    read at once. Raises OSError, TimeoutError (the socket's timeout)."""
    if not isinstance(sock, ssl.SSLSocket):
        sock._wait(sock._read_event)  # noqa: SLF001 - gevent's own wait, honouring sock.timeout
    return sock.recv(65536)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and not isinstance(e, ssl.SSLError):
        return e.strerror
    return str(e) or type(e).__name__


def _trace_reply(cspan: trace.Span, event: ReplyReceived) -> None:
    r = event.reply
    attributes: dict[str, str | int] = {
        "smtp.reply.code": r.code,
        "smtp.reply.enhanced": r.enhanced,
        "smtp.reply.text": r.text,
    }
    if event.step is Step.GREETING:
        cspan.add_event("smtp.greeting", attributes)
        return
    attributes["smtp.command"] = event.command
    if event.recipient:
        attributes["estafeta.recipient"] = event.recipient
    cspan.add_event("smtp.command", attributes)
