"""Pickup actor: hands the messages `estafeta sendmail` left in
<data_dir>/maildrop/ (store/maildrop.py) to the queue, as Postfix's pickup
does.

Every `poll_seconds` (Config.maildrop_poll_seconds) it lists the .drop
files, oldest first, and for each reads the message and calls
`enqueue(dropped)` — a function the application gives it, which must make
the message durable in the queue (raise to refuse it for now) — then
removes the drop's files. A message that cannot be read or that enqueue
refuses with `PermanentDropError` is set aside in maildrop/corrupt/ with an
error in the log; any other exception from enqueue leaves it for the next
look (a full queue, a disk error), logged once per drop.

Exactly once: a crash between enqueue's return and the removal hands the
message over again at the next start (as Postfix's pickup can). enqueue
gets the drop id, stable across such retries, to recognise a message it
already queued if it wants to. One Pickup per daemon (serving process 0):
two would race for the same files.

`MaildropSubmission.enqueue` is the daemon's enqueue function: a local
submission, trusted like a relay_network client (any recipient; the
submitter is the .drop file's owner). Each recipient is resolved through
the Directory (users, aliases) into queue recipients (actors/recipients.py;
an unknown local one fails at once, and the sender gets a DSN, as Postfix
bounces what its sendmail accepted), the message gets a Received field
naming the submitting user (actors/received.py local_received_header), and
the Enqueuer queues it durably in a trace of its own ("maildrop.pickup").
A full queue (the QueueGauge) leaves it in the maildrop for the next look.
"""

from __future__ import annotations

import logging
import pwd
import time
from collections.abc import Callable

import gevent
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from estafeta.actors.aliases import RecipientSet
from estafeta.actors.directory import DirectoryView
from estafeta.actors.dsn import FAILED
from estafeta.actors.enqueue import Enqueuer, Envelope
from estafeta.actors.queue import QueueGauge
from estafeta.actors.received import dates, local_received_header
from estafeta.actors.recipients import queue_recipients
from estafeta.proto import maildrop_pb2, queue_pb2
from estafeta.store import maildrop
from estafeta.store.blocking import run_blocking
from estafeta.store.queuefile import CorruptFileError
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.pickup")


class PermanentDropError(Exception):
    """Raised by an enqueue function for a message it will never take (no
    valid recipient, too big): the drop is set aside, not retried."""


class QueueFullError(Exception):
    """The queue is full (max_queue_items or max_queue_bytes): try later."""


_EMPTY_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)


class MaildropSubmission:
    """The enqueue function of the daemon's Pickup (see the module
    docstring): `directory` resolves the recipients, `enqueuer` queues,
    `gauge` says whether there is room; `hostname` is in the Received field."""

    def __init__(
        self, directory: DirectoryView, enqueuer: Enqueuer, gauge: QueueGauge, tracer: trace.Tracer, hostname: str
    ):
        self._directory = directory
        self._enqueuer = enqueuer
        self._gauge = gauge
        self._tracer = tracer
        self._hostname = hostname

    def enqueue(self, dropped: maildrop.Dropped) -> queue_pb2.QueueItem:
        """Queue one dropped message. Raises QueueFullError (retried),
        PermanentDropError (no recipient at all: set aside), OSError
        (the queue write failed: retried)."""
        env = dropped.envelope
        if not env.recipient:
            raise PermanentDropError("no recipient")
        if not self._gauge.admits(len(dropped.message)):
            raise QueueFullError("the queue is full")
        login = login_of(dropped.uid)
        recipients = self._recipients(dropped)
        queue_id = self._enqueuer.new_id()
        span = self._tracer.start_span(
            "maildrop.pickup",
            context=_EMPTY_CONTEXT,
            kind=SpanKind.SERVER,
            attributes={
                "smtp.mail_from": env.reverse_path,
                "smtp.rcpt_to": list(env.recipient),
                "smtp.rcpt_count": len(env.recipient),
                "enduser.id": login,
                "estafeta.maildrop.id": dropped.drop_id,
                "estafeta.maildrop.uid": dropped.uid,
            },
        )
        with span:
            header = local_received_header(
                self._hostname,
                dropped.uid,
                login,
                queue_id,
                dates.now(),
                env.recipient[0] if len(env.recipient) == 1 else None,
            )
            envelope = Envelope(
                reverse_path=env.reverse_path,
                recipients=recipients,
                smtputf8=env.smtputf8,
                body_type="8BITMIME" if env.eight_bit else "",
                protocol="local",
                sign=True,  # our users' mail: DKIM-signed at enqueue
            )
            item = self._enqueuer.enqueue(queue_id, envelope, header + dropped.message, span)
            span.set_attribute("estafeta.queue_id", queue_id)
            if item.message_id:
                span.set_attribute("estafeta.message_id", item.message_id)
        log.info(
            "queued id=%s from=<%s> to=%s size=%d message_id=%s maildrop=%s",
            queue_id,
            env.reverse_path,
            ",".join(f"<{r.address}>" for r in recipients),
            item.body_size,
            kv(item.message_id or "-"),
            dropped.drop_id,
        )
        return item

    def _recipients(self, dropped: maildrop.Dropped) -> list[queue_pb2.Recipient]:
        """The queue recipients of a dropped message: each address resolved
        (a local submission may name remote addresses), each final
        recipient once; an address refused (unknown local user) FAILED at
        once with a DSN due, as sendmail already accepted it."""
        final = RecipientSet()
        recipients: list[queue_pb2.Recipient] = []
        for address in dropped.envelope.recipient:
            res = self._directory.resolve(address)
            if res.accepted:
                recipients += queue_recipients(final.add(res), address)
                continue
            recipients.append(
                queue_pb2.Recipient(
                    address=address,
                    status=queue_pb2.FAILED,
                    last_error=str(res.reply),
                    dsn_due=FAILED,
                    done_at=time.time(),
                )
            )
            log.warning("maildrop id=%s to=<%s> refused: %s", dropped.drop_id, address, res.reply)
        return recipients


