"""The actor boundary (supervisor/actor.py): OTP exits on top of pykka.

Each of pykka's three failure paths (on_start, tell, ask) and the
BaseExceptions pykka would turn into `ActorRegistry.stop_all()` must crash
exactly one actor and report ChildExited(CRASH) to its supervisor; kill()
and interrupt() reach an actor idle or busy; chaos crashes on the configured
fraction of messages.
"""

from __future__ import annotations

import logging
import time

import gevent
import gevent.event
import pykka
import pytest
from greenlet import GreenletExit
from waiting import wait_for  # tests/unit is on sys.path

from estafeta.proto import config_pb2
from estafeta.proto import supervision_pb2 as pb
from estafeta.supervisor import chaos
from estafeta.supervisor.actor import (
    Actor,
    ActorKilled,
    ChaosCrash,
    Link,
    ShutdownRequested,
    interrupt,
    join,
    kill,
    mark_shutdown,
)

TIMEOUT = 2.0


class Collector(pykka.ThreadingActor):
    """A fake supervisor: records every message told to it."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list = []

    def on_receive(self, message):
        if message == "get":
            return list(self.got)
        self.got.append(message)
        return None


class Probe(Actor):
    """Records its lifecycle hooks in `events`; messages drive its behaviour."""

    def __init__(self, link, events: list, fail_on_start: BaseException | None = None):
        super().__init__(link)
        self.events = events
        self.fail_on_start = fail_on_start

    def on_start(self):
        self.events.append("on_start")
        if self.fail_on_start is not None:
            raise self.fail_on_start

    def on_stop(self):
        self.events.append("on_stop")

    def on_failure(self, exc_type, exc, tb):
        self.events.append(("on_failure", exc_type, str(exc)))

    def on_receive(self, message):
        if isinstance(message, BaseException):
            raise message
        if message == "sleep":
            try:
                gevent.sleep(30)
            finally:
                self.events.append("finally")
        if message == "sleep_interruptible":
            try:
                gevent.sleep(30)
            except ShutdownRequested:
                self.events.append("interrupted")
                return "interrupted"
        if message == "sleep_uncaught":
            gevent.sleep(30)
        if message == "stop_self":
            self.stop()
        return message


@pytest.fixture(autouse=True)
def _cleanup():
    chaos.reset()
    yield
    chaos.reset()
    pykka.ActorRegistry.stop_all(timeout=TIMEOUT)


@pytest.fixture
def sup():
    return Collector.start()


def exits(sup, n: int = 1) -> list[pb.ChildExited]:
    """The ChildExited messages `sup` got, once there are at least n."""

    def got():
        found = [m for m in sup.ask("get") if isinstance(m, pb.ChildExited)]
        return found if len(found) >= n else None

    return wait_for(got)


def test_exception_in_on_start_crashes_and_reports(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events, fail_on_start=ValueError("no config"))
    [ex] = exits(sup)
    assert (ex.child_id, ex.actor_urn, ex.reason, ex.error) == ("p", ref.actor_urn, pb.CRASH, "ValueError: no config")
    assert events == ["on_start", ("on_failure", ValueError, "no config")]
    assert not ref.is_alive()
    assert ref not in pykka.ActorRegistry.get_all()


def test_exception_in_tell_crashes_and_reports(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    ref.tell(KeyError("k"))
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.CRASH, "KeyError: 'k'")
    assert events == ["on_start", ("on_failure", KeyError, "'k'")]
    assert ref not in pykka.ActorRegistry.get_all()


def test_exception_in_ask_goes_to_caller_and_crashes(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    assert ref.ask("ping", timeout=TIMEOUT) == "ping"
    with pytest.raises(ZeroDivisionError):
        ref.ask(ZeroDivisionError("div"), timeout=TIMEOUT)
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.CRASH, "ZeroDivisionError: div")
    assert ("on_failure", ZeroDivisionError, "div") in events
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("ping", timeout=TIMEOUT)


@pytest.mark.parametrize(
    "exc", [gevent.Timeout(1), GreenletExit(), SystemExit(3), KeyboardInterrupt()], ids=lambda e: type(e).__name__
)
def test_base_exception_crashes_only_that_actor(sup, exc):
    events: list = []
    bystander = Probe.start(Link(None, "b"), [])
    ref = Probe.start(Link(sup, "p"), events)
    # Asked: the caller gets an ActorDeadError, never the BaseException itself.
    with pytest.raises(pykka.ActorDeadError, match=type(exc).__name__):
        ref.ask(exc, timeout=TIMEOUT)
    [ex] = exits(sup)
    assert ex.reason == pb.CRASH and ex.error.startswith(type(exc).__name__)
    assert events[-1][0] == "on_failure" and events[-1][1] is type(exc)
    # pykka would have called ActorRegistry.stop_all(): the others live on.
    assert bystander.ask("still here", timeout=TIMEOUT) == "still here"
    assert bystander in pykka.ActorRegistry.get_all() and sup.is_alive()


def test_timeout_fired_by_handler_crashes_only_that_actor(sup):
    class Slow(Actor):
        def on_receive(self, message):
            with gevent.Timeout(0.01):
                gevent.sleep(1)

    bystander = Probe.start(Link(None, "b"), [])
    ref = Slow.start(Link(sup, "slow"))
    ref.tell("go")
    [ex] = exits(sup)
    assert ex.reason == pb.CRASH and ex.error.startswith("Timeout")
    assert bystander.ask(1, timeout=TIMEOUT) == 1


def test_clean_stop_reports_normal_or_shutdown(sup):
    events: list = []
    a = Probe.start(Link(sup, "a"), events)
    assert a.stop(timeout=TIMEOUT) is True
    b = Probe.start(Link(sup, "b"), [])
    b.tell("stop_self")
    c = Probe.start(Link(sup, "c"), [])
    mark_shutdown(c)
    c.stop(timeout=TIMEOUT)
    got = {m.child_id: m.reason for m in exits(sup, 3)}
    assert got == {"a": pb.NORMAL, "b": pb.NORMAL, "c": pb.SHUTDOWN}
    assert events == ["on_start", "on_stop"]
    assert a not in pykka.ActorRegistry.get_all()


def test_exception_in_on_stop_is_a_crash(sup):
    class BadStop(Actor):
        def on_stop(self):
            raise OSError("disk gone")

    ref = BadStop.start(Link(sup, "x"))
    assert ref.stop(timeout=TIMEOUT) is True  # the stop itself still completes
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.CRASH, "OSError: disk gone")


def test_asks_queued_behind_stop_get_actor_dead(sup):
    ref = Probe.start(Link(sup, "p"), [])
    ref.tell("sleep_interruptible")
    stop = ref.stop(block=False)
    late = ref.ask("late", block=False)
    gevent.sleep(0.01)
    interrupt(ref)
    assert stop.get(timeout=TIMEOUT) is True
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=TIMEOUT)


def test_kill_idle_actor(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    assert ref.ask("ready", timeout=TIMEOUT) == "ready"
    assert kill(ref) is True
    assert join(ref, TIMEOUT)
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.KILLED, "killed")
    assert "on_stop" not in events and not any(isinstance(e, tuple) for e in events)
    assert ref not in pykka.ActorRegistry.get_all()
    assert kill(ref) is False  # already gone


def test_kill_busy_actor_runs_finally_and_fails_its_ask(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    pending = ref.ask("sleep", block=False)
    gevent.sleep(0.01)
    t0 = time.monotonic()
    kill(ref, "shutdown timeout")
    with pytest.raises(pykka.ActorDeadError):
        pending.get(timeout=TIMEOUT)
    assert join(ref, TIMEOUT) and time.monotonic() - t0 < 1
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.KILLED, "shutdown timeout")
    assert events == ["on_start", "finally"]


def test_kill_right_after_start(sup):
    ref = Probe.start(Link(sup, "p"), [])
    kill(ref)
    assert join(ref, TIMEOUT)
    assert exits(sup)[0].reason == pb.KILLED


def test_kill_is_not_caught_by_except_exception(sup):
    class Stubborn(Actor):
        def on_receive(self, message):
            while True:
                try:
                    gevent.sleep(30)
                except Exception:  # noqa: BLE001 - what careless handlers do
                    pass

    ref = Stubborn.start(Link(sup, "s"))
    ref.tell("go")
    gevent.sleep(0.01)
    kill(ref)
    assert join(ref, TIMEOUT)
    assert exits(sup)[0].reason == pb.KILLED
    assert issubclass(ActorKilled, BaseException) and not issubclass(ActorKilled, Exception)


def test_interrupt_busy_actor(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    reply = ref.ask("sleep_interruptible", block=False)
    gevent.sleep(0.01)
    assert interrupt(ref) is True
    assert reply.get(timeout=TIMEOUT) == "interrupted"
    assert ref.ask("still alive", timeout=TIMEOUT) == "still alive"
    assert events == ["on_start", "interrupted"]


def test_interrupt_idle_actor_does_nothing(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    assert ref.ask("x", timeout=TIMEOUT) == "x"
    assert interrupt(ref) is False
    gevent.sleep(0.01)
    assert ref.ask("y", timeout=TIMEOUT) == "y"
    assert events == ["on_start"]
    assert sup.ask("get") == []


def test_interrupt_racing_the_end_of_a_handler_is_dropped(sup):
    release = gevent.event.Event()

    class Waiter(Actor):
        def on_receive(self, message):
            release.wait()
            return "done"

    ref = Waiter.start(Link(sup, "w"))
    reply = ref.ask("go", block=False)
    gevent.sleep(0.01)
    # The handler is woken first (set() schedules it), returns and goes
    # idle; only then is the interrupt delivered: it must be dropped.
    release.set()
    assert interrupt(ref) is True
    assert reply.get(timeout=TIMEOUT) == "done"
    gevent.sleep(0.01)
    assert ref.ask("again", timeout=TIMEOUT) == "done"
    assert sup.ask("get") == []


def test_uncaught_interrupt_stops_cleanly(sup):
    events: list = []
    ref = Probe.start(Link(sup, "p"), events)
    ref.tell("sleep_uncaught")
    gevent.sleep(0.01)
    mark_shutdown(ref)
    interrupt(ref)
    assert join(ref, TIMEOUT)
    [ex] = exits(sup)
    assert ex.reason == pb.SHUTDOWN
    assert events == ["on_start", "on_stop"]


def _chaos(actor: str, p: float) -> config_pb2.Chaos:
    return config_pb2.Chaos(crash=[config_pb2.Crash(actor=actor, probability=p)])


def test_chaos_probability_one_crashes_every_message(sup):
    chaos.configure(_chaos("Probe", 1.0))
    other = Collector.start()  # another class: untouched
    ref = Probe.start(Link(sup, "p"), [])
    with pytest.raises(ChaosCrash):
        ref.ask("x", timeout=TIMEOUT)
    [ex] = exits(sup)
    assert (ex.reason, ex.error) == (pb.CRASH, "ChaosCrash: chaos")
    assert other.ask("get", timeout=TIMEOUT) == []
    # pykka's own stop message is not a user message: never crashed.
    ref2 = Probe.start(Link(sup, "q"), [])
    ref2.stop(timeout=TIMEOUT)
    assert exits(sup, 2)[1].reason == pb.NORMAL


def test_chaos_probability_zero_never_crashes(sup):
    chaos.configure(_chaos("Probe", 0.0), seed=1)
    ref = Probe.start(Link(sup, "p"), [])
    for i in range(200):
        assert ref.ask(i, timeout=TIMEOUT) == i
    assert ref.is_alive()


def test_chaos_seeded_fraction_is_deterministic(sup):
    cfg = _chaos("Probe", 0.3)
    chaos.configure(cfg, seed=42)
    draws = []
    for _ in range(1000):
        try:
            chaos.maybe_crash("Probe")
            draws.append(False)
        except ChaosCrash:
            draws.append(True)
    assert 230 <= sum(draws) <= 370
    chaos.maybe_crash("Collector")  # not configured: never raises
    # The same seed drives the same crashes through real actors.
    chaos.configure(cfg, seed=42)
    crashed = []
    for i in range(60):
        ref = Probe.start(Link(None, f"p{i}"), [])
        try:
            ref.ask("m", timeout=TIMEOUT)
            crashed.append(False)
            ref.stop(timeout=TIMEOUT)
        except ChaosCrash:
            crashed.append(True)
            assert join(ref, TIMEOUT)
    assert crashed == draws[:60]


def test_crash_is_logged_as_one_line(sup, caplog):
    caplog.set_level(logging.INFO, logger="estafeta.actor")
    ref = Probe.start(Link(sup, "p7"), [])
    ref.tell(RuntimeError('bad "thing"'))
    exits(sup)
    [rec] = [r for r in caplog.records if r.name == "estafeta.actor"]
    assert rec.getMessage() == 'crash actor=Probe child=p7 error="RuntimeError: bad \\"thing\\""'
    assert rec.exc_info is None and "\n" not in rec.getMessage()
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="estafeta.actor")
    ref = Probe.start(Link(sup, "p8"), [])
    ref.tell(RuntimeError("again"))
    exits(sup, 2)
    [rec] = [r for r in caplog.records if r.name == "estafeta.actor"]
    assert rec.exc_info is not None  # the traceback, at DEBUG only


def test_pykka_registry_is_a_ref_table_in_registration_order():
    """supervisor/refs.py: pykka's registry behaves as its list did (order,
    membership, copies, removal of a missing ref) with O(1) removal."""
    from estafeta.supervisor.refs import RefTable

    table = pykka.ActorRegistry._actor_refs  # noqa: SLF001
    assert isinstance(table, RefTable)
    refs = [object(), object(), object()]
    t = RefTable(refs[:2])
    t.append(refs[2])
    assert list(t) == refs and t[:] == refs and t[-1] is refs[2] and len(t) == 3
    t.remove(refs[1])
    assert list(t) == [refs[0], refs[2]] and refs[1] not in t and refs[0] in t
    with pytest.raises(ValueError):
        t.remove(refs[1])
