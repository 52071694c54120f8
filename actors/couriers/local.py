"""LocalCourier actor: delivers one message to one local Maildir.

Asked `DeliverLocal`, answers `DeliveryResult`. Several run in parallel
(Config.local_delivery_concurrency, registered "courier.local.<n>"); a
QueueItem picks one by its queue id. The file is written by
store/maildir.py (write tmp/, fsync, rename to new/, fsync new/; or, for
a message queued with its delivery headers, a hard link of the queued body
into new/ and the fsync of new/) in the daemon's disk worker process, or
the hub threadpool without one: the answer DELIVERED means it is durable.

Added headers (prepended; the body keeps our SMTP Received header;
maildir.delivery_headers): Return-Path: <reverse-path> (RFC 5321 §4.4:
added at final delivery) and Delivered-To: <recipient> (RFC 9228), as
Postfix's local/virtual do. A single-recipient message has them in its
queued body already (DeliverLocal.link_body).

Outcomes: a mailbox name that cannot be a Maildir (ValueError) fails
permanently, 550 5.1.3; out of space (ENOSPC, EDQUOT) is 452 4.2.2
(RFC 3463: mailbox full) and any other OS error 451 4.3.0 — both retried.
"""

from __future__ import annotations

import errno
import logging

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.proto import common_pb2, disk_pb2, messages_pb2
from estafeta.store import maildir
from estafeta.store.blocking import run_blocking
from estafeta.store.disk_client import DiskChannel
from estafeta.supervisor.actor import Actor, Link
from estafeta.tracing.propagation import extract

log = logging.getLogger("estafeta.courier")


class LocalCourier(Actor):
    """Writes messages into <mail_root>/<domain>/<localpart>/ Maildirs."""

    def __init__(
        self, link: Link | None, mail_root: str, hostname: str, tracer: trace.Tracer, disk: DiskChannel | None = None
    ):
        """`disk`: the daemon's disk worker (store/disk_client.py) does the
        writes; without one they run in the hub threadpool."""
        super().__init__(link)
        self._root = mail_root
        self._hostname = hostname
        self._tracer = tracer
        self._disk = disk

    def on_receive(self, message):
        if isinstance(message, messages_pb2.DeliverLocal):
            return self._deliver(message)
        raise TypeError(f"LocalCourier cannot handle {type(message).__name__}")

    def _deliver(self, m: messages_pb2.DeliverLocal) -> messages_pb2.DeliveryResult:
        rcpt = m.recipient
        name = maildir.unique_name(m.queue_id, m.recipient_index, m.created_at, self._hostname)
        with self._tracer.start_span(
            "courier.local",
            context=extract(m.trace),
            kind=SpanKind.CLIENT,
            attributes={
                "estafeta.queue_id": m.queue_id,
                "estafeta.recipient": rcpt.address,
                "estafeta.mailbox": rcpt.mailbox,
                "estafeta.maildir.check_existing": m.check_existing,
                "estafeta.maildir.link": m.link_body,
            },
        ) as span:
            try:
                path, existed, removed = self._write(m, name)
            except ValueError as e:
                return self._fail(span, messages_pb2.OUTCOME_PERMANENT_FAILURE, 550, "5.1.3", str(e))
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    return self._fail(span, messages_pb2.OUTCOME_TEMPORARY_FAILURE, 452, "4.2.2", f"mailbox full: {e}")
                return self._fail(
                    span, messages_pb2.OUTCOME_TEMPORARY_FAILURE, 451, "4.3.0", f"cannot write mailbox: {e}"
                )
            span.set_attribute("estafeta.maildir.path", path)
            if existed:
                span.add_event("maildir.already_delivered", {"path": path})
            return messages_pb2.DeliveryResult(
                outcome=messages_pb2.OUTCOME_DELIVERED,
                reply=common_pb2.Reply(code=250, enhanced="2.0.0", text="delivered to maildir"),
                path=path,
                removed=removed,
            )

    def _write(self, m: messages_pb2.DeliverLocal, name: str) -> tuple[str, bool, bool]:
        """Write the Maildir file durably; (path, already there, item
        removed). The disk worker does m.remove_after once the file is
        durable; without a worker the item is left to remove itself. Raises
        ValueError (unsafe mailbox or name) or OSError."""
        rcpt = m.recipient
        prefix = b"" if m.link_body else maildir.delivery_headers(m.reverse_path, rcpt.address)
        if self._disk is None:
            path, existed = run_blocking(
                maildir.deliver,
                self._root,
                rcpt.mailbox,
                name,
                prefix,
                None,
                m.body_path,
                m.check_existing,
                m.link_body,
            )
            return path, existed, False
        request = disk_pb2.DiskRequest(
            maildir=disk_pb2.MaildirDelivery(
                root=self._root,
                mailbox=rcpt.mailbox,
                name=name,
                header_prefix=prefix,
                body_path=m.body_path,
                check_existing=m.check_existing,
                link=m.link_body,
            )
        )
        if m.HasField("remove_after"):
            request.maildir.remove_after.CopyFrom(m.remove_after)
        reply = self._disk.call(request)
        return reply.path, reply.already_there, reply.removed

    @staticmethod
    def _fail(span, outcome: messages_pb2.Outcome, code: int, enhanced: str, text: str) -> messages_pb2.DeliveryResult:
        span.set_status(Status(StatusCode.ERROR, text))
        span.set_attribute("error.type", f"{code} {enhanced}")
        return messages_pb2.DeliveryResult(
            outcome=outcome, reply=common_pb2.Reply(code=code, enhanced=enhanced, text=text)
        )
