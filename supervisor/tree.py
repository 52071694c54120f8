"""`Supervisor`: Erlang/OTP supervisor(3) semantics as an estafeta Actor.

A supervisor starts its children in order (ChildSpec list; like OTP's
synchronous start_link, each child's on_start, for a supervisor child its
whole subtree, completes before the next child starts), watches them
through the ChildExited each child tells it when it ends (supervisor/actor.py
guarantees one per incarnation), restarts them according to

- the child's restart type: permanent (always), transient (only after
  CRASH or KILLED), temporary (never; removed when it ends);
- the supervisor's strategy: one_for_one (the failed child only),
  one_for_all (stop all the others in reverse order, restart all in order),
  rest_for_one (stop the children started after the failed one, in reverse
  order, restart them in order; in both group strategies a temporary
  sibling is dropped, and a transient one that had finished is started
  again, as OTP does), simple_one_for_one (one spec, children
  added by `StartChild`, each restarted alone with the same args);
- the restart intensity: more than R (`intensity`) restarts within T
  (`period`) seconds (a restart at time t counts while now - t < T, as in
  OTP) and the supervisor stops all its children and fails
  itself with "reached max restart intensity": its own supervisor sees
  ChildExited(CRASH) (escalation); a root supervisor calls `on_escalate`.

Beyond OTP (a mail server needs it): restarts back off. The first restart of
a child within `period` is immediate; after k consecutive restarts of that
child within `period` the next waits
min(backoff_max, backoff_initial * 2**(k-1)) * uniform(1-jitter, 1+jitter)
seconds, through a timer that tells the supervisor `RestartDue` (its inbox is
never blocked by a backoff).

Shutdown is ordered: children stop in reverse start order, each within its
`shutdown` (seconds: stop, wait, then kill; "brutal_kill"; "infinity");
simple_one_for_one children stop all at once within the spec's shutdown.

Every restart is one INFO line on the logger "estafeta.supervisor":
`restart sup=items child=items-17 actor=QueueItem reason="ChaosCrash: chaos" restarts=2 delay=0.10s`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import gevent
import pykka
from google.protobuf import any_pb2
from google.protobuf.message import Message
from pykka import ActorDeadError
from pykka.messages import _ActorStop

from estafeta.proto import supervision_pb2 as pb
from estafeta.supervisor import metrics
from estafeta.supervisor.actor import (
    Actor,
    Link,
    describe,
    interrupt,
    join,
    join_all,
    kill,
    mark_shutdown,
    wait_started,
)
from estafeta.supervisor.log import kv

__all__ = ["ChildSpec", "MaxRestartIntensity", "Supervisor", "SupervisorSpec", "start_child"]

log = logging.getLogger("estafeta.supervisor")

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
RESTARTS = ("permanent", "transient", "temporary")
#: How long to wait for a killed child to unwind (its finally blocks).
KILL_WAIT = 5.0
#: A child's on_start still running after this many seconds is logged.
SLOW_START = 5.0

_REASON_TEXT = {pb.NORMAL: "normal", pb.SHUTDOWN: "shutdown", pb.CRASH: "crash", pb.KILLED: "killed"}


class MaxRestartIntensity(Exception):
    """A supervisor saw more than `intensity` restarts within `period`
    seconds; raised inside it so that it fails (and escalates)."""


@dataclass(slots=True)
class ChildSpec:
    """One child of a supervisor (OTP child_spec()).

    id: the child's id, unique in its supervisor (for simple_one_for_one the
        prefix of the generated ids "<id>-<n>").
    start: `start(link, args) -> ActorRef`; `args` is the unpacked
        StartChild.args for simple_one_for_one, else None. Must start the
        actor with `link` as its first constructor argument. May raise.
    restart: "permanent" | "transient" | "temporary".
    shutdown: seconds to wait for a clean stop before killing,
        "brutal_kill" (kill at once) or "infinity" (wait forever; the OTP
        default for supervisor children).
    type: "worker" | "supervisor".
    """

    id: str
    start: Callable[..., pykka.ActorRef]  # (Link, the args Message or None) -> the started actor
    restart: str = "permanent"
    shutdown: float | str = 5.0
    type: str = "worker"

    def __post_init__(self) -> None:
        if self.restart not in RESTARTS:
            raise ValueError(f"child {self.id}: restart {self.restart!r} is not one of {RESTARTS}")
        if self.type not in ("worker", "supervisor"):
            raise ValueError(f"child {self.id}: type {self.type!r} is not worker or supervisor")
        if not (
            self.shutdown in ("brutal_kill", "infinity")
            or (isinstance(self.shutdown, (int, float)) and self.shutdown >= 0)
        ):
            raise ValueError(f"child {self.id}: shutdown {self.shutdown!r} is not seconds, brutal_kill or infinity")


@dataclass
class SupervisorSpec:
    """A supervisor's flags and children (OTP sup_flags() + child specs).

    intensity/period: at most `intensity` restarts within `period` seconds
        (OTP defaults 1 in 5 s).
    backoff_*: restart backoff (seconds; jitter is a fraction), see the module.
    args_type: for simple_one_for_one, the protobuf class StartChild.args is
        unpacked into (None: the Any itself is passed).
    """

    name: str
    strategy: str = "one_for_one"
    intensity: int = 1
    period: float = 5.0
    children: list[ChildSpec] = field(default_factory=list)
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    backoff_jitter: float = 0.2
    args_type: type[Message] | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"supervisor {self.name}: strategy {self.strategy!r} is not one of {STRATEGIES}")
        if self.strategy == "simple_one_for_one" and len(self.children) != 1:
            raise ValueError(f"supervisor {self.name}: simple_one_for_one needs exactly one ChildSpec")
        ids = [c.id for c in self.children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"supervisor {self.name}: duplicate child ids {ids}")
        if self.intensity < 0 or self.period <= 0:
            raise ValueError(f"supervisor {self.name}: intensity must be >= 0 and period > 0")


class _Child:
    """A child's running state. Slotted: simple_one_for_one has thousands."""

    __slots__ = ("spec", "id", "args", "ref", "urn", "cls", "restarts", "streak", "last", "pending", "last_error")

    def __init__(self, spec: ChildSpec, child_id: str, args: Message | None) -> None:
        self.spec = spec
        self.id = child_id
        self.args = args
        self.ref: pykka.ActorRef | None = None
        self.urn = ""  # the running incarnation; "" when none (stale reports)
        self.cls = ""
        self.restarts = 0
        self.streak = 0  # consecutive restarts within the period (backoff)
        self.last: float | None = None  # clock() of the last restart
        self.pending = False  # waiting for RestartDue
        self.last_error = ""  # why its last incarnation crashed or was killed


