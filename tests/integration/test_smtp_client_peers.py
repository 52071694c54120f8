"""The SMTP client's I/O driver against real servers: a private Postfix MX
(per-recipient 250/450/550, SIZE, SMTPUTF8; STARTTLS verified with the
test CA, unverified with a self-signed certificate, a failed handshake and
the plaintext retry, TLS required or verified; AUTH through Dovecot's
SASL), and a private Dovecot over LMTP (TCP and unix socket, several
recipients, one unknown)."""

from __future__ import annotations

import time

import pytest
from client_attempts import MESSAGE, attempt, codes
from peers.certs import TestCA, self_signed

from estafeta.actors.smtp.client import Credentials, Step, TlsPolicy

# A private Postfix takes seconds to start and stop.
pytestmark = pytest.mark.slow

MX_NAME = "mx.example.test"


def to_mx(mx, tmp_path, *args, **kw):
    return attempt(mx.address, mx.port, MX_NAME, tmp_path, *args, **kw)


def delivered_body(stored: bytes) -> bytes:
    """The message as the client sent it, from a Maildir file: after the
    fields Postfix prepends (Return-Path, X-Original-To, Delivered-To, its
    Received), with CRLF line ends again."""
    text = stored.replace(b"\n", b"\r\n")
    start = text.index(b"\r\nFrom: ") + 2
    return text[start:]


def test_postfix_per_recipient_outcomes(postfix_mx_factory, tmp_path):
    mx = postfix_mx_factory(
        address="127.0.0.2",
        recipient_access={"bad@example.test": "550 5.1.1 no such user", "later@example.test": "450 4.2.1 try later"},
    )
    a = to_mx(mx, tmp_path, ("bob@example.test", "bad@example.test", "later@example.test", "carol@example.test"))
    r = a.result
    assert codes(r) == [250, 550, 450, 250]
    assert r.recipients[1].step is Step.RCPT and r.recipients[1].reply.enhanced == "5.1.1"
    assert r.recipients[2].reply.enhanced == "4.2.1" and r.recipients[0].step is Step.DOT
    assert r.session_error is None and not r.unknown_after_dot and r.tls is None  # no certificate: no STARTTLS
    assert r.extensions.pipelining and r.extensions.size == 10240000 and r.extensions.smtputf8
    for rcpt in ("bob@example.test", "carol@example.test"):
        [stored] = mx.wait_for(rcpt, 1)
        assert delivered_body(stored) == MESSAGE
    [conn] = a.spans("smtp.connect")
    assert conn.attributes["network.peer.address"] == "127.0.0.2" and conn.attributes["server.address"] == MX_NAME
    sent = [e.attributes["smtp.command"] for e in a.events("smtp.command")]
    assert sent[:3] == ["EHLO client.test", f"MAIL FROM:<a@y.test> SIZE={len(MESSAGE)}", "RCPT TO:<bob@example.test>"]


def test_postfix_size_limit_refused_before_sending(postfix_mx_factory, tmp_path):
    mx = postfix_mx_factory(message_size_limit=1000)
    r = to_mx(mx, tmp_path, ("bob@example.test",), message=b"Subject: big\r\n\r\n" + b"x" * 76 * 20).result
    v = r.recipients[0]
    assert v.reply.code == 552 and v.reply.enhanced == "5.3.4" and not v.remote and v.step is None
    # Postfix logs each session's commands: no MAIL was sent.
    deadline = time.monotonic() + 10
    while not (done := [line for line in mx.log().splitlines() if "disconnect from" in line and "ehlo=" in line]):
        assert time.monotonic() < deadline, mx.log()
        time.sleep(0.05)
    assert "mail=" not in done[0] and "quit=1" in done[0]


@pytest.mark.parametrize("smtputf8", [True, False])
def test_postfix_smtputf8(postfix_mx_factory, tmp_path, smtputf8):
    mx = postfix_mx_factory(smtputf8=smtputf8)
    r = to_mx(mx, tmp_path, ("j\u00f6rg@example.test",), smtputf8=True).result
    if smtputf8:
        assert codes(r) == [250]
        mx.wait_for("j\u00f6rg@example.test", 1)
    else:
        assert r.recipients[0].reply.enhanced == "5.6.7" and not r.recipients[0].remote


