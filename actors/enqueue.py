"""Putting a message into the queue: the one way in, for SMTP sessions,
the DSNs the queue makes, and the maildrop of `estafeta sendmail`
(actors/pickup.py).

`Enqueuer.enqueue(queue_id, envelope, body, parent)` builds the
QueueItem (envelope, per-recipient status, the trace it belongs to),
writes it and the body durably (QueueStore.put: both fdatasync'd and the
directory fsync'd before it returns — RFC 5321 §4.1.1.4 / §6.1: a 250
may only follow that), in a `queue.enqueue` span, then tells the
QueueManager `Enqueued` so the item's actor starts. The body is the
message exactly as it will be delivered: our Received header (the
caller's, it knows the connection), then the content as received.

With an `Outbound` (actors/checks/outbound.py), the Enqueuer also
authenticates what it queues, once, so that every courier sends the same
bytes (the body file is the message as accepted plus our header fields):

- `Envelope.sign` (mail of authenticated users, relay_network clients,
  `estafeta sendmail`, our DSNs): the DKIM-Signature fields of the From
  domain's keys are prepended (RFC 6376 §5);
- recipients an alias forwards off-site (`Recipient.forwarded_by`) get an
  SRS reverse-path of their own (`Recipient.reverse_path`), and the
  message the next ARC set (RFC 8617 §5.1), sealed with the forwarding
  domain's RSA key over our Authentication-Results.

A key or message that cannot be signed is logged and the message queued
unsigned (never refused for it): `estafeta dkim check` finds the key.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from estafeta.actors.checks.outbound import Outbound
from estafeta.proto import messages_pb2, queue_pb2
from estafeta.store.queue import QueueStore
from estafeta.supervisor import registry
from estafeta.supervisor.log import kv
from estafeta.tracing.propagation import inject

log = logging.getLogger("estafeta.queue")

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^>\r\n]*)>?", re.IGNORECASE | re.MULTILINE)


def header_end(body: bytes) -> int:
    """Offset of the blank line ending the header section (RFC 5322 §2.1)
    — after the last header line's line end — or len(body) if there is
    none. CRLF and bare LF line ends both count."""
    end = body.find(b"\r\n\r\n")
    lf = body.find(b"\n\n", 0, end if end >= 0 else len(body))
    if lf >= 0:
        return lf + 1
    return end + 2 if end >= 0 else len(body)


def message_id(body: bytes) -> str:
    """The Message-ID header's value without angle brackets ("" if none),
    from the header section only."""
    m = _MESSAGE_ID.search(body, 0, header_end(body))
    return m.group(1).decode("utf-8", "replace").strip() if m else ""


@dataclass
class Envelope:
    """What a mail transaction hands to the queue (RFC 5321 §2.3.1): the
    reverse-path ("" is <>), the accepted recipients (queue_pb2.Recipient,
    PENDING, with mailbox, NOTIFY, ORCPT), the transaction's parameters
    (SMTPUTF8, BODY=, RFC 3461 RET and ENVID) and who sent it (client
    address, EHLO name, the RFC 3848 protocol keyword), and the AUTH= value
    to pass on (actors/policy.py auth_parameter)."""

    reverse_path: str
    recipients: list[queue_pb2.Recipient]
    smtputf8: bool = False
    body_type: str = ""
    dsn_ret: str = ""
    dsn_envid: str = ""
    client_address: str = ""
    helo: str = ""
    protocol: str = ""
    kind: queue_pb2.QueueItem.Kind = queue_pb2.QueueItem.KIND_MESSAGE
    dsn_for: str = ""
    #: The AUTH= value to pass on (RFC 4954 §5; QueueItem.auth): "" is <>.
    auth: str = ""
    #: DKIM-sign the message at enqueue (mail of our users: authenticated,
    #: relay_network clients, `estafeta sendmail`; our DSNs).
    sign: bool = False


class Enqueuer:
    """Writes new queue items (shared by every session and item of a
    serving process; no state of its own)."""

    def __init__(self, store: QueueStore, tracer: trace.Tracer, outbound: Outbound | None = None):
        """`outbound`: DKIM keys, SRS and ARC sealing (None: messages are
        queued as given)."""
        self.store = store
        self.tracer = tracer
        self.outbound = outbound

    def new_id(self) -> str:
        """A fresh queue id of this serving process (store.queue.new_id)."""
        return self.store.new_id()

    def enqueue(
        self, queue_id: str, envelope: Envelope, body: bytes, parent: trace.Span | None = None
    ) -> queue_pb2.QueueItem:
        """Queue `body` for the envelope's recipients under `queue_id`;
        returns the item once it is durable and its actor is being started.
        `parent`: the span the message's trace hangs from (the session's
        smtp.transaction; for a DSN, the delivery attempt that made it).

        Raises OSError if the write failed (nothing was queued; the SMTP
        answer is then 451 4.3.0, the client tries again)."""
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        # start_span, not start_as_current_span: contexts travel in messages
        # here, so making the span current (a contextvar) would be wasted.
        with self.tracer.start_span("queue.enqueue", context=ctx, attributes={"estafeta.queue_id": queue_id}) as span:
            if self.outbound is not None and (envelope.sign or envelope.recipients and _forwarded(envelope)):
                body = self._authenticate(queue_id, envelope, body, span)
            item = self._item(queue_id, envelope, body, parent)
            span.set_attribute("estafeta.body_size", item.body_size)
            self.store.put(item, body)
        try:
            queue = registry.whereis("queue")
        except registry.NotRegistered:
            return item  # no daemon (the CLI), or its manager restarting: started when it (re)loads the queue
        queue.tell(messages_pb2.Enqueued(item=item, trace=item.trace))
        return item

    @staticmethod
    def _item(queue_id: str, envelope: Envelope, body: bytes, parent: trace.Span | None) -> queue_pb2.QueueItem:
        return queue_pb2.QueueItem(
            id=queue_id,
            state=queue_pb2.QUEUED,
            reverse_path=envelope.reverse_path,
            recipients=envelope.recipients,
            created_at=time.time(),
            body_size=len(body),
            message_id=message_id(body),
            trace=inject(parent) if parent is not None else None,
            client_address=envelope.client_address,
            helo=envelope.helo,
            protocol=envelope.protocol,
            smtputf8=envelope.smtputf8,
            body_type=envelope.body_type,
            dsn_ret=envelope.dsn_ret,
            dsn_envid=envelope.dsn_envid,
            kind=envelope.kind,
            dsn_for=envelope.dsn_for,
            auth=envelope.auth,
        )

    def _authenticate(self, queue_id: str, envelope: Envelope, body: bytes, span: trace.Span) -> bytes:
        """`body` DKIM-signed (envelope.sign) and, when an alias forwards
        some recipients off-site, ARC-sealed, those recipients given their
        SRS reverse-path (see the module docstring). Failures are logged
        and put on `span`; the message then goes as it is."""
        out = self.outbound
        assert out is not None
        if envelope.sign:
            try:
                domain, fields = out.dkim_sign(body)
            except (ValueError, OSError) as e:  # SigningError, KeyFileError, an unreadable key
                log.error("dkim not signed id=%s error=%s", queue_id, kv(e))
                span.set_attribute("estafeta.dkim.error", str(e))
                span.set_status(Status(StatusCode.ERROR, f"DKIM signing failed: {e}"))
            else:
                if fields:
                    body = fields + body
                    span.set_attribute("estafeta.dkim.signed", domain)
        forwarded = _forwarded(envelope)
        if forwarded:
            # One ARC set per hop (RFC 8617 §4.2.1: one instance per ADMD):
            # sealed by the first forwarding domain; the SRS address is the
            # same for all (it is in Config.srs.domain).
            domain = forwarded[0].forwarded_by
            try:
                path, arc = out.forward(body, envelope.reverse_path, domain)
            except (ValueError, OSError) as e:  # SrsError (not an address), an unusable or unreadable key
                log.warning("forwarded without srs or arc seal id=%s error=%s", queue_id, kv(e))
                path, arc = envelope.reverse_path, b""
            if path != envelope.reverse_path:
                for r in forwarded:
                    r.reverse_path = path
                span.set_attribute("estafeta.srs.reverse_path", path)
            if arc:
                body = arc + body
                span.set_attribute("estafeta.arc.sealed", domain)
        return body


def _forwarded(envelope: Envelope) -> list[queue_pb2.Recipient]:
    """The recipients an alias forwards off-site, still without their own
    reverse-path."""
    return [r for r in envelope.recipients if r.forwarded_by and not r.reverse_path]
