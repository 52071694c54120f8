"""Durability and supervision under failure: SIGKILL under load, crashes
injected into actors (chaos), and a poison item that must be quarantined
without taking the queue down."""

from __future__ import annotations

import itertools
import random
import smtplib
import threading
import time

import pytest
from e2e_harness import alive_pids, assert_delivered_copy, count_markers, descendants, make_message, marker_of

pytestmark = pytest.mark.slow

#: Upper bounds of the SIGKILL test: rounds, messages, seconds of load. The
#: rounds last up to 5 x 2.3 s, and a fast machine accepts ~1,000 msg/s: the
#: message budget must outlast them, or the last rounds have no load to kill.
KILL_ROUNDS = 5
KILL_MAX_MESSAGES = 20000
#: Seconds the load may take to make progress after the last restart.
KILL_RECOVERY_SECONDS = 20
KILL_CLIENTS = 6


class Load:
    """KILL_CLIENTS client threads sending distinct numbered messages to
    load@localhost until stopped (or KILL_MAX_MESSAGES were tried); each
    number is tried once only, never resent. `acked` holds the markers that
    got 250 to DATA, `tried` every marker whose DATA was started."""

    def __init__(self, port: int):
        self.port = port
        self.acked: set[str] = set()
        self.tried: set[str] = set()
        self.sent: dict[str, bytes] = {}
        self.errors = 0
        self._numbers = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(KILL_CLIENTS)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load clients did not stop"

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, local_hostname="load.client.test", timeout=15) as s:
                    for _ in range(random.randint(1, 8)):
                        n = next(self._numbers)
                        if n >= KILL_MAX_MESSAGES or self._stop.is_set():
                            self._stop.set()
                            return
                        marker = f"k9-{n:05d}"
                        msg = make_message(marker=marker, body=f"message {n}\r\n".encode() * (1 + n % 40))
                        self.sent[marker] = msg
                        self.tried.add(marker)
                        if s.sendmail("load@client.test", ["load@localhost"], msg) == {}:
                            self.acked.add(marker)
            except (OSError, smtplib.SMTPException):
                self.errors += 1
                time.sleep(0.05)  # the daemon is down: retry with a new number


def test_sigkill_under_load_loses_nothing_and_duplicates_nothing(daemon_factory):
    """Several clients send distinct numbered messages while the daemon is
    SIGKILLed at random moments KILL_ROUNDS times and restarted on the same
    data_dir. Once the queue has drained:

    - every message that got 250 to DATA is delivered exactly once;
    - a message that did not get 250 is delivered at most once: its 250 may
      have been sent (the item was durable) and lost with the connection
      when the process died, so it may legitimately be delivered — once;
    - nothing else appears in the mailbox.
    """
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"kill -9 schedule seed={seed}")
    d = daemon_factory(retry="{ initial_seconds: 0.2 max_seconds: 1 }")
    load = Load(d.port).start()
    acked_before = []
    try:
        for _ in range(KILL_ROUNDS):
            time.sleep(rng.uniform(0.4, 2.0))
            acked_before.append(len(load.acked))
            children = descendants(d.pid)  # other serving processes, disk workers
            d.kill()
            # They die with the daemon: none may go on serving or writing.
            deadline = time.monotonic() + 5
            while alive_pids(children) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not alive_pids(children), f"outlived the daemon: {alive_pids(children)}"
            time.sleep(rng.uniform(0.0, 0.3))
            d.start()
        at_last_start = len(load.acked)  # no 250 can come while the daemon is down
        deadline = time.monotonic() + KILL_RECOVERY_SECONDS
        while len(load.acked) <= at_last_start and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        load.stop()
    # Every round made progress: the load was really running across kills.
    assert len(load.acked) > at_last_start >= acked_before[-1] > acked_before[0] > 0, (acked_before, at_last_start)
    d.wait_queue_empty(timeout=120)
    time.sleep(0.5)
    files = d.delivered("localhost", "load")
    counts = count_markers(files)
    assert set(counts) <= load.tried, sorted(set(counts) - load.tried)[:10]
    lost = sorted(m for m in load.acked if counts.get(m, 0) == 0)
    assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:10]}"
    doubled = sorted(m for m, c in counts.items() if c > 1)
    assert not doubled, f"{len(doubled)} messages delivered more than once: {doubled[:10]}"
    for f in files:
        data = f.read_bytes()
        assert_delivered_copy(data, load.sent[marker_of(data)], recipient="load@localhost")
    unacked_delivered = len(counts) - len(load.acked)
    print(
        f"kill -9 x{KILL_ROUNDS}: {len(load.tried)} tried, {len(load.acked)} acked, "
        f"{unacked_delivered} delivered without a 250 seen, {load.errors} client errors"
    )
    assert "Traceback" not in d.log_text(all_runs=True)


