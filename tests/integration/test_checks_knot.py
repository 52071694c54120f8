"""The checks against a real authoritative DNS server (Knot on loopback,
tests/peers/dns_server.py) through estafeta's Resolver: SPF of every
result, include and redirect chains, the lookup limits; DMARC with each
policy, alignment mode, pct and subdomain policy, on messages we sign with
keys published there; iprev; DNSBL; `estafeta dkim check`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from peers.dns_server import DnsServer

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.authresults import build
from estafeta.actors.checks.dkim_sign import sign
from estafeta.actors.checks.dkim_verify import verify_dkim
from estafeta.actors.checks.dmarc import action, evaluate_dmarc
from estafeta.actors.checks.dnsbl import DnsblZone, check_dnsbl
from estafeta.actors.checks.iprev import check_iprev
from estafeta.actors.checks.message import from_domain
from estafeta.actors.checks.spf import check_spf
from estafeta.actors.dns import Resolver

CLIENT = "192.0.2.10"

SPF_ZONE = """
    pass        TXT "v=spf1 ip4:192.0.2.0/24 -all"
    fail        TXT "v=spf1 ip4:198.51.100.0/24 -all"
    softfail    TXT "v=spf1 ~all"
    neutral     TXT "v=spf1 ?all"
    none        TXT "some other record"
    permerror   TXT "v=spf1 ip4:192.0.2.0/24 frobnicate -all"
    two         TXT "v=spf1 -all"
    two         TXT "v=spf1 +all"
    mx          TXT "v=spf1 mx -all"
    mx          MX  10 mail.mx
    mail.mx     A   192.0.2.10
    a           TXT "v=spf1 a:host.a.spf.test -all"
    host.a      A   192.0.2.10
    inc         TXT "v=spf1 include:inc2.spf.test -all"
    inc2        TXT "v=spf1 include:inc3.spf.test ~all"
    inc3        TXT "v=spf1 ip4:192.0.2.10 -all"
    redir       TXT "v=spf1 redirect=inc.spf.test"
    redirfail   TXT "v=spf1 redirect=fail.spf.test"
    temp        TXT "v=spf1 include:spf.broken.test -all"
    helo        TXT "v=spf1 ip4:192.0.2.10 -all"
    limit       TXT "v=spf1 include:l1.spf.test include:l2.spf.test include:l3.spf.test include:l4.spf.test include:l5.spf.test include:l6.spf.test ip4:192.0.2.10 -all"
    l1          TXT "v=spf1 include:l7.spf.test ?all"
    l2          TXT "v=spf1 include:l8.spf.test ?all"
    l3          TXT "v=spf1 include:l9.spf.test ?all"
    l4          TXT "v=spf1 include:l10.spf.test ?all"
    l5          TXT "v=spf1 include:l11.spf.test ?all"
    l6          TXT "v=spf1 ?all"
    l7          TXT "v=spf1 ?all"
    l8          TXT "v=spf1 ?all"
    l9          TXT "v=spf1 ?all"
    l10         TXT "v=spf1 ?all"
    l11         TXT "v=spf1 ?all"
    ten         TXT "v=spf1 include:l1.spf.test include:l2.spf.test include:l3.spf.test include:l4.spf.test include:l5.spf.test ip4:192.0.2.10 -all"
    void        TXT "v=spf1 a:nx1.void.spf.test a:nx2.void.spf.test a:nx3.void.spf.test ip4:192.0.2.10 -all"
    void2       TXT "v=spf1 a:nx1.void.spf.test a:nx2.void.spf.test ip4:192.0.2.10 -all"
"""

DMARC_ZONE = """
    _dmarc          TXT "v=DMARC1; p=reject; sp=quarantine"
    _dmarc.none     TXT "v=DMARC1; p=none"
    _dmarc.strict   TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
    _dmarc.half     TXT "v=DMARC1; p=reject; pct=50"
    @               TXT "v=spf1 ip4:192.0.2.10 -all"
    bounce          TXT "v=spf1 ip4:192.0.2.10 -all"
    strict          TXT "v=spf1 ip4:192.0.2.10 -all"
"""

PTR_ZONE = """
    10  PTR mx.client.test.
    11  PTR liar.client.test.
"""

CLIENT_ZONE = """
    mx      A 192.0.2.10
    liar    A 198.51.100.1
