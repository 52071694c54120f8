"""iprev (RFC 8601 §3) and DNSBL (RFC 5782) over a fake resolver."""

from fakedns import FakeDns

from estafeta.actors.checks.dnsbl import DnsblZone, check_dnsbl, query_name
from estafeta.actors.checks.iprev import check_iprev


def test_iprev_results():
    dns = FakeDns(
        {
            "10.2.0.192.in-addr.arpa": {"PTR": ["other.example", "mx.example.net"]},
            "mx.example.net": {"A": ["192.0.2.10"]},
            "other.example": {"A": ["192.0.2.99"]},
            "11.2.0.192.in-addr.arpa": {"PTR": ["liar.example"]},
            "liar.example": {"A": ["198.51.100.1"]},
            "12.2.0.192.in-addr.arpa": {"PTR": ["gone.example"]},
            "13.2.0.192.in-addr.arpa": {"PTR": ["slow.example"]},
            "slow.example": "SERVFAIL",
            "14.2.0.192.in-addr.arpa": "TIMEOUT",
        }
    )
    r = check_iprev(dns, "192.0.2.10")
    assert (r.result, r.name, r.ptr_names) == ("pass", "mx.example.net", ("other.example", "mx.example.net"))
    assert [str(x) for x in r.lookups] == [
        "PTR 10.2.0.192.in-addr.arpa NOERROR 2",
        "A other.example NOERROR 1",
        "A mx.example.net NOERROR 1",
    ]
    assert check_iprev(dns, "192.0.2.11").result == "fail"
    assert check_iprev(dns, "192.0.2.12").result == "fail"  # the name does not exist
    assert check_iprev(dns, "192.0.2.13").result == "temperror"
    assert check_iprev(dns, "192.0.2.14").result == "temperror"
    assert check_iprev(dns, "192.0.2.15").result == "permerror"  # no PTR
    assert check_iprev(dns, "bogus").result == "permerror"
    assert check_iprev(dns, "::ffff:192.0.2.10").result == "pass"


def test_iprev_ipv6():
    ip = "2001:db8::1"
    ptr = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    dns = FakeDns({ptr: {"PTR": ["v6.example."]}, "v6.example": {"AAAA": ["2001:DB8:0::1"]}})
    r = check_iprev(dns, ip)
    assert (r.result, r.name) == ("pass", "v6.example")
    assert r.lookups[1].rdtype == "AAAA"


def test_dnsbl_query_names():
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert query_name("2001:db8:1:2:3:4:567:89ab", "bl.example.") == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example"
    )


def test_dnsbl_weights_threshold_and_reply():
    dns = FakeDns(
        {
            "2.0.0.127.a.example": {"A": ["127.0.0.2"], "TXT": ["listed for spam, see https://a.example/q?2"]},
            "2.0.0.127.b.example": {"A": ["127.0.0.4"]},
            "2.0.0.127.err.example": {"A": ["127.255.255.254"]},
            "2.0.0.127.bad.example": {"A": ["10.0.0.1"]},
            "2.0.0.127.down.example": "SERVFAIL",
        }
    )
    zones = [DnsblZone("a.example", 0.5), DnsblZone("b.example", 0.5), DnsblZone("c.example")]
    r = check_dnsbl(dns, "127.0.0.2", zones, threshold=1.0)
    assert r.listed and r.score == 1.0 and [h.zone for h in r.hits] == ["a.example", "b.example"]
    reply = r.reply()
    assert (reply.code, reply.enhanced) == (554, "5.7.1")
    assert reply.text == "client blocked using a.example, b.example: listed for spam, see https://a.example/q?2"
    r = check_dnsbl(dns, "127.0.0.2", zones[:1], threshold=1.0)
    assert not r.listed and r.score == 0.5 and r.reply() is None
    # error codes and non-loopback answers are not listings; a failing list is noted, not counted
    r = check_dnsbl(dns, "127.0.0.2", [DnsblZone("err.example"), DnsblZone("bad.example"), DnsblZone("down.example")])
    assert (r.listed, r.hits, r.errors) == (False, (), ("down.example",))
    assert check_dnsbl(dns, "127.0.0.3", zones).lookups[0].rcode == "NXDOMAIN"
    assert not check_dnsbl(dns, "127.0.0.2", []).listed
    a = check_dnsbl(dns, "127.0.0.2", zones).attributes()
    assert a["dnsbl.listed"] is True and a["dnsbl.hits"] == ("a.example 127.0.0.2", "b.example 127.0.0.4")
