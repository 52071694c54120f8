"""actors/couriers/mx.py's rules over a fake resolver (RFC 5321 §5.1,
RFC 7505). The same against a real DNS server: tests/integration/test_mx_knot.py."""

from __future__ import annotations

import random

import pytest

from estafeta.actors.couriers.mx import MxHost, plan
from estafeta.actors.dns import Answer


class FakeResolver:
    """Answers from a table {(name, type): rcode or records}; missing
    names are NXDOMAIN, missing types of a known name NODATA. Records the
    questions asked."""

    def __init__(self, table, cnames=None):
        self.table = table
        self.cnames = cnames or {}
        self.asked = []

    def query(self, name, rdtype, *, context=None):
        self.asked.append((name, rdtype))
        canonical = self.cnames.get(name, "")
        target = canonical or name
        value = self.table.get((target, rdtype))
        if isinstance(value, str):
            return Answer(name, rdtype, value, canonical_name=canonical)
        if value is None:
            known = any(n == target for n, _ in self.table)
            return Answer(name, rdtype, "NOERROR" if known else "NXDOMAIN", canonical_name=canonical)
        return Answer(name, rdtype, "NOERROR", tuple(value), ttl=300, canonical_name=canonical)


def hosts(p):
    return [(h.name, h.preference, h.addresses) for h in p.hosts]


def test_mx_by_preference_with_addresses_a_first():
    r = FakeResolver(
        {
            ("example.test", "MX"): ["20 mx2.example.test", "10 mx1.example.test", "30 mx3.example.test"],
            ("mx1.example.test", "A"): ["192.0.2.1"],
            ("mx1.example.test", "AAAA"): ["2001:db8::1"],
            ("mx2.example.test", "AAAA"): ["2001:db8::2"],
            ("mx3.example.test", "A"): ["192.0.2.3", "192.0.2.33"],
        }
    )
    p = plan("example.test", r)
    assert p.error is None and not p.implicit and p.domain == "example.test"
    assert hosts(p) == [
        ("mx1.example.test", 10, ("192.0.2.1", "2001:db8::1")),
        ("mx2.example.test", 20, ("2001:db8::2",)),
        ("mx3.example.test", 30, ("192.0.2.3", "192.0.2.33")),
    ]
    assert list(p.attempts())[:2] == [(p.hosts[0], "192.0.2.1"), (p.hosts[0], "2001:db8::1")]
    v6 = plan("example.test", r, ipv6_first=True)
    assert v6.hosts[0].addresses == ("2001:db8::1", "192.0.2.1")


def test_equal_preferences_in_random_order():
    names = [f"mx{i}.example.test" for i in range(4)]
    table = {("example.test", "MX"): ["5 first.example.test"] + [f"10 {n}" for n in names]}
    table[("first.example.test", "A")] = ["192.0.2.9"]
    for i, n in enumerate(names):
        table[(n, "A")] = [f"192.0.2.{i}"]
    r = FakeResolver(table)
    orders = set()
    for seed in range(40):
        p = plan("example.test", r, rng=random.Random(seed))
        assert p.hosts[0].name == "first.example.test"
        assert sorted(h.name for h in p.hosts[1:]) == names
        orders.add(tuple(h.name for h in p.hosts[1:]))
    assert len(orders) > 5  # shuffled, not fixed


def test_implicit_mx_when_there_is_no_mx():
    r = FakeResolver({("example.test", "A"): ["192.0.2.1"], ("example.test", "AAAA"): ["2001:db8::1"]})
    p = plan("example.test", r)
    assert p.implicit and hosts(p) == [("example.test", 0, ("192.0.2.1", "2001:db8::1"))]


def test_implicit_mx_through_a_cname_uses_the_canonical_name():
    r = FakeResolver({("real.test", "A"): ["192.0.2.1"]}, cnames={"alias.test": "real.test"})
    p = plan("alias.test", r)
    assert p.implicit and hosts(p) == [("real.test", 0, ("192.0.2.1",))]


def test_no_mx_and_no_address_is_permanent():
    r = FakeResolver({("example.test", "TXT"): ["v=spf1 -all"]})
    p = plan("example.test", r)
    assert p.permanent and (p.error.code, p.error.enhanced) == (550, "5.4.4")


def test_null_mx_is_556_5_1_10():
    r = FakeResolver({("example.test", "MX"): ["0 ."], ("example.test", "A"): ["192.0.2.1"]})
    p = plan("example.test", r)
    assert p.permanent and not p.hosts
    assert (p.error.code, p.error.enhanced) == (556, "5.1.10")
    assert r.asked == [("example.test", "MX")]  # nothing else looked up


def test_a_dot_among_other_mx_records_is_skipped():
    r = FakeResolver({("example.test", "MX"): ["0 .", "10 mx.example.test"], ("mx.example.test", "A"): ["192.0.2.1"]})
    assert hosts(plan("example.test", r)) == [("mx.example.test", 10, ("192.0.2.1",))]


