"""TLS (actors/tls.py) and SMTP AUTH (actors/auth) with real TLS and real
clients, through tests/unit/mini_session.py (the protocol, TLS, SASL
mechanisms and limits over sockets, as the session will drive them):
smtplib (PLAIN, LOGIN), scramp's client for SCRAM-SHA-256 and -PLUS with
tls-exporter channel binding, certificates chosen by SNI and reloaded from
disk, the self-signed fallback, the STARTTLS injection, and — marked slow —
swaks, msmtp and openssl s_client."""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import ssl
from pathlib import Path

import pytest
import scramp
from mini_session import Env, Server
from peers.certs import TestCA

from estafeta.actors import smtp
from estafeta.actors.addresses import AddressRules
from estafeta.actors.auth import mechanisms, passwords
from estafeta.actors.limits import CounterTable, Limits
from estafeta.actors.tls import CertStore, cert_store_for, channel_binding, connection_info, make_context
from estafeta.actors.users import UserCredentials, UserTable, build_domain
from estafeta.proto import config_pb2, users_pb2

RULES = AddressRules()
MECHS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca = TestCA(base / "ca")
    certs = base / "live"
    ca.issue(["mx.example.test"], ips=["127.0.0.1"]).install_certbot(certs, "mx.example.test")
    ca.issue(["other.test", "*.wild.test"]).install_certbot(certs, "other.test")
    return ca, certs


@pytest.fixture(scope="module")
def credentials():
    db = users_pb2.UserDb(domain="example.test")
    passwords.set_password(db.user.add(name="alice"), "alice-pw")
    db.user.add(name="bob", password_hash=passwords.hash_password("bob-pw"))  # no SCRAM credential
    table = UserTable({"example.test": build_domain("example.test", db, [], RULES)})
    return UserCredentials(lambda: table)


def client_context(ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_path))


def server(pki, credentials, mode=smtp.Mode.SUBMISSION, limits=None, store=None) -> Server:
    ca, certs = pki
    if store is None:
        store = CertStore([str(certs)], "mx.example.test")
        store.refresh()
    params = smtp.ServerParams("mx.example.test", 1_000_000, mode=mode, starttls=True, auth_mechanisms=MECHS)
    return Server(Env(params, store, credentials, limits=limits))


MESSAGE = "From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


# ------------------------------------------------------------------ certificates
def test_sni_chooses_the_certificate_hostname_is_the_default(pki):
    ca, certs = pki
    store = CertStore([str(certs)], "mx.example.test")
    assert store.refresh() and not store.refresh()  # nothing changed the second time
    names = lambda ctx: ctx.get_ca_certs()  # noqa: E731 - not used; the handshake below checks
    assert names
    cases = {
        "other.test": "other.test",
        "x.wild.test": "other.test",
        "unknown.test": "mx.example.test",
        None: "mx.example.test",
    }
    for sni, expected in cases.items():
        a, b = socket.socketpair()
        import gevent

        g = gevent.spawn(lambda: store.context.wrap_socket(a, server_side=True))
        ctx = client_context(ca)
        ctx.check_hostname = False
        c = ctx.wrap_socket(b, server_hostname=sni)
        g.join(timeout=10)
        cert = c.getpeercert()
        cn = dict(x[0] for x in cert["subject"])["commonName"]
        assert cn == expected, sni
        c.close()
        a.close()


def test_certificate_replaced_on_disk_is_served_to_the_next_connection(pki, credentials, tmp_path):
    ca, _ = pki
    certs = tmp_path / "live"
    first = ca.issue(["mx.example.test"], ips=["127.0.0.1"])
    first.install_certbot(certs, "mx.example.test")
    store = CertStore([str(certs)], "mx.example.test")
    store.refresh()
    srv = server(pki, credentials, store=store)
    try:

        def serial() -> int:
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
                c.starttls(context=client_context(ca))
                der = c.sock.getpeercert(binary_form=True)
            from cryptography import x509

            return x509.load_der_x509_certificate(der).serial_number

        before = serial()
        second = ca.issue(["mx.example.test"], ips=["127.0.0.1"])
        second.install_certbot(certs, "mx.example.test")  # as certbot renew does
        assert store.refresh()  # the poll (CertificateWatcher does it every reload_poll_seconds)
        after = serial()
        assert before != after
        from cryptography import x509

        assert after == x509.load_pem_x509_certificate(second.cert_pem).serial_number
        (certs / "mx.example.test" / "privkey.pem").write_text("garbage")
        store.refresh()
        assert serial() == after and store.errors  # a broken file keeps the previous certificate
    finally:
        srv.close()


