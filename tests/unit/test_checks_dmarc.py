"""DMARC (actors/checks/dmarc.py): organisational domains, alignment, policy
discovery, p/sp/pct, the ARC trusted-sealer override, the session's action."""

import pytest
from fakedns import FakeDns

from estafeta.actors.checks.arc import ArcResult
from estafeta.actors.checks.dkim_verify import DkimResult, DkimSignature
from estafeta.actors.checks.dmarc import action, aligned, evaluate_dmarc, org_domain, parse_policy, reject_reply
from estafeta.actors.checks.spf import SpfResult


@pytest.mark.parametrize(
    "domain, org",
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("example.co.uk", "example.co.uk"),
        ("mail.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own
        ("www.city.kawasaki.jp", "city.kawasaki.jp"),  # an exception rule (!city.kawasaki.jp)
        ("x.y.kawasaki.jp", "x.y.kawasaki.jp"),  # a wildcard rule (*.kawasaki.jp)
        ("Mail.Example.COM.", "example.com"),
        ("foo.bar.blogspot.com", "bar.blogspot.com"),  # private section
        ("host.localhost", "host.localhost"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_organisational_domains(domain, org):
    assert org_domain(domain) == org


def test_alignment_relaxed_and_strict():
    assert aligned("example.com", "example.com", "s")
    assert aligned("example.com", "mail.example.com", "r")
    assert aligned("news.example.com", "bounce.example.com", "r")
    assert not aligned("news.example.com", "bounce.example.com", "s")
    assert not aligned("example.com", "mail.example.com", "s")
    assert aligned("a.example.co.uk", "b.example.co.uk", "r")
    # two registrants under one multi-label public suffix are not aligned
    assert not aligned("example.co.uk", "other.co.uk", "r")
    # the public suffix itself is not aligned with a domain below it
    assert not aligned("example.co.uk", "co.uk", "r")
    assert not aligned("example.com", "com", "r")
    assert not aligned("example.com", "example.net", "r")
    assert not aligned("example.com", "", "r")
    assert aligned("Example.COM", "example.com.", "s")


def spf_result(domain, result="pass", identity="mailfrom"):
    return SpfResult(result, identity, domain, f"x@{domain}", "helo.example", "")


def dkim_result(*domains, result="pass", l=None):
    return DkimResult(tuple(DkimSignature(result, d, "s", "rsa-sha256", "", l, "b") for d in domains))


def dns_with(record, at="_dmarc.example.com"):
    return FakeDns({at: {"TXT": [record]}})


def test_policy_parsing_defaults_and_leniency():
    p = parse_policy("v=DMARC1; p=reject", "example.com")
    assert (p.p, p.sp, p.adkim, p.aspf, p.pct) == ("reject", "", "r", "r", 100)
    p = parse_policy("v=DMARC1; p=quarantine; sp=none; adkim=s; aspf=s; pct=20; rua=mailto:d@example.com", "x")
    assert (p.p, p.sp, p.adkim, p.aspf, p.pct, p.rua) == ("quarantine", "none", "s", "s", 20, ("mailto:d@example.com",))
    # bad values are ignored (RFC 7489 §6.3), pct clamped
    p = parse_policy("v=DMARC1; p=reject; adkim=x; pct=400; foo=bar", "x")
    assert (p.adkim, p.pct) == ("r", 100)
    # no valid p= but a rua=: as p=none (§6.6.3 step 6)
    assert parse_policy("v=DMARC1; rua=mailto:d@example.com", "x").p == "none"
    with pytest.raises(ValueError):
        parse_policy("v=DMARC1; adkim=s", "x")


def test_pass_by_aligned_spf_or_dkim():
    dns = dns_with("v=DMARC1; p=reject")
    r = evaluate_dmarc(dns, "example.com", spf=spf_result("bounce.example.com"), dkim=dkim_result())
    assert (r.result, r.spf_aligned, r.dkim_aligned, r.disposition) == ("pass", True, False, "none")
    r = evaluate_dmarc(dns, "example.com", spf=spf_result("other.example"), dkim=dkim_result("example.com"))
    assert (r.result, r.spf_aligned, r.dkim_aligned) == ("pass", False, True)
    assert action(r) == "accept"


def test_fail_with_each_policy():
    for p, act in (("none", "accept"), ("quarantine", "quarantine"), ("reject", "reject")):
        dns = dns_with(f"v=DMARC1; p={p}")
        r = evaluate_dmarc(dns, "example.com", spf=spf_result("other.example"), dkim=dkim_result("other.example"))
        assert (r.result, r.applied, r.disposition) == ("fail", p, p)
        assert action(r) == act
    assert action(r, enforce_reject=False) == "quarantine"
    reply = reject_reply(r)
    assert (reply.code, reply.enhanced) == (550, "5.7.1") and "example.com" in reply.text


def test_unaligned_passes_and_failing_results_do_not_count():
    dns = dns_with("v=DMARC1; p=reject; adkim=s; aspf=s")
    r = evaluate_dmarc(dns, "example.com", spf=spf_result("mail.example.com"), dkim=dkim_result("mail.example.com"))
    assert r.result == "fail" and not r.spf_aligned and not r.dkim_aligned
    dns = dns_with("v=DMARC1; p=reject")
    r = evaluate_dmarc(
        dns, "example.com", spf=spf_result("example.com", "softfail"), dkim=dkim_result("example.com", result="fail")
    )
    assert r.result == "fail"
    # a signature with l= passes DKIM but is not trusted for DMARC unless asked
    d = dkim_result("example.com", l=10)
    assert evaluate_dmarc(dns, "example.com", spf=None, dkim=d).result == "fail"
    assert evaluate_dmarc(dns, "example.com", spf=None, dkim=d, trust_body_length=True).result == "pass"


def test_helo_identity_counts_for_spf_alignment():
    dns = dns_with("v=DMARC1; p=reject")
    r = evaluate_dmarc(dns, "example.com", spf=spf_result("mx.example.com", identity="helo"), dkim=None)
    assert r.result == "pass"


def test_policy_from_the_organisational_domain_and_sp():
    dns = FakeDns({"_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=reject; sp=quarantine"]}})
    fail = dict(spf=spf_result("other.example"), dkim=None)
    r = evaluate_dmarc(dns, "news.example.co.uk", **fail)
    assert (r.result, r.policy.domain, r.applied, r.disposition) == (
        "fail",
        "example.co.uk",
        "quarantine",
        "quarantine",
    )
    assert r.org == "example.co.uk"
    assert [x.name for x in r.lookups] == ["_dmarc.news.example.co.uk", "_dmarc.example.co.uk"]
    r = evaluate_dmarc(dns, "example.co.uk", **fail)
    assert r.applied == "reject"
    # without sp=, p= applies to subdomains
    dns = FakeDns({"_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=reject"]}})
    assert evaluate_dmarc(dns, "news.example.co.uk", **fail).applied == "reject"
    # a subdomain's own record wins, and its sp= does not apply to itself
    dns.add("_dmarc.news.example.co.uk", "TXT", "v=DMARC1; p=none; sp=reject")
    r = evaluate_dmarc(dns, "news.example.co.uk", **fail)
    assert (r.policy.domain, r.applied) == ("news.example.co.uk", "none")
    # never above the organisational domain: co.uk's record is not looked up
    dns = FakeDns({"_dmarc.co.uk": {"TXT": ["v=DMARC1; p=reject"]}})
    assert evaluate_dmarc(dns, "a.example.co.uk", **fail).result == "none"


