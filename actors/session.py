"""SmtpSession actor: one per accepted connection.

It owns the socket and drives the sans-I/O protocol (actors/smtp) over
it: the greeting, the TLS of the connection (STARTTLS, RFC 3207; implicit
TLS on a SUBMISSIONS listener, RFC 8314 §3.3), the idle and DATA timeouts
and the graceful shutdown. The decisions the protocol leaves to its
driver go to helpers:

- the mail transactions (MAIL, RCPT, end of DATA: policy, limits, the
  queue): actors/transaction.py `Transactions`;
- the mail authentication checks of a session on an SMTP-mode listener
  whose client is not in relay_network (actors/checks/session.py
  `SessionChecks`): DNSBL and iprev before the greeting (a listed client
  is greeted with 554 5.7.1), SPF at MAIL, DKIM, ARC and DMARC at the
  end of DATA (through `Transactions`);
- the AUTH exchanges (RFC 4954: mechanisms, limits, delays):
  actors/auth/exchange.py `AuthExchange`, made at the first AUTH.

The session's states, as the protocol keeps them (ServerParams.mode is
the listener's):

    connect ──(SUBMISSIONS: TLS handshake)──> 220 greeting
    GREETED ─EHLO─> READY ─STARTTLS─> 220, handshake ─> GREETED over TLS
                      │    (bytes pipelined behind STARTTLS are dropped
                      │     unread; EHLO again: RFC 3207 §4.2)
                      └─AUTH (over TLS, or plaintext from loopback)─> 235
                         ─> READY authenticated ─MAIL─> transaction

A failed handshake closes the connection without a reply (RFC 3207
§4.1); one that takes longer than the idle timeout too.

The conversation runs inside the actor's first message (`StartSession`),
so one greenlet serves one connection. On shutdown the supervisor
`interrupt()`s it: a session waiting for a command gets 421 4.3.2 at once;
one inside a transaction finishes it (bounded by the shutdown timeout)
and then gets 421.

Tracing: the connection is one trace ("smtp.session": peer, listener,
HELO, TLS version and cipher, the authenticated user); every transaction
is a trace of its own (actors/transaction.py).
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from time import monotonic as _monotonic

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from estafeta.actors import smtp
from estafeta.actors.auth.exchange import AuthEnv, AuthExchange
from estafeta.actors.checks.session import MailAuth
from estafeta.actors.directory import DirectoryView
from estafeta.actors.enqueue import Enqueuer
from estafeta.actors.limits import Limits
from estafeta.actors.policy import RelayPolicy
from estafeta.actors.queue import QueueGauge
from estafeta.actors.timeouts import IdleWatch, SessionTimedOut
from estafeta.actors.tls import CertStore, channel_binding, connection_info
from estafeta.actors.transaction import Transactions
from estafeta.proto import messages_pb2
from estafeta.supervisor.actor import Actor, Link, ShutdownRequested
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.session")

_EMPTY_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)


class ConnectionSlots:
    """Counts open sessions against Config.max_connections.

    A resource counter shared by a listener and the sessions it starts
    (like a semaphore), not a message channel: acquire at accept, release
    when the session's socket closes (in a finally, so crashes release too).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


@dataclass
class SessionEnv:
    """What every session of a listener shares (read-only for sessions; a
    SIGHUP reload replaces params, the timeouts and policy:
    supervisor/listeners.py apply_config). One per listener (its `params`
    carry the mode); the rest is the process's."""

    hostname: str
    params: smtp.ServerParams
    idle_timeout: float  # seconds, RFC 5321 §4.5.3.2.7
    data_timeout: float  # seconds, RFC 5321 §4.5.3.2.6
    enqueuer: Enqueuer  # writes the queue item and body, starts its actor
    tracer: trace.Tracer
    slots: ConnectionSlots
    watch: IdleWatch  # idle and DATA timeouts of every session
    gauge: QueueGauge  # published by the QueueManager (back-pressure)
    directory: DirectoryView  # published by the Directory (RCPT TO, AUTH)
    policy: RelayPolicy  # relay and sender policy (Config.relay_network)
    limits: Limits | None = None  # against abuse (Config.limits), shared by the processes
    certs: CertStore | None = None  # TLS certificates (STARTTLS, SUBMISSIONS); None: no TLS
    auth: AuthEnv | None = None  # AUTH (SUBMISSION and SUBMISSIONS listeners)
    checks: MailAuth | None = None  # mail authentication (Config.checks); None: off