def test_starttls_verified_with_the_test_ca(postfix_mx_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    mx = postfix_mx_factory(tls_cert=ca.issue([MX_NAME]))
    a = to_mx(mx, tmp_path, ("bob@example.test",), ca_file=str(ca.cert_path))
    r = a.result
    assert codes(r) == [250] and r.connections == 1 and not r.tls_fallback
    assert r.tls.verified and r.tls.version in ("TLSv1.2", "TLSv1.3") and r.tls.cipher
    assert not r.extensions.starttls  # the EHLO after the handshake
    [tls] = a.spans("smtp.starttls")
    assert tls.attributes["estafeta.tls.verified"] is True
    assert tls.attributes["tls.protocol.version"] == r.tls.version.removeprefix("TLSv")
    assert tls.attributes["tls.cipher"] == r.tls.cipher
    assert [e.attributes["smtp.command"] for e in a.events("smtp.command")][:3] == [
        "EHLO client.test",
        "STARTTLS",
        "EHLO client.test",
    ]
    assert "TLS connection established" in mx.log()
    mx.wait_for("bob@example.test", 1)


def test_starttls_unverified_self_signed(postfix_mx_factory, tmp_path):
    """The verifying handshake fails: a second connection encrypts
    without verifying, and says why."""
    ca = TestCA(tmp_path / "ca")
    mx = postfix_mx_factory(tls_cert=self_signed(tmp_path / "ss", [MX_NAME]))
    a = to_mx(mx, tmp_path, ("bob@example.test",), ca_file=str(ca.cert_path))
    r = a.result
    assert codes(r) == [250] and r.connections == 2
    assert r.tls is not None and not r.tls.verified and "certificate" in r.tls.verify_error
    assert r.tls_fallback.startswith("encrypted, certificate not verified")
    first, second = a.spans("smtp.starttls")
    assert first.status.status_code.name == "ERROR" and second.attributes["estafeta.tls.verified"] is False
    mx.wait_for("bob@example.test", 1)


def test_starttls_wrong_name_is_unverified(postfix_mx_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    mx = postfix_mx_factory(tls_cert=ca.issue(["other.example.test"]))
    r = to_mx(mx, tmp_path, ("bob@example.test",), ca_file=str(ca.cert_path)).result
    assert codes(r) == [250] and not r.tls.verified and "mismatch" in r.tls.verify_error.lower()


def test_failed_handshake_retries_in_plaintext(postfix_mx_factory, tmp_path):
    """chasquid and maddy: a handshake that fails (here the server speaks
    only TLS 1.0, which the client refuses) is retried on the same host
    without TLS, and recorded."""
    mx = postfix_mx_factory(tls_cert=self_signed(tmp_path / "ss", [MX_NAME]), tls_protocols="<=TLSv1")
    r = to_mx(mx, tmp_path, ("bob@example.test",)).result
    assert codes(r) == [250] and r.tls is None and r.connections == 2
    assert r.tls_fallback.startswith("plaintext after a failed TLS handshake")
    mx.wait_for("bob@example.test", 1)


def test_tls_required_never_falls_back_to_plaintext(postfix_mx_factory, tmp_path):
    mx = postfix_mx_factory(tls_cert=self_signed(tmp_path / "ss", [MX_NAME]), tls_protocols="<=TLSv1")
    r = to_mx(mx, tmp_path, ("bob@example.test",), tls=TlsPolicy.REQUIRED).result
    assert codes(r) == [None] and r.try_next and r.connections == 1
    assert r.session_error.step is Step.STARTTLS and r.session_error.reply.enhanced == "4.7.5"
    plain = postfix_mx_factory()
    r = to_mx(plain, tmp_path, ("bob@example.test",), tls=TlsPolicy.REQUIRED).result
    assert r.try_next and r.session_error.reply.enhanced == "4.7.4"


def test_tls_verify_refuses_an_unverified_certificate(postfix_mx_factory, tmp_path):
    mx = postfix_mx_factory(tls_cert=self_signed(tmp_path / "ss", [MX_NAME]))
    r = to_mx(mx, tmp_path, ("bob@example.test",), tls=TlsPolicy.VERIFY).result
    assert codes(r) == [None] and r.try_next and r.connections == 1
    assert "certificate verification failed" in r.session_error.reply.text


def test_auth_over_tls_through_dovecot_sasl(postfix_mx_factory, dovecot_factory, tmp_path):
    """A smarthost: TLS required, AUTH PLAIN checked by Dovecot's auth
    service (Postfix smtpd_sasl_type = dovecot); a wrong password is a
    session error the client retries later (Postfix's soft bounce)."""
    dc = dovecot_factory(users={"relay@example.test": "s3cret"})
    ca = TestCA(tmp_path / "ca")
    mx = postfix_mx_factory(tls_cert=ca.issue([MX_NAME]), sasl_path=dc.auth_socket)
    good = Credentials("relay@example.test", "s3cret")
    a = to_mx(mx, tmp_path, ("bob@example.test",), tls=TlsPolicy.VERIFY, ca_file=str(ca.cert_path), credentials=good)
    assert codes(a.result) == [250] and "PLAIN" in a.result.extensions.auth
    auth = [e.attributes for e in a.events("smtp.command") if e.attributes["smtp.command"].startswith("AUTH")]
    assert auth[0]["smtp.command"] == "AUTH PLAIN ****" and auth[0]["smtp.reply.code"] == 235
    assert not any("s3cret" in str(s.to_json()) for s in a.finished)
    mx.wait_for("bob@example.test", 1)
    bad = Credentials("relay@example.test", "wrong")
    r = to_mx(
        mx, tmp_path, ("bob@example.test",), tls=TlsPolicy.VERIFY, ca_file=str(ca.cert_path), credentials=bad
    ).result
    assert codes(r) == [None] and r.try_next
    assert r.session_error.step is Step.AUTH and r.session_error.reply.code == 535 and r.session_error.remote


@pytest.mark.parametrize("over", ["tcp", "unix"])
def test_lmtp_to_dovecot_several_recipients_one_unknown(dovecot_factory, tmp_path, over):
    dc = dovecot_factory(users={"alice@example.test": "a", "bob@example.test": "b"})
    rcpts = ("alice@example.test", "nobody@example.test", "bob@example.test")
    address, port = (dc.address, dc.port) if over == "tcp" else (dc.lmtp_socket, 0)
    a = attempt(address, port, "lmtp.example.test", tmp_path, rcpts, lmtp=True, tls=TlsPolicy.NONE)
    r = a.result
    assert codes(r) == [250, 550, 250]
    assert [v.step for v in r.recipients] == [Step.DOT, Step.RCPT, Step.DOT]
    assert r.recipients[1].reply.enhanced == "5.1.1"
    for rcpt in ("alice@example.test", "bob@example.test"):
        [stored] = dc.wait_for(rcpt, 1)
        assert stored.endswith(MESSAGE.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))
    [conn] = a.spans("smtp.connect")
    assert conn.attributes["network.peer.address"] == address
    assert ("network.peer.port" in conn.attributes) == (over == "tcp")
