"""Tracing set-up, the store span processor and W3C propagation, with the real
OTel SDK and a real sqlite file."""

from __future__ import annotations

import logging
import os
import timeit

import gevent
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from estafeta.proto import common_pb2, config_pb2
from estafeta.store.spans import SpanStore
from estafeta.tracing import processor as processor_mod
from estafeta.tracing.processor import StoreSpanProcessor, span_to_row
from estafeta.tracing.propagation import extract, inject, link_to, span_context
from estafeta.tracing.setup import setup_tracing

ATTRS = {
    "estafeta.queue_id": "4Xq9Tz",
    "estafeta.message_id": "abc@example.org",
    "network.peer.address": "192.0.2.7",
    "server.address": "mx.example.org",
    "smtp.reply.code": 250,
    "estafeta.recipient": "bob@example.org",
}


def cfg(**kw) -> config_pb2.Tracing:
    kw.setdefault("flush_interval_seconds", 3600)  # no background flush unless a test wants it
    return config_pb2.Tracing(**kw)


@pytest.fixture
def tracing(tmp_path):
    t = setup_tracing(cfg(), str(tmp_path / "traces.db"), hostname="mx1.test")
    yield t
    t.shutdown(timeout=5)


def read(tmp_path) -> SpanStore:
    return SpanStore(str(tmp_path / "traces.db"), readonly=True)


# -- propagation --------------------------------------------------------------


def test_spans_across_an_actor_boundary_form_one_trace(tracing, tmp_path):
    tracer = tracing.tracer
    session = tracer.start_span("smtp.session", kind=SpanKind.SERVER)
    txn = tracer.start_span("smtp.transaction", links=[link_to(inject(session))])
    # The message crosses to another actor as bytes (a queue file, a pykka
    # message): only the TraceContext goes with it.
    wire = common_pb2.TraceContext.FromString(inject(txn).SerializeToString())

    def other_actor():
        with tracer.start_as_current_span("delivery.attempt", context=extract(wire)) as attempt:
            attempt.set_attribute("estafeta.queue_id", "Q1")
            inner = inject()  # the current span, handed on again
            with tracer.start_as_current_span("courier.local", context=extract(inner)):
                pass

    gevent.spawn(other_actor).join(timeout=5)
    txn.end()
    session.end()
    assert tracing.flush(timeout=5)
    store = read(tmp_path)
    t = format(txn.get_span_context().trace_id, "032x")
    spans = {s.name: s for s in store.spans(t)}
    assert set(spans) == {"smtp.transaction", "delivery.attempt", "courier.local"}
    assert spans["smtp.transaction"].parent_span_id is None
    assert spans["delivery.attempt"].parent_span_id == spans["smtp.transaction"].span_id
    assert spans["courier.local"].parent_span_id == spans["delivery.attempt"].span_id
    (link,) = spans["smtp.transaction"].links
    assert link["trace_id"] == format(session.get_span_context().trace_id, "032x")
    assert link["span_id"] == format(session.get_span_context().span_id, "016x")
    assert store.resolve("Q1") == [t]


def test_inject_forms(tracing):
    assert inject() == common_pb2.TraceContext()  # no current span
    assert inject(trace.INVALID_SPAN) == common_pb2.TraceContext()
    span = tracing.tracer.start_span("x")
    sc = span.get_span_context()
    tp = inject(span).traceparent
    assert tp == f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"
    assert inject(sc).traceparent == tp
    assert inject(trace.set_span_in_context(span)).traceparent == tp
    with trace.use_span(span, end_on_exit=True):
        assert inject().traceparent == tp


def test_extract_empty_or_invalid_is_a_new_root(tracing):
    for tc in (None, common_pb2.TraceContext(), common_pb2.TraceContext(traceparent="garbage")):
        ctx = extract(tc)
        assert not trace.get_current_span(ctx).get_span_context().is_valid
        root = tracing.tracer.start_span("r", context=ctx)
        assert root.parent is None
        root.end()
    assert not link_to(common_pb2.TraceContext()).context.is_valid


TRACEPARENTS = [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "  00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03\t",
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # uppercase: invalid
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has no more fields
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",  # later version: ignored tail
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",  # short trace id
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
    "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "",
]


