"""ARC (actors/checks/arc.py): sealing forwarded mail, verifying chains of
one and two sets, broken chains, the trusted-sealer test."""

import pytest
from fakedns import FakeDns

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.arc import SealError, seal, verify_arc
from estafeta.actors.checks.authresults import build
from estafeta.actors.checks.message import header_fields, remove_fields
from estafeta.actors.checks.spf import SpfResult

MSG = b"From: alice@example.com\r\nTo: list@lists.example\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    _, k1 = dkimkeys.write_key(d, "lists.example", "arc", dkimkeys.RSA)
    _, k2 = dkimkeys.write_key(d, "fwd.example", "arc", dkimkeys.RSA)
    _, ed = dkimkeys.write_key(d, "fwd.example", "ed", dkimkeys.ED25519)
    return k1, k2, ed


def dns_for(*keys):
    return FakeDns({k.record_name(): {"TXT": [k.record()]} for k in keys})


def hop(message, authserv_id, key, arc_result):
    """What a forwarder does: add its Authentication-Results (with the arc=
    verdict on what it received), then seal."""
    spf = SpfResult("pass", "mailfrom", "example.com", "alice@example.com", "h", "")
    ar = build(authserv_id, spf=spf, arc=arc_result)
    message = ar + message
    return seal(message, key.domain, key, authserv_id, timestamp=1767225600) + message


def test_unsealed_message_is_none():
    r = verify_arc(FakeDns(), MSG)
    assert (r.result, r.instances, r.lookups) == ("none", 0, ())


def test_one_and_two_hops_pass_and_name_the_latest_sealer(keys):
    k1, k2, _ = keys
    dns = dns_for(k1, k2)
    one = hop(MSG, "mx.lists.example", k1, verify_arc(dns, MSG))
    fields, _ = header_fields(one)
    assert [f.name for f in fields[:4]] == [
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
        "Authentication-Results",
    ]
    assert b"cv=none" in fields[0].raw and fields[2].value().startswith("i=1; mx.lists.example;")
    r1 = verify_arc(dns, one)
    assert (r1.result, r1.instances, r1.sealer, r1.oldest_pass) == ("pass", 1, "lists.example", 1)
    assert r1.trusted_pass(["lists.example"]) and not r1.trusted_pass(["fwd.example"])
    two = hop(one, "mx.fwd.example", k2, r1)
    r2 = verify_arc(dns, two)
    assert (r2.result, r2.instances, r2.sealer) == ("pass", 2, "fwd.example")
    assert r2.trusted_pass(["FWD.example."])
    assert {x.name for x in r2.lookups} == {"arc._domainkey.lists.example", "arc._domainkey.fwd.example"}


def test_broken_chains_fail(keys):
    k1, k2, _ = keys
    dns = dns_for(k1, k2)
    one = hop(MSG, "mx.lists.example", k1, verify_arc(dns, MSG))
    r = verify_arc(dns, one.replace(b"body\r\n", b"changed\r\n"))
    assert r.result == "fail" and not r.trusted_pass(["lists.example"])
    assert verify_arc(FakeDns(), one).result == "fail"  # no key
    r = verify_arc(FakeDns({k1.record_name(): "SERVFAIL"}), one)
    assert r.result == "fail" and "SERVFAIL" in r.reason
    # a set missing its seal
    fields, _ = header_fields(one)
    no_seal = remove_fields(one, [f for f in fields if f.name == "ARC-Seal"])
    assert verify_arc(dns, no_seal).result == "fail"


def test_sealing_needs_our_results_and_an_rsa_key(keys):
    k1, _, ed = keys
    assert seal(MSG, "lists.example", k1, "mx.lists.example") == b""
    other = build("someone.else", arc=verify_arc(FakeDns(), MSG)) + MSG
    assert seal(other, "lists.example", k1, "mx.lists.example") == b""
    with pytest.raises(SealError, match="rsa-sha256"):
        seal(MSG, "fwd.example", ed, "mx.fwd.example")