@pytest.mark.parametrize(
    "rcode, code, enhanced, permanent",
    [
        ("NXDOMAIN", 550, "5.1.2", True),
        ("SERVFAIL", 451, "4.4.3", False),
        ("TIMEOUT", 451, "4.4.3", False),
        ("REFUSED", 451, "4.4.3", False),
    ],
)
def test_mx_lookup_failures(rcode, code, enhanced, permanent):
    r = FakeResolver({("example.test", "MX"): rcode})
    if rcode == "NXDOMAIN":
        r = FakeResolver({})
    p = plan("example.test", r)
    assert (p.error.code, p.error.enhanced, p.permanent, p.temporary) == (code, enhanced, permanent, not permanent)
    assert rcode in p.error.text or "does not exist" in p.error.text


def test_hosts_without_addresses_are_skipped():
    r = FakeResolver(
        {
            ("example.test", "MX"): ["10 gone.example.test", "20 mx.example.test"],
            ("mx.example.test", "A"): ["192.0.2.2"],
        }
    )
    assert hosts(plan("example.test", r)) == [("mx.example.test", 20, ("192.0.2.2",))]


def test_no_host_with_an_address():
    r = FakeResolver({("example.test", "MX"): ["10 gone.example.test", "20 gone2.example.test"]})
    p = plan("example.test", r)
    assert p.permanent and p.error.enhanced == "5.4.4"
    r = FakeResolver(
        {("example.test", "MX"): ["10 gone.example.test", "20 mx.example.test"], ("mx.example.test", "A"): "SERVFAIL"}
    )
    p = plan("example.test", r)
    assert p.temporary and (p.error.code, p.error.enhanced) == (451, "4.4.3")


def test_a_temporary_failure_of_one_address_type_keeps_the_other():
    r = FakeResolver(
        {
            ("example.test", "MX"): ["10 mx.example.test"],
            ("mx.example.test", "A"): ["192.0.2.1"],
            ("mx.example.test", "AAAA"): "SERVFAIL",
        }
    )
    assert hosts(plan("example.test", r)) == [("mx.example.test", 10, ("192.0.2.1",))]


def test_our_own_name_keeps_only_more_preferred_hosts():
    table = {
        ("example.test", "MX"): ["10 primary.test", "20 ME.test", "20 peer.test", "30 backup.test"],
        ("primary.test", "A"): ["192.0.2.1"],
        ("me.test", "A"): ["192.0.2.2"],
        ("peer.test", "A"): ["192.0.2.3"],
        ("backup.test", "A"): ["192.0.2.4"],
    }
    r = FakeResolver(table)
    assert hosts(plan("example.test", r, our_names=["me.test."])) == [("primary.test", 10, ("192.0.2.1",))]
    table[("example.test", "MX")] = ["10 me.test", "20 backup.test"]
    p = plan("example.test", FakeResolver(table), our_names=["Me.Test"])
    assert p.permanent and (p.error.code, p.error.enhanced) == (554, "5.4.6")


def test_idn_domain_is_asked_as_an_a_label():
    r = FakeResolver(
        {("xn--bcher-kva.test", "MX"): ["10 mx.xn--bcher-kva.test"], ("mx.xn--bcher-kva.test", "A"): ["192.0.2.5"]}
    )
    p = plan("Bücher.test", r)
    assert p.domain == "xn--bcher-kva.test"
    assert hosts(p) == [("mx.xn--bcher-kva.test", 10, ("192.0.2.5",))]
    assert r.asked[0] == ("xn--bcher-kva.test", "MX")


@pytest.mark.parametrize("domain", ["bad..domain", "\u0080\u0081.test", "", "[not-an-ip]", "[IPv6:zz::1]"])
def test_bad_domains_are_permanent_5_1_2(domain):
    p = plan(domain, FakeResolver({}))
    assert p.permanent and p.error.enhanced == "5.1.2"


def test_address_literals_need_no_dns():
    r = FakeResolver({})
    assert plan("[192.0.2.7]", r).hosts == (MxHost("[192.0.2.7]", 0, ("192.0.2.7",)),)
    assert plan("[IPv6:2001:DB8::7]", r).hosts[0].addresses == ("2001:db8::7",)
    assert r.asked == []


def test_at_most_max_hosts_are_looked_up():
    table = {("example.test", "MX"): [f"{i} mx{i}.test" for i in range(50)]}
    for i in range(50):
        table[(f"mx{i}.test", "A")] = ["192.0.2.1"]
    r = FakeResolver(table)
    p = plan("example.test", r, max_hosts=3)
    assert [h.name for h in p.hosts] == ["mx0.test", "mx1.test", "mx2.test"]
    assert len(r.asked) == 1 + 3 * 2
