"""The decisions of a session's mail transactions (RFC 5321 §3.3): what
the SmtpSession (actors/session.py) asks at MAIL, RCPT and the end of
DATA, and the queueing of the message.

- MAIL FROM: an authenticated user may send only from its own addresses
  (actors/policy.py check_sender: 550 5.7.1) and only so many messages an
  hour (actors/limits.py: 451 4.7.1); the queue must have room (the
  QueueManager's QueueGauge: 452 4.3.1); the AUTH= parameter is kept if
  trusted (policy.auth_parameter, RFC 4954 §5).
- RCPT TO: the address is resolved through the Directory's published
  Resolver (users, aliases) and the relay policy decides (never an open
  relay: 554 5.7.1; unknown user 550 5.1.1, alias loop 550 5.4.6); an
  authenticated user has an hourly recipient limit (452 4.7.1); the final
  recipients go into a RecipientSet, so that alice@, A.lice+x@ and an
  alias to alice make one delivery (as Postfix's cleanup merges them).
- end of DATA: for a checked session (actors/checks/session.py: an
  SMTP-mode listener's client, not in relay_network, not authenticated)
  DKIM, ARC and DMARC (550 5.7.1 for a DMARC reject; the Junk folder for
  every local recipient of a quarantined message) and our
  Authentication-Results; then the Received field (actors/received.py:
  TLS and AUTH clauses) above it, then the Enqueuer writes the item and
  body durably — DKIM-signing the mail of authenticated and relay_network
  clients — *before* "250 ... queued as <id>" goes out (RFC 5321
  §4.1.1.4, §6.1), and tells the QueueManager.

SPF runs at MAIL FROM for a checked session (RFC 7208 §2.4), its verdict
kept for DMARC at the end of DATA.

Every refusal is logged ("refused from=<ip> ... reply=..."), counted
(metrics.count_refused) and put on the trace (estafeta.refused).

Tracing: each transaction (MAIL .. end of DATA) is a new trace,
"smtp.transaction", linked to the connection's "smtp.session" span; the
message keeps it for its whole life in the queue. An authenticated
session's transactions carry enduser.id; a TLS one's the tls.* attributes.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.trace import Link as SpanLink
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors import smtp
from estafeta.actors.aliases import RecipientSet
from estafeta.actors.checks.session import SessionChecks
from estafeta.actors.enqueue import Envelope
from estafeta.actors.policy import Client
from estafeta.actors.queue import QUEUE_FULL
from estafeta.actors.received import dates, received_header
from estafeta.actors.recipients import queue_recipients
from estafeta.actors.tls import TlsInfo
from estafeta.proto import queue_pb2
from estafeta.supervisor import metrics
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.session")

_EMPTY_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)

QUEUE_WRITE_ERROR = smtp.Reply(451, "4.3.0", "Error: queue file write error, try again later")
_QUEUE_FULL = smtp.Reply(QUEUE_FULL.code, QUEUE_FULL.enhanced, QUEUE_FULL.text)

#: Refusal reasons (metrics, the estafeta.refused span attribute) by the
#: enhanced status code of the reply (RFC 3463).
_REASONS = {
    "5.7.1": "relay_denied",
    "5.1.1": "unknown_user",
    "5.1.2": "bad_domain",
    "5.1.3": "bad_address",
    "5.4.6": "alias_loop",
    "4.7.1": "rate_limited",
    "4.3.1": "queue_full",
}


def refusal_reason(reply) -> str:
    """The reason a recipient or message was refused, for metrics and
    trace search: "relay_denied", "unknown_user", ... or "refused_<code>".
    `reply`: anything with `code` and `enhanced` (smtp.Reply, common_pb2.Reply)."""
    return _REASONS.get(reply.enhanced) or f"refused_{reply.code}"


class _Transaction:
    """Envelope being built between MAIL and the end of DATA."""

    __slots__ = (
        "span",
        "reverse_path",
        "given",
        "final",
        "recipients",
        "smtputf8",
        "body_type",
        "dsn_ret",
        "dsn_envid",
        "client",
        "auth",
    )

    def __init__(self, span, mail: smtp.MailFrom, client: Client, auth: str):
        self.span = span
        self.reverse_path = mail.reverse_path
        self.given: list[str] = []  # forward-paths accepted, as the client gave them
        self.final = RecipientSet()  # their final recipients, each once
        self.recipients: list[queue_pb2.Recipient] = []
        self.smtputf8 = bool(mail.smtputf8)
        self.body_type = mail.body or ""
        dsn = mail.dsn  # RFC 3461 §4.3, §4.4, decoded by the protocol
        self.dsn_ret = (dsn.ret or "") if dsn else ""
        self.dsn_envid = (dsn.envid or "") if dsn else ""
        self.client = client
        self.auth = auth


def _queued(txn: _Transaction, item: queue_pb2.QueueItem) -> None:
    """The transaction's message is durably queued as `item`: its span gets
    the queue id, Message-ID and recipients as given, and ends; the log
    says so."""
    given = txn.given
    attrs: dict[str, str | int | list[str]] = {
        "estafeta.queue_id": item.id,
        "smtp.rcpt_count": len(given),
        "smtp.rcpt_to": given,
    }
    if item.message_id:
        attrs["estafeta.message_id"] = item.message_id
    txn.span.set_attributes(attrs)
    txn.span.end()
    if log.isEnabledFor(logging.INFO):
        log.info(
            "queued id=%s from=<%s> to=%s size=%d message_id=%s%s",
            item.id,
            txn.reverse_path,
            ",".join(f"<{r.address}>" for r in txn.recipients),
            item.body_size,
            kv(item.message_id or "-"),
            f" user={txn.client.identity}" if txn.client.identity else "",
        )


class Transactions:
    """The mail transactions of one session, in order (one open at a
    time). `env`: the session's SessionEnv (actors/session.py); `peer`:
    the client's IP address; `session_span`: the connection's span (each
    transaction links to it). `tls`: the connection's TlsInfo once it is
    encrypted (set by the session). `checks`: the session's mail
    authentication checks (None: the session is not checked); `relay`:
    the client is in relay_network (its mail is DKIM-signed)."""

    __slots__ = ("_env", "_peer", "_session_span", "tls", "txn", "checks", "relay")

    def __init__(
        self, env, peer: str, session_span: trace.Span, checks: SessionChecks | None = None, relay: bool = False
    ):
        self._env = env
        self._peer = peer
        self._session_span = session_span
        self.tls: TlsInfo | None = None
        self.txn: _Transaction | None = None
        self.checks = checks
        self.relay = relay

    # ------------------------------------------------------------ MAIL
    def mail(self, event: smtp.MailFrom, proto: smtp.SmtpServer) -> None:
        """Decide MAIL FROM; a transaction still open is abandoned first."""
        if self.txn is not None:
            self.end("new MAIL")
        env = self._env
        identity = proto.auth_identity
        attributes: dict = {"smtp.mail_from": event.reverse_path, "network.peer.address": self._peer}
        if identity:
            attributes["enduser.id"] = identity
        if self.tls is not None:
            attributes.update(self.tls.span_attributes())
        span = env.tracer.start_span(
            "smtp.transaction",
            context=_EMPTY_CONTEXT,
            kind=SpanKind.SERVER,
            links=[SpanLink(self._session_span.get_span_context())],
            attributes=attributes,
        )
        client = Client(self._peer, identity)
        auth = ""
        refusal = None
        if identity:  # RFC 4954 §5, §6: only an authenticated client's sender is ours to check
            resolver = env.directory.resolver
            refusal = env.policy.check_sender(resolver, client, event.reverse_path)
            if refusal is None and env.limits is not None:
                refusal = env.limits.message_allowed(identity)
            if refusal is None:
                auth = env.policy.auth_parameter(resolver, client, event.auth, event.reverse_path)
        if refusal is None and not env.gauge.admits(event.size or 0):
            refusal = _QUEUE_FULL
        if refusal is not None:
            reason = "sender_mismatch" if refusal.enhanced == "5.7.1" else refusal_reason(refusal)
            log.warning(
                "refused from=%s mail=<%s> user=%s reply=%s",
                self._peer,
                event.reverse_path,
                identity or "-",
                kv(str(refusal)),
            )
            span.set_status(Status(StatusCode.ERROR, refusal.text))
            span.set_attribute("estafeta.refused", reason)
            span.end()
            metrics.count_refused(reason)
            proto.reject(refusal)
            return
        self.txn = _Transaction(span, event, client, auth)
        if self.checks is not None and not identity:
            self.checks.at_mail(proto.helo_name, event.reverse_path, span)
        proto.accept()

    # ------------------------------------------------------------ RCPT
    def rcpt(self, event: smtp.RcptTo, proto: smtp.SmtpServer) -> None:
        """Decide RCPT TO: resolve, relay policy, per-user limit."""
        txn, env = self.txn, self._env
        forward_path = event.forward_path
        res = env.policy.check_recipient(env.directory.resolver, txn.client, forward_path)
        refusal = res.reply
        identity = txn.client.identity
        if refusal is None and identity and env.limits is not None:
            refusal = env.limits.recipient_allowed(identity)
        if refusal is not None:
            txn.span.add_event("rcpt.rejected", {"smtp.rcpt_to": forward_path, "smtp.reply.code": refusal.code})
            metrics.count_refused(refusal_reason(refusal))
            log.info("refused from=%s rcpt=<%s> reply=%s", self._peer, forward_path, kv(str(refusal)))
            proto.reject(refusal)
            return
        txn.given.append(forward_path)
        new = txn.final.add(res)
        if new:
            txn.recipients += queue_recipients(new, forward_path, event.dsn)
        proto.accept()

    # ------------------------------------------------------------ end of DATA
    def message(self, event: smtp.MessageReceived, proto: smtp.SmtpServer) -> None:
        """End of DATA: queue the message durably, then 250 (RFC 5321
        §4.1.1.4, §6.1); 451 if it could not be written."""
        env, txn = self._env, self.txn
        body = event.body
        if self.checks is not None and not txn.client.identity:
            body = self._checked(txn, body, proto)
            if body is None:
                return
        queue_id = env.enqueuer.new_id()
        envelope = Envelope(
            reverse_path=txn.reverse_path,
            recipients=txn.recipients,
            smtputf8=txn.smtputf8,
            body_type=txn.body_type,
            dsn_ret=txn.dsn_ret,
            dsn_envid=txn.dsn_envid,
            client_address=self._peer,
            helo=proto.helo_name,
            protocol=proto.protocol_name,
            auth=txn.auth,
            sign=bool(txn.client.identity) or self.relay,
        )
        given = txn.given
        header = received_header(
            proto.helo_name,
            self._peer,
            env.hostname,
            proto.protocol_name,
            queue_id,
            dates.now(),
            recipient=given[0] if len(given) == 1 else None,
            tls=self.tls,
            identity=txn.client.identity,
        )
        try:
            item = env.enqueuer.enqueue(queue_id, envelope, header + body, txn.span)
        except OSError as e:
            # Not durable, so not accepted (RFC 5321 §4.1.1.4): 451, the
            # client keeps the message and tries again (Postfix: "queue file
            # write error"). The session goes on.
            log.error("queue write failed id=%s from=%s error=%s", queue_id, self._peer, kv(e))
            metrics.count_refused("queue_write_error")
            txn.span.set_attribute("estafeta.refused", "queue_write_error")
            self.end(f"queue write failed: {e}", error=True)
            proto.reject(QUEUE_WRITE_ERROR)
            return
        self.txn = None
        _queued(txn, item)
        metrics.count_accepted()
        proto.accept(smtp.Reply(250, "2.0.0", f"Ok: queued as {queue_id}"))

    def _checked(self, txn: _Transaction, body: bytes, proto: smtp.SmtpServer) -> bytes | None:
        """DKIM, ARC, DMARC at the end of DATA (actors/checks/session.py):
        the message to queue (our Authentication-Results on top; the
        local recipients of a quarantined message into their Junk
        folder), or None when DMARC rejects it (550 5.7.1 sent, the
        transaction ended; counted and traced by the checks)."""
        assert self.checks is not None
        outcome = self.checks.at_end_of_data(body, txn.reverse_path, txn.given, txn.span)
        if outcome.reply is not None:
            self.end("refused: DMARC policy", error=True)
            proto.reject(outcome.reply)
            return None
        if outcome.folder:
            for r in txn.recipients:
                if r.mailbox:
                    r.folder = outcome.folder
        return outcome.message

    # ------------------------------------------------------------ the end
    def rejected(self, event: smtp.MessageRejected) -> None:
        """The protocol refused the message itself (size, smuggling, loop)."""
        metrics.count_refused(event.reason)
        log.info("refused from=%s reply=%s", self._peer, kv(str(event.reply)))
        if self.txn is not None:
            self.txn.span.set_attribute("estafeta.refused", event.reason)
            self.end(f"message refused: {event.reason}", error=True)

    def end(self, why: str, error: bool = False) -> None:
        """Abandon the open transaction (RSET, a new MAIL, the connection
        closed): its span ends with `why`."""
        txn, self.txn = self.txn, None
        if txn is None:
            return
        txn.span.add_event("transaction.aborted", {"reason": why})
        if error:
            txn.span.set_status(Status(StatusCode.ERROR, why))
        txn.span.end()
