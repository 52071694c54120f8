"""actors/dns.py without a DNS server: Answer, names and types, the cache
(a fake lookup and a fake clock), the spans, the config checks and the
DnsResolver actor. Lookups against a real server: tests/integration/test_dns_knot.py."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from waiting import wait_for

from estafeta.actors import dns as dnsmod
from estafeta.actors.dns import Answer, DnsResolver, DnsView, Resolver, reverse_name
from estafeta.proto import dns_pb2
from estafeta.supervisor.actor import join
from estafeta.supervisor.config import ConfigError, parse_config


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeLookups:
    """Stands in for Resolver._resolve: answers from a table, counts calls."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def __call__(self, qname, qname_dns, qtype):
        import dns.rdatatype

        tname = dns.rdatatype.to_text(qtype)
        self.calls.append((qname, tname))
        return self.table[(qname, tname)]


def resolver_with(table, **kw):
    clock = Clock()
    r = Resolver(["127.0.0.1:53"], clock=clock, **kw)
    fake = FakeLookups(table)
    r._resolve = fake
    return r, fake, clock


MX = Answer("example.test", "MX", "NOERROR", ("10 mx.example.test",), ttl=300.0)
NX = Answer("nope.test", "A", "NXDOMAIN", ttl=60.0)
FAIL = Answer("broken.test", "MX", "SERVFAIL", ttl=5.0)
NODATA = Answer("example.test", "TXT", "NOERROR", ttl=30.0)


# -- Answer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, ok, nodata, nxdomain, temporary",
    [
        (MX, True, False, False, False),
        (NODATA, True, True, False, False),
        (NX, False, False, True, False),
        (FAIL, False, False, False, True),
        (Answer("x.test", "A", "TIMEOUT"), False, False, False, True),
        (Answer("x.test", "A", "REFUSED"), False, False, False, True),
    ],
)
def test_answer_kinds(answer, ok, nodata, nxdomain, temporary):
    assert (answer.ok, answer.nodata, answer.nxdomain, answer.temporary) == (ok, nodata, nxdomain, temporary)


def test_answer_is_frozen_and_readable():
    with pytest.raises(AttributeError):
        MX.rcode = "NXDOMAIN"  # type: ignore[misc]
    assert str(MX) == "example.test MX: 10 mx.example.test"
    assert str(NODATA) == "example.test TXT: NODATA"
    assert str(NX) == "nope.test A: NXDOMAIN"


# -- names and types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expect",
    [
        ("Example.TEST.", "example.test"),
        ("bücher.test", "xn--bcher-kva.test"),
        ("_dmarc.bücher.test", "_dmarc.xn--bcher-kva.test"),
        ("_25._tcp.MX.example.test", "_25._tcp.mx.example.test"),
        ("xn--bcher-kva.test", "xn--bcher-kva.test"),
    ],
)
def test_question_names_are_a_labels(name, expect):
    assert dnsmod._question_name(name)[0] == expect


@pytest.mark.parametrize("name", ["", ".", "a" * 64 + ".test", ".".join(["abcdefghij"] * 26), "a..b", "-\u0080x.test"])
def test_bad_names_are_value_errors(name):
    r = Resolver(["127.0.0.1:53"])
    with pytest.raises(ValueError):
        r.query(name, "A")


@pytest.mark.parametrize("rdtype", ["ANY", "AXFR", "BOGUS", ""])
def test_bad_types_are_value_errors(rdtype):
    with pytest.raises(ValueError):
        Resolver(["127.0.0.1:53"]).query("example.test", rdtype)


def test_reverse_names():
    assert reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa"
    assert reverse_name("2001:db8::1") == ".".join(reversed("20010db8000000000000000000000001")) + ".ip6.arpa"
    with pytest.raises(ValueError):
        reverse_name("mx.example.test")


# -- nameservers ------------------------------------------------------------------------


def test_nameserver_addresses():
    r = Resolver(["127.0.0.1:5353", "[::1]:53"], timeout=2, attempts=3)
    assert r.nameservers == ("127.0.0.1:5353", "[::1]:53")
    assert r._resolver.lifetime == 2 * 3 * 2
    for bad in ["127.0.0.1", "dns.example:53", "[::1]", "127.0.0.1:0"]:
        with pytest.raises(ValueError):
            Resolver([bad])


