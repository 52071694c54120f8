"""SPF (actors/checks/spf.py) over a fake resolver: every result of RFC 7208
§2.6, include and redirect, the lookup limits of §4.6.4, the HELO identity.
The same cases against a real DNS server are in tests/e2e/test_checks_dns.py."""

from fakedns import FakeDns

from estafeta.actors.checks.spf import check_spf

IP = "192.0.2.10"


def zone(**records):
    """FakeDns with TXT records given as name=record ("example_org" for example.org)."""
    return FakeDns({name.replace("_", "."): {"TXT": [rec]} for name, rec in records.items()})


def spf(dns, ip=IP, mail_from="alice@example.org", helo="client.example.net"):
    return check_spf(dns, ip, helo, mail_from, receiver="mx.test")


def test_each_result_of_the_all_qualifier():
    for qualifier, result in (("+", "pass"), ("-", "fail"), ("~", "softfail"), ("?", "neutral")):
        dns = FakeDns({"example.org": {"TXT": [f"v=spf1 {qualifier}all"]}})
        r = spf(dns)
        assert r.result == result, qualifier
        assert r.identity == "mailfrom" and r.domain == "example.org"


def test_ip4_ip6_and_a_mx_mechanisms():
    dns = FakeDns(
        {
            "example.org": {"TXT": ["v=spf1 ip4:192.0.2.0/28 ip6:2001:db8::/64 a mx -all"], "A": ["198.51.100.1"]},
        }
    )
    dns.add("example.org", "MX", "10 mx1.example.org")
    dns.add("mx1.example.org", "A", "203.0.113.9")
    assert spf(dns).result == "pass"
    assert spf(dns, ip="2001:db8::25").result == "pass"
    assert spf(dns, ip="198.51.100.1").result == "pass"
    assert spf(dns, ip="203.0.113.9").result == "pass"
    r = spf(dns, ip="203.0.113.10")
    assert r.result == "fail"
    assert [str(x) for x in r.lookups][:1] == ["TXT example.org NOERROR 1"]


def test_none_without_a_record_and_with_only_other_txt():
    assert spf(FakeDns()).result == "none"
    assert spf(FakeDns({"example.org": {"TXT": ["google-site-verification=x"]}})).result == "none"


def test_include_and_redirect_chains():
    dns = FakeDns(
        {
            "example.org": {"TXT": ["v=spf1 include:_spf.example.org -all"]},
            "_spf.example.org": {"TXT": ["v=spf1 include:_s2.example.net ~all"]},
            "_s2.example.net": {"TXT": ["v=spf1 ip4:192.0.2.10 -all"]},
            "other.example": {"TXT": ["v=spf1 redirect=example.org"]},
        }
    )
    assert spf(dns).result == "pass"
    # the include did not match: its ~all is not the result, the outer -all is
    assert spf(dns, ip="192.0.2.99").result == "fail"
    assert spf(dns, mail_from="bob@other.example").result == "pass"
    assert spf(dns, mail_from="bob@other.example", ip="192.0.2.99").result == "fail"


def test_include_of_a_domain_without_spf_is_permerror():
    dns = FakeDns({"example.org": {"TXT": ["v=spf1 include:nothing.example -all"]}})
    assert spf(dns).result == "permerror"


def test_ten_lookup_limit():
    names = [f"i{n}.example.org" for n in range(11)]
    data = {"example.org": {"TXT": ["v=spf1 " + " ".join(f"include:{n}" for n in names) + " -all"]}}
    for n in names:
        data[n] = {"TXT": ["v=spf1 ?ip4:203.0.113.1"]}
    r = spf(FakeDns(data))
    assert r.result == "permerror"
    assert "lookup" in r.reason.lower()
    # ten are allowed
    data["example.org"] = {"TXT": ["v=spf1 " + " ".join(f"include:{n}" for n in names[:10]) + " ip4:192.0.2.10 -all"]}
    assert spf(FakeDns(data)).result == "pass"


def test_two_void_lookup_limit():
    two = FakeDns({"example.org": {"TXT": ["v=spf1 a:nx1.example.org a:nx2.example.org ip4:192.0.2.10 -all"]}})
    assert spf(two).result == "pass"
    three = FakeDns(
        {"example.org": {"TXT": ["v=spf1 a:nx1.example.org a:nx2.example.org a:nx3.example.org ip4:192.0.2.10 -all"]}}
    )
    r = spf(three)
    assert r.result == "permerror" and "void" in r.reason.lower()


def test_syntax_error_and_two_records_are_permerror():
    assert spf(zone(example_org="v=spf1 ip4:192.0.2.10 bogus -all")).result == "permerror"
    two = FakeDns({"example.org": {"TXT": ["v=spf1 -all", "v=spf1 +all"]}})
    assert spf(two).result == "permerror"


def test_dns_failure_is_temperror():
    assert spf(FakeDns({"example.org": "SERVFAIL"})).result == "temperror"
    dns = FakeDns({"example.org": {"TXT": ["v=spf1 include:slow.example -all"]}, "slow.example": "TIMEOUT"})
    r = spf(dns)
    assert r.result == "temperror"
    assert [x.rcode for x in r.lookups] == ["NOERROR", "TIMEOUT"]


def test_helo_identity_when_mail_from_is_null():
    dns = zone(client_example_net="v=spf1 ip4:192.0.2.10 -all")
    r = spf(dns, mail_from="")
    assert (r.result, r.identity, r.domain) == ("pass", "helo", "client.example.net")
    assert spf(dns, mail_from="", ip="192.0.2.11").result == "fail"
    # an address literal or a bare name is no identity to check
    assert spf(dns, mail_from="", helo="[192.0.2.10]").result == "none"
    assert spf(dns, mail_from="", helo="localhost").result == "none"


def test_macros_expand_with_the_sender():
    dns = FakeDns({"example.org": {"TXT": ["v=spf1 exists:%{l}.%{i}._spf.example.org -all"]}})
    dns.add("alice.192.0.2.10._spf.example.org", "A", "127.0.0.2")
    assert spf(dns).result == "pass"
    assert spf(dns, mail_from="mallory@example.org").result == "fail"


def test_bad_client_address_is_permerror_and_attributes():
    r = spf(zone(example_org="v=spf1 -all"), ip="not-an-ip")
    assert r.result == "permerror"
    a = spf(zone(example_org="v=spf1 -all")).attributes()
    assert a["spf.result"] == "fail" and a["spf.dns.lookup_count"] == 1
    assert a["spf.dns.lookups"] == ("TXT example.org NOERROR 1",)
