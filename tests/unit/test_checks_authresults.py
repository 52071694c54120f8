"""Authentication-Results (actors/checks/authresults.py): building ours,
parsing it back with the authres package, removing forged ones (RFC 8601 §5)."""

import authres
from fakedns import FakeDns

from estafeta.actors.checks.arc import ArcResult
from estafeta.actors.checks.authresults import authserv_id_of, build, remove_ours
from estafeta.actors.checks.dkim_verify import DkimResult, DkimSignature
from estafeta.actors.checks.dmarc import evaluate_dmarc
from estafeta.actors.checks.iprev import IprevResult
from estafeta.actors.checks.message import header_fields
from estafeta.actors.checks.spf import SpfResult


def parse(field: bytes):
    unfolded = field.decode().replace("\r\n", "").replace("\t", " ")
    return authres.AuthenticationResultsHeader.parse(unfolded)


def test_full_header_round_trips_through_authres():
    spf = SpfResult("pass", "mailfrom", "example.net", "alice@example.net", "mx.example.net", "")
    dkim = DkimResult(
        (
            DkimSignature("pass", "example.net", "sel", "rsa-sha256", "", None, "AbCd+/12xyzQ"),
            DkimSignature("fail", "example.net", "ed", "ed25519-sha256", "", 120, "ZZZZ", "body hash mismatch"),
        )
    )
    dmarc = evaluate_dmarc(
        FakeDns({"_dmarc.example.net": {"TXT": ["v=DMARC1; p=reject"]}}), "example.net", spf=spf, dkim=dkim
    )
    field = build(
        "mx.example.org",
        iprev=IprevResult("pass", "192.0.2.1", "mx.example.net"),
        spf=spf,
        dkim=dkim,
        arc=ArcResult("pass", 2, "list.example", oldest_pass=1),
        dmarc=dmarc,
    )
    assert field.startswith(b"Authentication-Results: mx.example.org;\r\n\t")
    assert field.endswith(b"\r\n") and all(len(line) < 998 for line in field.split(b"\r\n"))
    h = parse(field)
    assert h.authserv_id == "mx.example.org"
    got = [(r.method, r.result) for r in h.results]
    assert got == [
        ("iprev", "pass"),
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dkim", "fail"),
        ("arc", "pass"),
        ("dmarc", "pass"),
    ]
    assert h.results[1].smtp_mailfrom == "alice@example.net"
    assert (h.results[2].header_d, h.results[2].header_s, h.results[2].header_a) == ("example.net", "sel", "rsa-sha256")
    props = {(p.type, p.name): p.value for p in h.results[2].properties}
    assert props[("header", "b")] == "AbCd+/12xyzQ"
    assert h.results[3].reason == "body hash mismatch"
    assert [(p.type, p.name, p.value) for p in h.results[5].properties] == [("header", "from", "example.net")]
    assert b"dmarc=pass (p=reject dis=none) header.from=example.net" in field
    assert b"iprev=pass policy.iprev=192.0.2.1 (mx.example.net)" in field
    assert b"arc=pass header.oldest-pass=1" in field


def test_helo_identity_and_no_signatures_and_nothing():
    spf = SpfResult("none", "helo", "", "", "[192.0.2.1]", "HELO is not a domain name")
    field = build("mx.example.org", spf=spf, dkim=DkimResult(()))
    assert b'spf=none smtp.helo="[192.0.2.1]"' in field  # quoted: "[" is no token character
    assert b"dkim=none" in field
    assert build("mx.example.org") == b"Authentication-Results: mx.example.org;\r\n\tnone\r\n"
    assert parse(build("mx.example.org")).results == []


def test_authserv_id_of():
    assert authserv_id_of("mx.example.org; spf=pass") == "mx.example.org"
    assert authserv_id_of("  MX.Example.ORG 1; none") == "mx.example.org"
    assert authserv_id_of("(a (nested) comment) mx.example.org;none") == "mx.example.org"
    assert authserv_id_of('"mx.example.org"; none') == "mx.example.org"
    assert authserv_id_of("mx.example.org.evil; none") == "mx.example.org.evil"
    assert authserv_id_of("") == ""


def test_forged_fields_claiming_our_authserv_id_are_removed():
    msg = (
        b"Received: from x\r\n"
        b"Authentication-Results: MX.example.org;\r\n\tdkim=pass header.d=bank.example\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"authentication-results: (forged) mx.example.org 1; dmarc=pass\r\n"
        b"Subject: Authentication-Results: mx.example.org\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.org; body text stays\r\n"
    )
    out, n = remove_ours(msg, "mx.example.org")
    assert n == 2
    assert out == (
        b"Received: from x\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"Subject: Authentication-Results: mx.example.org\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.org; body text stays\r\n"
    )
    assert remove_ours(out, "mx.example.org") == (out, 0)


def test_header_fields_parse():
    msg = b"A: 1\r\nB:  two\r\n  folded\r\nC:3\n\r\nbody"
    fields, body = header_fields(msg)
    assert [(f.name, f.value()) for f in fields] == [("A", "1"), ("B", "two  folded"), ("C", "3")]
    assert msg[body:] == b"body"
    assert header_fields(b"A: 1\r\n")[1] == 6
    # a line that is no field ends the header section
    fields, body = header_fields(b"A: 1\r\nnot a field\r\nB: 2\r\n\r\n")
    assert [f.name for f in fields] == ["A"] and body == 6
