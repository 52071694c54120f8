"""Supervisor semantics (supervisor/tree.py), one test per OTP supervisor(3)
rule: strategies, restart types, intensity and escalation, backoff, ordered
start and shutdown, shutdown timeouts, simple_one_for_one.
"""

from __future__ import annotations

import logging
import time

import gevent
import pykka
import pytest
from waiting import wait_for  # tests/unit is on sys.path

from estafeta.proto import common_pb2
from estafeta.proto import supervision_pb2 as pb
from estafeta.supervisor import chaos
from estafeta.supervisor.actor import Actor, Link, ShutdownRequested, join, kill
from estafeta.supervisor.tree import ChildSpec, Supervisor, SupervisorSpec, start_child

TIMEOUT = 2.0


class Collector(pykka.ThreadingActor):
    """A fake parent supervisor: records what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list = []

    def on_receive(self, message):
        if message == "get":
            return list(self.got)
        self.got.append(message)
        return None


class Worker(Actor):
    """Records ("start"|"stop"|"finally"|"interrupted", child_id, ...) in a
    shared list; "crash" raises, "exit" stops normally, "sleep" blocks."""

    def __init__(self, link: Link, world: World, args=None, stop_delay: float = 0.0):
        super().__init__(link)
        self.world = world
        self.args = args
        self.stop_delay = stop_delay

    def on_start(self):
        self.world.events.append(("start", self.link.child_id))
        self.world.seen[self.link.child_id] = (self.link.restarts, self.args)

    def on_stop(self):
        try:
            if self.stop_delay:
                gevent.sleep(self.stop_delay)
            self.world.events.append(("stop", self.link.child_id))
        finally:
            self.world.events.append(("finally", self.link.child_id))

    def on_receive(self, message):
        if message == "crash":
            raise RuntimeError("boom")
        if message == "exit":
            self.stop()
        if message == "sleep":
            try:
                gevent.sleep(30)
            except ShutdownRequested:
                self.world.events.append(("interrupted", self.link.child_id))
        return message


class Interruptible(Worker):
    interruptible_on_shutdown = True


class World:
    """Test state: the live ref of every child id and an event log."""

    def __init__(self) -> None:
        self.refs: dict[str, pykka.ActorRef] = {}
        self.events: list = []
        self.seen: dict = {}

    def spec(self, cid: str, cls=Worker, **kw) -> ChildSpec:
        stop_delay = kw.pop("stop_delay", 0.0)

        def start(link: Link, args):
            ref = cls.start(link, self, args, stop_delay)
            self.refs[link.child_id] = ref
            return ref

        return ChildSpec(cid, start, **kw)

    def urns(self) -> dict[str, str]:
        return {k: r.actor_urn for k, r in self.refs.items()}


@pytest.fixture(autouse=True)
def _cleanup():
    chaos.reset()
    yield
    for ref in reversed(pykka.ActorRegistry.get_by_class(Supervisor)):
        ref.stop(block=False)
    pykka.ActorRegistry.stop_all(timeout=TIMEOUT)


@pytest.fixture
def world() -> World:
    return World()


def which(sup) -> dict[str, pb.ChildInfo]:
    return {c.child_id: c for c in sup.ask(pb.WhichChildren(), timeout=TIMEOUT).children}


def restarted(world: World, cid: str, before: dict[str, str]) -> bool:
    return world.refs[cid].actor_urn != before[cid] and world.refs[cid].is_alive()


def start_sup(world: World, strategy: str, children: list[ChildSpec], parent=None, **kw) -> pykka.ActorRef:
    kw.setdefault("intensity", 10)
    kw.setdefault("period", 10.0)
    kw.setdefault("backoff_initial", 0.0)
    on_escalate = kw.pop("on_escalate", None)
    clock = kw.pop("clock", time.monotonic)
    spec = SupervisorSpec(kw.pop("name", "sup"), strategy, children=children, **kw)
    return Supervisor.start(Link(parent, "sup"), spec, on_escalate, clock)


def crash(world: World, sup, cid: str) -> dict[str, str]:
    """Crash child `cid`, wait until the supervisor restarted it; returns the
    urns from before."""
    before = world.urns()
    world.refs[cid].tell("crash")
    wait_for(lambda: restarted(world, cid, before))
    which(sup)  # the restart of a whole group happens in one message
    return before


# ------------------------------------------------------------- strategies
def test_one_for_one_restarts_only_the_failed_child(world, caplog):
    caplog.set_level(logging.INFO, logger="estafeta.supervisor")
    sup = start_sup(world, "one_for_one", [world.spec("a"), world.spec("b"), world.spec("c")])
    wait_for(lambda: len(world.refs) == 3)
    before = crash(world, sup, "b")
    after = world.urns()
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
    info = which(sup)
    assert [(k, v.restarts, v.alive) for k, v in info.items()] == [("a", 0, True), ("b", 1, True), ("c", 0, True)]
    assert info["b"].actor_class == "Worker" and info["b"].restart == "permanent"
    [line] = [r.getMessage() for r in caplog.records if r.name == "estafeta.supervisor"]
    assert line == 'restart sup=sup child=b actor=Worker reason="RuntimeError: boom" restarts=1 delay=0.00s'


def test_one_for_all_stops_others_in_reverse_and_restarts_all_in_order(world):
    sup = start_sup(world, "one_for_all", [world.spec(c) for c in "abcd"])
    wait_for(lambda: len(world.refs) == 4)
    world.events.clear()
    before = crash(world, sup, "b")
    assert all(world.refs[c].actor_urn != before[c] for c in "abcd")
    stops = [e for e in world.events if e[0] == "stop"]
    starts = [e for e in world.events if e[0] == "start"]
    assert stops == [("stop", "d"), ("stop", "c"), ("stop", "a")]
    assert starts == [("start", c) for c in "abcd"]
    assert world.events.index(("stop", "a")) < world.events.index(("start", "a"))
    assert {k: v.restarts for k, v in which(sup).items()} == dict.fromkeys("abcd", 1)


def test_rest_for_one_restarts_the_failed_and_later_children(world):
    sup = start_sup(world, "rest_for_one", [world.spec(c) for c in "abcd"])
    wait_for(lambda: len(world.refs) == 4)
    world.events.clear()
    before = crash(world, sup, "b")
    after = world.urns()
    assert after["a"] == before["a"]
    assert all(after[c] != before[c] for c in "bcd")
    assert [e for e in world.events if e[0] in ("stop", "start")] == [
        ("stop", "d"),
        ("stop", "c"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]


def test_group_restart_drops_temporary_siblings(world):
    sup = start_sup(world, "one_for_all", [world.spec("a"), world.spec("t", restart="temporary")])
    wait_for(lambda: len(world.refs) == 2)
    crash(world, sup, "a")
    assert list(which(sup)) == ["a"]


# ---------------------------------------------------------- restart types
def test_permanent_child_is_restarted_after_normal_exit(world):
    sup = start_sup(world, "one_for_one", [world.spec("p")])
    wait_for(lambda: "p" in world.refs)
    before = world.urns()
    world.refs["p"].tell("exit")
    wait_for(lambda: restarted(world, "p", before))
    assert which(sup)["p"].restarts == 1


def test_transient_child_restarted_only_after_crash(world):
    sup = start_sup(world, "one_for_one", [world.spec("t", restart="transient")])
    wait_for(lambda: "t" in world.refs)
    crash(world, sup, "t")
    ref = world.refs["t"]
    ref.tell("exit")
    assert join(ref, TIMEOUT)
    info = which(sup)["t"]
    assert (info.alive, info.restarts) == (False, 1)
    assert world.refs["t"] is ref  # not started again


def test_transient_child_restarted_after_kill(world):
    sup = start_sup(world, "one_for_one", [world.spec("t", restart="transient")])
    wait_for(lambda: "t" in world.refs)
    before = world.urns()
    kill(world.refs["t"])
    wait_for(lambda: restarted(world, "t", before))
    assert which(sup)["t"].restarts == 1


def test_temporary_child_never_restarted_and_removed(world):
    sup = start_sup(world, "one_for_one", [world.spec("a"), world.spec("t", restart="temporary")])
    wait_for(lambda: len(world.refs) == 2)
    ref = world.refs["t"]
    ref.tell("crash")
    assert join(ref, TIMEOUT)
    wait_for(lambda: list(which(sup)) == ["a"])
    assert world.refs["t"] is ref


def test_stale_child_exited_is_ignored(world):
    sup = start_sup(world, "one_for_one", [world.spec("a")])
    wait_for(lambda: "a" in world.refs)
    before = world.urns()
    sup.tell(pb.ChildExited(child_id="a", actor_urn="urn:uuid:earlier", reason=pb.CRASH, error="old"))
    sup.tell(pb.ChildExited(child_id="nobody", actor_urn="x", reason=pb.CRASH))
    assert which(sup)["a"].restarts == 0 and world.urns() == before


# --------------------------------------------------- intensity, escalation
def test_intensity_escalates_to_parent(world):
    parent = Collector.start()
    sup = start_sup(world, "one_for_one", [world.spec("a"), world.spec("b")], parent=parent, intensity=1, period=10)
    wait_for(lambda: len(world.refs) == 2)
    crash(world, sup, "a")  # 1 restart within 10 s: allowed
    a, b = world.refs["a"], world.refs["b"]
    world.events.clear()
    a.tell("crash")  # 2 > 1: the supervisor gives up
    [ex] = wait_for(lambda: parent.ask("get"))
    assert ex.child_id == "sup" and ex.actor_urn == sup.actor_urn and ex.reason == pb.CRASH
    assert "reached max restart intensity" in ex.error
    assert not sup.is_alive() and not b.is_alive() and join(b, TIMEOUT)
    assert ("stop", "b") in world.events and ("start", "a") not in world.events


def test_intensity_escalates_through_a_real_parent(world):
    inner = SupervisorSpec(
        "inner", "one_for_one", intensity=0, period=10, backoff_initial=0, children=[world.spec("w")]
    )
    subs: list = []

    def start_inner(link, _args):
        ref = Supervisor.start(link, inner)
        subs.append(ref)
        return ref

    top = start_sup(
        world, "one_for_one", [ChildSpec("inner", start_inner, type="supervisor", shutdown="infinity")], name="top"
    )
    wait_for(lambda: "w" in world.refs)
    first = world.refs["w"]
    first.tell("crash")  # intensity 0: the first crash escalates
    wait_for(lambda: len(subs) == 2 and world.refs["w"] is not first and world.refs["w"].is_alive())
    info = which(top)["inner"]
    assert info.restarts == 1 and info.supervisor and info.actor_class == "Supervisor"
    assert not subs[0].is_alive()


def test_root_supervisor_calls_on_escalate(world):
    reasons: list[str] = []
    sup = start_sup(world, "one_for_one", [world.spec("a")], intensity=2, period=10, on_escalate=reasons.append)
    wait_for(lambda: "a" in world.refs)
    crash(world, sup, "a")
    crash(world, sup, "a")
    assert reasons == []
    last = world.refs["a"]
    last.tell("crash")
    wait_for(lambda: reasons)
    assert len(reasons) == 1 and "reached max restart intensity" in reasons[0]
    assert join(sup, TIMEOUT) and world.refs["a"] is last


def test_restarts_outside_the_period_do_not_accumulate(world):
    now = [0.0]
    reasons: list[str] = []
    sup = start_sup(
        world, "one_for_one", [world.spec("a")], intensity=1, period=5, clock=lambda: now[0], on_escalate=reasons.append
    )
    wait_for(lambda: "a" in world.refs)
    for _ in range(4):
        crash(world, sup, "a")
        now[0] += 5.0  # each restart falls out of the window before the next
    assert reasons == [] and sup.is_alive()


def test_failing_start_function_counts_toward_intensity(world):
    reasons: list[str] = []
    calls = []

    def start(link, _args):
        calls.append(link.restarts)
        if link.restarts:
            raise OSError("cannot open")
        ref = Worker.start(link, world)
        world.refs[link.child_id] = ref
        return ref

    sup = start_sup(world, "one_for_one", [ChildSpec("a", start)], intensity=3, period=10, on_escalate=reasons.append)
    wait_for(lambda: "a" in world.refs)
    world.refs["a"].tell("crash")
    wait_for(lambda: reasons)
    assert calls == [0, 1, 2, 3]
    assert "reached max restart intensity" in reasons[0] and "OSError: cannot open" in reasons[0]
    assert join(sup, TIMEOUT)


# ---------------------------------------------------------------- backoff
def test_backoff_delays_consecutive_restarts(world, caplog):
    caplog.set_level(logging.INFO, logger="estafeta.supervisor")
    sup = start_sup(
        world,
        "one_for_one",
        [world.spec("a")],
        intensity=10,
        period=10,
        backoff_initial=0.04,
        backoff_max=0.1,
        backoff_jitter=0.0,
    )
    wait_for(lambda: "a" in world.refs)
    delays = []
    for _ in range(5):
        before = world.urns()
        t0 = time.monotonic()
        old = world.refs["a"]
        old.tell("crash")
        wait_for(lambda: not old.is_alive())
        # The supervisor answers while a restart is backed off.
        assert sup.ask(pb.WhichChildren(), timeout=0.03) is not None
        wait_for(lambda: restarted(world, "a", before))
        delays.append(time.monotonic() - t0)
    expected = [0.0, 0.04, 0.08, 0.1, 0.1]  # capped at backoff_max
    for got, want in zip(delays, expected):
        # Never early; late only by scheduling noise (the exact delays are
        # in the log lines below).
        assert want <= got < want + 0.1, (delays, expected)
    lines = [r.getMessage() for r in caplog.records if r.name == "estafeta.supervisor"]
    assert [line.rsplit(" ", 1)[1] for line in lines] == [
        "delay=0.00s",
        "delay=0.04s",
        "delay=0.08s",
        "delay=0.10s",
        "delay=0.10s",
    ]


def test_backoff_jitter_stays_in_bounds(world):
    sup = start_sup(
        world, "one_for_one", [world.spec("a")], intensity=10, period=10, backoff_initial=0.05, backoff_jitter=0.5
    )
    wait_for(lambda: "a" in world.refs)
    crash(world, sup, "a")
    before = world.urns()
    t0 = time.monotonic()
    world.refs["a"].tell("crash")
    wait_for(lambda: restarted(world, "a", before))
    assert 0.025 <= time.monotonic() - t0 < 0.075 + 0.1


# --------------------------------------------------------------- shutdown
def test_ordered_start_and_reverse_shutdown(world):
    sup = start_sup(world, "one_for_one", [world.spec(c) for c in "abc"])
    wait_for(lambda: len(world.refs) == 3)
    assert [e for e in world.events if e[0] == "start"] == [("start", c) for c in "abc"]
    assert sup.stop(timeout=TIMEOUT)
    assert [e for e in world.events if e[0] == "stop"] == [("stop", c) for c in "cba"]
    assert not any(r.is_alive() for r in world.refs.values())


def test_child_supervisor_stops_its_children_first(world):
    inner = SupervisorSpec("inner", "one_for_one", children=[world.spec("g1"), world.spec("g2")])
    top = start_sup(
        world,
        "one_for_one",
        [
            world.spec("w1"),
            ChildSpec("inner", lambda link, _a: Supervisor.start(link, inner), type="supervisor", shutdown="infinity"),
            world.spec("w2"),
        ],
    )
    wait_for(lambda: len(world.refs) == 4)
    assert [e for e in world.events if e[0] == "start"] == [("start", c) for c in ("w1", "g1", "g2", "w2")]
    assert top.stop(timeout=TIMEOUT)
    assert [e for e in world.events if e[0] == "stop"] == [("stop", c) for c in ("w2", "g2", "g1", "w1")]


def test_shutdown_timeout_then_kill(world):
    sup = start_sup(world, "one_for_one", [world.spec("slow", shutdown=0.05, stop_delay=10), world.spec("fast")])
    wait_for(lambda: len(world.refs) == 2)
    t0 = time.monotonic()
    assert sup.stop(timeout=TIMEOUT)
    assert 0.05 <= time.monotonic() - t0 < 1.0
    assert ("finally", "slow") in world.events and ("stop", "slow") not in world.events
    assert not world.refs["slow"].is_alive()


def test_shutdown_infinity_waits(world):
    sup = start_sup(world, "one_for_one", [world.spec("slow", shutdown="infinity", stop_delay=0.1)])
    wait_for(lambda: "slow" in world.refs)
    t0 = time.monotonic()
    assert sup.stop(timeout=TIMEOUT)
    assert time.monotonic() - t0 >= 0.1 and ("stop", "slow") in world.events


def test_brutal_kill_skips_on_stop(world):
    sup = start_sup(world, "one_for_one", [world.spec("b", shutdown="brutal_kill")])
    wait_for(lambda: "b" in world.refs)
    assert sup.stop(timeout=TIMEOUT)
    assert ("stop", "b") not in world.events and not world.refs["b"].is_alive()


def test_interruptible_child_is_interrupted_on_shutdown(world):
    sup = start_sup(world, "one_for_one", [world.spec("s", cls=Interruptible, shutdown=5.0)])
    wait_for(lambda: "s" in world.refs)
    world.refs["s"].tell("sleep")
    gevent.sleep(0.01)
    t0 = time.monotonic()
    assert sup.stop(timeout=TIMEOUT)
    assert time.monotonic() - t0 < 1.0
    assert world.events[-3:] == [("interrupted", "s"), ("stop", "s"), ("finally", "s")]


def test_killed_supervisor_takes_its_children(world):
    sup = start_sup(world, "one_for_one", [world.spec("a"), world.spec("b")])
    wait_for(lambda: len(world.refs) == 2)
    kill(sup)
    assert join(sup, TIMEOUT)
    assert join(world.refs["a"], TIMEOUT) and join(world.refs["b"], TIMEOUT)
    assert ("stop", "a") not in world.events


def test_stop_child(world):
    sup = start_sup(world, "one_for_one", [world.spec("a"), world.spec("b")])
    wait_for(lambda: len(world.refs) == 2)
    urn = world.refs["a"].actor_urn
    reply = sup.ask(pb.StopChild(child_id="a"), timeout=TIMEOUT)
    assert (reply.child_id, reply.actor_urn, reply.reason) == ("a", urn, pb.SHUTDOWN)
    assert list(which(sup)) == ["b"] and not world.refs["a"].is_alive()
    missing = sup.ask(pb.StopChild(child_id="zz"), timeout=TIMEOUT)
    assert missing.reason == pb.EXIT_REASON_UNSPECIFIED and "no such child" in missing.error


# ------------------------------------------------------ simple_one_for_one
def simple(world: World, **kw):
    restart = kw.pop("restart", "transient")
    shutdown = kw.pop("shutdown", 5.0)
    stop_delay = kw.pop("stop_delay", 0.0)
    return start_sup(
        world,
        "simple_one_for_one",
        [world.spec("item", restart=restart, shutdown=shutdown, stop_delay=stop_delay)],
        args_type=common_pb2.TraceContext,
        **kw,
    )


def test_simple_one_for_one_start_and_restart_with_same_args(world):
    sup = simple(world)
    r1 = start_child(sup, common_pb2.TraceContext(traceparent="one"), timeout=TIMEOUT)
    r2 = start_child(sup, common_pb2.TraceContext(traceparent="two"), timeout=TIMEOUT)
    assert (r1.ok, r1.child_id, r2.ok, r2.child_id) == (True, "item-1", True, "item-2")
    wait_for(lambda: len(world.seen) == 2)
    assert world.seen["item-1"] == (0, common_pb2.TraceContext(traceparent="one"))
    before = crash(world, sup, "item-1")
    assert world.seen["item-1"] == (1, common_pb2.TraceContext(traceparent="one"))
    assert world.refs["item-2"].actor_urn == before["item-2"]
    assert {k: v.restarts for k, v in which(sup).items()} == {"item-1": 1, "item-2": 0}


def test_simple_one_for_one_normal_exit_removes_child(world):
    sup = simple(world)
    start_child(sup, common_pb2.TraceContext(), timeout=TIMEOUT)
    wait_for(lambda: "item-1" in world.refs)
    world.refs["item-1"].tell("exit")
    wait_for(lambda: which(sup) == {})


def test_simple_one_for_one_start_errors_do_not_crash_it(world):
    def bad(link, args):
        raise ValueError("no such file")

    sup = start_sup(world, "simple_one_for_one", [ChildSpec("x", bad)], args_type=common_pb2.TraceContext)
    reply = start_child(sup, common_pb2.TraceContext(), timeout=TIMEOUT)
    assert (reply.ok, reply.error) == (False, "ValueError: no such file")
    wrong = start_child(sup, pb.WhichChildren(), timeout=TIMEOUT)
    assert not wrong.ok and "TypeError" in wrong.error
    assert sup.is_alive() and which(sup) == {}
    plain = start_sup(world, "one_for_one", [world.spec("a")])
    assert not start_child(plain, common_pb2.TraceContext(), timeout=TIMEOUT).ok


def test_simple_one_for_one_children_stop_in_parallel(world):
    sup = simple(world, stop_delay=0.1)
    for _ in range(5):
        assert start_child(sup, common_pb2.TraceContext(), timeout=TIMEOUT).ok
    wait_for(lambda: len(world.refs) == 5)
    t0 = time.monotonic()
    assert sup.stop(timeout=TIMEOUT)
    assert 0.1 <= time.monotonic() - t0 < 0.4  # not 5 x 0.1
    assert len([e for e in world.events if e[0] == "stop"]) == 5


def test_simple_one_for_one_shutdown_timeout_kills_the_rest(world):
    sup = simple(world, shutdown=0.05, stop_delay=10)
    for _ in range(3):
        start_child(sup, common_pb2.TraceContext(), timeout=TIMEOUT)
    wait_for(lambda: len(world.refs) == 3)
    t0 = time.monotonic()
    assert sup.stop(timeout=TIMEOUT)
    assert time.monotonic() - t0 < 1.0
    assert not any(r.is_alive() for r in world.refs.values())
    assert len([e for e in world.events if e[0] == "finally"]) == 3


def test_chaos_crashes_are_restarted(world):
    from estafeta.proto import config_pb2

    chaos.configure(config_pb2.Chaos(crash=[config_pb2.Crash(actor="Worker", probability=1.0)]), seed=3)
    sup = start_sup(world, "one_for_one", [world.spec("a")])
    wait_for(lambda: "a" in world.refs)
    before = world.urns()
    world.refs["a"].tell("anything")
    wait_for(lambda: restarted(world, "a", before))
    assert which(sup)["a"].restarts == 1
