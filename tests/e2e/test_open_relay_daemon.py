"""The open-relay suite against the running daemon: every trick of
tests/open_relay_tricks.py, sent over a real connection to the MX
listener, and the submission side (no AUTH, a sender that is not the
user's). remote.test's MX is an smtp-sink on 127.0.0.2 named by a Knot
DNS on loopback: a message that leaves the host lands there. None may;
the positive controls (an authenticated user, an alias the domain's owner
points off-site) show that one that does is seen."""

from __future__ import annotations

import re

import pytest
from e2e_harness import RawSmtp, make_message
from open_relay_tricks import SPOOFED_SENDERS, TRICKS

pytestmark = pytest.mark.slow

ALIASES = {"example.test": "sales: alice, bob\n*: bob\nfwd: friend@remote.test\n"}
LOCAL = ("example.test", "localhost")


@pytest.fixture
def host(host_factory):
    return host_factory(aliases=ALIASES, remote=True)


def _try(port: int, rcpt: str) -> tuple[int, bytes]:
    """One transaction from an unknown client; (RCPT reply code, reply)."""
    with RawSmtp(port) as c:
        assert c.cmd(b"EHLO attacker.test")[0] == 250
        assert c.cmd(b"MAIL FROM:<spammer@attacker.test> SMTPUTF8")[0] == 250
        code, text = c.cmd(b"RCPT TO:" + rcpt.encode("utf-8"))
        if code == 250:
            assert c.cmd(b"DATA")[0] == 354
            c.send(make_message(subject=f"relay test {rcpt}") + b".\r\n")
            assert c.reply()[0] == 250
        c.cmd(b"QUIT")
    return code, text


def test_no_trick_relays(host):
    results = {rcpt: _try(host.smtp, rcpt) for rcpt in TRICKS}
    d = host.daemon
    d.wait_queue_empty(60)
    # Whatever was accepted went to a local mailbox (the catch-all took the
    # percent hacks and bang paths): the final recipients are all local ...
    queued = re.findall(r"queued id=\w+ from=<[^>]*> to=(\S+)", d.log_text())
    finals = [a for line in queued for a in re.findall(r"<([^>]*)>", line)]
    assert finals and all(a.rpartition("@")[2] in LOCAL for a in finals), finals
    assert not re.search(r"delivered id=\w+ to=<[^>]*> via=(?!/)", d.log_text())  # only Maildir paths
    # ... and nothing reached remote.test's MX.
    assert host.sink.count() == 0
    # The plain relay attempts were refused with 554 5.7.1 and logged.
    for rcpt in TRICKS[:2] + TRICKS[5:7] + TRICKS[12:15]:
        code, text = results[rcpt]
        assert code == 554 and b"5.7.1" in text, (rcpt, code, text)
    assert d.events("refused")
    # Positive control: the domain's own alias to remote.test is forwarded.
    assert _try(host.smtp, "<fwd@example.test>")[0] == 250
    (dump,) = host.sink.wait_for(1, timeout=30)
    assert dump.rcpt_args and "friend@remote.test" in dump.rcpt_args[0]


def test_submission_without_auth_and_spoofed_senders_are_refused(host):
    with RawSmtp(host.submission) as c:
        c.cmd(b"EHLO attacker.test")
        code, text = c.cmd(b"MAIL FROM:<alice@example.test>")
        assert code == 530 and b"5.7.0" in text
        assert c.cmd(b"RCPT TO:<victim@remote.test>")[0] == 503
    with host.implicit_tls() as c:
        assert c.mail("<>")[0] == 530
    with host.starttls() as c:
        c.login("alice@example.test", "alice-pw")
        for sender in SPOOFED_SENDERS:
            code, text = c.mail(sender)
            assert (code, text) == (550, b"5.7.1 Sender address rejected: not owned by user alice@example.test"), sender
        for sender in ("ALICE@Example.test", "a.lice+news@example.test", "sales@example.test", ""):
            assert c.mail(sender)[0] == 250, sender
            c.rset()
        # Positive control: an authenticated user relays.
        assert c.sendmail("alice@example.test", ["victim@remote.test"], make_message(subject="relayed")) == {}
    (dump,) = host.sink.wait_for(1, timeout=30)
    assert "victim@remote.test" in dump.rcpt_args[0]
    host.daemon.wait_log(r"refused from=127\.0\.0\.1 mail=<bob@example\.test> user=alice@example\.test reply=")
