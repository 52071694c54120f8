"""Submission end to end (issue 9): `estafeta serve` with SMTP,
SUBMISSION (587-like, STARTTLS) and SUBMISSIONS (465-like, implicit TLS)
listeners and certificates a test CA issued, against real clients —
openssl s_client, swaks, msmtp, scramp's SCRAM client over Python's TLS —
and the attacks: the STARTTLS command injection, AUTH before TLS, brute
force from one address, a certificate renewed on disk."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest
import scramp
from e2e_harness import assert_delivered_copy, make_message, split_delivered
from mailhost import HOSTNAME

from estafeta.actors.auth import mechanisms  # noqa: F401 - lets scramp's client take "tls-exporter" data
from estafeta.actors.tls import channel_binding

pytestmark = pytest.mark.slow

MESSAGE = make_message(
    subject="submitted", extra=b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
)  # msmtp adds a Date otherwise


@pytest.fixture
def host(host_factory):
    return host_factory()


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=60, **kw)


# ------------------------------------------------------------------ real clients
def test_openssl_s_client_starttls_and_implicit_tls(host):
    ir = base64.b64encode(b"\0alice@example.test\0alice-pw").decode()
    common = ["-servername", HOSTNAME, "-CAfile", str(host.ca.cert_path), "-verify_return_error", "-quiet"]
    out = _run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{host.submission}", *common],
        input=f"EHLO c.test\r\nAUTH PLAIN {ir}\r\nQUIT\r\n".encode(),
    )
    text = out.stdout.decode()
    assert "250-AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN" in text, text + out.stderr.decode()
    assert "250-STARTTLS" not in text  # not again once TLS is on (RFC 3207 §4.2)
    assert "235 2.7.0 Authentication successful" in text
    out = _run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{host.submissions}", *common],
        input=f"EHLO c.test\r\nAUTH PLAIN {ir}\r\nQUIT\r\n".encode(),
    )
    text = out.stdout.decode()
    assert text.startswith(f"220 {HOSTNAME} ESMTP"), text + out.stderr.decode()
    assert "250-AUTH SCRAM-SHA-256-PLUS" in text and "235 2.7.0" in text
    host.daemon.wait_log(r"authenticated from=127\.0\.0\.1 user=alice@example\.test mechanism=PLAIN")


@pytest.mark.parametrize(
    "tls, mech", [("--tls", "PLAIN"), ("--tls", "LOGIN"), ("--tlsc", "PLAIN"), ("--tlsc", "LOGIN")]
)
def test_swaks(host, tls, mech):
    port = host.submission if tls == "--tls" else host.submissions
    out = _run(
        ["swaks", "--server", f"127.0.0.1:{port}", tls, "--tls-ca-path", str(host.ca.cert_path), "--tls-verify",
         "--tls-sni", HOSTNAME, "--auth", mech, "--auth-user", "Alice@Example.TEST", "--auth-password", "alice-pw",
         "--from", "alice@example.test", "--to", "bob@example.test", "--header", f"Subject: swaks {tls} {mech}"],
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "235 2.7.0" in out.stdout
    (path,) = host.daemon.wait_delivered("example.test", "bob", 1)
    fields, _ = split_delivered(path.read_bytes())
    received = fields[2][1]
    assert "with ESMTPSA" in received and "(authenticated as alice@example.test)" in received, received
    assert re.search(r"\(using TLSv1\.[23] with cipher \S+ \(\d+ bits\)\)", received), received


@pytest.mark.parametrize("auth", ["plain", "login", "scram-sha-256"])
def test_msmtp_as_a_submission_client(host, tmp_path, auth):
    """msmtp (GnuTLS, GNU SASL), the way a user's machine sends."""
    rc = tmp_path / "msmtprc"
    rc.write_text(
        f"account default\nhost 127.0.0.1\nport {host.submission}\ntls on\ntls_starttls on\n"
        f"tls_trust_file {host.ca.cert_path}\ntls_host_override {HOSTNAME}\nauth {auth}\n"
        f"user alice@example.test\npassword alice-pw\nfrom alice@example.test\n"
    )
    rc.chmod(0o600)
    out = _run(["msmtp", "-C", str(rc), "bob@example.test"], input=MESSAGE)
    assert out.returncode == 0, out.stderr
    (path,) = host.daemon.wait_delivered("example.test", "bob", 1)
    assert_delivered_copy(path.read_bytes(), MESSAGE, recipient="bob@example.test", reverse_path="alice@example.test")


def scram_login(c: smtplib.SMTP, mech: str, user: str, password: str, cb=None):
    """SCRAM through smtplib.auth with scramp's client (RFC 5802 over
    RFC 4954: client-first, client-final, then an empty line after the
    server-final, which scramp checks: the server proves it knows the key)."""
    client = scramp.ScramClient([mech], user, password, channel_binding=cb)
    steps = iter(["first", "final", "end"])

    def authobject(challenge=None):
        step = next(steps)
        if step == "first":
            return client.get_client_first()
        if step == "final":
            client.set_server_first(challenge.decode())
            return client.get_client_final()
        client.set_server_final(challenge.decode())
        return ""

    return c.auth(mech, authobject)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