def login_of(uid: int) -> str:
    """The login name of `uid`, or the number."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Pickup(Actor):
    """Moves maildrop messages into the queue through `enqueue`."""

    def __init__(
        self,
        link: Link | None,
        data_dir: str,
        enqueue: Callable[[maildrop.Dropped], None],
        poll_seconds: float = 1.0,
    ):
        super().__init__(link)
        self._data_dir = data_dir
        self._enqueue = enqueue
        self._poll_seconds = poll_seconds
        self._timer: gevent.Greenlet | None = None
        self._failing: set[str] = set()  # drops whose enqueue failed (logged once)

    def on_start(self) -> None:
        run_blocking(maildrop.ensure, self._data_dir)
        removed = run_blocking(maildrop.clean, self._data_dir)
        if removed:
            log.info("maildrop cleaned removed=%d", removed)
        self._timer = gevent.spawn(self._tick)
        self.actor_ref.tell(maildrop_pb2.PickupDue())  # at once: mail dropped while the daemon was down

    def on_stop(self) -> None:
        self._stop_timer()

    def on_failure(self, *exc_info) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None

    def _tick(self) -> None:
        ref = self.actor_ref
        while True:
            gevent.sleep(self._poll_seconds)
            ref.tell(maildrop_pb2.PickupDue())

    def on_receive(self, message):
        if isinstance(message, maildrop_pb2.PickupDue):
            self.pick_up()
            return None
        raise TypeError(f"Pickup cannot handle {type(message).__name__}")

    def pick_up(self) -> int:
        """Hand over every message in the maildrop now; returns how many."""
        done = 0
        for drop_id in run_blocking(maildrop.pending, self._data_dir):
            try:
                dropped = run_blocking(maildrop.read, self._data_dir, drop_id)
            except FileNotFoundError:
                continue  # taken meanwhile (or its .msg is gone: clean() ages it out)
            except (CorruptFileError, OSError) as e:
                self._set_aside(drop_id, f"unreadable: {e}")
                continue
            if dropped.envelope.uid != dropped.uid:
                log.warning(
                    "maildrop id=%s claims uid=%d but is owned by uid=%d: the owner is the submitter",
                    drop_id,
                    dropped.envelope.uid,
                    dropped.uid,
                )
            try:
                self._enqueue(dropped)
            except PermanentDropError as e:
                self._set_aside(drop_id, f"refused: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - retried at the next look
                if drop_id not in self._failing:
                    self._failing.add(drop_id)
                    log.error("maildrop id=%s not queued yet: %s", drop_id, e)
                continue
            self._failing.discard(drop_id)
            run_blocking(maildrop.remove, self._data_dir, drop_id)
            log.info(
                "picked up id=%s uid=%d user=%s from=<%s> to=%s size=%d",
                drop_id,
                dropped.uid,
                login_of(dropped.uid),
                dropped.envelope.reverse_path,
                ",".join(f"<{r}>" for r in dropped.envelope.recipient),
                len(dropped.message),
            )
            done += 1
        return done

    def _set_aside(self, drop_id: str, why: str) -> None:
        where = run_blocking(maildrop.set_aside, self._data_dir, drop_id)
        log.error("maildrop id=%s set aside in %s: %s", drop_id, where, why)