def test_self_signed_fallback(tmp_path):
    store = cert_store_for("", True, str(tmp_path), "mx.fresh.test")
    key = tmp_path / "tls/selfsigned/mx.fresh.test/privkey.pem"
    assert store.context is not None and key.exists()
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    mtime = os.stat(key).st_mtime_ns
    again = cert_store_for("", True, str(tmp_path), "mx.fresh.test")  # reused, not remade
    assert again.context is not None and os.stat(key).st_mtime_ns == mtime
    assert cert_store_for("", False, str(tmp_path / "none"), "mx.fresh.test").context is None


def test_tls_1_2_is_the_minimum(pki):
    ca, certs = pki
    ctx = make_context(str(certs / "mx.example.test/fullchain.pem"), str(certs / "mx.example.test/privkey.pem"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    import gevent

    a, b = socket.socketpair()
    g = gevent.spawn(lambda: ctx.wrap_socket(a, server_side=True))
    old = client_context(ca)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.warns(DeprecationWarning):
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        old.wrap_socket(b, server_hostname="mx.example.test")
    g.join(timeout=10)
    a.close()
    b.close()


@pytest.mark.parametrize("version, no_ems", [("TLSv1_3", False), ("TLSv1_2", False), ("TLSv1_2", True)])
def test_channel_binding_tls_exporter(pki, version, no_ems):
    """RFC 9266: both ends export the same 32 octets; TLS 1.2 only with
    the extended master secret (RFC 7627)."""
    import gevent

    ca, certs = pki
    sctx = make_context(str(certs / "mx.example.test/fullchain.pem"), str(certs / "mx.example.test/privkey.pem"))
    cctx = client_context(ca)
    cctx.maximum_version = getattr(ssl.TLSVersion, version)
    if no_ems:
        cctx.options |= 1  # SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL 3)
    a, b = socket.socketpair()
    g = gevent.spawn(lambda: sctx.wrap_socket(a, server_side=True))
    c = cctx.wrap_socket(b, server_hostname="mx.example.test")
    s = g.get(timeout=10)
    info = connection_info(s)
    assert info.version == version.replace("_", ".") and info.cipher and info.bits >= 128
    assert "using " + info.version in info.received_comment()
    assert info.span_attributes()["tls.protocol.version"] == version[4:].replace("_", ".")
    if no_ems:
        assert channel_binding(s) is None and channel_binding(c) is None
    else:
        cb = channel_binding(s)
        assert cb is not None and len(cb) == 32 and cb == channel_binding(c)
    c.close()
    s.close()


# ------------------------------------------------------------------ AUTH over STARTTLS
def test_starttls_then_plain_and_the_message(pki, credentials):
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.ehlo("client.test")
            # A loopback client may AUTH before TLS (a remote one may not:
            # tests/unit/test_smtp_tls_auth.py); -PLUS needs TLS.
            assert c.has_extn("starttls") and c.esmtp_features["auth"].split() == list(MECHS[1:])
            code, _ = c.mail("alice@example.test")
            assert code == 530
            c.rset()
            c.starttls(context=client_context(ca))
            c.ehlo("client.test")
            assert not c.has_extn("starttls")
            assert c.esmtp_features["auth"].split() == list(MECHS)  # -PLUS: channel binding available
            c.login("Alice@Example.test", "alice-pw")  # PLAIN (smtplib's choice here)
            c.sendmail("alice@example.test", ["bob@remote.test"], MESSAGE)
        identity, sender, rcpts, body, info, proto = srv.env.messages[-1]
        assert identity == "alice@example.test" and rcpts == ["bob@remote.test"] and b"hello" in body
        assert proto == "ESMTPSA" and info.version in ("TLSv1.3", "TLSv1.2")
    finally:
        srv.close()


def test_login_mechanism_and_bad_password(pki, credentials):
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.starttls(context=client_context(ca))
            c.ehlo()
            c.user, c.password = "alice@example.test", "wrong"
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                c.auth("LOGIN", c.auth_login, initial_response_ok=False)
            assert e.value.smtp_code == 535 and b"5.7.8" in e.value.smtp_error
            c.password = "alice-pw"
            assert c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0] == 235
        assert ("auth-failed", "bad-credentials", "alice@example.test") in srv.env.log
    finally:
        srv.close()


def scram_auth(c: smtplib.SMTP, mech: str, user: str, password: str, cb=None):
    """SCRAM through smtplib.auth with scramp's client (RFC 5802 over
    RFC 4954: client-first, client-final, then an empty line after the
    server-final)."""
    client = scramp.ScramClient([mech], user, password, channel_binding=cb)
    steps = iter(["first", "final", "end"])

    def authobject(challenge=None):
        step = next(steps)
        if step == "first":
            return client.get_client_first()
        if step == "final":
            client.set_server_first(challenge.decode())
            return client.get_client_final()
        client.set_server_final(challenge.decode())  # raises if the server is not who it claims
        return ""

    return c.auth(mech, authobject)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
def test_scram_with_scramps_client_over_real_tls(pki, credentials, mech):
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.starttls(context=client_context(ca))
            c.ehlo()
            cb = ("tls-exporter", channel_binding(c.sock)) if mech.endswith("PLUS") else None
            assert scram_auth(c, mech, "alice@example.test", "alice-pw", cb)[0] == 235
            c.sendmail("alice@example.test", ["x@remote.test"], MESSAGE)
        assert srv.env.messages[-1][0] == "alice@example.test"
    finally:
        srv.close()


def test_scram_plus_refuses_a_foreign_channel_binding(pki, credentials):
    """A man in the middle terminating TLS has other exporter data."""
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.starttls(context=client_context(ca))
            c.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                scram_auth(c, "SCRAM-SHA-256-PLUS", "alice@example.test", "alice-pw", ("tls-exporter", b"x" * 32))
            assert e.value.smtp_code == 535
    finally:
        srv.close()


def test_scram_downgrade_and_unknown_user_and_transition(pki, credentials):
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.starttls(context=client_context(ca))
            c.ehlo()
            # "y": the client thinks the server cannot bind, but it offered -PLUS (RFC 5802 §6).
            cb = ("tls-exporter", channel_binding(c.sock))
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                scram_auth(c, "SCRAM-SHA-256", "alice@example.test", "alice-pw", cb)
            assert e.value.smtp_code == 535
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                scram_auth(c, "SCRAM-SHA-256", "nobody@example.test", "x")
            assert e.value.smtp_code == 535  # after a server-first like any other: no user enumeration
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                scram_auth(c, "SCRAM-SHA-256", "bob@example.test", "bob-pw")
            assert e.value.smtp_code == 432 and b"4.7.12" in e.value.smtp_error  # RFC 4954 §6
            c.login("bob@example.test", "bob-pw")  # PLAIN still works for bob
    finally:
        srv.close()


def test_implicit_tls_submissions(pki, credentials):
    ca, _ = pki
    srv = server(pki, credentials, mode=smtp.Mode.SUBMISSIONS)
    try:
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, timeout=10, context=client_context(ca)) as c:
            c.ehlo()
            assert not c.has_extn("starttls") and "SCRAM-SHA-256-PLUS" in c.esmtp_features["auth"]
            cb = ("tls-exporter", channel_binding(c.sock))
            assert scram_auth(c, "SCRAM-SHA-256-PLUS", "alice@example.test", "alice-pw", cb)[0] == 235
    finally:
        srv.close()