def test_scram_with_scramps_client_over_real_tls(host, mech, implicit):
    c = host.implicit_tls() if implicit else host.starttls()
    with c:
        cb = ("tls-exporter", channel_binding(c.sock)) if mech.endswith("PLUS") else None
        assert scram_login(c, mech, "alice@example.test", "alice-pw", cb)[0] == 235
        assert c.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
        if mech.endswith("PLUS"):  # a man in the middle has other exporter data
            with host.starttls() as other, pytest.raises(smtplib.SMTPAuthenticationError) as e:
                scram_login(other, mech, "alice@example.test", "alice-pw", ("tls-exporter", b"x" * 32))
            assert e.value.smtp_code == 535
    host.daemon.wait_delivered("example.test", "bob", 1)
    host.daemon.wait_log(rf"authenticated from=127\.0\.0\.1 user=alice@example\.test mechanism={mech}\b")


def test_certificate_replaced_on_disk_is_served_to_the_next_connection(host):
    def serial() -> int:
        from cryptography import x509

        with host.starttls() as c:
            return x509.load_der_x509_certificate(c.sock.getpeercert(binary_form=True)).serial_number

    from cryptography import x509

    before = serial()
    renewed = host.ca.issue([HOSTNAME], ips=["127.0.0.1"])
    renewed.install_certbot(host.cert_dir, HOSTNAME)  # as certbot renew does
    host.daemon.signal(signal.SIGHUP)  # (the poll would find it too, within tls.reload_poll_seconds)
    host.daemon.wait_log(r"reloaded certificates certificates")
    deadline = time.monotonic() + 10
    want = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
    while (now := serial()) != want and time.monotonic() < deadline:
        time.sleep(0.2)  # every serving process reloads on the SIGHUP
    assert before != want and now == want


def test_certificate_renewal_is_found_by_polling(host_factory):
    from cryptography import x509

    host = host_factory(tls_poll_seconds=0.2)
    renewed = host.ca.issue([HOSTNAME], ips=["127.0.0.1"])
    renewed.install_certbot(host.cert_dir, HOSTNAME)
    want = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with host.starttls() as c:
            if x509.load_der_x509_certificate(c.sock.getpeercert(binary_form=True)).serial_number == want:
                return
        time.sleep(0.2)
    pytest.fail("the renewed certificate was not served within 15 s")


# ------------------------------------------------------------------ attacks
def _ehlo(f, sock) -> bytes:
    sock.sendall(b"EHLO x.test\r\n")
    lines = b""
    while True:
        line = f.readline()
        lines += line
        if line[3:4] != b"-":
            return lines


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_starttls_command_injection_is_not_executed(host, listener):
    """CVE-2011-0411 class: "STARTTLS\\r\\nMAIL FROM:..." in one packet:
    the pipelined plaintext commands are dropped, never run inside TLS."""
    port = host.smtp if listener == "smtp" else host.submission
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    assert b"STARTTLS" in _ehlo(f, raw)
    injected = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@localhost>\r\n"
    raw.sendall(b"STARTTLS\r\n" + injected)
    assert f.readline().startswith(b"220 2.0.0")
    tls = host.context().wrap_socket(raw, server_hostname=HOSTNAME)
    tf = tls.makefile("rb")
    _ehlo(tf, tls)
    tls.sendall(b"RCPT TO:<victim@localhost>\r\n")
    reply = tf.readline()
    assert reply.startswith(b"503 5.5.1"), reply  # no MAIL ran: nothing of the injection was executed
    tls.close()
    host.daemon.wait_log(rf"starttls from=127\.0\.0\.1 discarded={len(injected)}\b")
    assert not host.daemon.events("queued")


def test_auth_where_the_mode_does_not_allow_it(host):
    """On the MX listener no AUTH at all (503); on submission MAIL needs
    AUTH first (530 5.7.0), and -PLUS needs TLS (538 5.7.11) — a loopback
    client may use the others before TLS (test_auth_before_tls_from_a_
    remote_client has the rest)."""
    with smtplib.SMTP("127.0.0.1", host.smtp, timeout=15) as c:
        c.ehlo("c.test")
        assert "auth" not in c.esmtp_features
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-pw").decode())
        assert code == 503 and b"5.5.1" in text, (code, text)
        c.starttls(context=host.context())
        c.ehlo("c.test")
        assert "auth" not in c.esmtp_features  # the MX has no AUTH, even over TLS
    with smtplib.SMTP("127.0.0.1", host.submission, timeout=15) as c:
        c.ehlo("c.test")
        assert c.mail("alice@example.test")[0] == 530
        code, text = c.docmd("AUTH", "SCRAM-SHA-256-PLUS")
        assert code == 538 and b"5.7.11" in text, (code, text)
    with host.implicit_tls() as c:
        assert c.mail("alice@example.test") == (530, b"5.7.0 Authentication required")