def _send_concurrently(d, markers: list[str], clients: int = 10) -> dict[str, bytes]:
    """Send one message per marker to chaos@localhost from `clients`
    threads; every one must get 250. Returns marker -> message."""
    sent = {m: make_message(marker=m, body=f"chaos body {m}\r\n".encode() * 10) for m in markers}
    failures = []

    def worker(part: list[str]) -> None:
        try:
            with d.smtp() as s:
                for m in part:
                    s.sendmail("chaos@client.test", ["chaos@localhost"], sent[m])
        except Exception as e:  # reported below, with the daemon log
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(markers[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]
    return sent


def _assert_supervisors_stayed_up(d, actor: str) -> None:
    """Crashes of `actor` were restarted by its own supervisor ("restart
    ... actor=<actor>" lines), and no supervisor crashed, was restarted or
    escalated (the queue supervisor never went down)."""
    restarts = d.events("restart")
    assert any(f"actor={actor}" in line for line in restarts), d.log_tail()
    assert not [line for line in restarts if "actor=Supervisor" in line], d.log_tail()
    assert not [line for line in d.events("crash") if "actor=Supervisor" in line], d.log_tail()
    assert not d.events("escalate"), d.log_tail()
    log = d.log_text()
    assert "gave up" not in log and "Traceback" not in log, d.log_tail()


@pytest.mark.parametrize("actor", ["QueueItem", "LocalCourier"])
def test_chaos_crashes_lose_and_duplicate_nothing(daemon_factory, actor):
    """With `actor` crashing on 30% of the messages it handles, all of 300
    messages are still delivered exactly once; crashes show as "restart"
    log lines, defer the item like a temporary failure, never take the
    daemon down, and — with the default quarantine rule (10 crashed
    attempts in a row) — quarantine nothing."""
    d = daemon_factory(
        chaos=f'{{ crash {{ actor: "{actor}" probability: 0.3 }} }}',
        retry="{ initial_seconds: 0.2 max_seconds: 1 }",
    )
    markers = [f"chaos-{actor}-{n:04d}" for n in range(300)]
    sent = _send_concurrently(d, markers)
    d.wait_queue_empty(timeout=90)
    time.sleep(0.5)
    files = d.delivered("localhost", "chaos")
    counts = count_markers(files)
    assert counts == {m: 1 for m in markers}, {m: c for m, c in counts.items() if c != 1}
    for f in files:
        data = f.read_bytes()
        assert_delivered_copy(data, sent[marker_of(data)], recipient="chaos@localhost")
    assert d.alive()
    assert not d.events("quarantined")
    _assert_supervisors_stayed_up(d, actor)


def test_poison_item_is_quarantined_and_the_queue_stays_up(daemon_factory):
    """Every QueueItem crashes on every message (probability 1.0); after
    quarantine_after_crashes (3) crashes an item is held, its file records
    the crash, and the queue supervisor stays up: new mail is still
    accepted and queued."""
    d = daemon_factory(
        chaos='{ crash { actor: "QueueItem" probability: 1.0 } }',
        quarantine_after_crashes=3,
        retry="{ initial_seconds: 0.2 max_seconds: 1 }",
    )
    msg = make_message(subject="poison")
    assert d.send("poison@client.test", ["victim@localhost"], msg) == {}
    queue_id = d.wait_log(r"^\S+ \w+ quarantined .*\bid=(\w+)", timeout=30).group(1)
    assert d.queued_ids() == [queue_id]
    assert len([line for line in d.events("restart") if "actor=QueueItem" in line]) >= 2, d.log_tail()

    r = d.cli("queue", "list")
    assert r.returncode == 0, r.stderr
    assert queue_id in r.stdout and "QUARANTINED" in r.stdout, r.stdout
    r = d.cli("queue", "dump", queue_id)
    assert r.returncode == 0, r.stderr
    assert "state: QUARANTINED" in r.stdout, r.stdout
    assert "crashes: 3" in r.stdout and "last_crash:" in r.stdout and "quarantine_reason:" in r.stdout, r.stdout
    assert d.delivered("localhost", "victim") == []

    # The queue is still up: more mail is accepted, queued, and held in turn.
    time.sleep(1.0)
    for n in range(3):
        assert d.send("poison@client.test", [f"next{n}@localhost"], make_message()) == {}
    deadline = time.monotonic() + 30
    while len(d.events("quarantined")) < 4:
        assert time.monotonic() < deadline, d.log_tail()
        time.sleep(0.1)
    assert len(d.queued_ids()) == 4
    assert d.alive()
    _assert_supervisors_stayed_up(d, "QueueItem")
