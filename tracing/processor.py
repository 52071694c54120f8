"""StoreSpanProcessor: buffers finished spans and writes them to the SpanStore in batches.

Why not the SDK's BatchSpanProcessor: it silently drops spans when its queue
is full (DESIGN.md, "Known hazards") and its worker would run sqlite on the
hub. Here:

- ``on_end`` (on the caller's hot path) only appends the span to a list:
  O(1), no conversion, no I/O;
- a full buffer drops the span and COUNTS it (``dropped``; persisted in the
  store's meta table so ``estafeta traces list`` shows it), logging a warning
  at most once a minute;
- one flusher greenlet wakes every flush_interval_seconds (or early when the
  buffer passes EARLY_FLUSH_SPANS) and hands the whole batch to the hub's
  threadpool, where it is converted to rows and inserted with one
  executemany. Conversion runs there too: it needs no hub state, and in a
  worker thread the hub keeps serving connections between the GIL's switch
  intervals instead of stalling for the whole batch;
- the same greenlet trims the store: a cheap size check after every flush,
  the full age/size cleanup every cleanup_interval_seconds (so an idle
  server still expires old traces).

Spans must be ended on the hub's thread (where every actor runs): the early
wake-up sets a gevent Event, which is not thread-safe.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import gevent
import gevent.event
from gevent import monkey
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from estafeta.store.spans import SpanStore
from estafeta.store.tracesearch import IndexEntry, index_entry
from estafeta.supervisor import metrics

log = logging.getLogger(__name__)

#: Buffer length that wakes the flusher before its interval is up.
EARLY_FLUSH_SPANS = 2000
_WARN_EVERY_S = 60.0

# A real OS lock (not gevent's): it is taken inside threadpool workers, and a
# greenlet interrupted by a timeout while its worker still writes must not
# let the next writer onto the same sqlite connection.
_OsLock = monkey.get_original("_thread", "allocate_lock")

_KIND = {k: k.name for k in SpanKind}
_STATUS = {s: s.name for s in StatusCode}
# Compact JSON, C encoder; default=str keeps an odd attribute value from
# failing a whole batch.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _attrs(a) -> dict | None:
    # BoundedAttributes keeps a plain dict in _dict: encoding it directly
    # avoids the MappingProxy/copy of the public ``attributes`` property.
    if not a:
        return None
    d = getattr(a, "_dict", None)
    return d if d is not None else dict(a)


def span_to_row(span: ReadableSpan, cache: list | None = None) -> tuple:
    """One finished span as a SpanStore row (SPAN_COLUMNS order): ids as
    lowercase hex, times in ns, attributes/events/links as compact JSON (None
    when empty). About 5 µs for a span with 6 attributes: it reads the
    ReadableSpan's fields directly (the public properties copy). ``cache``:
    a caller-owned [resource, service name] pair, reused across a batch."""
    if cache is None:
        cache = [None, None]
    ctx = span._context
    parent = span._parent
    attrs = _attrs(span._attributes)
    events = span._events
    links = span._links
    resource = span._resource
    if resource is not cache[0]:  # one resource per provider: look service.name up once
        cache[1] = resource.attributes.get("service.name")
        cache[0] = resource
    status = span._status
    return (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else None,
        span._name,
        _KIND.get(span._kind, "INTERNAL"),
        span._start_time,
        span._end_time,
        _STATUS.get(status.status_code, "UNSET"),
        status.description,
        _dumps(attrs) if attrs else None,
        _dumps([{"name": e.name, "time_ns": e.timestamp, "attributes": _attrs(e.attributes) or {}} for e in events])
        if events
        else None,
        _dumps(
            [
                {
                    "trace_id": format(k.context.trace_id, "032x"),
                    "span_id": format(k.context.span_id, "016x"),
                    "attributes": _attrs(k.attributes) or {},
                }
                for k in links
            ]
        )
        if links
        else None,
        attrs.get("estafeta.queue_id") if attrs else None,
        attrs.get("estafeta.message_id") if attrs else None,
        cache[1],
    )


def span_index(span: ReadableSpan) -> IndexEntry:
    """The span's search keys and outcome (store/tracesearch.py), read from
    its attribute dicts directly rather than from the row's JSON."""
    events = span._events
    return index_entry(
        span._name,
        _STATUS.get(span._status.status_code, "UNSET"),
        _attrs(span._attributes),
        [(e.name, e.attributes) for e in events] if events else None,
    )


