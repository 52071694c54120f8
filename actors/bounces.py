"""Delivery status notifications the queue sends (RFC 3464, RFC 3461).

Which DSN, when (decided by the QueueItem after each attempt, with the
pure functions here):

- failure ("failed"): a recipient failed permanently (a 5xx, a null MX,
  or the give-up time passed), if its NOTIFY allows (RFC 3461 §4.1: the
  default is FAILURE and DELAY; NEVER suppresses every DSN);
- delay ("delayed"): the message is still not delivered to some
  recipients Config.retry.delay_warning_seconds after it was queued; once
  per item (Postfix's delay_warning_time);
- success ("delivered"): NOTIFY=SUCCESS and we made the final delivery
  (a local mailbox), or ("relayed") the next server took the recipient
  without offering DSN, so it will not report (RFC 3461 §6.2.1); a server
  that offers DSN gets the NOTIFY passed on and reports itself.

One DSN per kind per attempt covers every recipient it concerns. It is
queued like any message (the Enqueuer), from the null reverse-path <> to
the message's reverse-path, and routed like any recipient.

Never a bounce of a bounce: a message whose reverse-path is <> (a DSN of
ours, or one received) gets no DSN. When such a message fails, the
postmaster (Config.dsn.postmaster) gets a copy of the failure report
instead — a double bounce, as Postfix sends to 2bounce_notice_recipient —
and if that copy fails too it is logged and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace

from estafeta.actors import dsn
from estafeta.actors.directory import DirectoryView
from estafeta.actors.enqueue import Enqueuer, Envelope
from estafeta.actors.recipients import queue_recipients
from estafeta.actors.smtp.dsnparams import NEVER, RcptDsn
from estafeta.proto import common_pb2, config_pb2, queue_pb2
from estafeta.store.queue import QueueStore
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.queue")

FAILED, DELAYED, DELIVERED, RELAYED = "failed", "delayed", "delivered", "relayed"
#: A DSN's recipients ask for no DSN themselves (NOTIFY=NEVER): a failure
#: of the DSN is a double bounce (above), never a DSN of a DSN.
_NO_DSN_OF_A_DSN = RcptDsn(notify=frozenset({NEVER}))
_NOTIFY = {FAILED: "FAILURE", DELAYED: "DELAY", DELIVERED: "SUCCESS", RELAYED: "SUCCESS"}


def wants(notify: Sequence[str], action: str) -> bool:
    """Does a recipient with this NOTIFY list want a DSN of `action`
    (failed, delayed, delivered, relayed)? RFC 3461 §4.1: NEVER wants
    none; no NOTIFY means FAILURE and DELAY."""
    if not notify:
        return action in (FAILED, DELAYED)
    if "NEVER" in notify:
        return False
    return _NOTIFY[action] in notify


@dataclass(frozen=True)
class Report:
    """One recipient's line of a DSN: the recipient, the action, the
    reply that decided it (its enhanced code is the Status), the host that
    gave it (Remote-MTA, "" for ours) and, for a delay, until when we
    retry (Unix time, seconds)."""

    recipient: queue_pb2.Recipient
    action: str
    reply: common_pb2.Reply
    remote_mta: str = ""
    will_retry_until: float = 0.0


def reply_of(text: str, default_code: int, default_enhanced: str) -> common_pb2.Reply:
    """A Reply from a recipient's last_error ("550 5.1.1 text"), or the
    defaults with the whole text when it does not start with a code."""
    parts = text.split(" ", 2)
    if len(parts) >= 2 and parts[0].isdigit() and len(parts[0]) == 3 and parts[1].count(".") == 2:
        return common_pb2.Reply(code=int(parts[0]), enhanced=parts[1], text=parts[2] if len(parts) > 2 else "")
    return common_pb2.Reply(code=default_code, enhanced=default_enhanced, text=text)


def fail_pending(item: queue_pb2.QueueItem, why: str) -> list[Report]:
    """Mark every PENDING recipient FAILED with `why` (550 5.0.0, e.g.
    "deleted by the postmaster") and return the failure reports their
    NOTIFY asks for."""
    reply = common_pb2.Reply(code=550, enhanced="5.0.0", text=why)
    now = time.time()
    reports = []
    for rcpt in item.recipients:
        if rcpt.status == queue_pb2.PENDING:
            rcpt.status, rcpt.done_at, rcpt.last_error = queue_pb2.FAILED, now, f"550 5.0.0 {why}"
            if wants(rcpt.notify, FAILED):
                reports.append(Report(rcpt, FAILED, reply))
    return reports


class Bouncer:
    """Makes and queues the DSNs of one serving process (shared by its
    QueueItems). `directory` tells which senders are local (their DSN goes
    to their mailbox); `postmaster` gets double bounces."""

    def __init__(
        self,
        enqueuer: Enqueuer,
        directory: DirectoryView,
        hostname: str,
        dsn_cfg: config_pb2.Dsn,
        postmaster: str,
    ):
        self._enqueuer = enqueuer
        self._directory = directory
        self._hostname = hostname
        self._max_full = dsn_cfg.max_full_message_bytes
        self._postmaster = postmaster

    @property
    def store(self) -> QueueStore:
        return self._enqueuer.store

    def send(self, item: queue_pb2.QueueItem, reports: list[Report], parent: trace.Span) -> str | None:
        """Queue one DSN about `item` for `reports` (all of one kind of
        action, or delivered + relayed), to its sender. A message from <>
        gets none: a failure of it goes to the postmaster instead (see the
        module docstring). Returns the DSN's queue id, or None when none
        was sent. Raises OSError if it could not be queued (the caller
        retries its whole step later: nothing is marked done)."""
        if not reports:
            return None
        if not item.reverse_path:
            if reports[0].action == FAILED and item.kind != queue_pb2.QueueItem.KIND_DOUBLE_BOUNCE:
                return self._double_bounce(item, reports, parent)
            for r in reports:
                if r.action == FAILED:
                    log.warning(
                        "dropped id=%s to=<%s> reason=%s",
                        item.id,
                        r.recipient.address,
                        kv("undeliverable double bounce: " + r.reply.text),
                    )
            return None
        return self._queue(item, reports, item.reverse_path, queue_pb2.QueueItem.KIND_DSN, parent)

    def _double_bounce(self, item: queue_pb2.QueueItem, reports: list[Report], parent: trace.Span) -> str | None:
        log.warning(
            "double bounce id=%s to=%s: a copy goes to <%s>",
            item.id,
            ",".join(f"<{r.recipient.address}>" for r in reports),
            self._postmaster,
        )
        return self._queue(item, reports, self._postmaster, queue_pb2.QueueItem.KIND_DOUBLE_BOUNCE, parent)

    def _queue(
        self, item: queue_pb2.QueueItem, reports: list[Report], to: str, kind: int, parent: trace.Span
    ) -> str | None:
        res = self._directory.resolve(to)  # a local sender's DSN goes where its mail goes
        if not res.accepted:
            log.warning(
                "dropped dsn for=%s to=<%s> reason=%s", item.id, to, kv(f"{res.reply} (the sender is not deliverable)")
            )
            return None
        recipients = queue_recipients(res.recipients, to, _NO_DSN_OF_A_DSN)
        original = self.store.read_body(item.id)
        message = dsn.build_dsn_for_item(
            reporting_mta=self._hostname,
            item=item,
            to=to,
            reports=reports,
            original=original,
            max_full_bytes=self._max_full,
            now=time.time(),
        )
        queue_id = self._enqueuer.new_id()
        envelope = Envelope(
            reverse_path="",
            recipients=recipients,
            smtputf8=item.smtputf8,
            client_address="",
            helo=self._hostname,
            protocol="local",
            kind=kind,  # type: ignore[arg-type]
            dsn_for=item.id,
            sign=True,  # From: our postmaster: signed when the host name's domain has keys
        )
        self._enqueuer.enqueue(queue_id, envelope, message, parent)
        parent.add_event(
            "dsn.queued",
            {
                "estafeta.dsn.queue_id": queue_id,
                "estafeta.dsn.action": "/".join(sorted({r.action for r in reports})),
                "estafeta.dsn.to": to,
                "estafeta.dsn.recipients": [r.recipient.address for r in reports],
            },
        )
        log.info(
            "dsn id=%s for=%s action=%s to=<%s>",
            queue_id,
            item.id,
            "/".join(sorted({r.action for r in reports})),
            to,
        )
        return queue_id
