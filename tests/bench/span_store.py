"""Benchmark of the span store (store/spans.py): the write path's cost per
span, and the trace search's latency over a week-like store.

    .venv/bin/python tests/bench/span_store.py write            # µs per span written
    .venv/bin/python tests/bench/span_store.py search [SPANS]   # fill a store, time each search

`write`: builds WRITE_MESSAGES messages' real spans (the SDK's, made by
estafeta's tracer: a session, its transaction, the enqueue, a delivery
attempt and its courier write, as actors/session.py and actors/item.py make
them) and times what the daemon's span flusher does with them in its pool
thread (`StoreSpanProcessor._write`: rows converted, inserted in batches of
FLUSH_BATCH spans), into a fresh store; best of ROUNDS.

`search`: fills a store under $TMPDIR with SPANS spans (default 1,000,000)
spread over 7 days, a mix like a week of a small MX: 5-span delivered
messages from 2,000 senders of 300 domains to 5,000 local recipients;
deferred then delivered (two attempts, hours apart), still deferred,
bounced, quarantined messages; sessions refused at the door (relay denied, rate limited) and
transactions refused at RCPT. Then times each kind of search
(`SpanStore.search`), best of 5 and worst of 5, against the 200 ms bar.

Not a test: numbers go to docs/PERFORMANCE.md. Bounded: SPANS at most
5,000,000.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from opentelemetry import trace  # noqa: E402
from opentelemetry.context import Context  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: E402
from opentelemetry.trace import Link, SpanKind, Status, StatusCode  # noqa: E402

from estafeta.store.spans import SpanStore  # noqa: E402
from estafeta.tracing import setup  # noqa: E402
from estafeta.tracing.processor import StoreSpanProcessor  # noqa: E402
from estafeta.tracing.tracer import fast_tracer  # noqa: E402

WRITE_MESSAGES = 4000
FLUSH_BATCH = 2000
ROUNDS = 5
MAX_SPANS = 5_000_000
EMPTY = Context()
S = 1_000_000_000
WEEK = 7 * 86400 * S


class Keep(SpanProcessor):
    """Collects ended spans."""

    def __init__(self):
        self.spans = []

    def on_end(self, span):
        self.spans.append(span)


class Mix:
    """Makes spans like the daemon's, at chosen times (ns)."""

    def __init__(self, seed: int = 1):
        setup._use_os_locks_in_spans()  # noqa: SLF001 - as setup_tracing does
        self.keep = Keep()
        provider = TracerProvider(sampler=ALWAYS_ON)
        provider.add_span_processor(self.keep)
        self.tracer = fast_tracer(provider, "bench")
        self.rng = random.Random(seed)
        self.domains = [f"d{i}.example" for i in range(300)]
        self.senders = [f"user{i}@{self.rng.choice(self.domains)}" for i in range(2000)]
        self.rcpts = [f"r{i}@{'localhost' if i % 3 else 'users.test'}" for i in range(5000)]
        self.n = 0

    def session(self, t: int, refused: str | None = None):
        attrs = {
            "network.peer.address": f"192.0.2.{self.rng.randrange(1, 255)}",
            "network.peer.port": self.rng.randrange(1024, 65536),
            "server.address": "127.0.0.1",
            "server.port": 25,
            "estafeta.listener": "smtp",
        }
        span = self.tracer.start_span(
            "smtp.session", context=EMPTY, kind=SpanKind.SERVER, attributes=attrs, start_time=t
        )
        span.set_attribute("smtp.helo", "client.example")
        if refused:
            span.set_attribute("estafeta.refused", refused)
            span.set_attribute("smtp.mail_from", self.rng.choice(self.senders))
            span.set_status(Status(StatusCode.ERROR, refused))
        return span

    def message(self, t: int, outcome: str = "delivered") -> None:
        """One message: session, transaction, enqueue, attempts, courier writes."""
        self.n += 1
        ms = 1_000_000
        sender, rcpt = self.rng.choice(self.senders), self.rng.choice(self.rcpts)
        qid = f"{t // 1000:016x}0{self.n & 0xFFFFF:05x}"
        sess = self.session(t)
        txn = self.tracer.start_span(
            "smtp.transaction",
            context=EMPTY,
            kind=SpanKind.SERVER,
            links=[Link(sess.get_span_context())],
            attributes={"smtp.mail_from": sender, "network.peer.address": "192.0.2.1"},
            start_time=t + ms,
        )
        ctx = trace.set_span_in_context(txn)
        self.tracer.start_span(
            "queue.enqueue",
            context=ctx,
            attributes={"estafeta.queue_id": qid, "estafeta.body_size": 1500},
            start_time=t + 3 * ms,
        ).end(t + 4 * ms)
        txn.set_attributes(
            {
                "estafeta.queue_id": qid,
                "smtp.rcpt_count": 1,
                "smtp.rcpt_to": (rcpt,),
                "estafeta.message_id": f"{self.n}.{t}@{sender.split('@')[1]}",
            }
        )
        txn.end(t + 4 * ms)
        sess.end(t + 6 * ms)
        attempts = {
            "delivered": [True],
            "retried": [False, True],
            "deferred": [False, False],
            "bounced": [False],
            "quarantined": [],
        }[outcome]
        at = t + 5 * ms
        for k, ok in enumerate(attempts, 1):
            a = self.tracer.start_span(
                "delivery.attempt",
                context=ctx,
                attributes={"estafeta.queue_id": qid, "estafeta.attempt": k},
                start_time=at,
            )
            c = self.tracer.start_span(
                "courier.local",
                context=trace.set_span_in_context(a),
                kind=SpanKind.CLIENT,
                attributes={
                    "estafeta.queue_id": qid,
                    "estafeta.recipient": rcpt,
                    "estafeta.mailbox": rcpt.replace("@", "/"),
                    "estafeta.maildir.check_existing": k > 1,
                    "estafeta.maildir.link": True,
                },
                start_time=at + ms // 10,
            )
            if not ok:
                code = "550 5.1.1 no such user" if outcome == "bounced" else "451 4.3.0 mailbox busy"
                c.set_status(Status(StatusCode.ERROR, code))
                a.set_status(Status(StatusCode.ERROR, code))
            c.end(at + ms)
            final = k == len(attempts)
            a.set_attribute(
                "estafeta.outcome", "bounced" if outcome == "bounced" else "delivered" if ok else "deferred"
            )
            a.end(at + ms + ms // 10)
            if not final:
                at += self.rng.randrange(600, 4 * 3600) * S
        if outcome == "quarantined":
            q = self.tracer.start_span(
                "queue.quarantine",
                context=ctx,
                attributes={"estafeta.queue_id": qid, "estafeta.outcome": "quarantined"},
                start_time=at,
            )
            q.set_status(Status(StatusCode.ERROR, "actor crashed 5 times"))
            q.end(at + ms)

    def refused_rcpt(self, t: int) -> None:
        """A transaction whose only RCPT was refused (relay denied)."""
        sess = self.session(t)
        txn = self.tracer.start_span(
            "smtp.transaction",
            context=EMPTY,
            kind=SpanKind.SERVER,
            links=[Link(sess.get_span_context())],
            attributes={"smtp.mail_from": self.rng.choice(self.senders), "network.peer.address": "192.0.2.7"},
            start_time=t,
        )
        txn.add_event(
            "rcpt.rejected",
            {
                "smtp.rcpt_to": f"someone@{self.rng.choice(self.domains)}",
                "smtp.reply.code": 554,
                "estafeta.refused": "relay_denied",
            },
        )
        txn.set_attribute("estafeta.refused", "relay_denied")
        txn.set_status(Status(StatusCode.ERROR, "relay denied"))
        txn.end(t + 2_000_000)
        sess.end(t + 3_000_000)

    def week_event(self, t: int) -> None:
        r = self.rng.random()
        if r < 0.80:
            self.message(t)
        elif r < 0.86:
            self.message(t, "retried")
        elif r < 0.88:
            self.message(t, "deferred")
        elif r < 0.91:
            self.message(t, "bounced")
        elif r < 0.915:
            self.message(t, "quarantined")
        elif r < 0.96:
            self.refused_rcpt(t)
        else:
            self.session(t, refused="rate_limited").end(t + 1_000_000)

    def take(self) -> list:
        out, self.keep.spans = self.keep.spans, []
        return out


def write_cost() -> None:
    mix = Mix()
    t0 = time.time_ns() - 3600 * S
    for i in range(WRITE_MESSAGES):
        mix.message(t0 + i * 1_000_000)
    spans = mix.take()
    best = None
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as d:
            store = SpanStore(os.path.join(d, "traces.db"))
            p = StoreSpanProcessor(store)
            start = time.perf_counter()
            for k in range(0, len(spans), FLUSH_BATCH):
                p._write(spans[k : k + FLUSH_BATCH], 0, None)  # noqa: SLF001 - what the flusher runs
            took = time.perf_counter() - start
            store.close()
        best = took if best is None else min(best, took)
    print(
        f"write path: {len(spans)} spans of {WRITE_MESSAGES} messages, best of {ROUNDS}: {best / len(spans) * 1e6:.2f} µs/span"
    )


def fill(path: str, total: int) -> SpanStore:
    mix = Mix()
    store = SpanStore(path)
    p = StoreSpanProcessor(store)
    now = time.time_ns()
    start = now - WEEK
    written = 0
    began = time.monotonic()
    # Events at even intervals over the week, about 4.5 spans each.
    events = int(total / 4.5)
    step = WEEK // max(1, events)
    t = start
    while written < total:
        mix.week_event(t)
        t += step
        if len(mix.keep.spans) >= FLUSH_BATCH:
            batch = mix.take()
            p._write(batch, 0, None)  # noqa: SLF001
            written += len(batch)
    rest = mix.take()
    if rest:
        p._write(rest, 0, None)  # noqa: SLF001
        written += len(rest)
    took = time.monotonic() - began
    print(f"filled {path}: {written} spans, {mix.n} messages in {took:.0f} s ({took / written * 1e6:.1f} µs/span)")
    return store


def time_search(store: SpanStore, label: str, **kw) -> tuple[float, float, int]:
    times = []
    n = 0
    for _ in range(5):
        t = time.perf_counter()
        n = len(store.search(**kw))
        times.append(time.perf_counter() - t)
    print(f"| {label:<44} | {n:>4} | {min(times) * 1000:7.1f} | {max(times) * 1000:7.1f} |")
    return min(times), max(times), n


def search_latency(total: int) -> None:
    total = min(total, MAX_SPANS)
    d = tempfile.mkdtemp(prefix="estafeta-span-bench.")
    path = os.path.join(d, "traces.db")
    store = fill(path, total)
    store.close()
    store = SpanStore(path, readonly=True)
    c = store.conn
    spans = c.execute("SELECT count(*) FROM spans").fetchone()[0]
    traces = c.execute("SELECT count(*) FROM traces").fetchone()[0]
    size = (
        os.path.getsize(path) + os.path.getsize(path + "-wal")
        if os.path.exists(path + "-wal")
        else os.path.getsize(path)
    )
    print(f"store: {spans} spans, {traces} traces, {size / 2**20:.0f} MiB")
    # Pick real keys from the middle of the week.
    qid, mid = c.execute(
        "SELECT queue_id, message_id FROM spans WHERE name = 'smtp.transaction' AND message_id IS NOT NULL "
        "ORDER BY rowid LIMIT 1 OFFSET ?",
        (traces // 4,),
    ).fetchone()
    tid = c.execute("SELECT trace_id FROM traces LIMIT 1 OFFSET ?", (traces // 3,)).fetchone()[0]
    now = time.time_ns()
    day = 86400 * S
    print("| search | hits | best ms | worst ms |")
    print("|---|---|---|---|")
    results = [
        time_search(store, "newest 50 (no filter)"),
        time_search(store, "queue id", q=qid),
        time_search(store, "Message-ID", q=f"<{mid}>"),
        time_search(store, "trace id", q=tid),
        time_search(store, "sender address", q="user7@" + Mix().senders[7].split("@")[1]),
        time_search(store, "recipient address", q="r13@localhost"),
        time_search(store, "recipient domain (1/3 of all mail)", q="users.test"),
        time_search(store, "sender domain", q="d17.example"),
        time_search(store, "domain + outcome bounced", q="localhost", outcome="bounced"),
        time_search(store, "domain + outcome refused (none match)", q="localhost", outcome="refused"),
        time_search(store, "outcome deferred", outcome="deferred"),
        time_search(store, "outcome quarantined", outcome="quarantined"),
        time_search(store, "outcome refused", outcome="refused"),
        time_search(store, "errors only", errors_only=True),
        time_search(
            store, "time window (one hour, 3 days ago)", since_ns=now - 3 * day, until_ns=now - 3 * day + 3600 * S
        ),
        time_search(store, "domain in a 1-day window", q="localhost", since_ns=now - 4 * day, until_ns=now - 3 * day),
        time_search(store, "recipient, errors only", q="r13@localhost", errors_only=True),
        time_search(store, "no match", q="nobody@nowhere.example"),
    ]
    worst = max(r[1] for r in results)
    print(f"worst search: {worst * 1000:.1f} ms (bar 200 ms)")
    store.close()
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "write"
    if mode == "write":
        write_cost()
    elif mode == "search":
        search_latency(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    else:
        sys.exit(__doc__)
