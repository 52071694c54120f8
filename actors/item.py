"""QueueItem actor: one per queued message, the delivery state machine.

Life of an item (every transition written before it is acted on):

    QUEUED --attempt--> each PENDING recipient: ask a LocalCourier
       | all DELIVERED/FAILED -> files removed, ItemFinished(DONE), stop
       |                          (one recipient: removed by the disk worker
       |                          with the delivery, DeliverLocal.remove_after)
       | some still PENDING   -> item rewritten (attempts, next_attempt_at,
       |                          last_error), timer, AttemptDue later
    crash (any path) -> on_failure records crashes+1 in the file; the
       supervisor restarts it (transient); at
       Config.quarantine_after_crashes it goes QUARANTINED and stops.

Exactly once: the Maildir file name is derived from (queue id, recipient
index), and any attempt that may follow an interrupted one (restart, retry)
asks the courier to look for that file before writing — so a recipient is
never delivered twice, even when the daemon is SIGKILLed between the
Maildir rename and the queue file update.

Retry (transient failures): Retry.initial_seconds x 2^(attempts-1), capped
at Retry.max_seconds, +-10% jitter; a recipient still failing
Retry.give_up_after_seconds after queueing fails permanently (Postfix's
maximal_queue_lifetime). DSNs are a later issue: FAILED recipients keep
their last_error for them.
"""

from __future__ import annotations

import logging
import os
import random
import time
import zlib
from dataclasses import dataclass

import gevent
from google.protobuf import text_format
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.proto import common_pb2, config_pb2, messages_pb2, queue_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.queue import QueueStore
from estafeta.supervisor import registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.log import kv
from estafeta.tracing.propagation import extract, inject

log = logging.getLogger("estafeta.queue")

#: Seconds a QueueItem waits for a courier's answer before deferring.
COURIER_TIMEOUT = 120.0


@dataclass
class ItemEnv:
    """What every QueueItem shares (read-only)."""

    store: QueueStore
    tracer: trace.Tracer
    retry: config_pb2.Retry
    quarantine_after: int
    couriers: int  # number of LocalCourier actors, "courier.local.<n>"


def next_delay(retry: config_pb2.Retry, attempts: int, rnd: random.Random | None = None) -> float:
    """Seconds to wait after `attempts` failed attempts (>= 1)."""
    base = min(retry.max_seconds, retry.initial_seconds * 2 ** min(attempts - 1, 30))
    return base * (rnd or random).uniform(0.9, 1.1)


