"""CourierPool: which courier takes a delivery, and how many at once.

Each route kind has a fixed set of courier actors (registered
`courier_name(kind, n)`, children of the couriers supervisor). A
delivery takes a free one — not one by hash: a slow remote server holds
only its own courier, never the items queued behind it — and gives it back
when answered. Outbound connections are bounded per destination (a
domain's MX hosts, a smarthost, an LMTP server): Config.outbound
.max_connections_per_destination, a total over every serving process,
shared evenly; the total over all destinations is the number of SMTP
couriers. Waiting for a courier or a slot is bounded in time.

A courier that crashes or does not answer in time fails the delivery
temporarily for each of its recipients (451 4.3.0), so the item retries
later; the courier supervisor restarts the courier meanwhile.

Shared by the QueueItems of one serving process (greenlets of one hub:
no locks needed beyond gevent's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.lock
import gevent.queue

from estafeta.actors.couriers import courier_name
from estafeta.proto import common_pb2, messages_pb2
from estafeta.supervisor import registry

log = logging.getLogger("estafeta.courier")

#: Route kinds whose deliveries hold a connection to their destination.
_CONNECTING = (messages_pb2.Route.SMTP, messages_pb2.Route.LMTP)


def temporary_results(
    request: messages_pb2.Deliver, code: int, enhanced: str, text: str
) -> messages_pb2.DeliveryResult:
    """A DeliveryResult failing every recipient of `request` temporarily
    with one reply (a crashed or unreachable courier)."""
    reply = common_pb2.Reply(code=code, enhanced=enhanced, text=text)
    return messages_pb2.DeliveryResult(
        results=[
            messages_pb2.RecipientResult(index=r.index, outcome=messages_pb2.OUTCOME_TEMPORARY_FAILURE, reply=reply)
            for r in request.recipients
        ]
    )


class CourierPool:
    """The couriers of one serving process: `deliver(request)` asks a free
    courier of the request's route kind and returns its DeliveryResult.

    sizes: Route.Kind -> how many couriers of that kind run (names
    courier_name(kind, 0..n-1)); per_destination: connections at once to
    one destination (SMTP, LMTP); timeouts: Route.Kind -> seconds to wait
    for the courier's answer (the SMTP courier keeps its own per-command
    timeouts, RFC 5321 §4.5.3.2; this bounds a courier that hangs).
    `whereis` finds a registered actor (tests give their own).
    """

    def __init__(
        self,
        sizes: dict[int, int],
        per_destination: int,
        timeouts: dict[int, float],
        whereis: Callable = registry.whereis,
    ):
        self._free: dict[int, gevent.queue.Queue] = {}
        #: kind -> the registered names of its couriers, by number.
        self._names: dict[int, list[str]] = {}
        for kind, n in sizes.items():
            q: gevent.queue.Queue = gevent.queue.Queue()
            for i in range(n):
                q.put(i)
            self._free[kind] = q
            self._names[kind] = [courier_name(kind, i) for i in range(n)]
        self._per_destination = max(1, per_destination)
        self._slots: dict[tuple[int, str], gevent.lock.BoundedSemaphore] = {}
        self._timeouts = timeouts
        self._whereis = whereis

    def deliver(self, request: messages_pb2.Deliver) -> messages_pb2.DeliveryResult:
        """Deliver through a free courier of request.route.kind; never
        raises: a courier that cannot be had, crashes or times out gives
        a temporary failure for every recipient."""
        kind = request.route.kind
        timeout = self._timeouts.get(kind, 120.0)
        free = self._free.get(kind)
        if free is None:
            return temporary_results(request, 451, "4.3.5", f"no courier for route kind {kind}")
        slot = self._slot(kind, request.route.destination) if kind in _CONNECTING else None
        if slot is not None and not slot.acquire(timeout=timeout):
            return temporary_results(request, 451, "4.4.5", "too many connections to the destination, try again later")
        try:
            return self._ask(free, kind, request, timeout)
        finally:
            if slot is not None:
                slot.release()
                self._forget_idle(kind, request.route.destination, slot)

    def _ask(self, free: gevent.queue.Queue, kind: int, request, timeout: float) -> messages_pb2.DeliveryResult:
        try:
            n = free.get(timeout=timeout)
        except gevent.queue.Empty:
            return temporary_results(request, 451, "4.4.5", "all couriers busy, try again later")
        name = self._names[kind][n]
        try:
            courier = self._whereis(name)
            return courier.ask(request, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - restarting, crashed or timed out: retried later
            log.warning("courier %s failed id=%s error=%s: %s", name, request.queue_id, type(e).__name__, e)
            return temporary_results(request, 451, "4.3.0", f"courier failed: {type(e).__name__}: {e}")
        finally:
            free.put(n)

    def _slot(self, kind: int, destination: str) -> gevent.lock.BoundedSemaphore:
        key = (kind, destination)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = gevent.lock.BoundedSemaphore(self._per_destination)
        return slot

    def _forget_idle(self, kind: int, destination: str, slot: gevent.lock.BoundedSemaphore) -> None:
        """Drop a destination's semaphore once nobody holds or waits for it,
        so the table does not grow with every domain ever delivered to."""
        if slot.counter == self._per_destination and not slot.linkcount():
            self._slots.pop((kind, destination), None)
