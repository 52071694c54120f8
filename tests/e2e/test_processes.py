"""Several serving processes (Config.processes): they share the port and
the data directory, each delivers what it accepted, a dead one is started
again without losing its queue, and none outlives the daemon."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from e2e_harness import alive_pids, descendants, make_message

pytestmark = pytest.mark.slow

_STARTED = re.compile(r"process started number=(\d+)/(\d+) pid=(\d+)")


def _serving_pids(d) -> dict[int, int]:
    """{process number: pid} of the children the daemon started (last start wins)."""
    out = {}
    for m in _STARTED.finditer(d.log_text()):
        out[int(m.group(1))] = int(m.group(3))
    return out


def test_processes_share_the_port_and_each_delivers_its_own(daemon_factory):
    d = daemon_factory(processes=3)
    assert d.wait_log(r"started .*process=0/3")
    for n in (1, 2):
        d.wait_log(rf"started .*process={n}/3")
    for i in range(60):
        assert d.send("sender@client.test", ["spread@localhost"], make_message(marker=f"spread-{i}")) == {}
    d.wait_delivered("localhost", "spread", 60)
    d.wait_queue_empty()
    queued = re.findall(r"queued id=([0-9a-f]{22})", d.log_text())
    assert len(queued) == 60
    # The id's 17th hex digit names the process that accepted it; the
    # kernel spread 60 connections over the three listeners.
    by_process = {int(q[16], 16) for q in queued}
    assert len(by_process) >= 2, by_process
    assert d.stop() == 0
    assert d.events("stopped")[-3:] and len([l for l in d.events("stopped") if "process=" in l]) == 3


def test_a_killed_serving_process_is_restarted_and_keeps_its_queue(daemon_factory):
    d = daemon_factory(start=False, processes=2, retry="{ initial_seconds: 0.2 max_seconds: 0.5 }")
    blocker = d.block_mailbox("localhost", "held")
    d.start()
    d.wait_log(r"started .*process=1/2")
    # Queue mail in both processes until process 1 holds some.
    for i in range(40):
        d.send("sender@client.test", ["held@localhost"], make_message(marker=f"held-{i}"))
        if any(q[16] == "1" for q in d.queued_ids()):
            break
    held = [q for q in d.queued_ids() if q[16] == "1"]
    assert held, "no message landed in process 1"
    first = _serving_pids(d)[1]
    worker = descendants(first)
    os.kill(first, signal.SIGKILL)
    m = d.wait_log(r"restart sup=processes child=process\.1 .*ServingProcessExit", timeout=20)
    assert m
    deadline = time.monotonic() + 20
    while (_serving_pids(d).get(1) in (None, first)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serving_pids(d)[1] != first
    deadline = time.monotonic() + 5
    while alive_pids(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive_pids(worker), "the dead process's disk worker lives on"
    # Its queued items are still there, and the new process 1 delivers them.
    assert set(held) <= set(d.queued_ids())
    blocker.unlink()
    total = len(set(q for q in re.findall(r"queued id=([0-9a-f]{22})", d.log_text())))
    d.wait_delivered("localhost", "held", total, timeout=60)
    d.wait_queue_empty(timeout=60)
    assert d.stop() == 0


def test_sigterm_stops_every_process_and_none_is_left(daemon_factory):
    d = daemon_factory(processes=2)
    d.wait_log(r"started .*process=1/2")
    children = descendants(d.pid)
    assert len(children) >= 3  # process 1 and two disk workers
    assert d.send("sender@client.test", ["last@localhost"], make_message()) == {}
    assert d.stop() == 0
    deadline = time.monotonic() + 10
    while alive_pids(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive_pids(children)
    assert "Traceback" not in d.log_text()