def test_system_resolv_conf_when_none_given():
    r = Resolver()
    assert r.nameservers  # /etc/resolv.conf's, or 127.0.0.1:53 as glibc
    assert all(":" in ns for ns in r.nameservers)


# -- the cache ---------------------------------------------------------------------------


def test_positive_answers_are_cached_for_their_ttl():
    r, fake, clock = resolver_with({("example.test", "MX"): MX})
    assert r.query("example.test", "MX") == MX
    clock.now += 100
    again = r.query("EXAMPLE.test.", "mx")
    assert again.records == MX.records and again.ttl == pytest.approx(200.0)
    assert len(fake.calls) == 1
    clock.now += 200
    assert r.query("example.test", "MX").ttl == 300.0
    assert len(fake.calls) == 2


def test_negative_and_failed_answers_are_cached_too():
    r, fake, clock = resolver_with({("nope.test", "A"): NX, ("broken.test", "MX"): FAIL})
    for _ in range(3):
        assert r.query("nope.test", "A").nxdomain
        assert r.query("broken.test", "MX").rcode == "SERVFAIL"
    assert len(fake.calls) == 2
    clock.now += 5
    r.query("broken.test", "MX")
    r.query("nope.test", "A")
    assert fake.calls[2:] == [("broken.test", "MX")]


def test_zero_ttl_and_disabled_cache_always_ask():
    zero = Answer("z.test", "A", "NOERROR", ("192.0.2.1",), ttl=0.0)
    r, fake, _ = resolver_with({("z.test", "A"): zero})
    r.query("z.test", "A")
    r.query("z.test", "A")
    assert len(fake.calls) == 2
    r, fake, _ = resolver_with({("example.test", "MX"): MX}, cache_size=0)
    r.query("example.test", "MX")
    r.query("example.test", "MX")
    assert len(fake.calls) == 2


def test_cache_is_bounded_least_recently_used_first():
    table = {(f"h{i}.test", "A"): Answer(f"h{i}.test", "A", "NOERROR", ("192.0.2.1",), ttl=60.0) for i in range(5)}
    r, fake, _ = resolver_with(table, cache_size=3)
    for i in range(3):
        r.query(f"h{i}.test", "A")
    r.query("h0.test", "A")  # h0 is now the most recently used
    r.query("h3.test", "A")  # evicts h1
    assert r.cache_len() == 3
    fake.calls.clear()
    r.query("h0.test", "A")
    r.query("h2.test", "A")
    r.query("h1.test", "A")
    assert fake.calls == [("h1.test", "A")]


def test_purge_drops_only_expired_answers():
    r, _, clock = resolver_with({("example.test", "MX"): MX, ("nope.test", "A"): NX})
    r.query("example.test", "MX")
    r.query("nope.test", "A")
    clock.now += 61
    assert r.purge() == 1
    assert r.cache_len() == 1
    r.clear_cache()
    assert r.cache_len() == 0


# -- spans ------------------------------------------------------------------------------------


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_each_query_with_a_context_is_a_span(spans):
    tracer, exporter = spans
    r, _, _ = resolver_with({("example.test", "MX"): MX, ("broken.test", "MX"): FAIL}, tracer=tracer)
    with tracer.start_as_current_span("delivery.attempt") as parent:
        ctx = otel_context.get_current()
        r.query("example.test", "MX", context=ctx)
        r.query("example.test", "MX", context=ctx)
        r.query("broken.test", "MX", context=ctx)
    r.query("example.test", "MX")  # no context: no span
    got = [s for s in exporter.get_finished_spans() if s.name == "dns.mx"]
    assert len(got) == 3
    first, second, failed = got
    assert first.parent.span_id == parent.get_span_context().span_id
    assert first.kind == trace.SpanKind.CLIENT
    assert dict(first.attributes) == {
        "dns.question.name": "example.test",
        "dns.question.type": "MX",
        "dns.response_code": "NOERROR",
        "dns.answers": ("10 mx.example.test",),
        "estafeta.dns.cached": False,
        "estafeta.dns.ttl": 300.0,
        "estafeta.dns.canonical_name": "",
        "estafeta.dns.secure": False,
    }
    assert second.attributes["estafeta.dns.cached"] is True
    assert failed.attributes["dns.response_code"] == "SERVFAIL"
    assert failed.status.status_code == StatusCode.ERROR
    assert first.status.status_code == StatusCode.UNSET


