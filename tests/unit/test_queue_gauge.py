"""actors/queue.py QueueGauge: the queue's counts, summed over serving
processes through shared memory."""

import os

from estafeta.actors.queue import QueueGauge


def test_private_gauge_admits_until_a_limit():
    g = QueueGauge(max_items=3, max_bytes=1000)
    assert g.admits(0) and g.admits(1000) and not g.admits(1001)
    g.publish(2, 900)
    assert g.totals() == (2, 900)
    assert g.admits(100) and not g.admits(101)
    g.publish(3, 0)
    assert not g.admits(0)  # RFC 3463 4.3.1: the item count is reached


def test_shared_gauge_sums_every_process_slot():
    fd = QueueGauge.shared_memory()
    try:
        p0 = QueueGauge(4, 10_000, slot=0, memfd=fd)
        # another process maps the same memfd (here: another mapping of it)
        p1 = QueueGauge(4, 10_000, slot=1, memfd=os.dup(fd))
        p0.publish(1, 100)
        p1.publish(2, 300)
        assert p0.totals() == p1.totals() == (3, 400)
        assert p0.admits(0) and p1.admits(9_600) and not p1.admits(9_601)
        p1.publish(3, 300)  # 4 items over both processes: full for everyone
        assert not p0.admits(0) and not p1.admits(0)
        p1.publish(0, 0)  # its items left the queue
        assert p0.admits(0) and p0.totals() == (1, 100)
    finally:
        os.close(fd)
