"""DKIM against independent implementations, keys in a real DNS server
(Knot on loopback): estafeta's signatures verified by OpenDKIM, Mail::DKIM
and dkimpy's `dkimverify`; their signatures verified by estafeta — for
rsa-sha256 and ed25519-sha256 (Mail::DKIM: rsa-sha256 only, its Debian
version has no Ed25519). Peers: tests/peers/dkim_peers.py."""

from __future__ import annotations

import pytest
from peers import dkim_peers, netns_dns
from peers.dns_server import DnsServer

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.dkim_sign import sign
from estafeta.actors.checks.dkim_verify import verify_dkim
from estafeta.actors.dns import Resolver

DOMAIN = "example.test"
MSG = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: interop\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <interop@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"  indented line with trailing spaces   \r\n"
    b"\r\n"
    b"\r\n"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    dkimkeys.write_key(d, DOMAIN, "rsa1", dkimkeys.RSA)
    dkimkeys.write_key(d, DOMAIN, "ed1", dkimkeys.ED25519)
    return d


@pytest.fixture(scope="module")
def keys(data_dir):
    rsa, ed = dkimkeys.load_keys(data_dir, DOMAIN)
    assert (rsa.algorithm, ed.algorithm) == (dkimkeys.RSA, dkimkeys.ED25519)
    return {"rsa": rsa, "ed25519": ed}


def zone_text(keys) -> str:
    return "\n".join(k.zone_line().replace(f".{DOMAIN}.", "") for k in keys.values())


@pytest.fixture(scope="module")
def knot(keys, tmp_path_factory):
    server = DnsServer(tmp_path_factory.mktemp("knot"))
    server.set_zone(DOMAIN, zone_text(keys))
    with server:
        yield server


@pytest.fixture
def resolver(knot):
    return Resolver([knot.address], timeout=2, attempts=1)


def records(keys) -> dict[str, str]:
    return {k.record_name(): k.record() for k in keys.values()}


def key_file(data_dir, key) -> str:
    return dkimkeys.key_path(data_dir, DOMAIN, key.selector)


# ------------------------------------------------------ ours, verified by them
def test_opendkim_verifies_our_dual_signatures(keys):
    signed = sign(MSG, DOMAIN, list(keys.values())) + MSG
    got = dkim_peers.opendkim_verify(signed, records(keys))
    assert sorted(got) == [
        ("pass", "ed25519-sha256", DOMAIN, "ed1"),
        ("pass", "rsa-sha256", DOMAIN, "rsa1"),
    ]
    tampered = signed.replace(b"Hello Bob", b"Hello Eve")
    assert {r[0] for r in dkim_peers.opendkim_verify(tampered, records(keys))} == {"fail"}


def test_maildkim_verifies_our_rsa_signature_through_knot(keys, knot):
    signed = sign(MSG, DOMAIN, list(keys.values())) + MSG
    got = dkim_peers.maildkim_verify(signed, knot.address)
    assert ("pass", "rsa-sha256", DOMAIN, "rsa1") in got
    tampered = signed.replace(b"Subject: interop", b"Subject: changed")
    assert ("fail", "rsa-sha256", DOMAIN, "rsa1") in dkim_peers.maildkim_verify(tampered, knot.address)


def test_dkimverify_verifies_both_of_our_signatures(keys):
    why = netns_dns.available()
    if why:
        pytest.skip(f"dkimverify needs a network namespace: {why}")
    signed = sign(MSG, DOMAIN, list(keys.values())) + MSG
    zones = {DOMAIN: zone_text(keys)}
    assert dkim_peers.dkimpy_verify(signed, zones, index=0)  # rsa-sha256 (topmost)
    assert dkim_peers.dkimpy_verify(signed, zones, index=1)  # ed25519-sha256
    assert not dkim_peers.dkimpy_verify(signed + b"appended\r\n", zones, index=0)


# ------------------------------------------------------ theirs, verified by us
@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_we_verify_opendkim_signatures(kind, keys, data_dir, resolver):
    key = keys[kind]
    sig = dkim_peers.opendkim_sign(MSG, DOMAIN, key.selector, key_file(data_dir, key), key.algorithm)
    assert f"a={key.algorithm}".encode() in sig
    r = verify_dkim(resolver, sig + MSG)
    assert [(s.result, s.algorithm, s.selector) for s in r.signatures] == [("pass", key.algorithm, key.selector)]
    assert [str(x) for x in r.lookups] == [f"TXT {key.record_name()} NOERROR 1"]
    assert verify_dkim(resolver, sig + MSG.replace(b"Bob", b"Eve")).result == "fail"


def test_we_verify_maildkim_signatures(keys, data_dir, resolver):
    key = keys["rsa"]
    sig = dkim_peers.maildkim_sign(MSG, DOMAIN, key.selector, key_file(data_dir, key))
    assert sig.startswith(b"DKIM-Signature:")
    r = verify_dkim(resolver, sig + MSG)
    assert [(s.result, s.algorithm) for s in r.signatures] == [("pass", "rsa-sha256")]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_we_verify_dkimsign_signatures(kind, keys, resolver):
    key = keys[kind]
    signed = dkim_peers.dkimpy_sign(MSG, DOMAIN, key.selector, key.private, key.algorithm)
    r = verify_dkim(resolver, signed)
    assert [(s.result, s.algorithm) for s in r.signatures] == [("pass", key.algorithm)]