"""

DNSBL_ZONE = """
    10.2.0.192  A   127.0.0.2
    10.2.0.192  TXT "listed: https://bl.test/192.0.2.10"
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    dkimkeys.write_key(d, "dmarc.test", "rsa", dkimkeys.RSA)
    dkimkeys.write_key(d, "dmarc.test", "ed", dkimkeys.ED25519)
    dkimkeys.write_key(d, "other.test", "ed", dkimkeys.ED25519)
    dkimkeys.write_key(d, "sub.dmarc.test", "ed", dkimkeys.ED25519)
    return d


@pytest.fixture(scope="module")
def knot(data_dir, tmp_path_factory):
    def key_lines(*domains):  # absolute owner names ("sel._domainkey.dmarc.test.")
        return "\n".join(k.zone_line() for d in domains for k in dkimkeys.load_keys(data_dir, d))

    server = DnsServer(tmp_path_factory.mktemp("knot"))
    server.set_zone("spf.test", SPF_ZONE)
    server.set_zone("dmarc.test", textwrap.dedent(DMARC_ZONE) + key_lines("dmarc.test", "sub.dmarc.test"))
    server.set_zone("other.test", key_lines("other.test"))
    server.set_zone("2.0.192.in-addr.arpa", PTR_ZONE)
    server.set_zone("client.test", CLIENT_ZONE)
    server.set_zone("bl.test", DNSBL_ZONE)
    server.fail_zone("broken.test")
    with server:
        yield server


@pytest.fixture
def resolver(knot):
    return Resolver([knot.address], timeout=2, attempts=1, cache_size=0)


# ---------------------------------------------------------------------- SPF
@pytest.mark.parametrize(
    "domain, result",
    [
        ("pass", "pass"),
        ("fail", "fail"),
        ("softfail", "softfail"),
        ("neutral", "neutral"),
        ("none", "none"),
        ("nonexistent", "none"),
        ("permerror", "permerror"),
        ("two", "permerror"),
        ("mx", "pass"),
        ("a", "pass"),
        ("inc", "pass"),
        ("redir", "pass"),
        ("redirfail", "fail"),
        ("temp", "temperror"),
        ("limit", "permerror"),
        ("ten", "pass"),
        ("void", "permerror"),
        ("void2", "pass"),
    ],
)
def test_spf(domain, result, resolver):
    r = check_spf(resolver, CLIENT, "client.example", f"alice@{domain}.spf.test")
    assert r.result == result, r.reason
    assert r.lookups and r.lookups[0].name == f"{domain}.spf.test"


def test_spf_lookups_are_counted_and_recorded(resolver):
    r = check_spf(resolver, CLIENT, "client.example", "alice@limit.spf.test")
    # the record, then 10 includes; the 11th DNS-querying term is refused
    # before its lookup (RFC 7208 §4.6.4)
    assert len([x for x in r.lookups if x.rdtype == "TXT"]) == 11
    r = check_spf(resolver, CLIENT, "client.example", "alice@ten.spf.test")
    assert r.result == "pass" and len(r.lookups) == 11
    r = check_spf(resolver, CLIENT, "client.example", "alice@void.spf.test")
    assert [x.rcode for x in r.lookups if x.rdtype == "A"] == ["NXDOMAIN"] * 3


def test_spf_helo_identity(resolver):
    r = check_spf(resolver, CLIENT, "helo.spf.test", "")
    assert (r.result, r.identity) == ("pass", "helo")
    assert check_spf(resolver, "192.0.2.11", "helo.spf.test", "").result == "fail"


# ------------------------------------------------------------ DKIM + DMARC
def message(from_addr: str) -> bytes:
    return (
        f"From: {from_addr}\r\nTo: bob@example.net\r\nSubject: dmarc\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "Message-ID: <m@x>\r\n\r\nbody\r\n"
    ).encode()


def run_checks(resolver, data_dir, from_addr, mail_from, signer=None, sample=0.0):
    msg = message(from_addr)
    if signer:
        msg = sign(msg, signer, dkimkeys.load_keys(data_dir, signer)) + msg
    spf = check_spf(resolver, CLIENT, "client.example", mail_from)
    dkim = verify_dkim(resolver, msg)
    return evaluate_dmarc(resolver, from_domain(msg), spf=spf, dkim=dkim, sample=sample), spf, dkim