@pytest.mark.parametrize("tp", TRACEPARENTS)
@pytest.mark.parametrize("ts", ["", "vendor=abc,other=x-y"])
def test_parsing_agrees_with_the_otel_propagator(tp, ts):
    carrier = {"traceparent": tp}
    if ts:
        carrier["tracestate"] = ts
    want = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    got = span_context(common_pb2.TraceContext(traceparent=tp, tracestate=ts))
    assert (got.is_valid, got.trace_id, got.span_id, got.trace_flags, got.is_remote) == (
        want.is_valid,
        want.trace_id,
        want.span_id,
        want.trace_flags,
        want.is_remote,
    )
    if want.is_valid:
        assert dict(got.trace_state) == dict(want.trace_state)
        # And back out: what we inject the propagator injects too.
        out = {}
        TraceContextTextMapPropagator().inject(out, trace.set_span_in_context(trace.NonRecordingSpan(want)))
        mine = inject(got)
        assert (mine.traceparent, mine.tracestate) == (out["traceparent"], out.get("tracestate", ""))


# -- the processor --------------------------------------------------------------


def provider_with(processor) -> trace.Tracer:
    p = TracerProvider(resource=Resource.create({"service.name": "estafeta"}), shutdown_on_exit=False)
    p.add_span_processor(processor)
    return p.get_tracer("t")


def test_full_buffer_drops_and_counts(tmp_path, caplog):
    store = SpanStore(str(tmp_path / "traces.db"))
    proc = StoreSpanProcessor(store, max_buffered_spans=5, flush_interval_seconds=3600)
    tracer = provider_with(proc)
    with caplog.at_level(logging.WARNING, logger=processor_mod.__name__):
        for i in range(12):
            tracer.start_span(f"s{i}").end()
    assert proc.dropped == 7 and proc.buffered == 5
    assert len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 1  # once a minute
    assert proc.force_flush(5000)
    assert proc.dropped == 7 and proc.buffered == 0
    proc.shutdown()
    r = read(tmp_path)
    assert r.dropped() == 7  # persisted for `estafeta traces list`
    assert sorted(t.root_name for t in r.list_traces()) == [f"s{i}" for i in range(5)]


def test_shutdown_writes_everything_then_drops(tmp_path):
    t = setup_tracing(cfg(), str(tmp_path / "traces.db"), hostname="mx1.test")
    for i in range(300):
        with t.tracer.start_as_current_span("a", attributes={"i": i}):
            with t.tracer.start_as_current_span("b"):
                pass
    assert t.processor.buffered == 600
    t.shutdown(timeout=5)
    t.tracer.start_span("late").end()
    assert t.dropped == 1
    r = read(tmp_path)
    assert r.conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 600
    assert len(r.list_traces(limit=1000)) == 300
    assert r.spans(r.list_traces(limit=1)[0].trace_id)[0].service == "estafeta"
    t.shutdown(timeout=5)  # idempotent


def test_background_flusher_writes_on_its_interval(tmp_path):
    t = setup_tracing(cfg(flush_interval_seconds=0.05), str(tmp_path / "traces.db"), hostname="h")
    try:
        t.tracer.start_span("tick").end()
        deadline = 40
        while deadline and t.processor.written < 1:
            gevent.sleep(0.05)
            deadline -= 1
        assert [x.root_name for x in read(tmp_path).list_traces()] == ["tick"]
    finally:
        t.shutdown(timeout=5)


def test_flusher_wakes_early_on_a_big_buffer(tmp_path):
    t = setup_tracing(cfg(), str(tmp_path / "traces.db"), hostname="h")  # interval: an hour
    try:
        for _ in range(processor_mod.EARLY_FLUSH_SPANS):
            t.tracer.start_span("x").end()
        for _ in range(100):
            if t.processor.written:
                break
            gevent.sleep(0.02)
        assert t.processor.written == processor_mod.EARLY_FLUSH_SPANS
    finally:
        t.shutdown(timeout=5)


def test_failed_write_counts_the_batch_as_dropped(tmp_path):
    store = SpanStore(str(tmp_path / "traces.db"))
    proc = StoreSpanProcessor(store, flush_interval_seconds=3600)
    tracer = provider_with(proc)
    for _ in range(4):
        tracer.start_span("x").end()
    store.conn.close()  # every write now fails
    assert proc.force_flush(2000) is False
    assert proc.dropped == 4 and proc.buffered == 0


def test_disabled_tracing_records_nothing(tmp_path):
    t = setup_tracing(cfg(enabled=False), str(tmp_path / "traces.db"), hostname="h")
    span = t.tracer.start_span("x")
    assert not span.is_recording()
    assert inject(span) == common_pb2.TraceContext()
    assert t.flush() and t.dropped == 0
    t.shutdown()
    assert not (tmp_path / "traces.db").exists()


