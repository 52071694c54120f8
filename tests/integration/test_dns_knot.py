"""actors/dns.py's Resolver against a real authoritative server: a private
Knot DNS on loopback (tests/peers/dns_server.py)."""

from __future__ import annotations

import time

import gevent
import pytest
from peers.dns_server import DnsServer, dns_server_fixture, silent_udp_server

from estafeta.actors.dns import TIMEOUT, Resolver

ZONES = {
    "example.test": """
        @        MX  10 mx1
        @        MX  20 mx2.other.test.
        @        TXT "v=spf1 -all"
        mx1      A    127.0.0.2
        mx1      AAAA ::2
        alias    CNAME mx1
        chain    CNAME alias
        long     TXT "first string " "second string"
        utf8     TXT "caf\\195\\169"
        www      60 A 127.0.0.3
        xalias   CNAME mx2.other.test.
        xgone    CNAME gone.other.test.
        loop1    CNAME loop2.other.test.
        _25._tcp.mx1 TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    """,
    "other.test": """
        mx2      A    127.0.0.4
        loop2    CNAME loop1.example.test.
    """,
    "null.test": """
        @        MX  0 .
    """,
    "bücher.test": """
        @        MX  10 mx
        mx       A   127.0.0.5
    """,
    "2.0.192.in-addr.arpa": """
        1        PTR mx1.example.test.
        2        PTR Two.Example.TEST.
        2        PTR second.example.test.
    """,
    "8.b.d.0.1.0.0.2.ip6.arpa": """
        1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR v6.example.test.
    """,
}

knot = dns_server_fixture("knot", scope="module", zones=ZONES, failing=("broken.test",))


@pytest.fixture
def resolver(knot):
    return Resolver([knot.address], timeout=2, attempts=1)


def test_mx_records_in_presentation_form(resolver):
    a = resolver.query("example.test", "MX")
    assert a.ok and a.rcode == "NOERROR"
    assert sorted(a.records) == ["10 mx1.example.test", "20 mx2.other.test"]
    assert a.ttl == 300 and a.canonical_name == "" and a.name == "example.test"
    assert a.secure is False  # Knot is no validating resolver


def test_addresses(resolver):
    assert resolver.query("mx1.example.test", "A").records == ("127.0.0.2",)
    assert resolver.query("mx1.example.test", "AAAA").records == ("::2",)
    assert resolver.query("www.example.test", "A").ttl == 60


def test_cname_chains_are_followed(resolver):
    a = resolver.query("chain.example.test", "A")
    assert a.records == ("127.0.0.2",)
    assert a.canonical_name == "mx1.example.test"
    assert resolver.query("alias.example.test", "CNAME").records == ("mx1.example.test",)


def test_cname_chains_across_zones_are_finished(resolver):
    """Knot does not follow a CNAME out of its zone (a recursive resolver
    would): the Resolver asks for the rest of the chain."""
    a = resolver.query("xalias.example.test", "A")
    assert a.records == ("127.0.0.4",) and a.canonical_name == "mx2.other.test"
    assert a.name == "xalias.example.test" and a.ttl == 300
    a = resolver.query("xalias.example.test", "MX")
    assert a.nodata and a.canonical_name == "mx2.other.test"
    a = resolver.query("xgone.example.test", "A")
    assert a.nxdomain and a.canonical_name == "gone.other.test"
    a = resolver.query("loop1.example.test", "A")  # a CNAME loop ends, as NODATA
    assert a.nodata


def test_nxdomain_has_the_soa_negative_ttl(resolver):
    a = resolver.query("nope.example.test", "A")
    assert a.nxdomain and not a.temporary and a.records == ()
    assert a.ttl == 60  # the SOA minimum DnsServer writes (RFC 2308 §5)


def test_nodata(resolver):
    a = resolver.query("mx1.example.test", "MX")
    assert a.nodata and a.ok and a.ttl == 60


