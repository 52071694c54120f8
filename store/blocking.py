"""Run blocking calls (fsync, file I/O, sqlite) off the gevent hub.

`os.fsync`, `sqlite3` and plain file I/O are C calls that never yield: on the
hub's thread they stop every greenlet until they return (DESIGN.md, "Known
hazards"). `run_blocking` hands such a call to gevent's hub threadpool and
blocks only the calling greenlet until the result is back. A round trip
costs the hub thread about 15 µs of CPU when it is busy anyway, and 40-70 µs
on this VM when it has to sleep and be woken for the result (measured): so
callers batch a whole operation, or several, into one job rather than one
job per syscall.

Outside a gevent hub context the call simply runs inline:

- in a native thread with no hub (the CLI, plain tests, a threadpool worker:
  a job that itself calls `run_blocking` must not queue behind itself);
- in the hub greenlet itself, which must never block on a result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.threadpool
from gevent import getcurrent
from gevent._hub_local import get_hub_if_exists

T = TypeVar("T")

#: gevent's worker greenlet class: the current greenlet while a pool job
#: runs. Private in gevent, hence the fallback (then a worker only runs
#: nested calls inline if its thread has no hub, the usual case).
_WORKER = getattr(gevent.threadpool, "_WorkerGreenlet", ())


def _pool() -> gevent.threadpool.ThreadPool | None:
    """The hub threadpool to use from here, or None to run inline."""
    hub = get_hub_if_exists()
    if hub is None:
        return None
    cur = getcurrent()
    if cur is hub or isinstance(cur, _WORKER):
        return None
    return hub.threadpool


def in_hub_context() -> bool:
    """True if run_blocking would use the hub threadpool from here (a
    greenlet other than the hub, in a thread with a hub); False where it
    runs inline."""
    return _pool() is not None


def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn(*args, **kwargs) in gevent's hub threadpool and return its
    result (or raise its exception), blocking only the calling greenlet.

    Runs inline when there is no gevent hub context (see the module
    docstring): safe to call from the CLI, from tests and from inside
    another `run_blocking` job.
    """
    pool = _pool()
    if pool is None:
        return fn(*args, **kwargs)
    ok, value = pool.spawn(_catching, fn, args, kwargs).get()
    if ok:
        return value
    raise value


def _catching(fn: Callable[..., T], args: tuple, kwargs: dict) -> tuple[bool, Any]:
    """(True, result) or (False, the exception): an exception is handed to
    the caller, who expects it (a file gone, ENOSPC), instead of gevent's
    threadpool printing a traceback of it to stderr as well."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised in the caller
        return False, e


def configure_threadpool(n: int) -> None:
    """Set the hub threadpool's maximum number of native threads to n.

    In the daemon the pool runs the span store's sqlite writes and the few
    file reads (recovery, item loads after a restart); its durable writes
    go to the disk worker process instead (store/disk_worker.py). Without
    one (tests, the CLI) queue writes and Maildir deliveries run here too.
    Call on the hub's thread, at start-up.
    """
    if n < 1:
        raise ValueError(f"threadpool size must be >= 1, not {n}")
    gevent.get_hub().threadpool.maxsize = n


class Request:
    """One caller's request to a Batcher: `args` in; `result` or `error`
    out, set by Batcher.execute in the pool thread; `finished` once the
    batch is done."""

    __slots__ = ("args", "result", "error", "finished", "event")

    def __init__(self, args: tuple):
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.event: Any = None


class Batcher:
    """Group commit of blocking work: the requests of every greenlet waiting
    at the same moment run in ONE threadpool job.

    Subclasses implement `execute(requests)` (blocking, in a pool thread):
    do the work of every request, in order, setting each one's `result` or
    `error`, sharing what can be shared (one directory fsync for all, the
    writeback of many files at once). A runner greenlet hands the pending
    requests (at most `max_batch`) to one job at a time; requests arriving
    meanwhile form the next batch. So requests run in call order, and under
    load the hub pays one pool round trip and no thread wake-up per request
    — the cross-thread wake-ups, not the Python code, dominate the hub's
    CPU per blocking call on this VM (perf: finish_task_switch, futex).

    `call(*args)` submits and waits; outside a hub context it runs
    `execute([request])` inline. Counters: `batches`, `requests`.
    """

    def __init__(self, max_batch: int = 64):
        self.max_batch = max_batch
        self.batches = 0
        self.requests = 0
        self._pending: list[Request] = []
        self._next: Any = None  # Event set when the batch taking _pending is done
        self._runner: Any = None  # the greenlet feeding the pool while there is work

    def execute(self, requests: Sequence[Request]) -> None:  # pragma: no cover - abstract
        """Do the requests' work (blocking; runs in a pool thread)."""
        raise NotImplementedError

    def call(self, *args: Any) -> Any:
        """Submit a request and wait for it; returns its result or raises
        its error. Blocks only the calling greenlet."""
        req = Request(args)
        if _pool() is None:
            self.execute([req])
            req.finished = True
            if req.error is not None:
                raise req.error
            return req.result
        self.submit(req)
        return self.wait(req)

    def submit(self, req: Request) -> Request:
        """Queue a request for the next batch (hub context only)."""
        if self._next is None:
            self._next = gevent.event.Event()
        req.event = self._next
        self._pending.append(req)
        if self._runner is None:
            self._runner = gevent.spawn(self._loop)
        return req

    def wait(self, req: Request) -> Any:
        """Block the calling greenlet until req is done; return its result
        or raise its error. An exception thrown in meanwhile
        (ShutdownRequested, a Timeout) propagates, and req still runs in its
        turn: wait(req) again to see how it went."""
        while not req.finished:
            req.event.wait()
        if req.error is not None:
            raise req.error
        return req.result

    def _loop(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                done, self._next = self._next, gevent.event.Event()
                for req in self._pending:  # left for the next batch
                    req.event = self._next
                result = _pool().spawn(self.execute, batch)
                try:
                    result.get()
                except BaseException as e:
                    if not result.ready():  # this greenlet is being killed
                        # Fail everything queued (the job may still finish
                        # in its thread: its outcome is unknown to callers).
                        stranded, self._pending = batch + self._pending, []
                        later, self._next = self._next, None
                        for req in stranded:
                            req.error = req.error or e
                            req.finished = True
                        done.set()
                        later.set()
                        raise
                    for req in batch:  # execute itself failed (a bug, MemoryError)
                        req.error = req.error or e
                for req in batch:
                    req.finished = True
                    req.args = ()  # drop the data (e.g. a message body) now
                self.batches += 1
                self.requests += len(batch)
                done.set()
                # Let the callers just woken queue their next requests, so
                # they share the next batch instead of trickling in after it.
                gevent.sleep(0)
        finally:
            self._runner = None