class StoreSpanProcessor(SpanProcessor):
    """Buffer finished spans in memory and flush them to ``store`` in batches.

    ``max_buffered_spans``: spans held before new ones are dropped (counted).
    ``flush_interval_seconds``: the flusher's period. ``retention_seconds`` /
    ``max_store_bytes``: the store's bounds, applied by the flusher (0: none).
    The flusher greenlet starts with start(); force_flush()/shutdown() work
    without it. Not thread-safe: call on the hub's thread. ``written``
    counts spans stored so far.
    """

    def __init__(
        self,
        store: SpanStore,
        *,
        max_buffered_spans: int = 100_000,
        flush_interval_seconds: float = 1.0,
        retention_seconds: float = 0,
        max_store_bytes: int = 0,
        cleanup_interval_seconds: float = 300.0,
    ):
        self._store = store
        self._max = max(1, max_buffered_spans)
        self._early = min(EARLY_FLUSH_SPANS, max(1, self._max // 2))
        self._interval = max(0.01, flush_interval_seconds)
        self._retention = retention_seconds
        self._max_bytes = max_store_bytes
        self._cleanup_interval = cleanup_interval_seconds
        self._buf: list[ReadableSpan] = []
        self._dropped = 0
        self._dropped_stored = 0
        self._last_warn = -_WARN_EVERY_S
        self._wake = gevent.event.Event()
        self._db_lock = _OsLock()
        self._service_cache: list = [None, None]  # used under _db_lock only
        self._flusher: gevent.Greenlet | None = None
        self._closed = False
        self.written = 0

    # -- SpanProcessor -------------------------------------------------------

    def on_end(self, span: ReadableSpan) -> None:
        """Buffer a finished span (O(1)); drop and count it when the buffer is full."""
        buf = self._buf
        if len(buf) >= self._max or self._closed:
            self._drop(1)
            return
        buf.append(span)
        if len(buf) == self._early:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every buffered span now (blocking this greenlet, not the hub).
        Returns False if the timeout ran out first (the batch being written
        still completes in its worker)."""
        done = False
        with gevent.Timeout(timeout_millis / 1000, False):
            # Loop: spans ended by other greenlets while a batch was being
            # written are part of "everything" too.
            while self._buf or self._dropped != self._dropped_stored:
                if not self._flush_once():
                    return False
            # The flusher may have a batch in a worker right now: wait for
            # it too (taking the write lock in a worker, after it).
            gevent.get_hub().threadpool.apply(self._barrier)
            done = True
        return done

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Stop the flusher, flush everything, close the store. Spans ended
        afterwards are dropped (counted). Idempotent."""
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.kill(block=True, timeout=timeout_millis / 1000)
        self._closed = True  # from here on_end drops (and counts)
        ok = self.force_flush(timeout_millis)
        if not ok:
            log.warning("span store: shutdown flush timed out with %d spans buffered", len(self._buf))
        try:
            gevent.get_hub().threadpool.apply(self._close_store)
        except Exception as e:  # closing is best effort at shutdown
            log.warning("span store: close failed: %s", e)

    # -- ours ------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Spans dropped since this processor started (buffer full, or a write failed)."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """Spans waiting to be written."""
        return len(self._buf)

    def start(self) -> None:
        """Start the flusher greenlet."""
        if self._flusher is None and not self._closed:
            self._flusher = gevent.spawn(self._run)

    def _drop(self, n: int) -> None:
        self._dropped += n
        metrics.count_spans_dropped(n)
        now = time.monotonic()
        if now - self._last_warn >= _WARN_EVERY_S:
            self._last_warn = now
            log.warning("span buffer full (%d spans): %d spans dropped so far", self._max, self._dropped)

    def _run(self) -> None:
        last_cleanup = time.monotonic()
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                now = time.monotonic()
                full = now - last_cleanup >= self._cleanup_interval
                self._flush_once(cleanup="full" if full else "size")
                if full:
                    last_cleanup = now
            except gevent.GreenletExit:
                raise
            except Exception:  # keep flushing: a bad batch must not stop tracing
                log.exception("span store: flush failed")

    def _flush_once(self, cleanup: str | None = None) -> bool:
        """Write the current buffer (and the drop counter's increase); False
        if the write failed."""
        batch, self._buf = self._buf, []
        delta = self._dropped - self._dropped_stored
        if not batch and not delta and cleanup is None:
            return True
        # Counted as stored before the write, so a flush running meanwhile
        # (force_flush while the flusher writes) does not store it twice.
        self._dropped_stored += delta
        try:
            removed, trim_error = gevent.get_hub().threadpool.apply(self._write, (batch, delta, cleanup))
        except Exception as e:
            # The batch is lost: count it, so the loss is visible.
            self._dropped_stored -= delta
            self._dropped += len(batch)
            metrics.count_spans_dropped(len(batch))
            log.error("span store: writing %d spans failed: %s", len(batch), e)
            return False
        self.written += len(batch)
        # Logged here, not in the worker: logging's locks are gevent's.
        if removed:
            log.info("span store: removed %d old traces", removed)
        if trim_error:
            log.error("span store: cleanup failed: %s", trim_error)
        return True

    def _write(self, batch: Sequence[ReadableSpan], dropped: int, cleanup: str | None) -> tuple[int, str | None]:
        """Runs in a threadpool worker: convert, insert, maybe trim. Returns
        (traces removed, cleanup error or None); raises if the insert failed."""
        with self._db_lock:
            if batch or dropped:
                cache = self._service_cache
                self._store.insert(
                    [span_to_row(s, cache) for s in batch], dropped=dropped, index=[span_index(s) for s in batch]
                )
            try:  # the batch is stored: a failed trim must not count it as lost
                if cleanup == "full" or (
                    cleanup == "size" and self._max_bytes and self._store.used_bytes() > self._max_bytes
                ):
                    return self._store.cleanup(self._retention, self._max_bytes), None
            except Exception as e:
                return 0, f"{type(e).__name__}: {e}"
            return 0, None

    def _barrier(self) -> None:
        with self._db_lock:
            pass

    def _close_store(self) -> None:
        with self._db_lock:
            self._store.close()
