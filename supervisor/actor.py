"""`Actor`, the base class of every estafeta actor: pykka with OTP exits.

pykka's failure semantics differ by path (DESIGN.md, "Known hazards"): an
exception in an `ask` goes only to the caller and the actor runs on; in a
`tell` the actor stops and `on_failure` runs; in `on_start` it stops with no
hook; and a non-`Exception` BaseException (gevent.Timeout, GreenletExit,
SystemExit) makes pykka call `ActorRegistry.stop_all()`, stopping the whole
server. This module replaces pykka's private `_actor_loop` with one that
keeps pykka's observable behaviour (registry register/unregister, the
`actor_stopped` event, `_ActorStop` handled through `_handle_receive`,
ActorDeadError to asks left in the inbox at teardown) but gives every path
Erlang's "let it crash" meaning:

- any exception escaping `on_start`, a tell, an ask or `on_stop`, and any
  BaseException escaping a handler, crashes THIS actor only: it is
  unregistered, `on_failure(exc_type, exc, tb)` runs, and its supervisor is
  told `ChildExited(reason=CRASH, error="Type: message")`. An ask's caller
  also gets the exception (an `ActorDeadError` naming it for a
  non-Exception BaseException, so a stray gevent.Timeout never reaches a
  caller that might mistake it for its own);
- a clean stop (`ref.stop()`, `self.stop()`) runs `on_stop` and reports
  NORMAL, or SHUTDOWN when the supervisor marked the stop (`mark_shutdown`);
- `kill(ref)` is OTP `exit(Pid, kill)`: `ActorKilled` is thrown into the
  actor's greenlet wherever it is (idle in its inbox or deep in a handler);
  finally blocks run, on_stop does not; the supervisor is told KILLED;
- `interrupt(ref)` is OTP's `shutdown` exit signal to a process trapping
  exits: `ShutdownRequested` is thrown into an actor busy in a handler
  (e.g. an SMTP session blocked reading its socket) so it can finish
  gracefully; an idle actor is left alone (it will see the stop message).

Each actor runs in its own gevent greenlet (spawned directly: about 3x
cheaper to start than pykka's `threading.Thread` under monkey patching);
`kill` and `interrupt` need that greenlet, so they require
`gevent.monkey.patch_all()` (tests/conftest.py, the daemon).

Per message the loop adds two attribute stores and one chaos dict lookup.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
import gevent.event
import gevent.queue
import pykka
from gevent import getcurrent, monkey
from pykka import ActorDeadError, ActorRegistry
from pykka.messages import _ActorStop

from estafeta.proto import supervision_pb2
from estafeta.supervisor import chaos
from estafeta.supervisor.chaos import ChaosCrash
from estafeta.supervisor.greenlets import GeventFuture, run_in_greenlet
from estafeta.supervisor.log import kv
from estafeta.supervisor.refs import install as _install_ref_table

if TYPE_CHECKING:
    from types import TracebackType

    from pykka._envelope import Envelope

__all__ = [
    "Actor",
    "ActorKilled",
    "ChaosCrash",
    "Link",
    "ShutdownRequested",
    "describe",
    "greenlet_of",
    "interrupt",
    "join",
    "join_all",
    "kill",
    "mark_shutdown",
    "wait_started",
]


_install_ref_table()  # O(1) unregistering (supervisor/refs.py)
log = logging.getLogger("estafeta.actor")

NORMAL = supervision_pb2.NORMAL
SHUTDOWN = supervision_pb2.SHUTDOWN
CRASH = supervision_pb2.CRASH
KILLED = supervision_pb2.KILLED
_ChildExited = supervision_pb2.ChildExited


class ActorKilled(BaseException):
    """Thrown into an actor's greenlet by `kill()` (OTP `exit(Pid, kill)`).

    A BaseException so that `except Exception` in handlers does not swallow
    it; finally blocks still run.
    """


class ShutdownRequested(Exception):
    """Thrown by `interrupt()` into an actor busy in a handler: its
    supervisor is shutting it down; finish the current work and return.

    If it escapes the handler the actor stops cleanly (on_stop runs), as an
    OTP process trapping exits would on `shutdown`.
    """


@dataclass(slots=True)
class Link:
    """How a child is tied to its supervisor; the first argument of every
    Actor constructor (`SomeActor.start(link, *args)`).

    supervisor: the supervisor's ActorRef, told ChildExited when the actor
        ends for any reason; None for a root or an unsupervised actor.
    child_id: the child's id in that supervisor.
    restarts: how many times this child id was restarted before (0 on the
        first start); a restarted actor may use it (e.g. to reload state).
    """

    supervisor: pykka.ActorRef | None
    child_id: str = ""
    restarts: int = 0


def describe(exc: BaseException) -> str:
    """ "Type: message" (or "Type" when the message is empty), as ChildExited.error."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class Actor(pykka.ThreadingActor):
    """Base class of every estafeta actor (see the module docstring).

    Subclasses take a `Link | None` as their first constructor argument and
    pass it to `super().__init__(link)`; it is kept as `self.link`.

    Class attribute `interruptible_on_shutdown`: True makes the supervisor
    `interrupt()` this actor before waiting for it to stop.
    """

    interruptible_on_shutdown: ClassVar[bool] = False

    # Per-instance state, defaulted on the class so that __init__ (run once
    # per connection / queued message) stays cheap.
    _greenlet: gevent.Greenlet | None = None
    _running: bool = False  # the loop has begun
    _busy: bool = False  # inside a user handler (interrupt target)
    #: Set by interrupt(): the supervisor is shutting this actor down. An
    #: actor that was not interruptible at that moment polls it.
    shutdown_pending: bool = False
    _dying: bool = False  # unwinding is over: signals are ignored
    _shutdown_requested: bool = False  # supervisor-initiated stop
    _kill_pending: str | None = None  # killed before its loop started
    _stop_envelope: Envelope[Any] | None = None
    _past_start: bool = False  # on_start returned
    _start_waiter: gevent.event.Event | None = None  # made by wait_started()
    _ended: bool = False  # the loop is over (the greenlet may run another actor)
    _end_waiter: gevent.event.Event | None = None  # made by join()

    def __init__(self, link: Link | None) -> None:
        # pykka.Actor.__init__'s four fields (pykka 4.5), but a counter URN
        # instead of uuid4() (an os.urandom call per actor, one per
        # connection and per queued message).
        self.actor_urn = _next_urn()
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = threading.Event()
        self._actor_ref = pykka.ActorRef(self)
        self.link = link

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef:
        """pykka.Actor.start: construct, register in pykka's ActorRegistry,
        run. Without pykka's debug log lines, whose f-strings are formatted
        even when the log level drops them."""
        obj = cls(*args, **kwargs)
        ref = obj._actor_ref
        # Without the registry's RLock (gevent's pure-Python RLock under
        # monkey patching: ~3 µs a round, two per actor): the registry is a
        # RefTable (supervisor/refs.py), whose append and remove are single
        # dict operations, and actors start and stop on the hub's thread only.
        ActorRegistry._actor_refs.append(ref)  # noqa: SLF001
        obj._start_actor_loop()
        return ref

    @staticmethod
    def _create_future() -> pykka.Future:
        return GeventFuture() if monkey.is_module_patched("threading") else pykka.ThreadingFuture()

    @staticmethod
    def _create_actor_inbox():
        # gevent's SimpleQueue is C code (0.5 µs to make; its Queue 1.1 µs);
        # queue.Queue under monkey patching is gevent's pure-Python
        # Condition and Lock.
        return gevent.queue.SimpleQueue() if monkey.is_module_patched("threading") else queue.Queue()

    # ------------------------------------------------------------ the loop
    def _start_actor_loop(self) -> None:
        if monkey.is_module_patched("threading"):
            # Recorded now so kill() can reach it before the loop begins.
            self._greenlet = run_in_greenlet(self)
        else:  # plain threads: still works, but kill/interrupt cannot reach it
            super()._start_actor_loop()

    def _actor_loop(self) -> None:
        self._greenlet = getcurrent()
        self._running = True
        reason, error = NORMAL, ""
        try:
            try:
                if self._kill_pending is not None:
                    raise ActorKilled(self._kill_pending)
                self.on_start()
                self._past_start = True
                if self._start_waiter is not None:
                    self._start_waiter.set()
                self._receive_loop()
                if self._shutdown_requested:
                    reason = SHUTDOWN
            except ActorKilled as e:
                self._dying = True
                reason, error = KILLED, str(e) or "killed"
                self._killed()
            except BaseException as e:  # noqa: BLE001 - the actor boundary
                reason, error = CRASH, describe(e)
                self._crashed(e)
        except ActorKilled as e:  # a kill landed in on_failure
            self._dying = True
            reason, error = KILLED, str(e) or "killed"
            self._killed()
        self._dying = True
        self._busy = False
        if self._start_waiter is not None:
            self._start_waiter.set()
        link = self.link
        if link is not None and link.supervisor is not None:
            try:
                link.supervisor.tell(
                    _ChildExited(child_id=link.child_id, actor_urn=self.actor_urn, reason=reason, error=error)
                )
            except ActorDeadError:
                pass  # the supervisor is gone (it is stopping us, or died)
        self._actor_loop_teardown()
        self._ended = True
        if self._end_waiter is not None:
            self._end_waiter.set()
        envelope = self._stop_envelope
        if envelope is not None and envelope.reply_to is not None:
            # Resolved last: ref.stop() returning means on_stop ran and the
            # supervisor was told.
            envelope.reply_to.set(None)

    def _receive_loop(self) -> None:
        """Handle messages until stopped; exceptions propagate (= crash)."""
        get = self.actor_inbox.get
        handle = self._handle_receive
        stopped = self.actor_stopped
        maybe_crash = chaos.maybe_crash
        name = self.__class__.__name__
        while True:
            envelope = get()
            message = envelope.message
            if message.__class__ is _ActorStop:
                self._stop_envelope = envelope
                handle(message)  # -> self._stop()
                return
            self._busy = True
            try:
                maybe_crash(name)
                result = handle(message)
            except ShutdownRequested:
                self._busy = False
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception()
                self._stop()
                return
            except BaseException as exc:
                self._busy = False
                reply_to = envelope.reply_to
                if reply_to is not None:
                    if isinstance(exc, Exception):
                        reply_to.set_exception()
                    else:
                        dead = ActorDeadError(f"{self} crashed: {describe(exc)}")
                        reply_to.set_exception((ActorDeadError, dead, None))
                raise
            self._busy = False
            if envelope.reply_to is not None:
                envelope.reply_to.set(result)
            if stopped.is_set():
                return

    def _stop(self) -> None:
        """pykka's `_stop` (unregister, mark stopped, on_stop), except that
        an exception from on_stop propagates: the actor then counts as
        crashed (on_failure runs, CRASH is reported)."""
        _unregister(self._actor_ref)
        self.actor_stopped.set()
        self.on_stop()

    def _crashed(self, exc: BaseException) -> None:
        self._busy = False
        if not self.actor_stopped.is_set():
            _unregister(self._actor_ref)
            self.actor_stopped.set()
        link = self.link
        child = link.child_id if link is not None and link.child_id else "-"
        log.warning(
            "crash actor=%s child=%s error=%s",
            self.__class__.__name__,
            child,
            kv(describe(exc)),
            exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
        )
        try:
            self.on_failure(type(exc), exc, exc.__traceback__)
        except ActorKilled:
            raise
        except BaseException as e2:  # noqa: BLE001
            log.warning(
                "crash actor=%s child=%s error=%s in=on_failure",
                self.__class__.__name__,
                child,
                kv(describe(e2)),
                exc_info=e2 if log.isEnabledFor(logging.DEBUG) else None,
            )

    def _killed(self) -> None:
        self._busy = False
        if not self.actor_stopped.is_set():
            _unregister(self._actor_ref)
            self.actor_stopped.set()
        self._on_killed()

    def _on_killed(self) -> None:
        """Run (without yielding) when the actor was killed; default nothing.

        Supervisor overrides it to kill its children, as OTP links do.
        """

    def interruptible_now(self) -> bool:
        """May `interrupt()` throw ShutdownRequested into the handler now?

        Default True. An actor overrides it to protect work that must not
        be cut (an SMTP session writing a message durably): `interrupt()`
        then only sets `shutdown_pending`, which the actor polls.
        """
        return True

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Run after a crash (any path), before the supervisor is told.

        The actor is already unregistered and marked stopped.
        """

    # ----------------------------------------------------------- signals
    def _throw(self, exc: BaseException, only_if_busy: bool) -> None:
        """Hub callback: raise `exc` in the actor's greenlet where it waits.

        Runs in the hub so the actor is certainly paused, which makes the
        `_busy` test exact (no race with a handler that just returned).
        """
        if self._dying or (only_if_busy and not (self._busy and self.interruptible_now())):
            return
        if not self._running:  # the loop has not begun: it checks this first
            if isinstance(exc, ActorKilled):
                self._kill_pending = str(exc)
            return
        g = self._greenlet
        if g is not None and not g.dead:
            g.throw(exc)


#: URNs "urn:uuid:<random prefix>-<counter>": UUID-shaped (version 4,
#: variant 8), unique in the process by the counter and across processes
#: by the random prefix.
_URN_PREFIX = "urn:uuid:{:08x}-{:04x}-4{:03x}-8{:03x}-".format(*(random.getrandbits(b) for b in (32, 16, 12, 12)))
_urn_counter = itertools.count(1)


def _next_urn() -> str:
    return f"{_URN_PREFIX}{next(_urn_counter) & 0xFFFFFFFFFFFF:012x}"


def _unregister(ref: pykka.ActorRef) -> None:
    """pykka's ActorRegistry.unregister, without its debug log lines (and
    without its lock: see Actor.start)."""
    try:
        ActorRegistry._actor_refs.remove(ref)  # noqa: SLF001
    except ValueError:
        pass


def _actor(ref: pykka.ActorRef) -> Actor | None:
    # ActorRef keeps a weak reference to its actor (pykka private API, like
    # _actor_loop): None once the actor ended and was collected.
    actor = ref._actor_weakref()  # noqa: SLF001
    return actor if isinstance(actor, Actor) else None


def kill(ref: pykka.ActorRef, reason: str = "killed") -> bool:
    """Kill the actor now (OTP `exit(Pid, kill)`): `ActorKilled(reason)` is
    raised in its greenlet at its current wait point, whether idle or busy.

    Its finally blocks run, on_stop and on_failure do not; it is
    unregistered and its supervisor is told ChildExited(KILLED, error=reason).
    Asynchronous: returns at once (True if a kill was scheduled, False if
    the actor had already ended); use `join()` to wait for it.
    """
    actor = _actor(ref)
    if actor is None or actor._dying:  # noqa: SLF001
        return False
    gevent.get_hub().loop.run_callback(actor._throw, ActorKilled(reason), False)  # noqa: SLF001
    return True


def interrupt(ref: pykka.ActorRef) -> bool:
    """Tell an actor busy inside a handler that it is being shut down: raise
    `ShutdownRequested` in its greenlet (OTP `shutdown` exit signal to a
    process trapping exits). An idle actor is left alone. Either way
    `shutdown_pending` is set; the throw only lands if `interruptible_now()`
    is true when it is delivered.

    Asynchronous; returns True if the actor was busy when called (the
    busy test is repeated at delivery).
    """
    actor = _actor(ref)
    if actor is None or actor._dying:  # noqa: SLF001
        return False
    actor.shutdown_pending = True
    if not actor._busy:  # noqa: SLF001
        return False
    gevent.get_hub().loop.run_callback(actor._throw, ShutdownRequested("shutdown"), True)  # noqa: SLF001
    return True


def mark_shutdown(ref: pykka.ActorRef) -> None:
    """Mark the coming stop as requested by the supervisor: the actor will
    report ChildExited(SHUTDOWN) instead of NORMAL."""
    actor = _actor(ref)
    if actor is not None:
        actor._shutdown_requested = True  # noqa: SLF001


def wait_started(ref: pykka.ActorRef, timeout: float | None = None) -> bool:
    """Wait up to `timeout` seconds (None: forever) until the actor's
    on_start has returned, or the actor has ended (e.g. on_start raised).

    How a supervisor starts children in order, as OTP's synchronous
    start_link does: each child is initialised before the next starts.
    Returns True unless the timeout expired.
    """
    actor = _actor(ref)
    if actor is None or actor._past_start or actor._dying:  # noqa: SLF001
        return True
    waiter = actor._start_waiter  # noqa: SLF001
    if waiter is None:
        waiter = actor._start_waiter = gevent.event.Event()  # noqa: SLF001
    return waiter.wait(timeout)


def greenlet_of(ref: pykka.ActorRef) -> gevent.Greenlet | None:
    """The greenlet running the actor, None if it ended or has not begun.
    (Greenlets are reused, see supervisor/greenlets.py: do not wait for it to
    die; use join().)"""
    actor = _actor(ref)
    if actor is None or actor._ended:  # noqa: SLF001
        return None
    g = actor._greenlet  # noqa: SLF001
    return g if isinstance(g, gevent.Greenlet) else None


def join(ref: pykka.ActorRef, timeout: float | None = None) -> bool:
    """Wait up to `timeout` seconds (None: forever) for the actor to end
    completely (on_stop / on_failure done, supervisor told).

    Returns True if it ended.
    """
    actor = _actor(ref)
    if actor is None or actor._ended:  # noqa: SLF001
        return True
    if not isinstance(actor._greenlet, gevent.Greenlet):  # noqa: SLF001
        # Plain threads (no monkey patching): the stopped flag is the best we have.
        return actor.actor_stopped.wait(timeout)
    waiter = actor._end_waiter  # noqa: SLF001
    if waiter is None:
        waiter = actor._end_waiter = gevent.event.Event()  # noqa: SLF001
    return waiter.wait(timeout)


def join_all(refs: list[pykka.ActorRef], timeout: float | None = None) -> list[pykka.ActorRef]:
    """join() every actor within one overall `timeout` (seconds, None:
    forever); returns those still running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for ref in refs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not join(ref, left):
            break
    return [ref for ref in refs if not join(ref, 0)]
