"""QueueManager and QueueItem actors: the queue as a state machine on disk.

QueueManager (permanent, registered as "queue"):
- on start, lists the queue directory and starts one QueueItem per item
  file (the daemon cleaned it of temp files and orphan bodies before the
  tree started: that clean-up is only safe while nothing writes, and this
  actor may be restarted while sessions are putting messages);
- publishes its counts in a QueueGauge that sessions read at MAIL FROM
  (back-pressure: 452 4.3.1 once max_queue_items or max_queue_bytes is
  reached — RFC 3463 §3.4 "mail system full");
- on `Enqueued` (told by a session once the item is durable) starts the
  item's QueueItem under the items supervisor ("queue.items");
- on `ItemFinished` updates its counters;
- every Config.queue_sweep_seconds, starts items found on disk that have
  no actor: one released from quarantine (`estafeta queue release` rewrote
  its file), or one whose `Enqueued` was lost when the manager crashed.

One actor per item, never two: the manager remembers what it started and
when; an item it started less than START_GRACE seconds ago counts as
running even before its actor has registered its name, so a sweep that
listed the directory just after a put cannot start a second actor beside
the one the item's `Enqueued` starts (nor the other way round).

QueueItem (transient, one per message): see actors/item.py.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import time

import gevent

from estafeta.proto import common_pb2, messages_pb2, queue_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.queue import QueueStore, process_of
from estafeta.supervisor import registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import MAX_PROCESSES
from estafeta.supervisor.tree import start_child

log = logging.getLogger("estafeta.queue")

#: Seconds between sweeps of the queue directory for items without actor
#: (Config.queue_sweep_seconds's default).
SWEEP_SECONDS = 30.0
#: An item this manager started less than this many seconds ago is taken
#: to be running (its actor registers "item.<id>" within milliseconds).
START_GRACE = 10.0

QUEUE_FULL = common_pb2.Reply(code=452, enhanced="4.3.1", text="Insufficient system storage, try again later")


class QueueGauge:
    """How full the queue is, as the QueueManagers count it, published for
    sessions to read at MAIL FROM (like an ETS table: each count has one
    writer, its process's QueueManager; readers see whole values).

    One slot (items, body bytes) per serving process (Config.processes),
    in a shared memory segment (`memfd`: a memfd_create(2) file descriptor
    the daemon hands to the other processes; None: private memory, one
    process). `admits()` compares the sums with `max_items` / `max_bytes`,
    the config's totals, so the limits hold over all processes. Reading it
    instead of asking the manager saves an actor round trip per message;
    the check is as exact as the ask was (the counts as of the last
    Enqueued/ItemFinished each manager handled).
    """

    SLOTS = MAX_PROCESSES  # one per serving process
    _SLOT = struct.Struct("<QQ")
    _ALL = struct.Struct(f"<{2 * SLOTS}Q")

    def __init__(self, max_items: int, max_bytes: int, slot: int = 0, memfd: int | None = None):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.slot = slot
        size = self._ALL.size
        if memfd is None:
            self._mem: bytearray | mmap.mmap = bytearray(size)
        else:
            if os.fstat(memfd).st_size < size:
                os.ftruncate(memfd, size)
            self._mem = mmap.mmap(memfd, size)

    @staticmethod
    def shared_memory() -> int:
        """A new memfd for a gauge shared by several processes (inheritable
        by children started with pass_fds). Raises OSError."""
        fd = os.memfd_create("estafeta-queue-gauge", 0)
        os.ftruncate(fd, QueueGauge._ALL.size)
        return fd

    def publish(self, items: int, body_bytes: int) -> None:
        """This process's counts (its QueueManager only)."""
        self._SLOT.pack_into(self._mem, self._SLOT.size * self.slot, items, body_bytes)

    def totals(self) -> tuple[int, int]:
        """(items, body bytes) over all processes."""
        v = self._ALL.unpack_from(self._mem)
        return sum(v[0::2]), sum(v[1::2])

    def admits(self, size: int) -> bool:
        """May a message of `size` bytes (0: unknown) be accepted now?
        RFC 3463 §3.4: when not, the reply is 452 4.3.1 (QUEUE_FULL)."""
        items, body_bytes = self.totals()
        return items < self.max_items and body_bytes + size <= self.max_bytes


class QueueManager(Actor):
    """Owns the queue's counters and starts QueueItem actors."""

    def __init__(
        self,
        link: Link | None,
        store: QueueStore,
        gauge: QueueGauge,
        processes: int = 1,
        sweep_seconds: float = SWEEP_SECONDS,
    ):
        """`gauge`: where the counts are published (QueueGauge); its
        max_items / max_bytes are the back-pressure limits. `processes`:
        how many serving processes share the queue directory; this manager
        runs only the items of its store's process (store.queue.process_of)."""
        super().__init__(link)
        self._store = store
        self._gauge = gauge
        self._processes = processes
        #: queue id -> body size, for every item on disk not known finished.
        self._items: dict[str, int] = {}
        #: ids that are quarantined or unreadable: on disk, not started;
        #: with their file's (inode, mtime) then: a release rewrites it.
        self._held: dict[str, tuple[int, int] | None] = {}
        #: ids this manager started -> time.monotonic() of the start.
        self._started: dict[str, float] = {}
        self._bytes = 0
        self._sweep_seconds = sweep_seconds
        self._sweeper: gevent.Greenlet | None = None

    # ------------------------------------------------------------ start-up
    def on_start(self) -> None:
        ids = self._own(self._store.list_ids())
        for queue_id in ids:
            self._items[queue_id] = self._body_size(queue_id)
        self._bytes = sum(self._items.values())
        self._publish()
        if ids:
            log.info("loaded %d queued items (%d bytes)", len(ids), self._bytes)
        self.actor_ref.tell(messages_pb2.AttemptDue())  # start them, once the items supervisor is up
        self._sweeper = gevent.spawn(self._sweep_timer)

    def _own(self, ids: list[str]) -> list[str]:
        """The ids among `ids` that this process delivers."""
        if self._processes <= 1:
            return ids
        me, n = self._store.process, self._processes
        return [i for i in ids if process_of(i, n) == me]

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
            gevent.sleep(self._sweep_seconds)
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
        is right even after the items supervisor was restarted on its own;
        one this manager started within START_GRACE counts as running too.
        A held (quarantined) item is started again once its file changed.
        """
        sup = self._items_sup()
        known = set(self._items)  # before listing: an item enqueued meanwhile is not "gone"
        on_disk = set(self._own(run_blocking(self._store.list_ids)))
        for queue_id in sorted(on_disk):
            if queue_id in self._held:
                if self._signature(queue_id) == self._held[queue_id]:
                    continue
                del self._held[queue_id]  # rewritten: released, or repaired
            if self._has_actor(queue_id):
                continue
            if queue_id not in self._items:
                self._items[queue_id] = self._body_size(queue_id)
                self._bytes += self._items[queue_id]
            self._start_item(sup, messages_pb2.QueueItemArgs(queue_id=queue_id))
        for gone in known - on_disk:
            self._bytes -= self._items.pop(gone, 0)
            self._held.pop(gone, None)
            self._started.pop(gone, None)
        self._publish()

    def _has_actor(self, queue_id: str) -> bool:
        if registry.is_alive(f"item.{queue_id}"):
            return True
        since = self._started.get(queue_id)
        return since is not None and time.monotonic() - since < START_GRACE

    def _start_item(self, sup, args: messages_pb2.QueueItemArgs) -> None:
        self._started[args.queue_id] = time.monotonic()
        start_child(sup, args)

    def _signature(self, queue_id: str) -> tuple[int, int] | None:
        """(inode, mtime ns) of the item file, None if unreadable."""
        try:
            st = os.stat(self._store.item_path(queue_id))
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _publish(self) -> None:
        self._gauge.publish(len(self._items), self._bytes)

    # ------------------------------------------------------------ messages
    def on_receive(self, message):
        if isinstance(message, messages_pb2.Enqueued):
            return self._enqueued(message)
        if isinstance(message, messages_pb2.ItemFinished):
            return self._finished(message)
        if isinstance(message, messages_pb2.AttemptDue):
            return self._start_all()
        raise TypeError(f"QueueManager cannot handle {type(message).__name__}")

    def _enqueued(self, m: messages_pb2.Enqueued) -> None:
        item = m.item
        if item.id not in self._items:
            self._items[item.id] = item.body_size
            self._bytes += item.body_size
            self._publish()
        if self._has_actor(item.id):
            return  # a sweep found its files first and started it
        self._start_item(
            registry.whereis("queue.items"), messages_pb2.QueueItemArgs(queue_id=item.id, item=item, trace=m.trace)
        )

    def _finished(self, m: messages_pb2.ItemFinished) -> None:
        self._started.pop(m.queue_id, None)
        if m.state == queue_pb2.DONE:
            size = self._items.pop(m.queue_id, None)
            if size is not None:
                self._bytes -= size
                self._publish()
            self._held.pop(m.queue_id, None)
        else:  # QUARANTINED or unreadable: stays on disk, not restarted until its file changes
            self._held[m.queue_id] = self._signature(m.queue_id)