class Supervisor(Actor):
    """A supervisor actor; `Supervisor.start(link, spec, on_escalate=None,
    clock=time.monotonic)`.

    on_escalate(reason: str): called by a root supervisor (link None or
        link.supervisor None) when it fails, e.g. on reaching its restart
        intensity; the daemon exits non-zero from it.
    clock: monotonic seconds for the intensity and backoff accounting
        (injectable for tests).

    Asks: StartChild -> StartChildReply (simple_one_for_one only),
    StopChild -> ChildExited (OTP terminate_child + delete_child: the child
    is stopped per its shutdown and removed; the reply says how it ended,
    reason EXIT_REASON_UNSPECIFIED + error for an unknown id),
    WhichChildren -> Children. Tells: ChildExited, RestartDue.

    A child's on_start must not ask its own supervisor (it is waiting for
    that on_start: a deadlock, logged as "slow start").
    Failures of the supervisor itself stop its children first (OTP links).
    """

    def __init__(
        self,
        link: Link | None,
        spec: SupervisorSpec,
        on_escalate: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(link)
        self.spec = spec
        self._on_escalate = on_escalate
        self._clock = clock
        self._simple = spec.strategy == "simple_one_for_one"
        self._children: dict[str, _Child] = {}  # in start order
        self._restarts: deque[tuple[float, str]] = deque()  # (time, child id) of restarts within period
        self._last_crash = ""  # "<child id>: <error>" of the last crash of any child
        self._crashes = 0  # crashes (or kills) of any child since start
        self._timers: dict[str, gevent.Greenlet] = {}
        self._seq = 0
        self._rng = random.Random()

    # ----------------------------------------------------------- lifecycle
    def on_start(self) -> None:
        if self._simple:
            return
        for cs in self.spec.children:
            c = _Child(cs, cs.id, None)
            self._children[cs.id] = c
            self._start(c)  # raising fails the supervisor (OTP init error)

    def on_stop(self) -> None:
        self._shutdown_children()

    def on_failure(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self._shutdown_children()
        if self.link is None or self.link.supervisor is None:
            reason = describe(exc) if exc is not None else "failed"
            log.error("escalate sup=%s reason=%s", self.spec.name, kv(reason))
            if self._on_escalate is not None:
                self._on_escalate(reason)

    def _on_killed(self) -> None:
        # Killed supervisors take their children with them (OTP links), at
        # once and without waiting: this runs without yielding.
        for t in self._timers.values():
            t.kill(block=False)
        self._timers.clear()
        for c in self._children.values():
            if c.ref is not None:
                kill(c.ref, "supervisor killed")
        self._children.clear()

    # ------------------------------------------------------------ messages
    def on_receive(self, message: Any) -> Any:
        t = message.__class__
        if t is pb.ChildExited:
            self._child_exited(message)
        elif t is pb.StartChild:
            return self._start_child(message)
        elif t is pb.RestartDue:
            self._restart_due(message.child_id)
        elif t is pb.WhichChildren:
            return self._which_children(message.limit)
        elif t is pb.StopChild:
            return self._stop_child(message.child_id)
        else:
            log.warning("unexpected sup=%s message=%s", self.spec.name, t.__name__)
        return None

    def _start(self, c: _Child) -> None:
        ref = c.spec.start(Link(self.actor_ref, c.id, c.restarts), c.args)
        c.ref = ref
        c.urn = ref.actor_urn
        c.cls = ref.actor_class.__name__
        if not self._simple:
            # OTP start order: each child is initialised (on_start done, for
            # a supervisor its whole subtree) before the next one starts. A
            # child whose on_start raises has ended: its ChildExited is in
            # our inbox and takes the restart path. simple_one_for_one does
            # not wait: one StartChild per connection must stay cheap.
            # Unbounded like OTP, but a child that never finishes on_start
            # (e.g. it asks this supervisor: a deadlock) is logged.
            waited = 0.0
            while not wait_started(ref, SLOW_START):
                waited += SLOW_START
                log.warning("slow start sup=%s child=%s actor=%s waited=%gs", self.spec.name, c.id, c.cls, waited)

    def _start_child(self, msg: pb.StartChild) -> pb.StartChildReply:
        if not self._simple:
            return pb.StartChildReply(ok=False, error="StartChild needs a simple_one_for_one supervisor")
        spec = self.spec.children[0]
        args_type = self.spec.args_type
        if args_type is None:
            args: Message = msg.args
        else:
            args = args_type()
            if not msg.args.Unpack(args):
                return pb.StartChildReply(
                    ok=False, error=f"TypeError: args is {msg.args.type_url}, not {args_type.DESCRIPTOR.full_name}"
                )
        self._seq += 1
        c = _Child(spec, f"{spec.id}-{self._seq}", args)
        try:
            self._start(c)
        except Exception as e:  # OTP start_child -> {error, Reason}
            return pb.StartChildReply(ok=False, error=describe(e))
        self._children[c.id] = c
        return pb.StartChildReply(ok=True, child_id=c.id)

    def _child_exited(self, msg: pb.ChildExited) -> None:
        c = self._children.get(msg.child_id)
        if c is None or c.urn != msg.actor_urn:
            return  # an earlier incarnation, or one we stopped ourselves
        c.ref = None
        c.urn = ""
        restart = c.spec.restart
        reason = msg.reason
        if reason == pb.CRASH or reason == pb.KILLED:
            c.last_error = msg.error or _REASON_TEXT[reason]
            self._last_crash = f"{c.id}: {c.last_error}"
            self._crashes += 1
            if reason == pb.CRASH:
                metrics.count_crash(c.cls)
        if restart == "temporary":
            del self._children[c.id]
            return
        if restart == "transient" and reason != pb.CRASH and reason != pb.KILLED:
            if self._simple:
                del self._children[c.id]
            return  # OTP keeps the spec of a finished transient child
        self._restart(c, msg.error or _REASON_TEXT.get(reason, "exited"))

    # ------------------------------------------------------------ restarts
    def _restart(self, c: _Child, why: str) -> None:
        spec = self.spec
        now = self._clock()
        q = self._restarts
        q.append((now, c.id))
        horizon = now - spec.period
        while q[0][0] <= horizon:
            q.popleft()
        if len(q) > spec.intensity:
            raise MaxRestartIntensity(
                f"reached max restart intensity ({len(q)} restarts within {spec.period:g}s, "
                f"intensity {spec.intensity}) after child {c.id} exited: {why}"
            )
        if c.last is not None and now - c.last < spec.period:
            c.streak += 1
        else:
            c.streak = 0
        c.last = now
        delay = 0.0
        if c.streak:
            delay = min(spec.backoff_max, spec.backoff_initial * 2 ** (c.streak - 1))
            j = spec.backoff_jitter
            if j:
                delay *= self._rng.uniform(1 - j, 1 + j)

        group = self._group(c)
        for other in reversed(group):  # siblings stop in reverse start order
            if other is not c and other.ref is not None:
                self._terminate(other)
        restarting = []
        for other in group:
            if other.spec.restart == "temporary" and other is not c:
                self._children.pop(other.id, None)  # never restarted (OTP)
            else:
                restarting.append(other)
        for other in restarting:
            log.info(
                "restart sup=%s child=%s actor=%s reason=%s restarts=%d delay=%.2fs",
                spec.name,
                other.id,
                other.cls or "-",
                kv(why if other is c else f"sibling {c.id} exited: {why}"),
                other.restarts + 1,
                delay,
            )
            metrics.count_restart(other.cls)
        if delay <= 0:
            self._start_group(restarting)
        else:
            c.pending = True
            for other in restarting:
                other.pending = True
            old = self._timers.pop(c.id, None)
            if old is not None:
                old.kill(block=False)
            self._timers[c.id] = gevent.spawn_later(delay, self._due, c.id)

    def _group(self, c: _Child) -> list[_Child]:
        """The children a failure of `c` restarts, in start order."""
        strategy = self.spec.strategy
        if strategy == "one_for_all":
            return list(self._children.values())
        if strategy == "rest_for_one":
            children = list(self._children.values())
            return children[children.index(c) :]
        return [c]

    def _due(self, child_id: str) -> None:
        """Timer greenlet: a backed-off restart is due."""
        self._timers.pop(child_id, None)
        try:
            self.actor_ref.tell(pb.RestartDue(child_id=child_id))
        except ActorDeadError:
            pass

    def _restart_due(self, child_id: str) -> None:
        c = self._children.get(child_id)
        if c is None or not c.pending:
            return  # restarted meanwhile (as part of a group), or removed
        if self.spec.strategy == "rest_for_one":
            children = list(self._children.values())
            if any(o.pending for o in children[: children.index(c)]):
                return  # an earlier child's pending restart will start us
        self._start_group([o for o in self._group(c) if o.ref is None])

    def _start_group(self, group: list[_Child]) -> None:
        """Start (in order) the children of `group`, each as a restart. A
        child whose start function raises counts as crashed again: a
        ChildExited is told to ourselves, so it is restarted (or escalates)
        through the normal path, without recursion."""
        for c in group:
            c.pending = False
            t = self._timers.pop(c.id, None)
            if t is not None:
                t.kill(block=False)
            c.restarts += 1
            try:
                self._start(c)
            except Exception as e:  # noqa: BLE001
                c.ref = None
                c.urn = f"start-failed-{c.restarts}"
                self.actor_ref.tell(pb.ChildExited(child_id=c.id, actor_urn=c.urn, reason=pb.CRASH, error=describe(e)))

    # ------------------------------------------------------------ stopping
    def _terminate(self, c: _Child) -> pb.ExitReason:
        """Stop one child per its shutdown spec (OTP shutdown/2); returns
        the ExitReason it ended with (SHUTDOWN or KILLED)."""
        ref = c.ref
        c.ref = None
        c.urn = ""  # its ChildExited is now stale: not a restart
        if ref is None:
            return pb.SHUTDOWN
        mark_shutdown(ref)
        shutdown = c.spec.shutdown
        if shutdown == "brutal_kill":
            kill(ref, "brutal_kill")
            self._join_killed(c, ref)
            return pb.KILLED
        if ref.actor_class.interruptible_on_shutdown:
            interrupt(ref)
        _tell_stop(ref)
        if join(ref, None if shutdown == "infinity" else float(shutdown)):
            return pb.SHUTDOWN
        log.warning(
            "kill sup=%s child=%s actor=%s reason=shutdown_timeout timeout=%ss", self.spec.name, c.id, c.cls, shutdown
        )
        kill(ref, "shutdown timeout")
        self._join_killed(c, ref)
        return pb.KILLED

    def _join_killed(self, c: _Child, ref: pykka.ActorRef) -> None:
        if not join(ref, KILL_WAIT):
            log.error("unkillable sup=%s child=%s actor=%s", self.spec.name, c.id, c.cls)

    def _shutdown_children(self) -> None:
        """Stop every child: reverse start order, or all at once for
        simple_one_for_one (bounded by the spec's shutdown)."""
        for t in self._timers.values():
            t.kill(block=False)
        self._timers.clear()
        children = list(self._children.values())
        self._children.clear()
        if not self._simple:
            for c in reversed(children):
                self._terminate(c)
            return
        refs = [c.ref for c in children if c.ref is not None]
        for c in children:
            c.ref, c.urn = None, ""
        if not refs:
            return
        shutdown = self.spec.children[0].shutdown
        if shutdown == "brutal_kill":
            for ref in refs:
                mark_shutdown(ref)
                kill(ref, "brutal_kill")
        else:
            for ref in refs:
                mark_shutdown(ref)
                if ref.actor_class.interruptible_on_shutdown:
                    interrupt(ref)
                _tell_stop(ref)
            late = join_all(refs, None if shutdown == "infinity" else float(shutdown))
            if late:
                log.warning(
                    "kill sup=%s children=%d reason=shutdown_timeout timeout=%ss", self.spec.name, len(late), shutdown
                )
                for ref in late:
                    kill(ref, "shutdown timeout")
        join_all(refs, KILL_WAIT)

    def _stop_child(self, child_id: str) -> pb.ChildExited:
        c = self._children.pop(child_id, None)
        if c is None:
            return pb.ChildExited(child_id=child_id, error=f"no such child {child_id}")
        t = self._timers.pop(child_id, None)
        if t is not None:
            t.kill(block=False)
        urn = c.urn
        return pb.ChildExited(child_id=child_id, actor_urn=urn, reason=self._terminate(c))

    def _which_children(self, limit: int = 0) -> pb.Children:
        spec = self.spec
        horizon = self._clock() - spec.period
        in_window: dict[str, int] = {}
        for t, cid in self._restarts:
            if t > horizon:
                in_window[cid] = in_window.get(cid, 0) + 1
        children = list(self._children.values())
        if limit and len(children) > limit:
            # The ones worth seeing first: restarted, or not running.
            notable = [c for c in children if c.restarts or c.ref is None]
            if len(notable) < limit:
                seen = {id(c) for c in notable}
                notable += [c for c in children if id(c) not in seen][: limit - len(notable)]
            children = notable[:limit]
        out = pb.Children(
            name=spec.name,
            strategy=spec.strategy,
            intensity=spec.intensity,
            period_seconds=spec.period,
            restarts_in_window=sum(in_window.values()),
            total=len(self._children),
            last_crash=self._last_crash,
            crashes=self._crashes,
        )
        for c in children:
            alive = c.ref is not None and c.ref.is_alive()
            out.children.add(
                child_id=c.id,
                actor_class=c.cls,
                alive=alive,
                restart=c.spec.restart,
                restarts=c.restarts,
                supervisor=c.spec.type == "supervisor",
                restarts_in_window=in_window.get(c.id, 0),
                last_error=c.last_error,
                state="running" if alive else "restarting" if c.pending else "stopped",
                actor_urn=c.urn if alive else "",
            )
        return out


def _tell_stop(ref: pykka.ActorRef) -> None:
    try:
        ref.tell(_ActorStop())
    except ActorDeadError:
        pass  # already stopping or gone; join() waits for the end


def start_child(sup_ref: pykka.ActorRef, args: Message, timeout: float | None = None) -> pb.StartChildReply:
    """Ask a simple_one_for_one supervisor to start one more child with
    `args` (packed into google.protobuf.Any). Returns the StartChildReply
    (ok False + error if the start function raised). Raises ActorDeadError
    if the supervisor is not running, pykka.Timeout after `timeout` s."""
    packed = any_pb2.Any()
    packed.Pack(args)
    return cast(pb.StartChildReply, sup_ref.ask(pb.StartChild(args=packed), timeout=timeout))