def test_brute_force_is_slowed_then_refused_while_another_address_logs_in(host_factory):
    """Failed AUTH from 127.0.0.2: 535s (the later ones delayed), then 454
    at AUTH, then 421 at connect — counted across both serving processes —
    while 127.0.0.3 (another /32, same /26 under its own limit) logs in."""
    host = host_factory(
        processes=2,
        limits="{ auth_failures_per_minute: [4, 100, 100] auth_failures_before_delay: 2 auth_failure_delay_seconds: 0.3 }",
    )
    # The counts are per fixed minute of CLOCK_MONOTONIC (actors/limits.py,
    # as mox counts them), which this process shares with the daemon: start
    # well inside a minute, or the failures split over two windows.
    left = 60 - time.monotonic() % 60
    if left < 10:  # the failures take ~3 s
        time.sleep(left + 0.5)
    codes: list = []
    timings: list[float] = []
    for _ in range(4):
        try:
            c = host.starttls(source="127.0.0.2")
        except smtplib.SMTPConnectError as e:
            codes.append(("connect", e.smtp_code))
            break
        except smtplib.SMTPServerDisconnected:  # the 421 came before STARTTLS could be sent
            codes.append(("connect", 421))
            break
        with c:
            c.user, c.password = "alice@example.test", "guess"
            for _ in range(3):
                began = time.monotonic()
                try:
                    c.auth("PLAIN", c.auth_plain)
                except smtplib.SMTPAuthenticationError as e:
                    codes.append(e.smtp_code)
                    timings.append(time.monotonic() - began)
                if codes[-1] == 454:
                    break
    assert codes[:5] == [535, 535, 535, 535, 454], codes
    assert codes[-1] == ("connect", 421), codes
    assert timings[2] >= 0.25 and timings[3] >= 0.5, timings  # the third and fourth 535 waited
    with host.starttls(source="127.0.0.3") as c:
        assert c.login("alice@example.test", "alice-pw")[0] == 235
    host.daemon.wait_log(r"connection refused from=127\.0\.0\.2:\d+ listener=submission reason=auth_failures")
    host.daemon.wait_log(r"auth failed from=127\.0\.0\.2 user=- mechanism=PLAIN reason=blocked")


def _netns_unavailable() -> str:
    r = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10)
    return "" if r.returncode == 0 else f"unshare -rn: {r.stderr.decode(errors='replace').strip()}"


def test_auth_before_tls_from_a_remote_client(tmp_path):
    """From a client that is not on loopback (a network namespace of its
    own, tests/e2e/netns_remote_client.py): EHLO offers STARTTLS and no
    AUTH, AUTH gets 538 5.7.11 and MAIL 530 5.7.0 "Must issue a STARTTLS
    command first"; after STARTTLS, AUTH is offered and works."""
    why = _netns_unavailable()
    if why:
        pytest.skip(f"no network namespace: {why}")
    script = os.path.join(os.path.dirname(__file__), "netns_remote_client.py")
    r = subprocess.run(
        ["unshare", "-rn", sys.executable, script, str(tmp_path / "ns")], capture_output=True, timeout=180
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    out = json.loads(r.stdout)
    assert "starttls" in out["features_plain"] and "auth" not in out["features_plain"], out["features_plain"]
    assert out["auth_plain"][0] == 538 and "5.7.11" in out["auth_plain"][1], out["auth_plain"]
    assert out["mail_plain"] == [530, "5.7.0 Must issue a STARTTLS command first"], out["mail_plain"]
    assert out["auth_tls"] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"], out["auth_tls"]
    assert out["login"][0] == 235 and out["mail_tls"][0] == 250
    assert "authenticated from=198.51.100.10 user=alice@example.test" in out["log"]
    assert out["stopped"] == 0


def test_the_auth_parameter_is_kept_in_the_queue(host_factory):
    """RFC 4954 §5: the AUTH= value kept with the message (QueueItem.auth):
    the user's own claim, else the user; an untrusted claim becomes <>."""
    host = host_factory(
        aliases={"example.test": "sales: alice, bob\n"}, retry="{ initial_seconds: 3600 max_seconds: 3600 }"
    )
    host.daemon.block_mailbox("localhost", "held")  # the messages stay queued
    with host.starttls() as c:
        c.login("alice@example.test", "alice-pw")
        for auth in ("AUTH=sales@example.test", "AUTH=boss@bank.test", None):
            c.sendmail("alice@example.test", ["held@localhost"], MESSAGE, mail_options=[auth] if auth else [])
    host.daemon.wait_log(r"deferred id=\w+ to=<held@localhost>")
    dump = host.daemon.cli("queue", "dump")
    assert dump.returncode == 0, dump.stderr
    assert re.findall(r'^auth: "(.*)"$', dump.stdout, re.M) == ["sales@example.test", "alice@example.test"], dump.stdout
    assert dump.stdout.count('protocol: "ESMTPSA"') == 3
