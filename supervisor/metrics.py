"""Prometheus metrics of every serving process, with prometheus_client in
multiprocess mode.

Each serving process counts into its own memory-mapped files under
``<data_dir>/metrics/`` (prometheus_client's multiprocess mode: the
directory is PROMETHEUS_MULTIPROC_DIR, set by `setup` before the library
is first used); `exposition()` (the HTTP actor's ``/metrics``, process 0)
merges every process's files, so a scrape sees the whole daemon. Process
0 empties the directory at start (`setup(..., clean=True)`) before it
starts the others; a restarted process's old files stay, so its counters
keep counting across the restart (what a counter must do).

The ``count_*`` / ``observe_*`` functions are what the code calls; before
`setup` (the CLI, unit tests of other modules) they do nothing. Each adds
to an in-memory tally (~0.2 µs) that `flush()` moves into the shared
files once a second (see "counting" below; tests/bench/metrics.py,
docs/PERFORMANCE.md).

Names follow Prometheus's conventions (base units, ``_total`` for
counters):

| metric | type | labels | counted by |
|---|---|---|---|
| estafeta_connections_total | counter | listener | actors/listener.py, each accepted connection |
| estafeta_connections_refused_total | counter | reason | actors/listener.py (max_connections); rate limits |
| estafeta_messages_accepted_total | counter | | the session, at "250 queued as" |
| estafeta_messages_refused_total | counter | reason | the session, at each refusal (relay_denied, queue_full, ...) |
| estafeta_deliveries_total | counter | route, outcome | the queue item, per recipient: delivered, deferred, bounced |
| estafeta_delivery_attempt_duration_seconds | histogram | route | the queue item, per attempt |
| estafeta_delivery_delay_seconds | histogram | route | the queue item: acceptance to delivery, per recipient |
| estafeta_quarantined_total | counter | | the queue item, when it quarantines itself |
| estafeta_actor_crashes_total | counter | actor | supervisor/tree.py, each ChildExited(CRASH) |
| estafeta_actor_restarts_total | counter | actor | supervisor/tree.py, each restart |
| estafeta_spans_dropped_total | counter | | tracing/processor.py |
| estafeta_disk_request_duration_seconds | histogram | op | store/disk_client.py, submit to reply |
| estafeta_queue_items, estafeta_queue_bytes | gauge | | read from the QueueGauge at scrape time (QueueCollector) |

``route``: the courier kind, "maildir", "smtp", "lmtp" or "mda"; ``outcome``:
"delivered", "deferred" or "bounced"; ``reason`` and ``actor`` values come
from the code (a fixed set), never from a peer.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from bisect import bisect_left
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("estafeta.metrics")
_WARN_EVERY_S = 60.0

ATTEMPT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Acceptance to delivery: milliseconds (local) to the 5-day queue lifetime.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 2 * 86400, 5 * 86400)
DISK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class _Metrics:
    """The metric objects of this process, and their labelled children by
    label values (prometheus_client's labels() takes a lock and validates
    every call)."""

    def __init__(self, directory: str) -> None:
        from prometheus_client import Counter, Histogram, values

        self.directory = directory
        # A fresh value class for this directory (and this process): what
        # prometheus_client picks at import when the variable is set.
        values.ValueClass = values.MultiProcessValue()
        kw: dict[str, Any] = {"registry": None}
        self.connections = Counter("estafeta_connections", "SMTP connections accepted", ["listener"], **kw)
        self.connections_refused = Counter(
            "estafeta_connections_refused", "SMTP connections refused before a session", ["reason"], **kw
        )
        self.accepted = Counter("estafeta_messages_accepted", "Messages accepted (250 to DATA)", **kw)
        self.refused = Counter(
            "estafeta_messages_refused", "Messages or recipients refused, by reason", ["reason"], **kw
        )
        self.deliveries = Counter(
            "estafeta_deliveries", "Recipient delivery results by route and outcome", ["route", "outcome"], **kw
        )
        self.attempt = Histogram(
            "estafeta_delivery_attempt_duration_seconds",
            "Duration of one delivery attempt",
            ["route"],
            buckets=ATTEMPT_BUCKETS,
            **kw,
        )
        self.delay = Histogram(
            "estafeta_delivery_delay_seconds",
            "Time from acceptance to delivery of a recipient",
            ["route"],
            buckets=DELAY_BUCKETS,
            **kw,
        )
        self.quarantined = Counter("estafeta_quarantined", "Queue items quarantined", **kw)
        self.crashes = Counter("estafeta_actor_crashes", "Actor crashes by actor class", ["actor"], **kw)
        self.restarts = Counter("estafeta_actor_restarts", "Actor restarts by actor class", ["actor"], **kw)
        self.spans_dropped = Counter("estafeta_spans_dropped", "Spans dropped before reaching the store", **kw)
        self.disk = Histogram(
            "estafeta_disk_request_duration_seconds",
            "Disk worker requests, submit to reply",
            ["op"],
            buckets=DISK_BUCKETS,
            **kw,
        )
        self.children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def child(self, name: str, *labels: str) -> Any:
        key = (name, labels)
        c = self.children.get(key)
        if c is None:
            metric = getattr(self, name)
            c = self.children[key] = metric.labels(*labels) if labels else metric
        return c


_m: _Metrics | None = None
_last_failure = -_WARN_EVERY_S


def _failed(e: Exception) -> None:
    """A metric could not be updated (its mmap file gone, disk full): the
    caller goes on; one log line a minute at most."""
    global _last_failure
    now = time.monotonic()
    if now - _last_failure >= _WARN_EVERY_S:
        _last_failure = now
        log.warning("metrics: update failed: %s: %s", type(e).__name__, e)


def setup(directory: str, *, clean: bool = False) -> None:
    """Count into `directory` from now on (created 0700 if missing); with
    `clean`, first remove what earlier runs left there (process 0, before
    it starts the others). Sets PROMETHEUS_MULTIPROC_DIR, which the serving
    processes it starts inherit. Raises OSError if the directory cannot be
    made."""
    global _m
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if clean:
        for f in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(f)
    os.environ[ENV] = directory
    _m = _Metrics(directory)


def directory() -> str | None:
    """The directory counted into, None before setup."""
    return _m.directory if _m is not None else None


# ---------------------------------------------------------------- counting
# Counting is on the hot path (several updates per message), and an update
# of prometheus_client's multiprocess value is a lock, a pid check and an
# mmap write (1.5-3 µs, several per histogram observation). So the count_*
# and observe_* functions only add to this process's in-memory tallies
# (a dict update, ~0.2 µs), and `flush()` moves them into the shared files:
# every FLUSH_SECONDS from a greenlet (start_flusher), before process 0
# serves a scrape, and at shutdown. A scrape may therefore miss up to
# FLUSH_SECONDS of another process's counts (Prometheus scrapes every 15 s
# or more).

#: Seconds between two flushes of the tallies into the shared files.
FLUSH_SECONDS = 1.0
#: (metric name, label values) -> amount added since the last flush.
_counts: dict[tuple[str, tuple[str, ...]], float] = {}
#: (histogram name, label values) -> [count per bucket, ..., sum] since the last flush.
_observed: dict[tuple[str, tuple[str, ...]], list[float]] = {}
_BUCKETS = {"attempt": ATTEMPT_BUCKETS, "delay": DELAY_BUCKETS, "disk": DISK_BUCKETS}


def _add(name: str, labels: tuple[str, ...], n: float = 1) -> None:
    if _m is not None:
        key = (name, labels)
        _counts[key] = _counts.get(key, 0) + n


def _observe(name: str, labels: tuple[str, ...], value: float) -> None:
    if _m is None:
        return
    key = (name, labels)
    tally = _observed.get(key)
    bounds = _BUCKETS[name]
    if tally is None:
        tally = _observed[key] = [0.0] * (len(bounds) + 2)  # the buckets, +Inf, the sum
    tally[bisect_left(bounds, value)] += 1  # the first bucket with value <= its bound (+Inf past the last)
    tally[-1] += value


def flush() -> None:
    """Move this process's tallies into the shared metric files. Never
    raises (a failure is logged, at most once a minute, and the tallies
    are dropped rather than kept growing)."""
    m = _m
    if m is None or not (_counts or _observed):
        return
    counts, observed = dict(_counts), dict(_observed)
    _counts.clear()
    _observed.clear()
    try:
        for (name, labels), n in counts.items():
            m.child(name, *labels).inc(n)
        for (name, labels), tally in observed.items():
            _apply_histogram(m.child(name, *labels), tally)
    except Exception as e:  # noqa: BLE001 - counting must never fail the caller
        _failed(e)


def _apply_histogram(child: Any, tally: list[float]) -> None:
    """Add a tally (count per bucket, +Inf, sum) to a Histogram child: its
    bucket values and sum directly, as Histogram.observe does one by one
    (prometheus_client keeps them in _buckets and _sum); observe() per
    sample where those are not there."""
    buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is None or total is None or len(buckets) != len(tally) - 1:
        for i, n in enumerate(tally[:-1]):  # pragma: no cover - another prometheus_client layout
            for _ in range(int(n)):
                child.observe(child._upper_bounds[i])
        return
    for i, n in enumerate(tally[:-1]):
        if n:
            buckets[i].inc(n)
    total.inc(tally[-1])


def start_flusher() -> Any:
    """A greenlet flushing the tallies every FLUSH_SECONDS (the daemon's
    serving processes); returns it (kill it to stop, then flush())."""
    import gevent

    def loop() -> None:
        while True:
            gevent.sleep(FLUSH_SECONDS)
            flush()

    return gevent.spawn(loop)


def count_connection(listener: str) -> None:
    """An SMTP connection was accepted on `listener` (its name, "smtp")."""
    _add("connections", (listener,))


def count_connection_refused(reason: str) -> None:
    """A connection was refused before its session ("max_connections", "rate_limited")."""
    _add("connections_refused", (reason,))


def count_accepted() -> None:
    """A message was accepted: its 250 to DATA went out."""
    _add("accepted", ())


def count_refused(reason: str) -> None:
    """A message or recipient was refused, e.g. "relay_denied",
    "unknown_user", "queue_full", "too_big", "rate_limited", "dmarc_reject"."""
    _add("refused", (reason,))


def count_delivery(route: str, outcome: str, delay_seconds: float | None = None) -> None:
    """One recipient's attempt result on `route` ("maildir", "smtp",
    "lmtp", "mda"): outcome "delivered", "deferred" or "bounced"; for
    delivered, `delay_seconds` since acceptance feeds the delay histogram."""
    _add("deliveries", (route, outcome))
    if delay_seconds is not None and outcome == "delivered":
        _observe("delay", (route,), delay_seconds)


def observe_attempt(route: str, seconds: float) -> None:
    """One delivery attempt on `route` took `seconds`."""
    _observe("attempt", (route,), seconds)


def count_quarantined() -> None:
    """A queue item quarantined itself."""
    _add("quarantined", ())


def count_crash(actor: str) -> None:
    """An actor of class `actor` crashed (its supervisor saw CRASH)."""
    _add("crashes", (actor or "unknown",))


def count_restart(actor: str) -> None:
    """A supervisor restarted an actor of class `actor`."""
    _add("restarts", (actor or "unknown",))


def count_spans_dropped(n: int = 1) -> None:
    """`n` spans were dropped (buffer full, or a failed store write)."""
    if n:
        _add("spans_dropped", (), n)


def observe_disk(op: str, seconds: float) -> None:
    """A disk worker request of kind `op` ("queue_write", "maildir") took `seconds`."""
    _observe("disk", (op,), seconds)


# --------------------------------------------------------------- exposing
class QueueCollector:
    """estafeta_queue_items and estafeta_queue_bytes, read from the queue
    gauge (actors/queue.py QueueGauge: every process's counts in shared
    memory) at scrape time: nothing is counted per message."""

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        items, body_bytes = self._gauge.totals()
        yield GaugeMetricFamily("estafeta_queue_items", "Items in the queue (all serving processes)", value=items)
        yield GaugeMetricFamily("estafeta_queue_bytes", "Bytes of queued message bodies", value=body_bytes)


def exposition(extra: tuple = ()) -> tuple[bytes, str]:
    """The text exposition of every serving process's metrics (merged from
    the directory) and of the `extra` collectors: (body, content type).
    Blocking file reads: run it off the hub (store.blocking.run_blocking).
    Raises RuntimeError before setup."""
    if _m is None:
        raise RuntimeError("metrics are not set up")
    flush()
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_m.directory)
    for c in extra:
        registry.register(c)
    return generate_latest(registry), CONTENT_TYPE_LATEST
