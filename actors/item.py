"""QueueItem actor: one per queued message, the delivery state machine.

Life of an item (every transition written before it is acted on):

    QUEUED --attempt--> the PENDING recipients, grouped by route and
       |     destination (actors/couriers/router.py), each group asked of a
       |     courier of its route in one Deliver (CourierPool); the groups of
       |     one attempt run at once; one result per recipient
       | DSNs due (actors/bounces.py) are queued first, then:
       | all DELIVERED/FAILED -> files removed, ItemFinished(DONE), stop
       |                         (a single Maildir delivery removes them
       |                         with the delivery: Deliver.finishes_item)
       | some still PENDING   -> item rewritten (attempts, next_attempt_at,
       |                         last_error), timer, AttemptDue later
    HELD (estafeta queue hold) -> no attempts until released
    crash (any path) -> on_failure records it in the file and defers the
       item like a temporary failure; the supervisor restarts it
       (transient), and it waits for its next attempt. After
       Config.quarantine_after_crashes crashed attempts in a row it goes
       QUARANTINED and stops.

Exactly once (Maildir): the file name is derived from (queue id, recipient
index), and any attempt that may follow an interrupted one (restart, retry)
asks the courier to look for that file before writing — so a local
recipient is never delivered twice, even when the daemon is SIGKILLed
between the Maildir link and the queue file update.

Retry (temporary failures and crashes): Retry.initial_seconds x
2^(n-1) after the n-th failed attempt, capped at Retry.max_seconds,
+-10 % jitter (proto/config.proto compares it with Postfix, chasquid and
mox); a recipient still failing Retry.give_up_after_seconds after queueing
fails permanently with a failure DSN; a delayed-delivery DSN is sent once
after Retry.delay_warning_seconds.

Postmaster actions (control_pb2.QueueAction, from `estafeta queue` and the
web page through the control channel): FLUSH (attempt now), HOLD, RELEASE,
DELETE (optionally with a failure DSN).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass

import gevent
from google.protobuf import text_format
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors import bounces
from estafeta.actors.bounces import Bouncer, Report
from estafeta.actors.couriers import KIND_NAMES, router
from estafeta.actors.couriers.pool import CourierPool
from estafeta.proto import common_pb2, config_pb2, control_pb2, messages_pb2, queue_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.inflight import InFlightJournal
from estafeta.store.queue import QueueStore
from estafeta.supervisor import metrics, registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.log import kv
from estafeta.tracing.propagation import extract, inject

log = logging.getLogger("estafeta.queue")

DELIVERED = messages_pb2.OUTCOME_DELIVERED
PERMANENT = messages_pb2.OUTCOME_PERMANENT_FAILURE
_Action = control_pb2.QueueAction


@dataclass
class ItemEnv:
    """What every QueueItem of a serving process shares (read-only)."""

    store: QueueStore
    tracer: trace.Tracer
    retry: config_pb2.Retry
    quarantine_after: int  # crashed attempts in a row before QUARANTINED
    couriers: CourierPool
    routes: router.RouteTable
    bouncer: Bouncer
    journal: InFlightJournal | None = None  # remote transactions cut after their final dot


def next_delay(retry: config_pb2.Retry, attempts: int, rnd: random.Random | None = None) -> float:
    """Seconds to wait after `attempts` failed attempts (>= 1):
    initial x 2^(attempts-1), at most max_seconds, +-10 % jitter."""
    base = min(retry.max_seconds, retry.initial_seconds * 2 ** min(max(attempts, 1) - 1, 30))
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
        if item.state in (queue_pb2.QUARANTINED, queue_pb2.HELD):
            self._finish(item.state)
            return
        if item.crash_streak >= self._env.quarantine_after:
            self._quarantine(f"crashed in {item.crash_streak} attempts in a row, last: {item.last_crash}")
            return
        if not self._fresh and not run_blocking(os.path.exists, self._env.store.body_path(self._id)):
            self._quarantine("body file missing")
            return
        self._schedule(item.next_attempt_at - time.time())

    def on_stop(self) -> None:
        self._cancel_timer()
        registry.unregister(f"item.{self._id}", self.actor_ref)

    def on_failure(self, exc_type, exc, tb) -> None:
        """Record the crash in the file and defer the item like a temporary
        failure, so crashes count across restarts and a crash loop backs
        off (a restart reloads the file and waits for next_attempt_at)."""
        self._cancel_timer()
        registry.unregister(f"item.{self._id}", self.actor_ref)
        item = self._item
        if item is None:
            return
        item.crashes += 1
        item.crash_streak += 1
        item.last_crash = f"{exc_type.__name__}: {exc}"[:500]
        item.next_attempt_at = time.time() + next_delay(self._env.retry, item.crash_streak)
        try:
            self._env.store.update(item)
        except Exception as e:  # the crash is logged by the boundary already
            log.error("cannot record crash id=%s error=%s", self._id, kv(e))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
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
        metrics.count_quarantined()
        # A span of the message's trace says so (the trace search and the
        # web page find quarantined messages by it).
        with self._env.tracer.start_span(
            "queue.quarantine",
            context=extract(item.trace),
            attributes={"estafeta.queue_id": item.id, "estafeta.outcome": "quarantined", "estafeta.reason": reason},
        ) as span:
            span.set_status(Status(StatusCode.ERROR, reason))
        self._finish(queue_pb2.QUARANTINED)

    # ------------------------------------------------------------ messages
    def on_receive(self, message):
        if isinstance(message, messages_pb2.AttemptDue):
            self._timer = None
            if self._item.state == queue_pb2.QUEUED:
                self._attempt()
            return None
        if isinstance(message, control_pb2.QueueAction):
            return self._control(message)
        raise TypeError(f"QueueItem cannot handle {type(message).__name__}")

    def _control(self, action: control_pb2.QueueAction) -> control_pb2.QueueActionResult:
        """A postmaster's action on this item (asked by the control
        channel's queue handler, actors/queuecontrol.py)."""
        item = self._item
        result = control_pb2.QueueActionResult(queue_id=self._id, ok=True)
        if action.action in (_Action.FLUSH, _Action.RELEASE):
            if action.action == _Action.RELEASE and item.state != queue_pb2.HELD:
                return control_pb2.QueueActionResult(queue_id=self._id, error="not held")
            item.state = queue_pb2.QUEUED
            item.next_attempt_at = 0
            item.hold_reason = ""
            self._env.store.update(item)
            log.info("%s id=%s", "released" if action.action == _Action.RELEASE else "flushed", self._id)
            self._schedule(0)
        elif action.action == _Action.HOLD:
            self._cancel_timer()
            item.state = queue_pb2.HELD
            item.hold_reason = "held by the postmaster"
            self._env.store.update(item)
            log.info("held id=%s", self._id)
            self._finish(queue_pb2.HELD)
        elif action.action == _Action.DELETE:
            self._cancel_timer()
            if action.bounce:
                self._bounce_all_pending("deleted by the postmaster")
            self._env.store.remove(self._id)
            log.info("deleted id=%s bounce=%s", self._id, action.bounce)
            self._finish(queue_pb2.DONE)
        else:
            return control_pb2.QueueActionResult(queue_id=self._id, error=f"unknown action {action.action}")
        return result

    def _bounce_all_pending(self, why: str) -> None:
        """A failure DSN for every pending recipient (DELETE with bounce)."""
        item = self._item
        with self._env.tracer.start_span("queue.delete", context=extract(item.trace)) as span:
            self._env.bouncer.send(item, bounces.fail_pending(item, why), span)

    # ------------------------------------------------------------ attempts
    def _attempt(self) -> None:
        env, item = self._env, self._item
        item.attempts += 1
        with env.tracer.start_span(
            "delivery.attempt",
            context=extract(item.trace),
            kind=SpanKind.INTERNAL,
            attributes={"estafeta.queue_id": item.id, "estafeta.attempt": item.attempts},
        ) as span:
            removed, decided = self._deliver_all(span)
            item.crash_streak = 0
            self._after_attempt(span, removed, decided)

    def _deliver_all(self, span) -> tuple[bool, dict[int, bool]]:
        """Ask the couriers for every pending recipient, each route and
        destination in one Deliver, all at once; record each result.
        Returns (a courier removed the item's files with its delivery,
        {index: relayed without DSN} of the recipients decided now)."""
        env, item = self._env, self._item
        rcpts = item.recipients
        if len(rcpts) == 1 and rcpts[0].status == queue_pb2.PENDING:  # the common case, without the grouping
            groups = [(router.route(rcpts[0], env.routes), [0])]
        else:
            pending = [(i, r) for i, r in enumerate(rcpts) if r.status == queue_pb2.PENDING]
            groups = router.group(pending, env.routes)
        check_existing = not self._fresh or item.attempts > 1
        self._fresh = False
        parent = inject(span)
        # A DSN still owed (a recipient failed before delivery, e.g. an alias
        # target naming nobody) needs the body after the deliveries: no
        # courier may remove the files with its delivery then.
        only = len(groups) == 1 and not any(r.dsn_due for r in item.recipients)
        requests = [self._request(key, indices, check_existing, parent, only) for key, indices in groups]
        if len(requests) == 1:
            results = [self._ask_courier(requests[0])]
        else:
            jobs = [gevent.spawn(self._ask_courier, r) for r in requests]
            gevent.joinall(jobs)
            results = [job.get() for job in jobs]
        self._warn_possible_duplicates(requests)
        removed = False
        decided: dict[int, bool] = {}
        now = time.time()
        for request, result in zip(requests, results, strict=True):
            removed = removed or result.item_removed
            route = KIND_NAMES.get(request.route.kind, "?")
            for r in result.results:
                rcpt = item.recipients[r.index]
                if self._record(rcpt, r, now):
                    decided[r.index] = r.relayed_without_dsn
                outcome = "delivered" if r.outcome == DELIVERED else "bounced" if r.outcome == PERMANENT else "deferred"
                metrics.count_delivery(route, outcome, now - item.created_at)
        return removed, decided

    def _ask_courier(self, request: messages_pb2.Deliver) -> messages_pb2.DeliveryResult:
        """One Deliver through the pool, its duration in the metrics."""
        began = time.monotonic()
        result = self._env.couriers.deliver(request)
        metrics.observe_attempt(KIND_NAMES.get(request.route.kind, "?"), time.monotonic() - began)
        return result

    def _warn_possible_duplicates(self, requests: list[messages_pb2.Deliver]) -> None:
        """Log the recipients sent again after a run that was cut between
        their final dot and its reply (store/inflight.py): the at-least-once
        duplicate RFC 5321 §6.1 leaves no way around."""
        journal = self._env.journal
        if journal is None or not journal.unsettled:
            return
        maybe = journal.maybe_delivered(self._id)
        if not maybe:
            return
        for request in requests:
            for r in request.recipients:
                if r.index in maybe:
                    log.warning(
                        "possible duplicate id=%s to=<%s> reason=%s",
                        self._id,
                        r.address,
                        kv("sent again: an earlier run stopped after the final dot, before the reply"),
                    )

    def _request(self, key: router.RouteKey, indices: list[int], check_existing: bool, trace_ctx, only: bool):
        item = self._item
        return messages_pb2.Deliver(
            queue_id=item.id,
            route=key.to_proto(),
            recipients=[
                messages_pb2.DeliverRecipient(
                    index=i,
                    address=item.recipients[i].address,
                    mailbox=item.recipients[i].mailbox,
                    notify=item.recipients[i].notify,
                    original_recipient=item.recipients[i].original_recipient,
                    pipe_command=item.recipients[i].pipe_command,
                    folder=item.recipients[i].folder,
                )
                for i in indices
            ],
            # Recipients an alias forwards off-site have their own (SRS)
            # reverse-path; router.group never mixes them with others.
            reverse_path=item.recipients[indices[0]].reverse_path or item.reverse_path,
            created_at=item.created_at,
            body_size=item.body_size,
            smtputf8=item.smtputf8,
            body_type=item.body_type,
            dsn_ret=item.dsn_ret,
            dsn_envid=item.dsn_envid,
            check_existing=check_existing,
            # This delivery holds every pending recipient: if they all
            # succeed, nothing is left to do but remove the files (unless a
            # success DSN is owed first).
            finishes_item=only
            and key.kind == router.MAILDIR
            and not any(bounces.wants(item.recipients[i].notify, bounces.DELIVERED) for i in indices),
            attempt=item.attempts,
            trace=trace_ctx,
        )

    def _record(self, rcpt: queue_pb2.Recipient, result: messages_pb2.RecipientResult, now: float) -> bool:
        """Apply one recipient's result: DELIVERED / FAILED (permanent) or
        still PENDING with its last error. True if it is decided now."""
        r = result.reply
        text = f"{r.code} {r.enhanced} {r.text}".strip()
        rcpt.attempts += 1
        rcpt.last_attempt_at = now
        rcpt.last_detail = result.detail
        if result.outcome == DELIVERED:
            rcpt.status, rcpt.done_at = queue_pb2.DELIVERED, now
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "delivered id=%s to=<%s> via=%s reply=%s", self._id, rcpt.address, result.detail or "-", kv(text)
                )
            return True
        if result.outcome == PERMANENT:
            rcpt.status, rcpt.done_at, rcpt.last_error = queue_pb2.FAILED, now, text
            log.warning("failed id=%s to=<%s> via=%s reply=%s", self._id, rcpt.address, result.detail or "-", kv(text))
            return True
        rcpt.last_error = text
        return False

    def _after_attempt(self, span, removed: bool, decided: dict[int, bool]) -> None:
        """DSNs due, then the item's next state: done (files removed) or
        written with its next attempt time."""
        env, item = self._env, self._item
        now = time.time()
        pending = [r for r in item.recipients if r.status == queue_pb2.PENDING]
        if pending and now - item.created_at >= env.retry.give_up_after_seconds:
            for i, r in enumerate(item.recipients):
                if r.status == queue_pb2.PENDING:
                    r.status, r.done_at = queue_pb2.FAILED, now
                    r.last_error = f"{r.last_error or '451 4.4.7'} (gave up after {_days(now - item.created_at)})"
                    log.warning("failed id=%s to=<%s> error=%s", item.id, r.address, kv("gave up: " + r.last_error))
                    decided[i] = False
            pending = []
        if self._dsns_due(decided) and not removed:
            env.store.update(item)  # the outcomes first: a crash now re-sends a DSN, never re-delivers
        self._send_dsns(span, pending, now)
        if not pending:
            if not removed:
                env.store.remove(item.id)
            self._settled()
            bounced = any(r.status == queue_pb2.FAILED for r in item.recipients)
            span.set_attribute("estafeta.outcome", "bounced" if bounced else "delivered")
            self._finish(queue_pb2.DONE)
            return
        delay = next_delay(env.retry, item.attempts)
        item.next_attempt_at = now + delay
        item.last_error = "; ".join(f"<{r.address}>: {r.last_error}" for r in pending)[:1000]
        env.store.update(item)
        self._settled()
        span.set_status(Status(StatusCode.ERROR, item.last_error))
        span.set_attribute("estafeta.outcome", "deferred")
        span.set_attribute("estafeta.next_attempt_in_s", round(delay, 3))
        for r in pending:
            log.info("deferred id=%s to=<%s> error=%s next_in=%.1fs", item.id, r.address, kv(r.last_error), delay)
        self._schedule(delay)

    def _settled(self) -> None:
        """The item's file records this attempt's outcome: its remote
        transactions are no longer in flight (store/inflight.py)."""
        if self._env.journal is not None:
            self._env.journal.settled(self._id)

    def _dsns_due(self, decided: dict[int, bool]) -> bool:
        """Mark the recipients decided now whose NOTIFY asks for a DSN
        (Recipient.dsn_due: failed, delivered — our final delivery — or
        relayed to a server without DSN). True if any is owed now."""
        due = False
        for i, relayed in decided.items():
            r = self._item.recipients[i]
            if r.status == queue_pb2.FAILED:
                action = bounces.FAILED
            else:
                action = bounces.RELAYED if relayed else bounces.DELIVERED
            if bounces.wants(r.notify, action):
                r.dsn_due, due = action, True
        return due

    def _send_dsns(self, span, pending: list[queue_pb2.Recipient], now: float) -> None:
        """Queue the DSNs owed (actors/bounces.py): one for the failures,
        one for the successes, each recipient's dsn_due cleared once its DSN
        is queued; and the one delay warning. A crash before the item is
        written again sends a DSN twice, never none."""
        env, item = self._env, self._item
        warn_after = env.retry.delay_warning_seconds
        if not (pending and warn_after > 0) and not any(r.dsn_due for r in item.recipients):
            return  # nothing owed (nearly always)
        failed, succeeded = [], []
        for r in item.recipients:
            if r.dsn_due == bounces.FAILED:
                failed.append(Report(r, bounces.FAILED, bounces.reply_of(r.last_error, 550, "5.0.0"), r.last_detail))
            elif r.dsn_due:
                ok = common_pb2.Reply(code=250, enhanced="2.0.0", text="delivered")
                succeeded.append(Report(r, r.dsn_due, ok, r.last_detail))
        for reports in (failed, succeeded):
            if reports:
                env.bouncer.send(item, reports, span)
                for report in reports:
                    report.recipient.dsn_due = ""
        if pending and warn_after > 0 and not item.delay_dsn_sent_at and now - item.created_at >= warn_after:
            until = item.created_at + env.retry.give_up_after_seconds
            delayed = [
                Report(r, bounces.DELAYED, bounces.reply_of(r.last_error, 451, "4.0.0"), r.last_detail, until)
                for r in pending
                if bounces.wants(r.notify, bounces.DELAYED)
            ]
            env.bouncer.send(item, delayed, span)
            item.delay_dsn_sent_at = now


def _days(seconds: float) -> str:
    """A give-up age for humans: "5 days", "2.5 hours"."""
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} days"
    return f"{seconds / 3600:.3g} hours"