def test_starttls_command_injection_is_not_executed(pki, credentials):
    """CVE-2011-0411 class: "STARTTLS\\r\\nMAIL FROM:..." in one packet."""
    ca, _ = pki
    srv = server(pki, credentials, mode=smtp.Mode.SMTP)
    try:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO x.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\n")
        assert f.readline().startswith(b"220 ")
        tls = client_context(ca).wrap_socket(raw, server_hostname="mx.example.test")
        tls.sendall(b"RCPT TO:<victim@example.test>\r\n")
        reply = tls.recv(1000)
        assert reply.startswith(b"503 5.5.1"), reply  # no MAIL ran: the injected lines were discarded
        tls.close()
        assert ("starttls", len(b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\n")) in srv.env.log
    finally:
        srv.close()


def test_brute_force_slowed_then_refused_while_another_address_logs_in(pki, credentials):
    ca, _ = pki
    cfg = config_pb2.Limits(
        auth_failures_per_minute=[4, 100, 100], auth_failures_before_delay=2, auth_failure_delay_seconds=0.05
    )
    srv = server(pki, credentials, limits=Limits(cfg, CounterTable()))
    try:
        codes: list = []
        for _ in range(3):
            try:
                c = smtplib.SMTP("127.0.0.1", srv.port, timeout=10, source_address=("127.0.0.2", 0))
            except smtplib.SMTPConnectError as e:
                codes.append(("connect", e.smtp_code))  # refused at the greeting
                break
            with c:
                c.starttls(context=client_context(ca))
                c.ehlo()
                c.user, c.password = "alice@example.test", "guess"
                for _ in range(3):
                    try:
                        c.auth("PLAIN", c.auth_plain)  # one mechanism (login() would try two)
                    except smtplib.SMTPAuthenticationError as e:
                        codes.append(e.smtp_code)
        assert codes == [535, 535, 535, 535, 454, 454, ("connect", 421)]
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10, source_address=("127.0.0.3", 0)) as c:
            c.starttls(context=client_context(ca))
            c.ehlo()
            assert c.login("alice@example.test", "alice-pw")[0] == 235  # 127.0.0.3: still fine
    finally:
        srv.close()


# ------------------------------------------------------------------ real clients
@pytest.mark.slow
@pytest.mark.parametrize("tls, mech", [("--tls", "PLAIN"), ("--tls", "LOGIN"), ("--tlsc", "PLAIN")])
def test_swaks(pki, credentials, tls, mech):
    ca, _ = pki
    mode = smtp.Mode.SUBMISSIONS if tls == "--tlsc" else smtp.Mode.SUBMISSION
    srv = server(pki, credentials, mode=mode)
    try:
        import gevent.subprocess as gsp

        out = gsp.run(
            ["swaks", "--server", f"127.0.0.1:{srv.port}", tls, "--tls-ca-path", str(ca.cert_path),
             "--tls-verify", "--tls-sni", "mx.example.test", "--auth", mech,
             "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
             "--from", "alice@example.test", "--to", "bob@remote.test"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "235 2.7.0" in out.stdout
        assert srv.env.messages[-1][0] == "alice@example.test"
    finally:
        srv.close()


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["plain", "login", "scram-sha-256"])
def test_msmtp_submission(pki, credentials, tmp_path, auth):
    """msmtp (GnuTLS, GNU SASL): a real submission client."""
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        rc = tmp_path / "msmtprc"
        rc.write_text(
            f"account default\nhost 127.0.0.1\nport {srv.port}\ntls on\ntls_starttls on\n"
            f"tls_trust_file {ca.cert_path}\ntls_host_override mx.example.test\nauth {auth}\n"
            f"user alice@example.test\npassword alice-pw\nfrom alice@example.test\n"
        )
        rc.chmod(0o600)
        import gevent.subprocess as gsp

        out = gsp.run(
            ["msmtp", "-C", str(rc), "bob@remote.test"], input=MESSAGE, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert srv.env.messages[-1][:3] == ("alice@example.test", "alice@example.test", ["bob@remote.test"])
    finally:
        srv.close()


@pytest.mark.slow
def test_openssl_s_client_starttls(pki, credentials):
    ca, _ = pki
    srv = server(pki, credentials)
    try:
        import gevent.subprocess as gsp

        ir = base64.b64encode(b"\0alice@example.test\0alice-pw").decode()
        out = gsp.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{srv.port}",
             "-servername", "mx.example.test", "-CAfile", str(ca.cert_path), "-verify_return_error", "-quiet"],
            input=f"EHLO c.test\r\nAUTH PLAIN {ir}\r\nQUIT\r\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "250-AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN" in out.stdout, out.stdout + out.stderr
        assert "235 2.7.0 Authentication successful" in out.stdout
    finally:
        srv.close()


def test_mechanisms_unit():
    """The sans-I/O mechanisms without SMTP: PLAIN authzid, LOGIN steps, names."""
    table = {}

    class Creds:
        def check_password(self, u, p):
            return "a@x.test" if (u, p) == ("a@x.test", "pw") else None

        def scram(self, u):
            return table.get(u)

    m = mechanisms.start("PLAIN", Creds())
    assert m.blocking and isinstance(m.step(None), mechanisms.Challenge)
    assert m.step(b"\0a@x.test\0pw") == mechanisms.Success("a@x.test")
    assert mechanisms.start("PLAIN", Creds()).step(b"A@X.test\0a@x.test\0pw") == mechanisms.Success("a@x.test")
    assert mechanisms.start("PLAIN", Creds()).step(b"b@x.test\0a@x.test\0pw").reason == "bad-credentials"
    assert mechanisms.start("PLAIN", Creds()).step(b"nonul").reason == "malformed"
    m = mechanisms.start("LOGIN", Creds())
    assert m.step(None) == mechanisms.Challenge(b"Username:")
    assert m.step(b"a@x.test") == mechanisms.Challenge(b"Password:")
    assert m.step(b"pw") == mechanisms.Success("a@x.test")
    assert mechanisms.start("SCRAM-SHA-256-PLUS", Creds(), None) is None  # needs channel binding
    assert mechanisms.start("CRAM-MD5", Creds()) is None
    assert Path(mechanisms.__file__).exists()