def test_setup_twice_in_one_process(tmp_path):
    a = setup_tracing(cfg(), str(tmp_path / "a" / "traces.db"), hostname="h")
    b = setup_tracing(cfg(), str(tmp_path / "b" / "traces.db"), hostname="h")
    a.tracer.start_span("in-a").end()
    b.tracer.start_span("in-b").end()
    a.shutdown(timeout=5)
    b.shutdown(timeout=5)
    assert [x.root_name for x in SpanStore(str(tmp_path / "a" / "traces.db"), readonly=True).list_traces()] == ["in-a"]
    assert [x.root_name for x in SpanStore(str(tmp_path / "b" / "traces.db"), readonly=True).list_traces()] == ["in-b"]


def test_row_conversion(tracing):
    parent = tracing.tracer.start_span("p")
    span = tracing.tracer.start_span(
        "c",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes=ATTRS,
        links=[link_to(inject(parent))],
    )
    span.add_event("reply", {"smtp.reply.code": 451}, timestamp=123)
    span.set_status(Status(StatusCode.ERROR, "451 4.3.0 later"))
    span.end()
    (ended,) = [s for s in tracing.processor._buf if s.name == "c"]
    r = dict(
        zip(
            (
                "trace_id",
                "span_id",
                "parent_span_id",
                "name",
                "kind",
                "start_ns",
                "end_ns",
                "status",
                "status_message",
                "attributes",
                "events",
                "links",
                "queue_id",
                "message_id",
                "service",
            ),
            span_to_row(ended),
        )
    )
    psc = parent.get_span_context()
    assert r["trace_id"] == f"{psc.trace_id:032x}" and r["parent_span_id"] == f"{psc.span_id:016x}"
    assert (r["kind"], r["status"], r["status_message"]) == ("CLIENT", "ERROR", "451 4.3.0 later")
    assert r["attributes"].startswith('{"estafeta.queue_id":"4Xq9Tz",')  # compact JSON
    assert r["events"] == '[{"name":"reply","time_ns":123,"attributes":{"smtp.reply.code":451}}]'
    assert f'"span_id":"{psc.span_id:016x}"' in r["links"]
    assert (r["queue_id"], r["message_id"], r["service"]) == ("4Xq9Tz", "abc@example.org", "estafeta")
    parent.end()


