"""SmtpSession actor: one per accepted connection.

It owns the socket, feeds the sans-I/O protocol (actors/smtp), and asks
other actors for the decisions the protocol leaves to it:

- MAIL FROM: the QueueManager's QueueGauge (back-pressure, 452 4.3.1);
- RCPT TO: the Directory's DirectoryView (local? relay denied? user?);
  both are tables those actors publish and only they write (Erlang's
  ETS pattern), read here instead of an ask per command;
- end of DATA: the item and body are written durably by the QueueStore
  (fsync'd, group commit) *before* "250 ... queued as <id>" goes out
  (RFC 5321 §4.1.1.4, §6.1: once 250 is sent the message must not be lost),
  then `Enqueued` is told to the QueueManager.

The conversation runs inside the actor's first message (`StartSession`),
so one greenlet serves one connection. On shutdown the supervisor
`interrupt()`s it: a session waiting for a command gets 421 4.3.2 at once;
one inside a transaction finishes it (bounded by the shutdown timeout)
and then gets 421.

Tracing: the connection is one trace ("smtp.session"); every transaction
(MAIL .. end of DATA) starts a new trace ("smtp.transaction", linked to the
session span) that the message keeps for its whole life in the queue.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from email.utils import formatdate
from time import monotonic as _monotonic

from opentelemetry import trace
from opentelemetry.trace import Link as SpanLink
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors import smtp
from estafeta.actors.directory import DirectoryView
from estafeta.actors.enqueue import Enqueuer, Envelope
from estafeta.actors.queue import QUEUE_FULL, QueueGauge
from estafeta.actors.timeouts import IdleWatch, SessionTimedOut
from estafeta.proto import common_pb2, messages_pb2, queue_pb2
from estafeta.supervisor.actor import Actor, Link, ShutdownRequested
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.session")

_EMPTY_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)


QUEUE_WRITE_ERROR = smtp.Reply(451, "4.3.0", "Error: queue file write error, try again later")


def _reply(r: common_pb2.Reply) -> smtp.Reply:
    return smtp.Reply(r.code, r.enhanced, r.text)


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
    """What every session of a listener shares (read-only)."""

    hostname: str
    params: smtp.ServerParams
    idle_timeout: float  # seconds, RFC 5321 §4.5.3.2.7
    data_timeout: float  # seconds, RFC 5321 §4.5.3.2.6
    enqueuer: Enqueuer  # writes the queue item and body, starts its actor
    tracer: trace.Tracer
    slots: ConnectionSlots
    watch: IdleWatch  # idle and DATA timeouts of every session
    gauge: QueueGauge  # published by the QueueManager (back-pressure)
    directory: DirectoryView  # published by the Directory (RCPT TO)
    #: Client networks that may relay (Config.relay_network).
    relay_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


class _DateCache:
    """RFC 5322 date for Received headers, recomputed once a second."""

    def __init__(self):
        self._sec = -1
        self._text = ""

    def now(self) -> str:
        sec = int(time.time())
        if sec != self._sec:
            self._sec, self._text = sec, formatdate(sec, localtime=True)
        return self._text


_dates = _DateCache()


class _Transaction:
    """Envelope being built between MAIL and the end of DATA."""

    __slots__ = ("span", "reverse_path", "recipients", "smtputf8", "body_type", "dsn_ret", "dsn_envid")

    def __init__(self, span, mail: smtp.MailFrom):
        self.span = span
        self.reverse_path = mail.reverse_path
        self.recipients: list[queue_pb2.Recipient] = []
        self.smtputf8 = bool(mail.smtputf8)
        self.body_type = mail.body or ""
        dsn = mail.dsn  # RFC 3461 §4.3, §4.4, decoded by the protocol
        self.dsn_ret = (dsn.ret or "") if dsn else ""
        self.dsn_envid = (dsn.envid or "") if dsn else ""


class SmtpSession(Actor):
    """Serves one SMTP connection (temporary child of a listener's sessions
    supervisor). Constructed with the shared SessionEnv and the StartSession
    that names the socket; the conversation starts when StartSession is told.
    """

    interruptible_on_shutdown = True

    def __init__(self, link: Link | None, env: SessionEnv, start: messages_pb2.StartSession):
        super().__init__(link)
        self._env = env
        self._start = start
        self._txn: _Transaction | None = None
        #: Whether the client may relay (Config.relay_network); None: not
        #: looked at yet.
        self._relay: bool | None = None
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

    # ------------------------------------------------------------ the loop
    def _serve(self, start: messages_pb2.StartSession) -> None:
        env = self._env
        # Family and type given: socket(fileno=) alone would probe them
        # with getsockname and two getsockopt calls.
        family = socket.AF_INET6 if ":" in start.peer_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=start.fd)
        span = env.tracer.start_span(
            "smtp.session",
            context=_EMPTY_CONTEXT,
            kind=SpanKind.SERVER,
            attributes={
                "network.peer.address": start.peer_address,
                "network.peer.port": start.peer_port,
                "server.address": start.local_address,
                "server.port": start.local_port,
                "estafeta.listener": start.listener,
            },
        )
        self._session_span = span
        log.info("connection from=%s:%d listener=%s", start.peer_address, start.peer_port, start.listener)
        proto = smtp.SmtpServer(env.params, start.peer_address)
        env.watch.add(self)
        try:
            proto.greet()
            self._converse(sock, proto)
        except OSError as e:
            span.set_attribute("error.type", type(e).__name__)
            log.info("disconnected from=%s:%d error=%s", start.peer_address, start.peer_port, kv(e))
        finally:
            env.watch.remove(self)
            if self._txn is not None:
                self._end_transaction("connection closed during transaction", error=True)
            try:
                sock.close()
            finally:
                env.slots.release()
                span.end()

    @property
    def greenlet(self):
        """The greenlet serving this connection (for the IdleWatch)."""
        return self._greenlet

    def _converse(self, sock: socket.socket, proto: smtp.SmtpServer) -> None:
        env = self._env
        while True:
            event = proto.next_event()
            if event is smtp.NEED_DATA:
                out = proto.data_to_send()
                if out:
                    self._send(sock, out)
                idle = not proto.in_data and self._txn is None
                if idle and self.shutdown_pending:
                    self._close(sock, proto, smtp.Reply(421, "4.3.2", f"{env.hostname} Service shutting down"))
                    return
                # RFC 5321 §4.5.3.2.6/7: the IdleWatch enforces these.
                self.wait_limit = env.data_timeout if proto.in_data else env.idle_timeout
                self._awaiting_command = idle
                self.wait_since = _monotonic()
                try:
                    data = sock.recv(65536)
                except SessionTimedOut:
                    self._close(sock, proto, smtp.Reply(421, "4.4.2", f"{env.hostname} Timeout, closing connection"))
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
                    self._send(sock, out)
                return
            else:
                self._handle(event, proto)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        """sendall, timed out by the IdleWatch (idle timeout) if the client
        stops reading. Raises OSError (ConnectionError, or TimeoutError)."""
        self.wait_limit = self._env.idle_timeout
        self.wait_since = _monotonic()
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

    def _close(self, sock, proto: smtp.SmtpServer, reply: smtp.Reply) -> None:
        proto.close(reply)
        out = proto.data_to_send()
        if out:
            self._send(sock, out)

    # ---------------------------------------------------------- decisions
    def _handle(self, event, proto: smtp.SmtpServer) -> None:
        if isinstance(event, smtp.MailFrom):
            self._on_mail(event, proto)
        elif isinstance(event, smtp.RcptTo):
            self._on_rcpt(event, proto)
        elif isinstance(event, smtp.DataStart):
            proto.accept()
        elif isinstance(event, smtp.MessageReceived):
            self._on_message(event, proto)
        elif isinstance(event, smtp.Helo):
            self._session_span.set_attribute("smtp.helo", event.name)
        elif isinstance(event, smtp.MessageRejected):
            if self._txn is not None:
                self._end_transaction(f"message refused: {event.reason}", error=True)
        elif isinstance(event, smtp.Reset):
            if self._txn is not None:
                self._end_transaction("reset")
        # Quit, ConnectionClosed: nothing to decide.

    def _on_mail(self, event: smtp.MailFrom, proto: smtp.SmtpServer) -> None:
        if self._txn is not None:
            self._end_transaction("new MAIL")
        span = self._env.tracer.start_span(
            "smtp.transaction",
            context=_EMPTY_CONTEXT,
            kind=SpanKind.SERVER,
            links=[SpanLink(self._session_span.get_span_context())],
            attributes={
                "smtp.mail_from": event.reverse_path,
                "network.peer.address": self._start.peer_address,
            },
        )
        if not self._env.gauge.admits(event.size or 0):
            log.warning(
                "refused from=%s mail=<%s> reply=%s",
                self._start.peer_address,
                event.reverse_path,
                kv(str(_reply(QUEUE_FULL))),
            )
            span.set_status(Status(StatusCode.ERROR, QUEUE_FULL.text))
            span.end()
            proto.reject(_reply(QUEUE_FULL))
            return
        self._txn = _Transaction(span, event)
        proto.accept()

    def _on_rcpt(self, event: smtp.RcptTo, proto: smtp.SmtpServer) -> None:
        txn = self._txn
        verdict = self._env.directory.check(event.forward_path, relay=self._relay_allowed())
        if not verdict.accepted:
            reply = verdict.reply
            txn.span.add_event("rcpt.rejected", {"smtp.rcpt_to": event.forward_path, "smtp.reply.code": reply.code})
            log.info(
                "refused from=%s rcpt=<%s> reply=%s",
                self._start.peer_address,
                event.forward_path,
                kv(f"{reply.code} {reply.enhanced} {reply.text}"),
            )
            proto.reject(_reply(reply))
            return
        rcpt = queue_pb2.Recipient(address=event.forward_path, mailbox=verdict.mailbox, status=queue_pb2.PENDING)
        dsn = event.dsn
        if dsn is not None:  # RFC 3461 §4.1, §4.2, decoded by the protocol
            if dsn.orcpt is not None:
                rcpt.original_recipient = str(dsn.orcpt)
            if dsn.notify is not None:
                rcpt.notify.extend(sorted(dsn.notify))
        txn.recipients.append(rcpt)
        proto.accept()

    def _relay_allowed(self) -> bool:
        """May this client send to any domain? Its address is in
        Config.relay_network (computed once per session)."""
        allowed = self._relay
        if allowed is None:
            networks = self._env.relay_networks
            allowed = False
            if networks:
                try:
                    peer = ipaddress.ip_address(self._start.peer_address)
                except ValueError:
                    peer = None
                allowed = peer is not None and any(peer in net for net in networks)
            self._relay = allowed
        return allowed

    def _on_message(self, event: smtp.MessageReceived, proto: smtp.SmtpServer) -> None:
        """End of DATA: queue the message durably, then 250 (RFC 5321
        §4.1.1.4, §6.1); 451 if it could not be written."""
        env, txn = self._env, self._txn
        queue_id = env.enqueuer.new_id()
        envelope = Envelope(
            reverse_path=txn.reverse_path,
            recipients=txn.recipients,
            smtputf8=txn.smtputf8,
            body_type=txn.body_type,
            dsn_ret=txn.dsn_ret,
            dsn_envid=txn.dsn_envid,
            client_address=self._start.peer_address,
            helo=proto.helo_name,
            protocol=proto.protocol_name,
        )
        body = self._received(queue_id, proto) + event.body
        try:
            item = env.enqueuer.enqueue(queue_id, envelope, body, txn.span)
        except OSError as e:
            # Not durable, so not accepted (RFC 5321 §4.1.1.4): 451, the
            # client keeps the message and tries again (Postfix: "queue file
            # write error"). The session goes on.
            log.error("queue write failed id=%s from=%s error=%s", queue_id, self._start.peer_address, kv(e))
            self._end_transaction(f"queue write failed: {e}", error=True)
            proto.reject(QUEUE_WRITE_ERROR)
            return
        span = txn.span
        attrs = {"estafeta.queue_id": queue_id, "smtp.rcpt_count": len(txn.recipients)}
        if item.message_id:
            attrs["estafeta.message_id"] = item.message_id
        span.set_attributes(attrs)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "queued id=%s from=<%s> to=%s size=%d message_id=%s",
                queue_id,
                txn.reverse_path,
                ",".join(f"<{r.address}>" for r in txn.recipients),
                item.body_size,
                kv(item.message_id or "-"),
            )
        self._txn = None
        span.end()
        proto.accept(smtp.Reply(250, "2.0.0", f"Ok: queued as {queue_id}"))

    def _received(self, queue_id: str, proto: smtp.SmtpServer) -> bytes:
        """Our Received header field (RFC 5321 §4.4: from, by, with, id,
        for a single recipient), CRLF-terminated like the message."""
        rcpts = self._txn.recipients
        for_clause = f"\r\n\tfor <{rcpts[0].address}>" if len(rcpts) == 1 else ""
        return (
            f"Received: from {proto.helo_name or 'unknown'} ([{self._start.peer_address}])\r\n"
            f"\tby {self._env.hostname} (estafeta) with {proto.protocol_name} id {queue_id}"
            f"{for_clause}; {_dates.now()}\r\n"
        ).encode()

    def _end_transaction(self, why: str, error: bool = False) -> None:
        txn, self._txn = self._txn, None
        txn.span.add_event("transaction.aborted", {"reason": why})
        if error:
            txn.span.set_status(Status(StatusCode.ERROR, why))
        txn.span.end()
