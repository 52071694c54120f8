"""mx.plan through the Resolver against a real authoritative server (a
private Knot DNS on loopback, tests/peers/dns_server.py): each case of
RFC 5321 §5.1 and RFC 7505 as the DNS really answers it."""

from __future__ import annotations

import random

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from peers.dns_server import dns_server_fixture

from estafeta.actors.couriers.mx import plan
from estafeta.actors.dns import Resolver

ZONES = {
    "multi.test": """
        @      MX 10 mx1
        @      MX 10 mx2
        @      MX 20 mx3
        mx1    A    127.0.0.11
        mx2    A    127.0.0.12
        mx2    AAAA ::12
        mx3    A    127.0.0.13
    """,
    "nullmx.test": """
        @      MX 0 .
        @      A  127.0.0.99
    """,
    "aonly.test": """
        @      A    127.0.0.20
        @      AAAA ::20
        host   A    127.0.0.21
    """,
    "cname.test": """
        mail   CNAME real
        real   MX 10 mx1.multi.test.
        web    CNAME host.aonly.test.
        viacname MX 10 alias
        alias  CNAME mx1.multi.test.
    """,
    "bücher.test": """
        @      MX 10 mx
        mx     A  127.0.0.30
    """,
    "noaddr.test": """
        @      MX 10 gone
        @      MX 20 gone2
    """,
    "loop.test": """
        @      MX 10 me
        @      MX 20 other
        me     A 127.0.0.40
        other  A 127.0.0.41
        sub    MX 10 better.sub
        sub    MX 20 me
        better.sub A 127.0.0.42
    """,
    "lame.test": """
        @      MX 10 mx.broken.test.
    """,
}

knot = dns_server_fixture("knot_mx", scope="module", zones=ZONES, failing=("broken.test",))


@pytest.fixture
def resolver(knot_mx):
    return Resolver([knot_mx.address], timeout=2, attempts=1)


def summary(p):
    return [(h.name, h.preference, h.addresses) for h in p.hosts]


def test_preferences_and_shuffle(resolver):
    firsts = set()
    for seed in range(20):
        p = plan("multi.test", resolver, rng=random.Random(seed))
        assert p.error is None
        got = summary(p)
        assert sorted(got[:2]) == [
            ("mx1.multi.test", 10, ("127.0.0.11",)),
            ("mx2.multi.test", 10, ("127.0.0.12", "::12")),
        ]
        assert got[2] == ("mx3.multi.test", 20, ("127.0.0.13",))
        firsts.add(got[0][0])
    assert firsts == {"mx1.multi.test", "mx2.multi.test"}


def test_null_mx(resolver):
    p = plan("nullmx.test", resolver)
    assert p.permanent and (p.error.code, p.error.enhanced) == (556, "5.1.10")


def test_a_only_domain_is_its_own_mx(resolver):
    p = plan("aonly.test", resolver)
    assert p.implicit and summary(p) == [("aonly.test", 0, ("127.0.0.20", "::20"))]


def test_cnames(resolver):
    # The domain is a CNAME: its target's MX (RFC 5321 §5.1).
    assert summary(plan("mail.cname.test", resolver)) == [("mx1.multi.test", 10, ("127.0.0.11",))]
    p = plan("web.cname.test", resolver)
    assert p.implicit and summary(p) == [("host.aonly.test", 0, ("127.0.0.21",))]
    p = plan("viacname.cname.test", resolver)
    assert summary(p) == [("alias.cname.test", 10, ("127.0.0.11",))]


def test_nxdomain_is_permanent(resolver):
    p = plan("nope.multi.test", resolver)
    assert p.permanent and (p.error.code, p.error.enhanced) == (550, "5.1.2")


def test_servfail_is_temporary(resolver):
    p = plan("broken.test", resolver)
    assert p.temporary and (p.error.code, p.error.enhanced) == (451, "4.4.3")
    assert "SERVFAIL" in p.error.text
    p = plan("lame.test", resolver)  # the MX's own zone fails
    assert p.temporary and p.error.enhanced == "4.4.3"


def test_idn_domain(resolver):
    p = plan("Bücher.test", resolver)
    assert p.domain == "xn--bcher-kva.test"
    assert summary(p) == [("mx.xn--bcher-kva.test", 10, ("127.0.0.30",))]


def test_mx_hosts_without_address(resolver):
    p = plan("noaddr.test", resolver)
    assert p.permanent and (p.error.code, p.error.enhanced) == (550, "5.4.4")


def test_mail_loop(resolver):
    p = plan("loop.test", resolver, our_names=["me.loop.test"])
    assert p.permanent and p.error.enhanced == "5.4.6"
    p = plan("sub.loop.test", resolver, our_names=["ME.loop.test."])
    assert summary(p) == [("better.sub.loop.test", 10, ("127.0.0.42",))]
    assert [h.name for h in plan("loop.test", resolver).hosts] == ["me.loop.test", "other.loop.test"]


def test_lookups_are_spans_under_the_context(knot_mx):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    r = Resolver([knot_mx.address], timeout=2, attempts=1, tracer=tracer)
    with tracer.start_as_current_span("delivery.attempt") as attempt:
        plan("aonly.test", r, context=otel_context.get_current())
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("dns.")]
    assert [s.name for s in spans] == ["dns.mx", "dns.a", "dns.aaaa"]
    assert all(s.parent.span_id == attempt.get_span_context().span_id for s in spans)
    assert spans[0].attributes["dns.answers"] == ()
    assert spans[1].attributes["dns.answers"] == ("127.0.0.20",)
    provider.shutdown()