def test_dmarc_pass_by_dkim_and_by_spf(resolver, data_dir):
    r, spf, dkim = run_checks(resolver, data_dir, "a@dmarc.test", "x@unrelated.example", signer="dmarc.test")
    assert dkim.result == "pass" and len(dkim.signatures) == 2
    assert (r.result, r.dkim_aligned, r.spf_aligned) == ("pass", True, False)
    r, *_ = run_checks(resolver, data_dir, "a@dmarc.test", "x@bounce.dmarc.test")
    assert (r.result, r.spf_aligned) == ("pass", True)
    # relaxed: a subdomain's signature aligns with the organisational domain
    r, *_ = run_checks(resolver, data_dir, "a@dmarc.test", "x@unrelated.example", signer="sub.dmarc.test")
    assert (r.result, r.dkim_aligned) == ("pass", True)


def test_dmarc_each_policy(resolver, data_dir):
    r, *_ = run_checks(resolver, data_dir, "a@dmarc.test", "x@unrelated.example", signer="other.test")
    assert (r.result, r.applied, action(r)) == ("fail", "reject", "reject")
    r, *_ = run_checks(resolver, data_dir, "a@none.dmarc.test", "x@unrelated.example")
    assert (r.result, r.policy.domain, action(r)) == ("fail", "none.dmarc.test", "accept")
    # a subdomain without a record of its own: the organisational domain's sp=
    r, *_ = run_checks(resolver, data_dir, "a@news.dmarc.test", "x@unrelated.example")
    assert (r.policy.domain, r.applied, action(r)) == ("dmarc.test", "quarantine", "quarantine")
    assert [x.name for x in r.lookups] == ["_dmarc.news.dmarc.test", "_dmarc.dmarc.test"]


def test_dmarc_strict_alignment(resolver, data_dir):
    r, *_ = run_checks(resolver, data_dir, "a@strict.dmarc.test", "x@strict.dmarc.test")
    assert (r.result, r.spf_aligned) == ("pass", True)
    r, *_ = run_checks(resolver, data_dir, "a@strict.dmarc.test", "x@dmarc.test", signer="dmarc.test")
    assert (r.result, r.spf_aligned, r.dkim_aligned) == ("fail", False, False)


def test_dmarc_pct(resolver, data_dir):
    r, *_ = run_checks(resolver, data_dir, "a@half.dmarc.test", "x@unrelated.example", sample=10)
    assert r.disposition == "reject"
    r, *_ = run_checks(resolver, data_dir, "a@half.dmarc.test", "x@unrelated.example", sample=75)
    assert (r.disposition, r.override) == ("quarantine", "sampled_out")


def test_authentication_results_of_a_pass(resolver, data_dir):
    r, spf, dkim = run_checks(resolver, data_dir, "a@dmarc.test", "x@dmarc.test", signer="dmarc.test")
    field = build("mx.example.org", spf=spf, dkim=dkim, dmarc=r).decode()
    assert "spf=pass smtp.mailfrom=x@dmarc.test" in field
    assert field.count("dkim=pass header.d=dmarc.test") == 2
    assert "dmarc=pass (p=reject sp=quarantine dis=none) header.from=dmarc.test" in field


# -------------------------------------------------------------- iprev, DNSBL
def test_iprev(resolver):
    r = check_iprev(resolver, "192.0.2.10")
    assert (r.result, r.name) == ("pass", "mx.client.test")
    assert check_iprev(resolver, "192.0.2.11").result == "fail"
    assert check_iprev(resolver, "192.0.2.12").result == "permerror"


def test_dnsbl(resolver):
    r = check_dnsbl(resolver, "192.0.2.10", [DnsblZone("bl.test")])
    assert r.listed and r.reply().text == "client blocked using bl.test: listed: https://bl.test/192.0.2.10"
    assert not check_dnsbl(resolver, "192.0.2.11", [DnsblZone("bl.test")]).listed
    r = check_dnsbl(resolver, "192.0.2.10", [DnsblZone("broken.test")])
    assert not r.listed and r.errors == ("broken.test",)


# ----------------------------------------------------------- estafeta dkim
def test_dkim_check_command(knot, data_dir, tmp_path):
    def estafeta(*args):
        return subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "estafeta"), *args, "--data-dir", data_dir],
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = estafeta("dkim", "check", "dmarc.test", "--nameserver", knot.address)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok ") == 2
    r = estafeta("dkim", "keygen", "dmarc.test", "--selector", "new", "--algorithm", "ed25519")
    assert r.returncode == 0 and "new._domainkey.dmarc.test. IN TXT" in r.stdout
    r = estafeta("dkim", "check", "dmarc.test", "--nameserver", knot.address)
    assert r.returncode == 1 and "FAIL  new._domainkey.dmarc.test" in r.stdout and "NXDOMAIN" in r.stdout
    os.unlink(dkimkeys.key_path(data_dir, "dmarc.test", "new"))
