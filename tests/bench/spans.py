"""Microbenchmark: the cost of one span, the SDK's start_span against
estafeta's (tracing/tracer.py, tracing/span.py), under gevent's monkey
patching with the OS locks estafeta puts into the SDK (tracing/setup.py).

    .venv/bin/python tests/bench/spans.py

Prints µs per span (best of 5 rounds of 50,000) for a root span with no
attributes, one with the session span's five, and a child span; each is
started and ended, with a span processor that keeps nothing. Not a test:
numbers go to docs/PERFORMANCE.md.
"""

from gevent import monkey

monkey.patch_all()

import timeit  # noqa: E402

from opentelemetry import trace  # noqa: E402
from opentelemetry.context import Context  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from estafeta.tracing import setup  # noqa: E402
from estafeta.tracing.tracer import fast_tracer  # noqa: E402

N, ROUNDS = 50_000, 5
SESSION_ATTRIBUTES = {
    "network.peer.address": "127.0.0.1",
    "network.peer.port": 40000,
    "server.address": "127.0.0.1",
    "server.port": 2525,
    "estafeta.listener": "smtp",
}


class Discard(SpanProcessor):
    def on_start(self, span, parent_context=None):
        pass

    def on_end(self, span):
        pass


def main() -> None:
    setup._use_os_locks_in_spans()  # noqa: SLF001 - what setup_tracing does
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(Discard())
    empty = Context()
    for label, tracer in (
        ("SDK start_span", provider.get_tracer("bench")),
        ("EstafetaTracer", fast_tracer(provider, "bench")),
    ):
        parent = tracer.start_span("parent", context=empty)
        under = trace.set_span_in_context(parent)
        cases = {
            "root, no attributes": lambda t=tracer: t.start_span("s", context=empty).end(),
            "root, 5 attributes": lambda t=tracer: t.start_span(
                "s", context=empty, kind=SpanKind.SERVER, attributes=SESSION_ATTRIBUTES
            ).end(),
            "child, 2 attributes": lambda t=tracer: t.start_span(
                "s", context=under, attributes={"estafeta.queue_id": "x", "estafeta.body_size": 1024}
            ).end(),
        }
        for case, fn in cases.items():
            best = min(timeit.repeat(fn, number=N, repeat=ROUNDS))
            print(f"{label:16} {case:22} {best / N * 1e6:6.2f} µs/span")


if __name__ == "__main__":
    main()