def test_cost_per_span_end_to_end(tmp_path, capsys):
    """Create + end (on the hub) + convert + insert (threadpool work), per
    span with 6 attributes; the report quotes this figure."""
    t = setup_tracing(cfg(max_buffered_spans=1_000_000), str(tmp_path / "traces.db"), hostname="h")
    tracer, proc = t.tracer, t.processor
    n = 6000

    def one_batch():
        # Traces of 6 spans (a root and 5 children), as a message makes.
        for _ in range(n // 6):
            root = tracer.start_span("smtp.transaction", attributes=ATTRS)
            ctx = trace.set_span_in_context(root)
            for _ in range(5):
                tracer.start_span("delivery.attempt", context=ctx, attributes=ATTRS).end()
            root.end()

    try:
        hub = min(timeit.repeat(one_batch, number=1, repeat=3)) / n * 1e6
        proc.force_flush(10_000)
        one_batch()
        spans = list(proc._buf)
        proc._buf.clear()
        convert = min(timeit.repeat(lambda: [span_to_row(s) for s in spans], number=1, repeat=3)) / n * 1e6
        rows = [span_to_row(s) for s in spans]
        insert = timeit.timeit(lambda: proc._store.insert(rows), number=1) / n * 1e6
    finally:
        t.shutdown(timeout=10)
    with capsys.disabled():
        print(
            f"\nper span: create+end {hub:.1f} µs, convert {convert:.1f} µs, insert {insert:.1f} µs, "
            f"total {hub + convert + insert:.1f} µs"
        )
    # Loose bound (shared CI machines); the figure itself is what matters.
    assert hub + convert + insert < 150


def test_force_flush_waits_for_the_flushers_batch_in_flight(tmp_path):
    store = SpanStore(str(tmp_path / "traces.db"))
    proc = StoreSpanProcessor(store, flush_interval_seconds=0.01)
    tracer = provider_with(proc)
    for _ in range(1500):
        tracer.start_span("x").end()
    proc.start()
    for _ in range(500):  # until the flusher has taken the batch into a worker
        if not proc.buffered:
            break
        gevent.sleep(0.001)
    assert proc.buffered == 0 and proc.written == 0
    assert proc.force_flush(5000)
    assert read(tmp_path).conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 1500
    proc.shutdown()


def test_otlp_exporter_sends_to_the_configured_endpoint(tmp_path):
    from gevent.pywsgi import WSGIServer

    received = []

    def app(environ, start_response):
        received.append((environ["PATH_INFO"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "application/x-protobuf")])
        return [b""]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        t = setup_tracing(
            cfg(otlp_endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces"),
            str(tmp_path / "traces.db"),
            hostname="h",
        )
        assert t.otlp._queue is not None  # drop counting can see the SDK's queue
        t.tracer.start_span("exported.span").end()
        assert t.flush(timeout=5)
        t.shutdown(timeout=5)
    finally:
        server.stop(timeout=1)
    assert received and received[0][0] == "/v1/traces"
    assert b"exported.span" in b"".join(body for _, body in received)
    assert [x.root_name for x in read(tmp_path).list_traces()] == ["exported.span"]
    assert t.otlp_dropped == 0


def test_flusher_keeps_the_store_under_its_size_bound(tmp_path):
    path = str(tmp_path / "traces.db")
    t = setup_tracing(cfg(flush_interval_seconds=0.01, max_store_bytes=256 * 1024), path, hostname="h")
    pad = "p" * 2000
    try:
        for round_ in range(10):  # ~10 x 60 x 2 KB = 1.2 MB through a 256 KiB store
            for i in range(60):
                t.tracer.start_span(f"r{round_}", attributes={"pad": pad}).end()
            target = t.processor.written + 60
            for _ in range(200):
                if t.processor.written >= target:
                    break
                gevent.sleep(0.005)
            gevent.sleep(0.02)  # the size check runs right after the flush
    finally:
        t.shutdown(timeout=5)
    assert os.path.getsize(path) <= 256 * 1024 + 64 * 1024  # bound + at most one unchecked batch
    names = {x.root_name for x in read(tmp_path).list_traces(limit=10_000)}
    assert "r9" in names and "r0" not in names


# ---------------------------------------------- tracing/tracer.py fast path
def test_fast_start_span_makes_what_the_sdk_makes():
    """EstafetaTracer.start_span builds the same SDK spans as the SDK's own
    start_span (with ALWAYS_ON): same fields, flags, parentage, links and
    processors; the processors get the ended EstafetaSpan itself, an SDK
    Span, where the SDK hands them a ReadableSpan copy."""
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import Link, SpanKind, TraceState

    from estafeta.tracing.tracer import EstafetaTracer, fast_tracer

    ended = []

    class Keep(SpanProcessor):
        def on_end(self, span):
            ended.append(span)

    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(Keep())
    sdk = provider.get_tracer("estafeta")
    fast = fast_tracer(provider, "estafeta")
    assert type(fast) is EstafetaTracer and type(sdk) is not EstafetaTracer

    def make(tracer):
        ended.clear()
        root = tracer.start_span(
            "root",
            context=trace_api.set_span_in_context(trace_api.INVALID_SPAN),
            kind=SpanKind.SERVER,
            attributes={"a": "b", "n": 3},
        )
        other = tracer.start_span("other")
        child = tracer.start_span(
            "child", context=trace_api.set_span_in_context(root), links=[Link(other.get_span_context(), {"k": "v"})]
        )
        remote = trace_api.SpanContext(
            0xABC, 0xDEF, is_remote=True, trace_flags=trace_api.TraceFlags(1), trace_state=TraceState([("vendor", "x")])
        )
        under_remote = tracer.start_span(
            "under", context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
        )
        for s in (child, under_remote, other, root):
            s.end()
        return {s.name: s for s in ended}, root, remote

    a, a_root, _ = make(sdk)
    b, b_root, remote = make(fast)
    for name in ("root", "other", "child", "under"):
        x, y = a[name], b[name]
        assert isinstance(x, ReadableSpan) and isinstance(y, sdk_trace.Span)
        assert type(y).__name__ == "EstafetaSpan" and not y.is_recording()
        assert y.start_time <= y.end_time
        assert (x.kind, dict(x.attributes), x.resource, x.instrumentation_scope, x.status.status_code) == (
            y.kind,
            dict(y.attributes),
            y.resource,
            y.instrumentation_scope,
            y.status.status_code,
        )
        assert x.context.trace_flags == y.context.trace_flags
        assert (x.parent is None) == (y.parent is None)
        assert [dict(l.attributes) for l in x.links] == [dict(l.attributes) for l in y.links]
    assert b["child"].parent.span_id == b_root.context.span_id
    assert b["child"].context.trace_id == b_root.context.trace_id
    assert b["under"].context.trace_id == 0xABC and b["under"].parent.span_id == 0xDEF
    assert b["under"].context.trace_state == remote.trace_state == a["under"].context.trace_state


def test_estafeta_span_attributes_events_and_limits_as_in_the_sdk():
    """What a span does with attributes and events is the SDK's: the short
    path for plain values gives the same table as the SDK's cleaning, long
    strings are cut at max_span_attribute_length, sequences become tuples,
    a full table drops its oldest key, an ended span takes nothing more."""
    from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import Link, Status, StatusCode

    from estafeta.tracing.tracer import fast_tracer

    ended = []

    class Keep(SpanProcessor):
        def on_end(self, span):
            ended.append(span)

    provider = TracerProvider(
        sampler=ALWAYS_ON, span_limits=SpanLimits(max_span_attributes=4, max_span_attribute_length=5)
    )
    provider.add_span_processor(Keep())
    sdk = provider.get_tracer("estafeta")
    fast = fast_tracer(provider, "estafeta")

    def use(tracer):
        linked = tracer.start_span("linked")
        span = tracer.start_span(
            "s", attributes={"a": "abcdefgh", "n": 1, "f": 0.5}, links=[Link(linked.get_span_context())]
        )
        span.set_attribute("t", ["x", "yyyyyyy"])  # a sequence: cleaned, cut
        span.set_attribute("b", True)  # the table is full: "a" goes
        span.set_attributes({"n": 2, "z": None})  # n moves to the end; None kept: f goes
        span.add_event("e", {"k": "v"})
        span.add_event("e2", {"long": "abcdefgh", "seq": ["x", "yyyyyyy"], "n": 3, "none": None, "f": 1.5})
        span.add_link(linked.get_span_context(), {"why": "test"})
        span.set_status(Status(StatusCode.ERROR, "bad"))
        span.end()
        span.set_attribute("late", 1)
        span.add_event("late")
        span.end()
        return ended.pop()

    x, y = use(sdk), use(fast)
    assert list(x.attributes.items()) == list(y.attributes.items())
    assert dict(y.attributes) == {"t": ("x", "yyyyy"), "b": True, "n": 2, "z": None}
    assert x.dropped_attributes == y.dropped_attributes == 2  # a, f
    assert [(e.name, dict(e.attributes)) for e in x.events] == [(e.name, dict(e.attributes)) for e in y.events]
    # (max_span_attribute_length is for spans: event values are not cut)
    assert dict(y.events[1].attributes) == {"long": "abcdefgh", "seq": ("x", "yyyyyyy"), "n": 3, "none": None, "f": 1.5}
    assert [e.dropped_attributes for e in x.events] == [e.dropped_attributes for e in y.events] == [0, 0]
    assert (y.status.status_code, y.status.description) == (StatusCode.ERROR, "bad")
    assert [dict(k.attributes) for k in x.links] == [dict(k.attributes) for k in y.links] == [{}, {"why": "test"}]
    assert y.dropped_links == 0 and ended == []
    with pytest.raises(TypeError):
        y.attributes["q"] = 1  # MappingProxy over an immutable table


def test_a_span_processors_error_is_not_taken_for_an_sdk_misfit():
    """A TypeError raised by a span processor's on_start reaches the caller
    (as with the SDK's start_span) once: the short path stays on and the
    span is not started a second time through the SDK's path."""
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from estafeta.tracing.tracer import EstafetaTracer, fast_tracer

    starts = []

    class Faulty(SpanProcessor):
        def on_start(self, span, parent_context=None):
            starts.append(span.name)
            raise TypeError("processor bug")

    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(Faulty())
    tracer = fast_tracer(provider, "estafeta")
    with pytest.raises(TypeError, match="processor bug"):
        tracer.start_span("s")
    assert starts == ["s"] and EstafetaTracer._fast  # noqa: SLF001


def test_a_sequence_of_strings_is_stored_as_the_sdk_would_clean_it():
    """SpanAttributes' short path for str sequences (the checks' lookups,
    DNS answers): the same tuple as the SDK's cleaning; anything else in a
    sequence still goes through the SDK."""
    from opentelemetry.attributes import BoundedAttributes

    from estafeta.tracing.span import SpanAttributes

    ours = SpanAttributes.new(None, 8, None)
    sdk = BoundedAttributes(None, None, immutable=False, max_value_len=8)
    for key, value in (("a", ["x", "y"]), ("b", ("TXT a 1",)), ("c", ()), ("d", ["long string over 8"]), ("e", [1, 2])):
        ours[key] = value
        sdk[key] = value
    assert dict(ours) == dict(sdk) and type(ours["a"]) is tuple
