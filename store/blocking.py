"""Run blocking calls (fsync, file I/O, sqlite) off the gevent hub.

`os.fsync`, `sqlite3` and plain file I/O are C calls that never yield: on the
hub's thread they stop every greenlet until they return (DESIGN.md, "Known
hazards"). `run_blocking` hands such a call to gevent's hub threadpool and
blocks only the calling greenlet until the result is back (one round trip
costs about 15 µs of hub-thread CPU here, so callers batch a whole operation
into one job rather than one job per syscall).

Outside a gevent hub context the call simply runs inline:

- in a native thread with no hub (the CLI, plain tests, a threadpool worker:
  a job that itself calls `run_blocking` must not queue behind itself);
- in the hub greenlet itself, which must never block on a result.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import gevent
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


class _Done:
    """An already-finished result (inline mode), shaped like AsyncResult."""

    __slots__ = ("_value", "_exc")

    def __init__(self, value: Any = None, exc: BaseException | None = None):
        self._value, self._exc = value, exc

    def ready(self) -> bool:
        return True

    def get(self) -> Any:
        if self._exc is not None:
            raise self._exc
        return self._value


def submit_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any):
    """Start fn(*args, **kwargs) in the hub threadpool; return at once.

    Returns an object with `.get()` (the result, or raises fn's exception;
    blocks only the calling greenlet) and `.ready()`. Inline mode (see the
    module docstring) runs fn now and returns a finished result.

    For callers that must survive an exception thrown into their greenlet
    while they wait (e.g. `ShutdownRequested`): the job keeps running, and
    the result can be waited for again (see QueueStore.put).
    """
    pool = _pool()
    if pool is None:
        try:
            return _Done(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller of get()
            return _Done(exc=e)
    return pool.spawn(fn, *args, **kwargs)


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
    return pool.spawn(fn, *args, **kwargs).get()


def configure_threadpool(n: int) -> None:
    """Set the hub threadpool's maximum number of native threads to n.

    Sized for concurrent fsyncs: queue writes wait inside the pool for their
    group-committed directory fsync (store/queue.py), so the pool bounds how
    many puts are in flight at once; 16 keeps a few threads free for
    deliveries and the span store. Call on the hub's thread, before load.
    """
    if n < 1:
        raise ValueError(f"threadpool size must be >= 1, not {n}")
    gevent.get_hub().threadpool.maxsize = n