def test_pct_sampling_steps_down_one_level():
    dns = dns_with("v=DMARC1; p=reject; pct=25")
    fail = dict(spf=spf_result("other.example"), dkim=None)
    assert evaluate_dmarc(dns, "example.com", sample=10, **fail).disposition == "reject"
    r = evaluate_dmarc(dns, "example.com", sample=25, **fail)
    assert (r.disposition, r.override, r.override_comment) == ("quarantine", "sampled_out", "pct=25")
    assert action(r) == "quarantine"
    dns = dns_with("v=DMARC1; p=quarantine; pct=0")
    assert evaluate_dmarc(dns, "example.com", sample=0, **fail).disposition == "none"
    # random sampling: pct=50 gives both over enough messages
    dns = dns_with("v=DMARC1; p=reject; pct=50")
    seen = {evaluate_dmarc(dns, "example.com", **fail).disposition for _ in range(200)}
    assert seen == {"reject", "quarantine"}


def test_no_record_multiple_records_errors():
    fail = dict(spf=spf_result("other.example"), dkim=None)
    assert evaluate_dmarc(FakeDns(), "example.com", **fail).result == "none"
    two = FakeDns({"_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}})
    assert evaluate_dmarc(two, "example.com", **fail).result == "none"
    other = FakeDns({"_dmarc.example.com": {"TXT": ["some other text", "v=DMARC1; p=reject"]}})
    assert evaluate_dmarc(other, "example.com", **fail).result == "fail"
    # "v=DMARC10" is not a DMARC record
    assert evaluate_dmarc(dns_with("v=DMARC10; p=reject"), "example.com", **fail).result == "none"
    r = evaluate_dmarc(FakeDns({"_dmarc.example.com": "SERVFAIL"}), "example.com", **fail)
    assert (r.result, r.disposition, action(r)) == ("temperror", "none", "accept")
    r = evaluate_dmarc(dns_with("v=DMARC1; sp=reject"), "example.com", **fail)
    assert r.result == "permerror"
    assert evaluate_dmarc(FakeDns(), "", **fail).result == "permerror"


def test_arc_from_a_trusted_sealer_lets_a_failure_through():
    dns = dns_with("v=DMARC1; p=reject")
    fail = dict(spf=spf_result("list.example.net"), dkim=dkim_result("list.example.net"))
    chain = ArcResult("pass", 1, "list.example.net")
    r = evaluate_dmarc(dns, "example.com", arc=chain, trusted_sealers=["List.Example.NET."], **fail)
    assert (r.result, r.disposition, r.override) == ("fail", "none", "local_policy")
    assert "list.example.net" in r.override_comment and action(r) == "accept"
    assert evaluate_dmarc(dns, "example.com", arc=chain, trusted_sealers=["other.example"], **fail).disposition == (
        "reject"
    )
    broken = ArcResult("fail", 1, "list.example.net")
    assert evaluate_dmarc(dns, "example.com", arc=broken, trusted_sealers=["list.example.net"], **fail).disposition == (
        "reject"
    )


def test_comment_and_attributes():
    r = evaluate_dmarc(
        dns_with("v=DMARC1; p=reject; sp=none"), "example.com", spf=spf_result("other.example"), dkim=None
    )
    assert r.comment() == "p=reject sp=none dis=reject"
    a = r.attributes()
    assert a["dmarc.result"] == "fail" and a["dmarc.policy_domain"] == "example.com"
    assert a["dmarc.dns.lookups"] == ("TXT _dmarc.example.com NOERROR 1",)
