"""Mail authentication end to end (issue 10): `estafeta serve` with a
private Knot on loopback (tests/peers/dns_server.py) that holds the SPF,
DKIM and DMARC records of the senders and of our own domain, remote
senders connecting from their own loopback addresses (127.0.0.5, ...)
with PTR records for iprev, and remote MXes on 127.0.0.x (smtp-sink).

- a message that passes carries our Authentication-Results (spf, dkim,
  dmarc = pass), and a forged one claiming our authserv-id is removed;
- a forged From of a p=reject domain is refused 550 5.7.1 at the end of
  DATA; a p=quarantine failure lands in the recipient's .Junk/ folder,
  marked;
- mail from our own domain arriving unauthenticated on port 25 fails our
  own DMARC, while our users' mail leaves DKIM-signed (verified by
  Mail::DKIM and OpenDKIM, independent verifiers);
- a message forwarded by an alias to a remote MX arrives with an SRS
  reverse-path, still DKIM-signed by its author, ARC-sealed by us, and a
  bounce to the SRS address returns to the original sender's MX.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from pathlib import Path

import dkim
import dns.message
import dns.query
import pytest
from e2e_harness import estafeta_cli, maildir_files, make_message, marker_of
from mailhost import HOSTNAME, REMOTE_MX
from peers.dkim_peers import maildkim_verify, opendkim_sign, opendkim_verify
from peers.smtp_sink import SmtpSink

from estafeta.actors.checks import dkimkeys
from estafeta.store.dmarcreports import DmarcReportStore

pytestmark = pytest.mark.slow

#: The remote sender's server (sender.test's SPF names it, its PTR is
#: client.sender.test); a stranger (no SPF, no PTR).
CLIENT, STRANGER = "127.0.0.5", "127.0.0.6"
#: sender.test's MX, where bounces to its users go.
SENDER_MX = "127.0.0.3"


def _zones(keys_dir: Path, our_keys) -> dict[str, str]:
    """Zone texts (one record a line, no indentation: the keys' records
    are absolute names)."""
    sender_keys = [dkimkeys.write_key(str(keys_dir), "sender.test", "s1", dkimkeys.RSA)[1]]
    zones = {
        "sender.test": [
            f'@ TXT "v=spf1 ip4:{CLIENT} -all"',
            "@ MX 10 mx",
            f"mx A {SENDER_MX}",
            f"client A {CLIENT}",
            '_dmarc TXT "v=DMARC1; p=reject"',
            *(k.zone_line() for k in sender_keys),
        ],
        "quar.test": ['@ TXT "v=spf1 -all"', '_dmarc TXT "v=DMARC1; p=quarantine"'],
        "example.test": [
            '@ TXT "v=spf1 ip4:127.0.0.1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            *(k.zone_line() for k in our_keys),
        ],
        "0.0.127.in-addr.arpa": [f"{CLIENT.rsplit('.', 1)[1]} PTR client.sender.test."],
    }
    return {origin: "\n".join(lines) + "\n" for origin, lines in zones.items()}


@pytest.fixture
def world(host_factory, tmp_path):
    """A mail host for example.test (users alice, bob; fwd@ forwards to
    friend@remote.test) with SRS on, its DKIM keys made by `estafeta dkim
    keygen`, and every zone above in its Knot; sender.test's MX as a sink.
    Returns the host, with .sender_mx and .sender_key (sender.test's key
    file)."""
    host = host_factory(
        aliases={"example.test": "fwd: friend@remote.test\n"},
        remote=True,
        start=False,
        srs="{ enabled: true }",
    )
    gen = estafeta_cli("dkim", "keygen", "example.test", "--config", str(host.daemon.config_path))
    assert gen.returncode == 0, gen.stderr
    assert "_domainkey.example.test" in gen.stdout
    our_keys = dkimkeys.load_keys(str(host.daemon.data_dir), "example.test")
    assert {k.algorithm for k in our_keys} == {dkimkeys.RSA, dkimkeys.ED25519}
    keys_dir = tmp_path / "sender-keys"
    for origin, text in _zones(keys_dir, our_keys).items():
        host.knot.set_zone(origin, text)
    host.sender_key = str(keys_dir / "dkim" / "sender.test" / "s1.key")
    host.our_keys = our_keys
    sink = SmtpSink(tmp_path / "sender-mx", address=SENDER_MX, port=host.sink.port).start()
    host.extra.append(sink)
    host.sender_mx = sink
    host.daemon.start()
    host.daemon.wait_log(r"INFO started hostname=\S+ .* process=0/")
    yield host
    sink.stop()


def _send(host, source: str, sender: str, rcpts: list[str], msg: bytes, helo: str = "client.sender.test") -> dict:
    """One transaction on the MX port from `source` (a loopback address)."""
    with smtplib.SMTP("127.0.0.1", host.smtp, local_hostname=helo, timeout=30, source_address=(source, 0)) as c:
        return c.sendmail(sender, rcpts, msg)


def _message(from_addr: str, to: str = "bob@example.test", subject: str = "checks", extra: bytes = b"") -> bytes:
    msg = make_message(subject=subject, extra=extra)
    return msg.replace(b"From: Sender <sender@client.test>", f"From: <{from_addr}>".encode()).replace(
        b"To: Rcpt <rcpt@localhost>", f"To: <{to}>".encode()
    )


def _signed(host, msg: bytes) -> bytes:
    """`msg` signed by OpenDKIM for sender.test (an independent signer)."""
    return opendkim_sign(msg, "sender.test", "s1", host.sender_key, "rsa-sha256") + msg


def _parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def _ours(msg: email.message.EmailMessage) -> list[str]:
    return [v for v in msg.get_all("Authentication-Results", []) if v.split(";")[0].strip().lower() == HOSTNAME]


def _knot_txt(knot):
    def dnsfunc(name, timeout=5):
        q = dns.message.make_query(name.decode().rstrip(".") + ".", "TXT")
        r = dns.query.udp(q, knot.host, port=knot.port, timeout=timeout)
        return b"".join(b"".join(rr.strings) for rrset in r.answer for rr in rrset)

    return dnsfunc


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_a_pass_carries_our_results_and_a_forged_one_is_removed(world):
    d = world.daemon
    forged = b"Authentication-Results: MX.E2E.TEST; spf=pass; dkim=pass; dmarc=pass (forged)\r\n"
    msg = _signed(world, forged + _message("alice@sender.test"))
    assert _send(world, CLIENT, "alice@sender.test", ["bob@example.test"], msg) == {}
    (path,) = d.wait_delivered("example.test", "bob", 1)
    got = _parse(path.read_bytes())
    (ours,) = _ours(got)  # ours only: the forged one is gone
    assert "forged" not in path.read_text()
    parts = [p.strip() for p in ours.split(";")]
    assert "iprev=pass policy.iprev=127.0.0.5 (client.sender.test)" in parts, ours
    assert any(p.startswith("spf=pass smtp.mailfrom=alice@sender.test") for p in parts), ours
    dkim_parts = [set(p.split()) for p in parts if p.startswith("dkim=")]
    assert dkim_parts == [
        {"dkim=pass", "header.d=sender.test", "header.s=s1", "header.a=rsa-sha256"}
        | {x for x in dkim_parts[0] if x.startswith("header.b=")}
    ], ours
    assert any(p.startswith("dmarc=pass") and "header.from=sender.test" in p for p in parts), ours
    # below our Received field, above the message
    names = [n.lower() for n in got.keys()]
    assert names[:4] == ["return-path", "delivered-to", "received", "authentication-results"], names
    # the trace: each check a span with its verdict
    queue_id = d.wait_log(r"queued id=(\w+) from=<alice@sender.test>").group(1)
    deadline = time.monotonic() + 20
    while True:
        shown = d.cli("traces", "show", queue_id).stdout
        if "check.dmarc" in shown or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for span in ("check.spf", "check.dkim", "check.arc", "check.dmarc", "dns.txt"):
        assert span in shown, (span, shown)
    assert "dmarc.result=pass" in shown and "spf.result=pass" in shown and "dkim.result=pass" in shown, shown
    # the evaluation is kept for DMARC reports
    rows = _wait_rows(d.data_dir, "sender.test", 1)
    assert (rows[0].source_ip, rows[0].result, rows[0].disposition) == (CLIENT, "pass", "none")
    assert rows[0].spf_aligned and rows[0].dkim_aligned


def _wait_rows(data_dir: Path, header_from: str, count: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        store = DmarcReportStore(str(data_dir / "dmarc.db"))
        try:
            rows = list(store.evaluations(header_from=header_from))
        finally:
            store.close()
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) >= count, rows
            return rows
        time.sleep(0.2)


def test_a_forged_from_of_a_reject_domain_is_refused(world):
    d = world.daemon
    msg = _message("ceo@sender.test", subject="wire the money")
    with pytest.raises(smtplib.SMTPDataError) as e:
        _send(world, STRANGER, "ceo@sender.test", ["bob@example.test"], msg, helo="stranger.test")
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1 DMARC policy of sender.test")
    d.wait_log(r"refused from=127\.0\.0\.6 mail=<ceo@sender.test> reply=\"?550 5\.7\.1")
    assert maildir_files(d.maildir("example.test", "bob")) == []
    listed = d.cli("traces", "list", "ceo@sender.test", "--outcome", "refused").stdout  # the trace search
    assert "refused" in listed and "1 trace" in listed, listed
    rows = _wait_rows(d.data_dir, "sender.test", 1)
    assert (rows[-1].result, rows[-1].disposition, rows[-1].source_ip) == ("fail", "reject", STRANGER)


def test_a_quarantine_failure_lands_in_junk_marked(world):
    d = world.daemon
    msg = _message("news@quar.test")
    assert _send(world, CLIENT, "news@quar.test", ["bob@example.test"], msg) == {}
    box = d.maildir("example.test", "bob")
    deadline = time.monotonic() + 30
    while not maildir_files(box / ".Junk") and time.monotonic() < deadline:
        time.sleep(0.1)
    (path,) = maildir_files(box / ".Junk")
    assert (box / ".Junk" / "maildirfolder").exists()
    assert maildir_files(box) == []  # not in the inbox
    got = _parse(path.read_bytes())
    assert got["X-Spam-Flag"] == "YES" and marker_of(path.read_bytes()) == marker_of(msg)
    (ours,) = _ours(got)
    assert "dmarc=fail" in ours and "dis=quarantine" in ours.lower(), ours


def test_our_domain_from_outside_fails_our_dmarc_and_our_users_mail_is_signed(world):
    d = world.daemon
    msg = _message("alice@example.test", subject="spoofed")
    with pytest.raises(smtplib.SMTPDataError) as e:
        _send(world, CLIENT, "alice@example.test", ["bob@example.test"], msg)
    assert e.value.smtp_code == 550 and b"5.7.1 DMARC policy of example.test" in e.value.smtp_error
    # the same From through submission, authenticated: signed once, at
    # enqueue, with both keys; independent verifiers agree
    msg = _message("alice@example.test", to="friend@remote.test", subject="signed")
    assert world.submit("alice@example.test", "alice-pw", "alice@example.test", ["friend@remote.test"], msg) == {}
    (dump,) = world.sink.wait_for(1, timeout=30)
    sent = _crlf(dump.message)
    assert sent.count(b"DKIM-Signature:") == 2 and b"Authentication-Results" not in sent
    rsa = [r for r in maildkim_verify(sent, world.knot.address) if r[1] == "rsa-sha256"]
    assert rsa and rsa[0][0] == "pass" and rsa[0][2] == "example.test", rsa
    records = {k.record_name(): k.record() for k in world.our_keys}
    verdicts = opendkim_verify(sent, records)
    assert sorted((r[0], r[1]) for r in verdicts) == [("pass", "ed25519-sha256"), ("pass", "rsa-sha256")], verdicts
    d.wait_queue_empty(30)


def test_forwarded_mail_gets_srs_and_an_arc_seal_and_its_bounce_returns(world):
    d = world.daemon
    msg = _signed(world, _message("alice@sender.test", to="fwd@example.test", subject="forward me"))
    assert _send(world, CLIENT, "alice@sender.test", ["fwd@example.test"], msg) == {}
    (dump,) = world.sink.wait_for(1, timeout=30)
    assert [a.split()[0] for a in dump.rcpt_args] == ["<friend@remote.test>"]
    srs = dump.mail_args.split()[0].strip("<>")
    assert srs.startswith("SRS0=") and srs.endswith("=sender.test=alice@" + HOSTNAME), dump.mail_args
    sent = _crlf(dump.message)
    assert sent.startswith(b"ARC-Seal: i=1; cv=none;") or b"\r\nARC-Seal: i=1;" in sent.split(b"\r\n\r\n")[0]
    cv, results, reason = dkim.arc_verify(sent, dnsfunc=_knot_txt(world.knot))
    assert cv == dkim.CV_Pass, (cv, results, reason)
    author = [r for r in maildkim_verify(sent, world.knot.address) if r[2] == "sender.test"]
    assert author and author[0][0] == "pass", author  # the author's signature survives forwarding
    d.wait_queue_empty(30)

    # the remote MX bounces it later: to the SRS address, from <>
    bounce = (
        b"From: MAILER-DAEMON@mx.remote.test\r\nTo: <" + srs.encode() + b">\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nX-E2E-Marker: bounce-1\r\n\r\nfriend is gone\r\n"
    )
    assert _send(world, REMOTE_MX, "", [srs], bounce, helo="mx.remote.test") == {}
    (back,) = world.sender_mx.wait_for(1, timeout=30)
    assert [a.split()[0] for a in back.rcpt_args] == ["<alice@sender.test>"] and back.mail_args.split()[0] == "<>"
    assert marker_of(back.message) == "bounce-1"
    # a forged SRS address is refused at RCPT
    forged = "SRS0=zzzz=AA=sender.test=alice@" + HOSTNAME
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        _send(world, REMOTE_MX, "", [forged], bounce, helo="mx.remote.test")
    assert e.value.recipients[forged][0] == 550
