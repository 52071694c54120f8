"""DKIM keys, signing and verification (actors/checks/dkimkeys.py,
dkim_sign.py, dkim_verify.py) over a fake resolver. Independent signers
and verifiers (OpenDKIM, dkimpy's CLI) are in test_dkim_interop.py."""

import os
import stat
import subprocess

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakedns import FakeDns

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.dkim_sign import OVERSIGNED_FIELDS, SigningError, sign, signed_headers
from estafeta.actors.checks.dkim_verify import verify_dkim

MSG = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"Received: from x by y\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    dkimkeys.write_key(d, "example.org", "r1", dkimkeys.RSA)
    dkimkeys.write_key(d, "example.org", "e1", dkimkeys.ED25519)
    return dkimkeys.load_keys(d, "example.org")


def published(keys):
    return FakeDns({k.record_name(): {"TXT": [k.record()]} for k in keys})


def test_key_files_are_0600_in_0700_directories_and_rsa_comes_first(tmp_path):
    path, key = dkimkeys.write_key(str(tmp_path), "example.org", "s1", dkimkeys.ED25519)
    assert path == str(tmp_path / "dkim" / "example.org" / "s1.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert open(path, "rb").read().startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(FileExistsError):
        dkimkeys.write_key(str(tmp_path), "example.org", "s1", dkimkeys.RSA)
    dkimkeys.write_key(str(tmp_path), "example.org", "z9", dkimkeys.RSA)
    loaded = dkimkeys.load_keys(str(tmp_path), "example.org")
    assert [(k.selector, k.algorithm) for k in loaded] == [("z9", dkimkeys.RSA), ("s1", dkimkeys.ED25519)]
    assert loaded[1].public == key.public
    assert dkimkeys.load_keys(str(tmp_path), "other.example") == ()


def test_bad_key_files_are_refused_with_their_path(tmp_path):
    d = tmp_path / "dkim" / "example.org"
    d.mkdir(parents=True)
    (d / "bad.key").write_bytes(b"not a key")
    os.chmod(d / "bad.key", 0o600)
    with pytest.raises(dkimkeys.KeyFileError, match="bad.key"):
        dkimkeys.load_keys(str(tmp_path), "example.org")
    (d / "bad.key").unlink()
    path, _ = dkimkeys.write_key(str(tmp_path), "example.org", "open", dkimkeys.ED25519)
    os.chmod(path, 0o644)
    with pytest.raises(dkimkeys.KeyFileError, match="0600"):
        dkimkeys.load_keys(str(tmp_path), "example.org")
    with pytest.raises(ValueError):
        dkimkeys.write_key(str(tmp_path), "example.org", "../x", dkimkeys.RSA)


def test_short_rsa_keys_are_refused():
    small = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    with pytest.raises(ValueError, match="1024"):
        dkimkeys.key_from_pem("example.org", "s", small)


def test_keystore_rereads_a_changed_directory(tmp_path):
    store = dkimkeys.KeyStore(str(tmp_path))
    assert store.keys_for("example.org") == ()
    dkimkeys.write_key(str(tmp_path), "example.org", "a", dkimkeys.ED25519)
    assert [k.selector for k in store.keys_for("example.org")] == ["a"]
    assert store.keys_for("example.org") is store.keys_for("example.org")
    os.unlink(dkimkeys.key_path(str(tmp_path), "example.org", "a"))
    os.utime(dkimkeys.domain_dir(str(tmp_path), "example.org"), (1, 1))
    assert store.keys_for("example.org") == ()


def test_records_and_zone_lines(keys):
    r, e = keys
    assert r.record().startswith("v=DKIM1; k=rsa; p=MII")
    assert e.record().startswith("v=DKIM1; k=ed25519; p=") and len(e.public) == 44
    line = r.zone_line()
    assert line.startswith("r1._domainkey.example.org. IN TXT ( ")
    strings = line.split('"')[1::2]
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == r.record()


def test_signed_header_list_oversigns_the_five():
    h = signed_headers(["From", "To", "Received", "Subject", "X-Other", "Cc"])
    assert h == [b"from", b"to", b"subject", b"cc"] + [x.encode() for x in OVERSIGNED_FIELDS]


def test_dual_signatures_verify_and_are_relaxed(keys):
    sigs = sign(MSG, "example.org", keys)
    assert sigs.count(b"DKIM-Signature:") == 2
    assert sigs.index(b"a=rsa-sha256") < sigs.index(b"a=ed25519-sha256")
    assert b"c=relaxed/relaxed" in sigs and sigs.endswith(b"\r\n")
    assert b"received" not in sigs.lower().split(b"h=")[1].split(b";")[0]
    r = verify_dkim(published(keys), sigs + MSG)
    assert [(s.result, s.algorithm, s.selector) for s in r.signatures] == [
        ("pass", "rsa-sha256", "r1"),
        ("pass", "ed25519-sha256", "e1"),
    ]
    assert r.result == "pass" and r.trusted_domains() == ("example.org", "example.org")
    assert [str(x) for x in r.lookups] == [
        "TXT r1._domainkey.example.org NOERROR 1",
        "TXT e1._domainkey.example.org NOERROR 1",
    ]
    # relaxed: refolding headers and changing whitespace keeps them valid
    refolded = MSG.replace(b"Subject: hello", b"Subject:   hello\r\n ").replace(b"Hello Bob.", b"Hello   Bob.")
    assert verify_dkim(published(keys), sigs + refolded).result == "pass"


def test_changes_break_the_signatures(keys):
    sigs = sign(MSG, "example.org", keys)
    dns = published(keys)
    body = verify_dkim(dns, sigs + MSG + b"P.S. buy now\r\n")
    assert {(s.result, s.reason) for s in body.signatures} == {("fail", "body hash mismatch")}
    subject = verify_dkim(dns, sigs + MSG.replace(b"hello", b"HELLO"))
    assert {s.result for s in subject.signatures} == {"fail"}
    # over-signed: a second Subject (or a To where there was none) cannot be added
    added = verify_dkim(dns, sigs + b"Subject: urgent\r\n" + MSG)
    assert {s.result for s in added.signatures} == {"fail"}
    no_to = MSG.replace(b"To: bob@example.net\r\n", b"")
    sigs2 = sign(no_to, "example.org", keys)
    assert verify_dkim(dns, sigs2 + no_to).result == "pass"
    assert verify_dkim(dns, sigs2 + b"To: victim@example.net\r\n" + no_to).result == "fail"
    # an unsigned field may be added
    assert verify_dkim(dns, sigs + b"X-Spam: no\r\n" + MSG).result == "pass"


def test_key_problems_are_permerror_and_dns_failures_temperror(keys):
    sigs = sign(MSG, "example.org", keys)
    r, e = keys
    missing = verify_dkim(FakeDns(), sigs + MSG)
    assert {(s.result, s.reason) for s in missing.signatures} == {("permerror", "no key record")}
    revoked = FakeDns({r.record_name(): {"TXT": ["v=DKIM1; k=rsa; p="]}, e.record_name(): {"TXT": ["v=DKIM1; p=xx"]}})
    res = verify_dkim(revoked, sigs + MSG).signatures
    assert (res[0].result, res[0].reason) == ("permerror", "key revoked (empty p=)")
    assert res[1].result == "permerror"
    failing = FakeDns({r.record_name(): "SERVFAIL", e.record_name(): "TIMEOUT"})
    assert [(s.result, s.reason) for s in verify_dkim(failing, sigs + MSG).signatures] == [
        ("temperror", "key lookup: DNS SERVFAIL"),
        ("temperror", "key lookup: DNS TIMEOUT"),
    ]
    # a key of the other type under the selector: the signature cannot verify
    swapped = FakeDns({r.record_name(): {"TXT": [e.record()]}, e.record_name(): {"TXT": [r.record()]}})
    assert {s.result for s in verify_dkim(swapped, sigs + MSG).signatures} <= {"fail", "permerror"}
    assert verify_dkim(swapped, sigs + MSG).result != "pass"


def test_short_rsa_key_in_dns_is_permerror(tmp_path):
    small = rsa.generate_private_key(65537, 1024)
    pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = dkimkeys.key_from_pem("example.org", "k1024", pem)
    sigs = sign(MSG, "example.org", [key])
    dns = published([key])
    assert verify_dkim(dns, sigs + MSG).result == "pass"
    r = verify_dkim(dns, sigs + MSG, min_rsa_bits=2048)
    assert r.signatures[0].result == "permerror" and "small" in r.signatures[0].reason


def test_rsa_sha1_and_malformed_signatures_are_permerror(keys):
    r = keys[0]
    sha1 = dkim.sign(MSG, b"r1", b"example.org", r.private, signature_algorithm=b"rsa-sha1")
    res = verify_dkim(published(keys), sha1 + MSG)
    assert res.signatures[0].result == "permerror" and "RFC 8301" in res.signatures[0].reason
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=r1; bh=AAAA\r\n"
    res = verify_dkim(published(keys), bad + MSG)
    assert res.signatures[0].result == "permerror" and res.signatures[0].domain == "example.org"
    assert verify_dkim(published(keys), MSG).result == "none"


def test_body_length_signatures_are_not_trusted_for_dmarc_by_default(keys):
    r = keys[0]
    sig = dkim.sign(MSG, b"r1", b"example.org", r.private, length=True, canonicalize=(b"relaxed", b"relaxed"))
    res = verify_dkim(published(keys), sig + MSG + b"appended\r\n")
    s = res.signatures[0]
    assert s.result == "pass" and s.body_length is not None
    assert res.trusted_domains() == ()
    assert res.trusted_domains(trust_body_length=True) == ("example.org",)


def test_signing_errors():
    with pytest.raises(SigningError, match="From"):
        key = dkimkeys.key_from_pem("example.org", "e", dkimkeys.generate_pem(dkimkeys.ED25519))
        sign(b"To: x@example.net\r\n\r\nbody\r\n", "example.org", [key])
    assert sign(MSG, "example.org", []) == b""


def test_attributes(keys):
    a = verify_dkim(published(keys), sign(MSG, "example.org", keys) + MSG).attributes()
    assert a["dkim.result"] == "pass"
    assert a["dkim.signatures"][0] == "pass d=example.org s=r1 a=rsa-sha256"
    assert a["dkim.dns.lookup_count"] == 2


def test_openssl_rsa_gives_dkimpys_results(keys):
    """dkimcrypto puts OpenSSL under dkimpy's RSA: PKCS#1 v1.5 is
    deterministic, so both must give the same signature octets, and accept
    the same signatures."""
    import hashlib

    from dkim.crypto import RSASSA_PKCS1_v1_5_sign as pure_sign
    from dkim.crypto import RSASSA_PKCS1_v1_5_verify as pure_verify
    from dkim.crypto import parse_pem_private_key

    from estafeta.actors.checks import dkimcrypto

    pk = parse_pem_private_key(keys[0].private)
    pub = {"modulus": pk["modulus"], "publicExponent": pk["publicExponent"]}
    for data in (b"", b"abc", MSG):
        for name in ("sha256", "sha1"):
            sig = bytes(dkimcrypto.rsa_sign(hashlib.new(name, data), pk))
            assert sig == bytes(pure_sign(hashlib.new(name, data), pk))
            assert dkimcrypto.rsa_verify(hashlib.new(name, data), sig, pub)
            assert pure_verify(hashlib.new(name, data), sig, pub)
            bad = sig[:-1] + bytes([sig[-1] ^ 1])
            assert not dkimcrypto.rsa_verify(hashlib.new(name, data), bad, pub)
            assert not pure_verify(hashlib.new(name, data), bad, pub)
            assert not dkimcrypto.rsa_verify(hashlib.new(name, data + b"x"), sig, pub)
    assert not dkimcrypto.rsa_verify(hashlib.sha256(b""), b"short", pub)
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimcrypto.rsa_sign
    assert dkim.RSASSA_PKCS1_v1_5_verify is dkimcrypto.rsa_verify


def test_has_field_finds_a_field_by_name_prefix_in_the_header_section_only():
    from estafeta.actors.checks.message import has_field

    m = b"Received: x\r\nDKIM-Signature: v=1\r\nSubject: s\r\n\r\nbody\r\n"
    assert has_field(m, b"dkim-signature") and has_field(m, b"received")
    assert has_field(b"dkim-signature: v=1\r\n\r\n", b"dkim-signature")
    assert not has_field(m, b"arc-")
    assert not has_field(b"Subject: s\r\n\r\nARC-Seal: in the body\r\n", b"arc-")
    assert not has_field(b"Subject: s\r\n X-DKIM-Signature: folded\r\n\r\n", b"dkim-signature")