class SmtpSession(Actor):
    """Serves one SMTP connection (temporary child of a listener's sessions
    supervisor). Constructed with the listener's SessionEnv and the
    StartSession that names the socket; the conversation starts when
    StartSession is told.
    """

    interruptible_on_shutdown = True
    #: The AUTH exchanges, made at the first AUTH (most sessions have none).
    _auth: AuthExchange | None = None
    #: The connection's tls-exporter channel binding once TLS is on (RFC 9266).
    _channel_binding: bytes | None = None
    _tls = False  # True once the socket is wrapped in TLS (reads may be buffered)

    def __init__(self, link: Link | None, env: SessionEnv, start: messages_pb2.StartSession):
        super().__init__(link)
        self._env = env
        self._start = start
        self._txns: Transactions | None = None
        self._sock: socket.socket | None = None
        #: True only while blocked reading the next command outside a
        #: transaction: the one point where a shutdown may cut in.
        self._awaiting_command = False
        #: For the IdleWatch: time.monotonic() when the current wait for
        #: the client began (None: not waiting), and its limit in seconds.
        self.wait_since: float | None = None
        self.wait_limit = env.idle_timeout

    def interruptible_now(self) -> bool:
        """Only an idle session (between transactions, waiting for a
        command) is interrupted; one inside a transaction finishes it and
        then sees `shutdown_pending`."""
        return self._awaiting_command

    def on_receive(self, message):
        if isinstance(message, messages_pb2.StartSession):
            try:
                self._serve(message)
            finally:
                self.stop()
            return None
        raise TypeError(f"SmtpSession cannot handle {type(message).__name__}")

    @property
    def greenlet(self):
        """The greenlet serving this connection (for the IdleWatch)."""
        return self._greenlet

    # ------------------------------------------------------------ the loop
    def _serve(self, start: messages_pb2.StartSession) -> None:
        env = self._env
        peer = start.peer_address
        # Family and type given: socket(fileno=) alone would probe them
        # with getsockname and two getsockopt calls.
        family = socket.AF_INET6 if ":" in peer else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=start.fd)
        span = env.tracer.start_span(
            "smtp.session",
            context=_EMPTY_CONTEXT,
            kind=SpanKind.SERVER,
            attributes={
                "network.peer.address": peer,
                "network.peer.port": start.peer_port,
                "server.address": start.local_address,
                "server.port": start.local_port,
                "estafeta.listener": start.listener,
            },
        )
        self._session_span = span
        log.info("connection from=%s:%d listener=%s", peer, start.peer_port, start.listener)
        relay = env.policy.in_relay_network(peer)
        checks = env.checks.for_session(env.params.mode, relay) if env.checks is not None else None
        txns = self._txns = Transactions(env, peer, span, checks, relay)
        env.watch.add(self)
        try:
            implicit = env.params.mode is smtp.Mode.SUBMISSIONS
            if implicit and not self._handshake():  # RFC 8314 §3.3: TLS from the first byte
                return
            proto = smtp.SmtpServer(env.params, peer, tls=implicit, channel_binding=self._channel_binding is not None)
            # DNSBL and iprev before the greeting: a listed client is greeted
            # with 554 5.7.1 (RFC 5321 §3.1: then only QUIT is served).
            proto.greet(checks.at_connect(peer, span) if checks is not None else None)
            self._converse(proto)
        except OSError as e:
            span.set_attribute("error.type", type(e).__name__)
            log.info("disconnected from=%s:%d error=%s", peer, start.peer_port, kv(e))
        finally:
            env.watch.remove(self)
            if txns.txn is not None:
                txns.end("connection closed during transaction", error=True)
            try:
                self._sock.close()
            finally:
                env.slots.release()
                if env.limits is not None:
                    env.limits.connection_closed(peer)
                span.end()

    def _converse(self, proto: smtp.SmtpServer) -> None:
        env = self._env
        while True:
            event = proto.next_event()
            if event is smtp.NEED_DATA:
                out = proto.data_to_send()
                if out:
                    self._send(out)
                idle = not proto.in_data and self._txns.txn is None
                if idle and self.shutdown_pending:
                    self._close(proto, smtp.Reply(421, "4.3.2", f"{env.hostname} Service shutting down"))
                    return
                # RFC 5321 §4.5.3.2.6/7: the IdleWatch enforces these.
                self.wait_limit = env.data_timeout if proto.in_data else env.idle_timeout
                self._awaiting_command = idle
                self.wait_since = _monotonic()
                try:
                    if out and not self._tls:
                        # A reply just went out: the client's next line cannot be
                        # here yet. Wait for it instead of a recv() that fails with
                        # EAGAIN first (an exception raised and caught in gevent);
                        # a TLS socket may hold decrypted bytes: read at once.
                        self._sock._wait(self._sock._read_event)  # type: ignore[union-attr]  # gevent socket
                    data = self._sock.recv(65536)
                except SessionTimedOut:
                    self._close(proto, smtp.Reply(421, "4.4.2", f"{env.hostname} Timeout, closing connection"))
                    return
                except ShutdownRequested:
                    continue  # shutdown_pending is set: the check above replies 421
                finally:
                    self.wait_since = None
                    self._awaiting_command = False
                if data:
                    proto.receive_data(data)
                else:
                    proto.receive_eof()
            elif event is smtp.CLOSED:
                out = proto.data_to_send()
                if out:
                    self._send(out)
                return
            elif type(event) is smtp.StartTls:
                if not self._start_tls(proto):
                    return
            else:
                self._handle(event, proto)

    def _send(self, data: bytes) -> None:
        """sendall, timed out by the IdleWatch (idle timeout) if the client
        stops reading. Raises OSError (ConnectionError, or TimeoutError)."""
        self.wait_limit = self._env.idle_timeout
        self.wait_since = _monotonic()
        sock = self._sock
        try:
            # One send() first: a reply nearly always fits the socket buffer,
            # and gevent's sendall() asks the kernel for SO_SNDBUF each time.
            n = sock.send(data)
            if n < len(data):
                sock.sendall(memoryview(data)[n:])
        except SessionTimedOut as e:
            raise TimeoutError(f"client does not read: {e}") from None
        finally:
            self.wait_since = None

    def _close(self, proto: smtp.SmtpServer, reply: smtp.Reply) -> None:
        proto.close(reply)
        out = proto.data_to_send()
        if out:
            self._send(out)

    # ---------------------------------------------------------------- TLS
    def _start_tls(self, proto: smtp.SmtpServer) -> bool:
        """STARTTLS (RFC 3207 §4): 220, the handshake, then the protocol
        starts over from before EHLO. False: the connection is to close (a
        failed handshake gets no reply, §4.1)."""
        certs = self._env.certs
        if certs is None or certs.context is None:
            proto.reject(smtp.replies.TLS_NOT_AVAILABLE)
            return True
        proto.accept()  # queues the 220 and drops what was pipelined behind STARTTLS
        self._send(proto.data_to_send())
        dropped = proto.starttls_discarded
        if dropped:  # the CVE-2011-0411 injection pattern, or a broken client
            self._session_span.add_event("starttls.discarded", {"estafeta.octets": dropped})
            log.warning("starttls from=%s discarded=%d reason=%s", self._start.peer_address, dropped,
                        kv("commands pipelined after STARTTLS are not executed (RFC 3207 §4.2)"))  # fmt: skip
        if not self._handshake():
            return False
        proto.tls_started(channel_binding=self._channel_binding is not None)
        return True

    def _handshake(self) -> bool:
        """Wrap the socket in TLS with the listener's certificates (SNI
        picks one), bounded by the idle timeout. False if it failed (logged,
        on the trace)."""
        env, start = self._env, self._start
        ctx = env.certs.context if env.certs is not None else None
        if ctx is None:
            log.error("tls unavailable from=%s listener=%s: no certificate", start.peer_address, start.listener)
            return False
        # The TLS socket owns the descriptor from here on (and _serve closes
        # it), also when the handshake fails or is timed out.
        tls = self._sock = ctx.wrap_socket(self._sock, server_side=True, do_handshake_on_connect=False)
        self._tls = True
        self.wait_limit = env.idle_timeout
        self.wait_since = _monotonic()
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError, SessionTimedOut) as e:
            self._session_span.set_attribute("error.type", "tls_handshake")
            log.info("tls handshake failed from=%s:%d error=%s", start.peer_address, start.peer_port, kv(e))
            return False
        finally:
            self.wait_since = None
        self._channel_binding = channel_binding(tls)
        info = connection_info(tls)
        self._txns.tls = info
        self._session_span.set_attributes(info.span_attributes())
        if self._auth is not None:
            self._auth.channel_binding = self._channel_binding
        log.info("tls from=%s version=%s cipher=%s", start.peer_address, info.version, info.cipher)
        return True

    # ---------------------------------------------------------- decisions
    def _handle(self, event, proto: smtp.SmtpServer) -> None:
        kind = type(event)
        txns = self._txns
        if kind is smtp.MailFrom:
            txns.mail(event, proto)
        elif kind is smtp.RcptTo:
            txns.rcpt(event, proto)
        elif kind is smtp.DataStart:
            proto.accept()
        elif kind is smtp.MessageReceived:
            txns.message(event, proto)
        elif kind is smtp.Helo:
            self._session_span.set_attribute("smtp.helo", event.name)
        elif kind is smtp.MessageRejected:
            txns.rejected(event)
        elif kind is smtp.Reset:
            txns.end("reset")
        elif kind is smtp.AuthStart:
            self._auth_exchange().start(event, proto)
        elif kind is smtp.AuthResponse:
            self._auth_exchange().respond(event, proto)
        elif kind is smtp.Authenticated:
            self._auth_exchange().authenticated(event)
        elif kind is smtp.AuthAborted:
            self._auth_exchange().aborted(event)
        # Quit, ConnectionClosed: nothing to decide.

    def _auth_exchange(self) -> AuthExchange:
        auth = self._auth
        if auth is None:
            env = self._env
            if env.auth is None:  # the protocol offers AUTH only where the listener's mode has it
                raise RuntimeError(f"AUTH on listener {self._start.listener} without an AuthEnv")
            auth = self._auth = AuthExchange(
                env.auth, self._start.peer_address, self._session_span, self._channel_binding
            )
        return auth
