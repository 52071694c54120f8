"""LocalCourier actor: delivers a queued message into local Maildirs.

Asked `Deliver` for route MAILDIR (several recipients at once: each gets
its own copy), answers `DeliveryResult`. Several run in parallel
(Config.local_delivery_concurrency, registered "courier.maildir.<n>");
the CourierPool hands each delivery a free one. The files are written by
the QueueStore (store/queue.py `deliver_maildirs`, store/maildir.py: the
delivery headers and the message with LF line ends, fdatasync'd, named in
new/, new/ fsync'd) in the daemon's disk worker process, or the hub
threadpool without one: DELIVERED means the file is durable.

A recipient with a folder (DeliverRecipient.folder: "Junk" for a
message DMARC quarantined) gets its copy in that Maildir++ folder of its
mailbox, <mailbox>/.Junk/.

Added headers (maildir.delivery_headers): Return-Path: <reverse-path>
(RFC 5321 §4.4: added at final delivery) and Delivered-To: <recipient>
(RFC 9228), as Postfix's local and virtual do.

Outcomes per recipient: a mailbox name that cannot be a Maildir
(ValueError) fails permanently, 550 5.1.3; out of space (ENOSPC, EDQUOT)
is 452 4.2.2 (RFC 3463: mailbox full) and any other OS error 451 4.3.0 —
both retried.
"""

from __future__ import annotations

import errno
import logging

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.proto import common_pb2, messages_pb2
from estafeta.store import maildir
from estafeta.store.queue import MaildirTarget, QueueStore
from estafeta.supervisor.actor import Actor, Link
from estafeta.tracing.propagation import extract

log = logging.getLogger("estafeta.courier")

DELIVERED = common_pb2.Reply(code=250, enhanced="2.0.0", text="delivered to maildir")


def _failure(e: Exception) -> tuple[messages_pb2.Outcome, common_pb2.Reply]:
    """The outcome and reply for a delivery that raised `e`."""
    if isinstance(e, ValueError):
        return messages_pb2.OUTCOME_PERMANENT_FAILURE, common_pb2.Reply(code=550, enhanced="5.1.3", text=str(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return messages_pb2.OUTCOME_TEMPORARY_FAILURE, common_pb2.Reply(
            code=452, enhanced="4.2.2", text=f"mailbox full: {e}"
        )
    return messages_pb2.OUTCOME_TEMPORARY_FAILURE, common_pb2.Reply(
        code=451, enhanced="4.3.0", text=f"cannot write mailbox: {e}"
    )


class LocalCourier(Actor):
    """Writes messages into <mail_root>/<domain>/<localpart>/ Maildirs."""

    def __init__(self, link: Link | None, mail_root: str, hostname: str, tracer: trace.Tracer, store: QueueStore):
        """`store`: the QueueStore of this serving process (its disk worker
        does the writes)."""
        super().__init__(link)
        self._root = mail_root
        self._hostname = hostname
        self._tracer = tracer
        self._store = store

    def on_receive(self, message):
        if isinstance(message, messages_pb2.Deliver):
            return self._deliver(message)
        raise TypeError(f"LocalCourier cannot handle {type(message).__name__}")

    def _deliver(self, m: messages_pb2.Deliver) -> messages_pb2.DeliveryResult:
        targets = [
            MaildirTarget(
                mailbox=r.mailbox,
                name=maildir.unique_name(m.queue_id, r.index, m.created_at, self._hostname),
                header_prefix=maildir.delivery_headers(m.reverse_path, r.address),
                folder=r.folder,
            )
            for r in m.recipients
        ]
        attributes: dict[str, str | bool | int] = {
            "estafeta.queue_id": m.queue_id,
            "estafeta.maildir.check_existing": m.check_existing,
        }
        if len(m.recipients) == 1:
            attributes["estafeta.recipient"] = m.recipients[0].address
            attributes["estafeta.mailbox"] = m.recipients[0].mailbox
            if m.recipients[0].folder:
                attributes["estafeta.maildir.folder"] = m.recipients[0].folder
        else:
            attributes["estafeta.recipient_count"] = len(m.recipients)
        with self._tracer.start_span(
            "courier.local", context=extract(m.trace), kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            outcomes, removed = self._store.deliver_maildirs(
                m.queue_id, self._root, targets, m.check_existing, m.finishes_item
            )
            result = messages_pb2.DeliveryResult(item_removed=removed)
            for r, outcome in zip(m.recipients, outcomes, strict=True):
                result.results.append(self._result(span, r, outcome, single=len(targets) == 1))
            return result

    @staticmethod
    def _result(span, r: messages_pb2.DeliverRecipient, outcome, single: bool) -> messages_pb2.RecipientResult:
        """The RecipientResult for one target's outcome ((path, already
        there) or an exception), recorded on the span: one recipient as
        attributes, several as an event each."""
        if isinstance(outcome, Exception):
            kind, reply = _failure(outcome)
            span.set_status(Status(StatusCode.ERROR, reply.text))
            span.set_attribute("error.type", f"{reply.code} {reply.enhanced}")
            if not single:
                span.add_event("maildir.failed", {"estafeta.recipient": r.address, "error": reply.text})
            return messages_pb2.RecipientResult(index=r.index, outcome=kind, reply=reply)
        path, existed = outcome
        if existed:
            span.add_event("maildir.already_delivered", {"path": path, "estafeta.recipient": r.address})
        if single:
            span.set_attribute("estafeta.maildir.path", path)
        elif not existed:
            span.add_event("maildir.delivered", {"path": path, "estafeta.recipient": r.address})
        return messages_pb2.RecipientResult(
            index=r.index, outcome=messages_pb2.OUTCOME_DELIVERED, reply=DELIVERED, detail=path
        )
