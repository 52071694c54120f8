"""Property tests of the supervisor over random crash sequences.

For any sequence of child crashes: one_for_one leaves the siblings of the
crashed child untouched, rest_for_one restarts exactly the crashed child and
those started after it, one_for_all restarts all; and a supervisor fails
(escalates) exactly when more than R restarts fall within T seconds, checked
against a model of OTP's rule with an injected clock.
"""

from __future__ import annotations

import time
from collections import deque

import gevent
import pykka
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estafeta.proto import supervision_pb2 as pb
from estafeta.supervisor.actor import Actor, Link, join
from estafeta.supervisor.tree import ChildSpec, Supervisor, SupervisorSpec

TIMEOUT = 2.0
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Child(Actor):
    def on_receive(self, message):
        if message == "crash":
            raise RuntimeError("crash")
        return message


def wait_for(pred, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        gevent.sleep(0.001)


class Tree:
    """A supervisor of n children and the latest ref of each."""

    def __init__(self, strategy: str, n: int, intensity: int = 1000, period: float = 60.0, clock=time.monotonic):
        self.refs: dict[str, pykka.ActorRef] = {}
        self.escalated: list[str] = []
        self.ids = [f"c{i}" for i in range(n)]

        def start(link: Link, _args):
            ref = Child.start(link)
            self.refs[link.child_id] = ref
            return ref

        spec = SupervisorSpec(
            "prop",
            strategy,
            intensity=intensity,
            period=period,
            children=[ChildSpec(i, start) for i in self.ids],
            backoff_initial=0.0,
            backoff_jitter=0.0,
        )
        self.sup = Supervisor.start(Link(None, "prop"), spec, self.escalated.append, clock)
        self.sup.ask(pb.WhichChildren(), timeout=TIMEOUT)  # on_start done

    def urns(self) -> dict[str, str]:
        return {k: r.actor_urn for k, r in self.refs.items()}

    def crash(self, cid: str) -> tuple[dict[str, str], dict[str, str]] | None:
        """Crash `cid`; returns (urns before, urns after), None if the
        supervisor escalated instead of restarting."""
        before = self.urns()
        old = self.refs[cid]
        old.tell("crash")
        wait_for(lambda: self.escalated or self.refs[cid] is not old)
        if self.escalated:
            return None
        self.sup.ask(pb.WhichChildren(), timeout=TIMEOUT)  # group restart done
        return before, self.urns()

    def close(self) -> None:
        if self.sup.is_alive():
            self.sup.stop(timeout=TIMEOUT)
        join(self.sup, TIMEOUT)
        assert not any(r.is_alive() for r in self.refs.values())


def crash_sequences(n_max: int = 4):
    return st.integers(2, n_max).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    )


@SETTINGS
@given(crash_sequences())
def test_one_for_one_leaves_siblings_untouched(case):
    n, crashes = case
    tree = Tree("one_for_one", n)
    try:
        for i in crashes:
            before, after = tree.crash(f"c{i}")
            changed = {k for k in before if before[k] != after[k]}
            assert changed == {f"c{i}"}
    finally:
        tree.close()


@SETTINGS
@given(crash_sequences())
def test_rest_for_one_restarts_the_crashed_and_later_children(case):
    n, crashes = case
    tree = Tree("rest_for_one", n)
    try:
        for i in crashes:
            before, after = tree.crash(f"c{i}")
            changed = {k for k in before if before[k] != after[k]}
            assert changed == {f"c{j}" for j in range(i, n)}
    finally:
        tree.close()


@SETTINGS
@given(crash_sequences())
def test_one_for_all_restarts_all(case):
    n, crashes = case
    tree = Tree("one_for_all", n)
    try:
        for i in crashes:
            before, after = tree.crash(f"c{i}")
            assert all(before[k] != after[k] for k in before)
            assert all(r.is_alive() for r in tree.refs.values())
    finally:
        tree.close()


@SETTINGS
@given(
    intensity=st.integers(0, 3),
    period=st.sampled_from([1.0, 5.0]),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 5.0]), st.integers(0, 1)), min_size=1, max_size=8
    ),
)
def test_escalates_exactly_when_more_than_r_restarts_within_t(intensity, period, steps):
    now = [100.0]
    tree = Tree("one_for_one", 2, intensity=intensity, period=period, clock=lambda: now[0])
    window: deque[float] = deque()
    try:
        for dt, child in steps:
            now[0] += dt
            # The model: OTP counts restarts at times t with now - t < T.
            window.append(now[0])
            while window[0] <= now[0] - period:
                window.popleft()
            expect_escalation = len(window) > intensity
            result = tree.crash(f"c{child}")
            assert (result is None) == expect_escalation, (list(window), intensity, period)
            if expect_escalation:
                assert len(tree.escalated) == 1 and "reached max restart intensity" in tree.escalated[0]
                assert join(tree.sup, TIMEOUT)
                break
    finally:
        tree.close()
