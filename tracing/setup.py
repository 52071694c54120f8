"""Tracing set-up for the daemon: a TracerProvider writing to the local span store.

``setup_tracing`` builds an OTel SDK TracerProvider (resource service.name,
host.name) whose spans go to StoreSpanProcessor (the sqlite store at
``<data_dir>/traces.db``, bounded by age and size) and, when
``Tracing.otlp_endpoint`` is set, also to an OTLP/HTTP exporter. The provider
is NOT installed as the global one: the Tracer is handed to the actors
explicitly, so tests can set tracing up several times in one process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field

import gevent
from gevent import monkey
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from estafeta.proto import config_pb2
from estafeta.store.spans import SpanStore
from estafeta.tracing.processor import StoreSpanProcessor
from estafeta.tracing.tracer import fast_tracer

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "estafeta"
#: Seconds between full cleanups (age and size) of the span store.
CLEANUP_INTERVAL_SECONDS = 300.0


class _CountingProcessor(SpanProcessor):
    """Wraps the SDK's BatchSpanProcessor (OTLP) to count the spans it would
    drop: its queue is a bounded deque that silently discards the oldest span
    when full (DESIGN.md, "Known hazards"). Peeks at its private queue; if a
    later SDK renames it, counting stops (0) but export goes on."""

    def __init__(self, inner: SpanProcessor, max_queue_size: int):
        self._inner = inner
        self._max = max_queue_size
        self._queue = getattr(getattr(inner, "_batch_processor", None), "_queue", None)
        self.dropped = 0

    def on_start(self, span, parent_context=None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span) -> None:
        q = self._queue
        if q is not None and len(q) >= self._max:
            self.dropped += 1
        self._inner.on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


@dataclass
class Tracing:
    """The daemon's tracing: ``tracer`` for the actors, the store processor,
    and flush/shutdown. With tracing disabled, tracer is a no-op tracer and
    processor None."""

    tracer: trace.Tracer
    processor: StoreSpanProcessor | None = None
    provider: TracerProvider | None = None
    otlp: _CountingProcessor | None = field(default=None, repr=False)

    @property
    def dropped(self) -> int:
        """Spans dropped by the store buffer plus those the OTLP queue dropped."""
        return self.store_dropped + self.otlp_dropped

    @property
    def store_dropped(self) -> int:
        """Spans the local store never received (buffer full, failed write)."""
        return self.processor.dropped if self.processor else 0

    @property
    def otlp_dropped(self) -> int:
        """Spans the OTLP exporter's queue discarded (0 without OTLP)."""
        return self.otlp.dropped if self.otlp else 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every buffered span to the store (and push OTLP's queue);
        False if ``timeout`` seconds ran out first."""
        if self.provider is None:
            return True
        ok = self.processor.force_flush(int(timeout * 1000))
        if self.otlp is not None:
            # The SDK's batch processor does not bound its flush by the
            # timeout (its exporter retries a dead endpoint with backoff).
            pushed = False
            with gevent.Timeout(timeout, False):
                pushed = self.otlp.force_flush(int(timeout * 1000))
            ok = ok and pushed
        return ok

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush and close: called once on SIGTERM, after the actors stopped.
        Spans ended afterwards are dropped."""
        if self.provider is None:
            return
        self.processor.shutdown(int(timeout * 1000))
        if self.otlp is not None:
            with gevent.Timeout(timeout, False):
                self.otlp.shutdown()
            if self.otlp.dropped:
                log.warning("OTLP exporter dropped %d spans (queue full)", self.otlp.dropped)
        if self.processor.dropped:
            log.warning("span store: %d spans dropped in this run", self.processor.dropped)
        self.provider = None


class _OsThreading:
    """Stands in for the `threading` module inside the OTel SDK's span
    modules: `Lock` and `RLock` are the OS ones even under gevent's monkey
    patching; everything else is the (patched) threading module's.

    Why: a span makes 3-4 locks (the span's, its attributes', its event and
    link lists'); gevent's are Python objects, about 11 µs of a span's 28 µs
    (measured: 17 µs per span with these). Safe here because every span is
    created, changed and ended on the hub's thread, and the SDK never yields
    inside those locks (nothing in them does I/O; span processors run after
    release), so an OS lock is never contended; our span store reads ended
    spans in a pool thread without taking them.
    """

    Lock = staticmethod(monkey.get_original("_thread", "allocate_lock"))
    RLock = staticmethod(monkey.get_original("threading", "RLock"))

    def __getattr__(self, name: str):
        return getattr(threading, name)


def _use_os_locks_in_spans() -> None:
    """Point the SDK's span modules at _OsThreading (see there)."""
    import opentelemetry.attributes
    import opentelemetry.sdk.trace
    import opentelemetry.sdk.util

    shim = _OsThreading()
    for module in (opentelemetry.sdk.trace, opentelemetry.attributes, opentelemetry.sdk.util):
        if getattr(module, "threading", None) is threading:
            module.threading = shim  # type: ignore[attr-defined]


def setup_tracing(cfg: config_pb2.Tracing, db_path: str, *, service_name: str = "estafeta", hostname: str) -> Tracing:
    """Build tracing from the config's ``Tracing`` message.

    ``db_path``: the span store file (its directory is created if missing).
    ``hostname``: the host.name resource attribute (empty: this machine's
    name). Opens the store in the hub's threadpool and starts the flusher
    greenlet; raises sqlite3.Error / OSError if the store cannot be opened.
    """
    if not cfg.enabled:
        return Tracing(tracer=trace.NoOpTracer())
    if monkey.is_module_patched("threading"):
        _use_os_locks_in_spans()
    resource = Resource.create({"service.name": service_name, "host.name": hostname or socket.gethostname()})
    parent = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(parent, exist_ok=True)
    store = gevent.get_hub().threadpool.apply(SpanStore, (db_path,))
    processor = StoreSpanProcessor(
        store,
        max_buffered_spans=cfg.max_buffered_spans,
        flush_interval_seconds=cfg.flush_interval_seconds,
        retention_seconds=cfg.retention_seconds,
        max_store_bytes=cfg.max_store_bytes,
        cleanup_interval_seconds=CLEANUP_INTERVAL_SECONDS,
    )
    # shutdown_on_exit=False: the daemon shuts down explicitly on SIGTERM;
    # an atexit hook would run after gevent's hub is gone.
    # ALWAYS_ON, not the SDK's default ParentBased(ALWAYS_ON): every span's
    # parent is one of ours and sampled anyway (every message is traced),
    # and it skips a dispatch per span.
    provider = TracerProvider(resource=resource, sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    otlp = None
    if cfg.otlp_endpoint:
        otlp = _otlp_processor(cfg)
        provider.add_span_processor(otlp)
    processor.start()
    log.info("tracing to %s%s", db_path, f" and {cfg.otlp_endpoint}" if otlp else "")
    return Tracing(
        tracer=fast_tracer(provider, INSTRUMENTATION_NAME), processor=processor, provider=provider, otlp=otlp
    )


def _otlp_processor(cfg: config_pb2.Tracing) -> _CountingProcessor:
    # Imported only when configured: it pulls in requests and the OTLP protos.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Sized like our own buffer (the SDK's default 2048 is a few seconds of
    # a busy server); its worker thread is a greenlet under monkey-patching
    # and its HTTP requests yield to the hub.
    size = max(2048, cfg.max_buffered_spans)
    bsp = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=cfg.otlp_endpoint),
        max_queue_size=size,
        max_export_batch_size=min(size, 2048),
        schedule_delay_millis=max(100, cfg.flush_interval_seconds * 1000),
    )
    return _CountingProcessor(bsp, size)