class QueueItem(Actor):
    """Delivers one queued message. Args: QueueItemArgs (the fresh item on
    the first start; restarts reload the file)."""

    def __init__(self, link: Link | None, env: ItemEnv, args: messages_pb2.QueueItemArgs):
        super().__init__(link)
        self._env = env
        self._id = args.queue_id
        self._args = args
        self._item: queue_pb2.QueueItem | None = None
        #: True while the in-memory item is the one just enqueued by this
        #: process and never attempted: no earlier attempt can have left a
        #: Maildir file behind.
        self._fresh = False
        self._timer: gevent.Greenlet | None = None

    # ----------------------------------------------------------- lifecycle
    def on_start(self) -> None:
        registry.register(f"item.{self._id}", self.actor_ref)
        args = self._args
        if self.link is not None and self.link.restarts == 0 and args.item.id:
            self._item, self._fresh = args.item, True
        else:
            try:
                self._item = run_blocking(self._env.store.load, self._id)
            except FileNotFoundError:
                self._finish(queue_pb2.DONE)  # delivered and removed meanwhile
                return
            except (OSError, text_format.ParseError) as e:
                log.error("quarantined id=%s reason=%s", self._id, kv(f"unreadable item file: {e}"))
                self._finish(queue_pb2.QUARANTINED)
                return
        self._args = None
        item = self._item
        if item.state == queue_pb2.QUARANTINED:
            self._finish(queue_pb2.QUARANTINED)
            return
        if item.crashes >= self._env.quarantine_after:
            self._quarantine(f"actor crashed {item.crashes} times, last: {item.last_crash}")
            return
        if not self._fresh and not run_blocking(os.path.exists, self._env.store.body_path(self._id)):
            self._quarantine("body file missing")
            return
        self._schedule(item.next_attempt_at - time.time())

    def on_stop(self) -> None:
        self._cancel_timer()
        registry.unregister(f"item.{self._id}", self.actor_ref)

    def on_failure(self, exc_type, exc, tb) -> None:
        """Record the crash in the file, so it counts across restarts."""
        self._cancel_timer()
        registry.unregister(f"item.{self._id}", self.actor_ref)
        item = self._item
        if item is None:
            return
        item.crashes += 1
        item.last_crash = f"{exc_type.__name__}: {exc}"[:500]
        try:
            self._env.store.update(item)
        except Exception as e:  # the crash is logged by the boundary already
            log.error("cannot record crash id=%s error=%s", self._id, kv(e))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None

    def _schedule(self, delay: float) -> None:
        if delay <= 0:
            self.actor_ref.tell(messages_pb2.AttemptDue())
        else:
            self._timer = gevent.spawn_later(delay, self.actor_ref.tell, messages_pb2.AttemptDue())

    def _finish(self, state: queue_pb2.ItemState) -> None:
        try:
            queue = registry.whereis("queue")
        except registry.NotRegistered:
            pass  # the manager recounts from disk when it restarts
        else:
            queue.tell(messages_pb2.ItemFinished(queue_id=self._id, state=state))
        self.stop()

    def _quarantine(self, reason: str) -> None:
        item = self._item
        item.state = queue_pb2.QUARANTINED
        item.quarantine_reason = reason
        self._env.store.update(item)
        log.warning("quarantined id=%s reason=%s", self._id, kv(reason))
        self._finish(queue_pb2.QUARANTINED)

    # ------------------------------------------------------------ attempts
    def on_receive(self, message):
        if isinstance(message, messages_pb2.AttemptDue):
            self._timer = None
            return self._attempt()
        raise TypeError(f"QueueItem cannot handle {type(message).__name__}")

    def _attempt(self) -> None:
        env, item = self._env, self._item
        item.attempts += 1
        check_existing = not self._fresh or item.attempts > 1
        self._fresh = False
        with env.tracer.start_span(
            "delivery.attempt",
            context=extract(item.trace),
            kind=SpanKind.INTERNAL,
            attributes={"estafeta.queue_id": item.id, "estafeta.attempt": item.attempts},
        ) as span:
            errors: list[str] = []
            removed = False  # by the disk worker, with the last delivery
            for index, rcpt in enumerate(item.recipients):
                if rcpt.status != queue_pb2.PENDING:
                    continue
                result = self._deliver(index, rcpt, check_existing, span)
                self._record(rcpt, result, errors)
                removed = result.removed
            pending = [r for r in item.recipients if r.status == queue_pb2.PENDING]
            if not pending:
                if not removed:
                    env.store.remove(item.id)
                self._finish(queue_pb2.DONE)
                return
            if time.time() - item.created_at >= env.retry.give_up_after_seconds:
                for r in pending:
                    r.status, r.done_at = queue_pb2.FAILED, time.time()
                    log.warning("failed id=%s to=<%s> error=%s", item.id, r.address, kv("gave up: " + r.last_error))
                env.store.remove(item.id)  # DSNs: a later issue
                self._finish(queue_pb2.DONE)
                return
            delay = next_delay(env.retry, item.attempts)
            item.next_attempt_at = time.time() + delay
            item.last_error = "; ".join(errors)[:1000]
            env.store.update(item)
            span.set_status(Status(StatusCode.ERROR, item.last_error))
            span.set_attribute("estafeta.next_attempt_in_s", round(delay, 3))
            for r in pending:
                log.info("deferred id=%s to=<%s> error=%s next_in=%.1fs", item.id, r.address, kv(r.last_error), delay)
            self._schedule(delay)

    def _deliver(
        self, index: int, rcpt: queue_pb2.Recipient, check_existing: bool, span
    ) -> messages_pb2.DeliveryResult:
        item = self._item
        n = zlib.crc32(item.id.encode()) % self._env.couriers
        single = len(item.recipients) == 1
        request = messages_pb2.DeliverLocal(
            queue_id=item.id,
            recipient_index=index,
            recipient=rcpt,
            reverse_path=item.reverse_path,
            created_at=item.created_at,
            body_path=self._env.store.body_path(item.id),
            check_existing=check_existing,
            # The body file is this recipient's whole Maildir file (session.py).
            link_body=item.delivery_headers_size > 0 and index == 0 and single,
            trace=inject(span),
        )
        if single:  # this delivery finishes the item: the worker removes it too
            request.remove_after.CopyFrom(self._env.store.removal(item.id))
        try:
            return self._courier(n).ask(request, timeout=COURIER_TIMEOUT)
        except Exception as e:  # courier crashed, restarting, or timed out
            return messages_pb2.DeliveryResult(
                outcome=messages_pb2.OUTCOME_TEMPORARY_FAILURE,
                reply=common_pb2.Reply(code=451, enhanced="4.3.0", text=f"courier failed: {type(e).__name__}: {e}"),
            )

    def _courier(self, n: int):
        """The courier for this item (by queue id), or the next live one if
        it is restarting: a courier crash must not stall every item hashed
        to it. Raises NotRegistered if none is alive."""
        count = self._env.couriers
        for k in range(count):
            name = f"courier.local.{(n + k) % count}"
            if registry.is_alive(name):
                return registry.whereis(name)
        return registry.whereis(f"courier.local.{n}")

    def _record(self, rcpt: queue_pb2.Recipient, result: messages_pb2.DeliveryResult, errors: list) -> None:
        item, r = self._item, result.reply
        rcpt.attempts += 1
        text = f"{r.code} {r.enhanced} {r.text}".strip()
        if result.outcome == messages_pb2.OUTCOME_DELIVERED:
            rcpt.status, rcpt.done_at = queue_pb2.DELIVERED, time.time()
            log.info("delivered id=%s to=<%s> mailbox=%s path=%s", item.id, rcpt.address, rcpt.mailbox, result.path)
        elif result.outcome == messages_pb2.OUTCOME_PERMANENT_FAILURE:
            rcpt.status, rcpt.done_at, rcpt.last_error = queue_pb2.FAILED, time.time(), text
            log.warning("failed id=%s to=<%s> error=%s", item.id, rcpt.address, kv(text))
        else:
            rcpt.last_error = text
            errors.append(f"<{rcpt.address}>: {text}")