def test_trace_cached_false_makes_a_span_only_for_a_query_sent(spans):
    """What the checks ask for (their span lists every lookup): a cached
    answer is no span of its own, a query to the network still is; the
    cache is found before the name is parsed, in any case or with a dot."""
    tracer, exporter = spans
    r, _, _ = resolver_with({("example.test", "MX"): MX}, tracer=tracer)
    with tracer.start_as_current_span("check.spf"):
        ctx = otel_context.get_current()
        first = r.query("example.test", "MX", context=ctx, trace_cached=False)
        again = r.query("Example.TEST.", "mx", context=ctx, trace_cached=False)
    assert first.records == again.records == ("10 mx.example.test",) and again.name == "example.test"
    got = [s for s in exporter.get_finished_spans() if s.name == "dns.mx"]
    assert [s.attributes["estafeta.dns.cached"] for s in got] == [False]


# -- configuration ----------------------------------------------------------------------------


def test_config_defaults_and_from_config():
    cfg = parse_config('resolver: "127.0.0.1:5353"\nresolver: "[::1]:53"\ndns { timeout_seconds: 1.5 attempts: 1 }')
    assert cfg.dns.cache_size == 10000 and cfg.dns.failure_ttl_seconds == 5
    r = Resolver.from_config(cfg)
    assert r.nameservers == ("127.0.0.1:5353", "[::1]:53")
    assert r._resolver.timeout == 1.5 and r._resolver.lifetime == 1.5 * 1 * 2


@pytest.mark.parametrize(
    "text, expect",
    [
        ('resolver: "dns.example:53"', "resolver: "),
        ('resolver: "127.0.0.1"', "resolver: "),
        ("dns { timeout_seconds: 0 }", "timeout_seconds: must be greater than 0"),
        ("dns { attempts: 0 }", "attempts: must be at least 1"),
        ("dns { max_ttl_seconds: -1 }", "max_ttl_seconds: must not be negative"),
        ("dns { failure_ttl_seconds: 301 }", "failure_ttl_seconds: must be between 0 and 300"),
        ("dns { purge_interval_seconds: 0 }", "purge_interval_seconds: must be greater than 0"),
    ],
)
def test_bad_dns_config_is_named(text, expect):
    with pytest.raises(ConfigError) as e:
        parse_config("\n" + text, "estafeta.conf")
    assert str(e.value).startswith("estafeta.conf:2: ")
    assert expect in str(e.value)


# -- the actor ---------------------------------------------------------------------------------


def test_dns_resolver_publishes_and_purges():
    cfg = parse_config('resolver: "127.0.0.1:5353"\ndns { purge_interval_seconds: 0.05 }')
    view = DnsView()
    with pytest.raises(RuntimeError):
        view.query("example.test", "MX")
    ref = DnsResolver.start(None, cfg, view)
    try:
        resolver = wait_for(lambda: view.resolver)
        assert resolver.nameservers == ("127.0.0.1:5353",)
        clock = Clock()
        resolver._clock = clock
        resolver._resolve = FakeLookups({("example.test", "MX"): MX, ("nope.test", "A"): NX})
        assert view.query("example.test", "MX") == MX
        assert view.query("nope.test", "A").nxdomain
        clock.now += 61  # NX expired: the timer's purge drops it
        wait_for(lambda: resolver.cache_len() == 1, timeout=5)
        assert ref.ask(dns_pb2.PurgeDnsCache()) == 0
        with pytest.raises(TypeError):
            ref.ask("hello")
    finally:
        ref.stop()
        join(ref, 5)


def test_failure_rcodes_from_dnspython_errors():
    import dns.exception

    timeout = dns.exception.Timeout()
    assert dnsmod._failure_rcode([("a", False, 53, "REFUSED", None), ("b", False, 53, "SERVFAIL", None)]) == "SERVFAIL"
    assert dnsmod._failure_rcode([("a", False, 53, "REFUSED", None), ("b", False, 53, timeout, None)]) == "REFUSED"
    assert dnsmod._failure_rcode([("a", False, 53, "NOTIMP", None)]) == "NOTIMP"
    assert (
        dnsmod._failure_rcode([("a", False, 53, OSError(101, "unreachable"), None), ("b", False, 53, timeout, None)])
        == "TIMEOUT"
    )
    assert dnsmod._failure_rcode([("a", False, 53, OSError(101, "unreachable"), None)]) == "UNREACHABLE"
    assert dnsmod._failure_rcode(None) == "UNREACHABLE"
