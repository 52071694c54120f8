"""actors/couriers/pool.py: a free courier per delivery, the per-destination
connection limit, and temporary failures when a courier fails."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from estafeta.actors.couriers.pool import CourierPool
from estafeta.proto import messages_pb2

SMTP, MAILDIR = messages_pb2.Route.SMTP, messages_pb2.Route.MAILDIR
DELIVERED, TEMPORARY = messages_pb2.OUTCOME_DELIVERED, messages_pb2.OUTCOME_TEMPORARY_FAILURE


class FakeCourier:
    """Answers every Deliver with DELIVERED after `gate` opens (or raises)."""

    def __init__(self, name: str, log: list, gate: gevent.event.Event, fail: Exception | None = None):
        self.name, self.log, self.gate, self.fail = name, log, gate, fail

    def ask(self, request, timeout=None):
        self.log.append(("start", self.name, request.queue_id))
        if not self.gate.wait(5):
            raise TimeoutError("no answer")
        if self.fail:
            raise self.fail
        self.log.append(("end", self.name, request.queue_id))
        return messages_pb2.DeliveryResult(
            results=[messages_pb2.RecipientResult(index=r.index, outcome=DELIVERED) for r in request.recipients]
        )


def request(queue_id: str, destination: str = "example.net", kind=SMTP) -> messages_pb2.Deliver:
    return messages_pb2.Deliver(
        queue_id=queue_id,
        route=messages_pb2.Route(kind=kind, destination=destination),
        recipients=[messages_pb2.DeliverRecipient(index=0, address="a@" + destination)],
    )


@pytest.fixture
def world():
    log: list = []
    gate = gevent.event.Event()
    couriers = {f"courier.smtp.{i}": FakeCourier(f"courier.smtp.{i}", log, gate) for i in range(3)}
    couriers["courier.maildir.0"] = FakeCourier("courier.maildir.0", log, gate)
    return log, gate, couriers


def test_deliveries_take_free_couriers_and_respect_the_destination_limit(world):
    log, gate, couriers = world
    pool = CourierPool({SMTP: 3, MAILDIR: 1}, per_destination=2, timeouts={SMTP: 5}, whereis=couriers.__getitem__)
    jobs = [gevent.spawn(pool.deliver, request(f"q{i}")) for i in range(3)]
    other = gevent.spawn(pool.deliver, request("r0", "example.org"))
    gevent.sleep(0.05)
    started = [e for e in log if e[0] == "start"]
    # two to example.net (its limit), the third waits; example.org is not held up
    assert sorted(e[2] for e in started) == ["q0", "q1", "r0"]
    assert len({e[1] for e in started}) == 3  # three different couriers, each busy with one
    gate.set()
    gevent.joinall([*jobs, other], timeout=5)
    assert all(j.value.results[0].outcome == DELIVERED for j in [*jobs, other])
    assert pool._slots == {}  # noqa: SLF001 - idle destinations are forgotten


def test_a_failing_or_missing_courier_fails_the_delivery_temporarily(world):
    log, gate, couriers = world
    couriers["courier.smtp.0"].fail = RuntimeError("crashed")
    gate.set()
    pool = CourierPool({SMTP: 1}, per_destination=1, timeouts={SMTP: 5}, whereis=couriers.__getitem__)
    result = pool.deliver(request("q0"))
    assert result.results[0].outcome == TEMPORARY and result.results[0].reply.code == 451
    assert "crashed" in result.results[0].reply.text
    # the courier went back to the pool: the next delivery gets it again
    couriers["courier.smtp.0"].fail = None
    assert pool.deliver(request("q1")).results[0].outcome == DELIVERED
    assert pool.deliver(request("q2", kind=messages_pb2.Route.MDA)).results[0].reply.enhanced == "4.3.5"

    def gone(name):
        raise LookupError(f"no live actor registered as {name!r}")

    pool = CourierPool({SMTP: 1}, per_destination=1, timeouts={SMTP: 5}, whereis=gone)
    assert pool.deliver(request("q3")).results[0].outcome == TEMPORARY


def test_waiting_for_a_busy_destination_is_bounded(world):
    log, gate, couriers = world
    pool = CourierPool({SMTP: 3}, per_destination=1, timeouts={SMTP: 0.2}, whereis=couriers.__getitem__)
    first = gevent.spawn(pool.deliver, request("q0"))
    gevent.sleep(0.01)
    second = pool.deliver(request("q1"))  # the slot stays taken: 4.4.5 after 0.2 s
    assert second.results[0].outcome == TEMPORARY and second.results[0].reply.enhanced == "4.4.5"
    gate.set()
    first.join(5)