def test_servfail_refused_and_timeout_are_temporary(resolver):
    for name in ("broken.test", "mx.broken.test"):
        a = resolver.query(name, "MX")
        assert a.rcode == "SERVFAIL" and a.temporary
    a = resolver.query("elsewhere.invalid", "A")
    assert a.rcode == "REFUSED" and a.temporary
    with silent_udp_server() as silent:
        r = Resolver([silent], timeout=0.2, attempts=1)
        t = time.monotonic()
        a = r.query("example.test", "MX")
        assert a.rcode == TIMEOUT and a.temporary
        assert time.monotonic() - t < 2


def test_txt_strings_are_joined(resolver):
    assert resolver.query("example.test", "TXT").records == ("v=spf1 -all",)
    assert resolver.query("long.example.test", "TXT").records == ("first string second string",)
    assert resolver.query("utf8.example.test", "TXT").records == ("café",)


def test_ptr_v4_and_v6(resolver):
    assert resolver.ptr("192.0.2.1").records == ("mx1.example.test",)
    assert sorted(resolver.ptr("192.0.2.2").records) == ["second.example.test", "two.example.test"]
    assert resolver.ptr("2001:db8::1").records == ("v6.example.test",)
    assert resolver.ptr("192.0.2.99").nxdomain


def test_tlsa_and_null_mx(resolver):
    a = resolver.query("_25._tcp.mx1.example.test", "TLSA")
    assert a.records == ("3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",)
    assert resolver.query("null.test", "MX").records == ("0 .",)


def test_idn_names(resolver):
    a = resolver.query("bücher.test", "MX")
    assert a.name == "xn--bcher-kva.test"
    assert a.records == ("10 mx.xn--bcher-kva.test",)
    assert resolver.query("MX.Bücher.Test.", "A").records == ("127.0.0.5",)


def test_the_next_nameserver_is_asked_when_one_is_silent(knot):
    with silent_udp_server() as silent:
        r = Resolver([silent, knot.address], timeout=0.3, attempts=1)
        assert r.query("mx1.example.test", "A").records == ("127.0.0.2",)


def test_lookups_do_not_block_each_other(knot):
    """Under gevent each lookup waits cooperatively: ten lookups of a
    silent server time out together, and a lookup of a live server
    answers meanwhile."""
    with silent_udp_server() as silent:
        slow = Resolver([silent], timeout=1.0, attempts=1)
        fast = Resolver([knot.address], timeout=2, attempts=1)
        t = time.monotonic()
        waiting = [gevent.spawn(slow.query, f"h{i}.example.test", "A") for i in range(10)]
        gevent.sleep(0.05)
        assert fast.query("mx1.example.test", "A").records == ("127.0.0.2",)
        assert time.monotonic() - t < 0.5
        gevent.joinall(waiting, timeout=5)
        assert [g.value.rcode for g in waiting] == [TIMEOUT] * 10
        assert time.monotonic() - t < 2.5


def test_cached_answers_outlive_a_zone_change_until_their_ttl(tmp_path):
    with DnsServer(tmp_path / "knot") as server:
        server.set_zone("change.test", "www 2 A 127.0.0.7")
        cached = Resolver([server.address], timeout=2, attempts=1)
        uncached = Resolver([server.address], timeout=2, attempts=1, cache_size=0)
        assert cached.query("www.change.test", "A").records == ("127.0.0.7",)
        server.set_zone("change.test", "www 2 A 127.0.0.8")
        assert cached.query("www.change.test", "A").records == ("127.0.0.7",)
        assert uncached.query("www.change.test", "A").records == ("127.0.0.8",)
        time.sleep(2.1)
        assert cached.query("www.change.test", "A").records == ("127.0.0.8",)
        server.fail_zone("change.test")
        assert uncached.query("www.change.test", "A").rcode == "SERVFAIL"
        server.remove_zone("change.test")
        assert uncached.query("www.change.test", "A").rcode == "REFUSED"
