"""QueueManager and QueueItem actors: the queue as a state machine on disk.

QueueManager (permanent, registered as "queue"):
- on start, lists the queue directory and starts one QueueItem per item
  file (the daemon cleaned it of temp files and orphan bodies before the
  tree started: that clean-up is only safe while nothing writes, and this
  actor may be restarted while sessions are putting messages);
- publishes its counts in a QueueGauge that sessions read at MAIL FROM
  (back-pressure: 452 4.3.1 once max_queue_items or max_queue_bytes is
  reached — RFC 3463 §3.4 "mail system full"), and answers `Admit` asks
  with the same decision;
- on `Enqueued` (told by a session once the item is durable) starts the
  item's QueueItem under the items supervisor ("queue.items");
- on `ItemFinished` updates its counters;
- every SWEEP_SECONDS, starts items found on disk that have no actor
  (one released from quarantine, or one whose `Enqueued` was lost when the
  manager crashed).

QueueItem (transient, one per message): see actors/item.py.
"""
from __future__ import annotations

import logging
import os

import gevent

from estafeta.proto import common_pb2, messages_pb2, queue_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.queue import QueueStore
from estafeta.supervisor import registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.tree import start_child

log = logging.getLogger("estafeta.queue")

#: Seconds between sweeps of the queue directory for items without actor.
SWEEP_SECONDS = 30.0

QUEUE_FULL = common_pb2.Reply(code=452, enhanced="4.3.1", text="Insufficient system storage, try again later")


class QueueGauge:
    """How full the queue is, as the QueueManager counts it, published for
    sessions to read at MAIL FROM (like an ETS table with one writer: only
    the manager writes it; readers on the same hub see whole values).

    `items` (count) and `bytes` (body bytes) of every item on disk not yet
    finished; `max_items` / `max_bytes` from the config. Reading it instead
    of asking the manager saves an actor round trip per message; the check
    is as exact as the ask was (both see the counts as of the last
    Enqueued/ItemFinished the manager handled).
    """

    __slots__ = ("items", "bytes", "max_items", "max_bytes")

    def __init__(self, max_items: int, max_bytes: int):
        self.items = 0
        self.bytes = 0
        self.max_items = max_items
        self.max_bytes = max_bytes

    def admits(self, size: int) -> bool:
        """May a message of `size` bytes (0: unknown) be accepted now?
        RFC 3463 §3.4: when not, the reply is 452 4.3.1 (QUEUE_FULL)."""
        return self.items < self.max_items and self.bytes + size <= self.max_bytes


class QueueManager(Actor):
    """Owns the queue's counters and starts QueueItem actors."""

    def __init__(self, link: Link | None, store: QueueStore, gauge: QueueGauge):
        """`gauge`: where the counts are published (QueueGauge); its
        max_items / max_bytes are the back-pressure limits."""
        super().__init__(link)
        self._store = store
        self._gauge = gauge
        #: queue id -> body size, for every item on disk not known finished.
        self._items: dict[str, int] = {}
        #: ids that are quarantined or unreadable: on disk, but not started.
        self._held: set[str] = set()
        self._bytes = 0
        self._sweeper: gevent.Greenlet | None = None

    # ------------------------------------------------------------ start-up
    def on_start(self) -> None:
        ids = self._store.list_ids()
        for queue_id in ids:
            self._items[queue_id] = self._body_size(queue_id)
        self._bytes = sum(self._items.values())
        self._publish()
        if ids:
            log.info("loaded %d queued items (%d bytes)", len(ids), self._bytes)
        self.actor_ref.tell(messages_pb2.AttemptDue())  # start them, once the items supervisor is up
        self._sweeper = gevent.spawn(self._sweep_timer)

    def _body_size(self, queue_id: str) -> int:
        try:
            return os.stat(self._store.body_path(queue_id)).st_size
        except OSError:
            return 0

    def on_stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.kill(block=False)

    on_failure = lambda self, *exc: self.on_stop()  # noqa: E731

    def _sweep_timer(self) -> None:
        while True:
            gevent.sleep(SWEEP_SECONDS)
            self.actor_ref.tell(messages_pb2.AttemptDue())

    def _items_sup(self):
        """The items supervisor; started right after us (rest_for_one), so
        wait for it briefly on start-up."""
        for _ in range(200):
            try:
                return registry.whereis("queue.items")
            except registry.NotRegistered:
                gevent.sleep(0.05)
        return registry.whereis("queue.items")

    def _start_all(self) -> None:
        """Start an actor for every item on disk that has none (AttemptDue).

        Running items are registered as "item.<id>" (see QueueItem), which
        is right even after the items supervisor was restarted on its own.
        """
        sup = self._items_sup()
        on_disk = set(run_blocking(self._store.list_ids))
        for queue_id in sorted(on_disk - self._held):
            if registry.is_alive(f"item.{queue_id}"):
                continue
            if queue_id not in self._items:
                self._items[queue_id] = self._body_size(queue_id)
                self._bytes += self._items[queue_id]
            start_child(sup, messages_pb2.QueueItemArgs(queue_id=queue_id))
        for gone in set(self._items) - on_disk:
            self._bytes -= self._items.pop(gone)
            self._held.discard(gone)
        self._publish()

    def _publish(self) -> None:
        self._gauge.items = len(self._items)
        self._gauge.bytes = self._bytes

    # ------------------------------------------------------------ messages
    def on_receive(self, message):
        if isinstance(message, messages_pb2.Admit):
            return self._admit(message)
        if isinstance(message, messages_pb2.Enqueued):
            return self._enqueued(message)
        if isinstance(message, messages_pb2.ItemFinished):
            return self._finished(message)
        if isinstance(message, messages_pb2.AttemptDue):
            return self._start_all()
        raise TypeError(f"QueueManager cannot handle {type(message).__name__}")

    def _admit(self, m: messages_pb2.Admit) -> messages_pb2.AdmitReply:
        if not self._gauge.admits(m.size_bytes):
            log.warning("queue full items=%d bytes=%d: refusing new mail (452 4.3.1)", len(self._items), self._bytes)
            return messages_pb2.AdmitReply(accepted=False, reply=QUEUE_FULL)
        return messages_pb2.AdmitReply(accepted=True)

    def _enqueued(self, m: messages_pb2.Enqueued) -> None:
        item = m.item
        self._items[item.id] = item.body_size
        self._bytes += item.body_size
        self._publish()
        start_child(
            registry.whereis("queue.items"),
            messages_pb2.QueueItemArgs(queue_id=item.id, item=item, trace=m.trace),
        )

    def _finished(self, m: messages_pb2.ItemFinished) -> None:
        if m.state == queue_pb2.DONE:
            size = self._items.pop(m.queue_id, None)
            if size is not None:
                self._bytes -= size
                self._publish()
            self._held.discard(m.queue_id)
        else:  # QUARANTINED or unreadable: stays on disk, not restarted
            self._held.add(m.queue_id)
