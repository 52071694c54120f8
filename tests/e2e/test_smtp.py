"""End to end over SMTP with Python's smtplib: what a client sees, what
lands in the Maildir, what the log says. Each test runs its own daemon."""

from __future__ import annotations

import re
import smtplib

import pytest
from e2e_harness import RawSmtp, assert_delivered_copy, make_message, split_delivered

pytestmark = pytest.mark.slow


def test_one_message_is_delivered_byte_for_byte(daemon):
    msg = make_message(body=b"Hello,\r\n\r\n  indented line \t\r\n.leading dot\r\n..two dots\r\n\r\nbye\r\n")
    assert daemon.send("sender@client.test", ["anyone@localhost"], msg) == {}
    (path,) = daemon.wait_delivered("localhost", "anyone", 1)
    data = path.read_bytes()
    assert_delivered_copy(data, msg, recipient="anyone@localhost", reverse_path="sender@client.test")
    fields, _ = split_delivered(data)
    received = fields[2][1]
    # RFC 5321 §4.4: from <helo> (<ip>) by <our hostname> with ESMTP id <queue id>
    assert "client.e2e.test" in received and "127.0.0.1" in received, received
    assert "mx.e2e.test" in received and re.search(r"\bESMTP\b", received), received
    # Maildir: only new/ got it, tmp/ is left empty. One recipient: the
    # file is the queued body itself (a hard link, store/maildir.py), which
    # the queue then unlinks without reusing its inode.
    assert path.parent.name == "new"
    assert list((path.parent.parent / "tmp").iterdir()) == []
    daemon.wait_queue_empty()
    assert path.stat().st_nlink == 1 and path.read_bytes() == data
    assert not [p for p in daemon.queue_dir.iterdir() if p.name.endswith(".body")]


def test_a_message_for_several_recipients_is_copied_for_each(daemon):
    """Several recipients: the queued body is the message alone and each
    Maildir file a copy with its own delivery headers (no shared inode)."""
    msg = make_message()
    assert daemon.send("sender@client.test", ["c@localhost", "d@localhost"], msg) == {}
    (c,) = daemon.wait_delivered("localhost", "c", 1)
    (d,) = daemon.wait_delivered("localhost", "d", 1)
    assert c.stat().st_ino != d.stat().st_ino
    assert_delivered_copy(c.read_bytes(), msg, recipient="c@localhost", reverse_path="sender@client.test")
    assert_delivered_copy(d.read_bytes(), msg, recipient="d@localhost", reverse_path="sender@client.test")


def test_each_recipient_gets_its_own_copy(daemon):
    rcpts = ["a@localhost", "b@localhost", "Alice@users.test", "bob@USERS.TEST"]
    msg = make_message()
    assert daemon.send("sender@client.test", rcpts, msg) == {}
    for rcpt, (domain, user) in zip(
        rcpts, [("localhost", "a"), ("localhost", "b"), ("users.test", "alice"), ("users.test", "bob")]
    ):
        (path,) = daemon.wait_delivered(domain, user, 1)
        assert_delivered_copy(path.read_bytes(), msg, reverse_path="sender@client.test")
        assert split_delivered(path.read_bytes())[0][1][1].lower() == rcpt.lower()


def test_ehlo_keywords_and_simple_commands(daemon):
    with daemon.smtp() as s:
        code, text = s.ehlo()
        assert code == 250
        for kw in ("pipelining", "8bitmime", "enhancedstatuscodes", "smtputf8", "size"):
            assert s.has_extn(kw), (kw, text)
        assert int(s.esmtp_features["size"]) > 0
        assert s.noop()[0] == 250
        code, text = s.verify("anyone@localhost")
        assert code == 252, text  # RFC 5321 §3.5.3: cannot verify, will accept
        assert s.docmd("HELP")[0] in (211, 214)
        assert s.rset()[0] == 250
        code, text = s.docmd("BOGUS")
        assert code == 500, text
    with daemon.smtp() as s:
        assert s.helo()[0] == 250  # RFC 5321 §4.1.1.1: HELO still works
        assert s.sendmail("x@client.test", ["helo@localhost"], make_message()) == {}
    daemon.wait_delivered("localhost", "helo", 1)


def test_pipelining_batch(daemon):
    """RFC 2920: MAIL, RCPT, RCPT, DATA sent in one write; the replies come
    back in order; then a second transaction on the same connection."""
    msg = make_message()
    with RawSmtp(daemon.port) as c:
        assert c.greeting[0] == 220
        code, ehlo = c.cmd(b"EHLO client.e2e.test")
        assert code == 250 and b"PIPELINING" in ehlo.upper()
        c.send(
            b"MAIL FROM:<p@client.test>\r\nRCPT TO:<p1@localhost>\r\nRCPT TO:<nobody@remote.example>\r\nRCPT TO:<p2@localhost>\r\nDATA\r\n"
        )
        codes = [c.reply()[0] for _ in range(5)]
        assert codes == [250, 250, 554, 250, 354], codes
        c.send(msg + b".\r\n")
        assert c.reply()[0] == 250
        # Second transaction pipelined with the body's end and QUIT.
        msg2 = make_message()
        c.send(b"MAIL FROM:<p@client.test>\r\nRCPT TO:<p3@localhost>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(msg2 + b".\r\nQUIT\r\n")
        assert c.reply()[0] == 250
        assert c.reply()[0] == 221
    for user, sent in (("p1", msg), ("p2", msg), ("p3", msg2)):
        (path,) = daemon.wait_delivered("localhost", user, 1)
        assert_delivered_copy(path.read_bytes(), sent)


def test_8bitmime_and_smtputf8(daemon):
    body = "Grüße aus Köln — ünïcödé\r\n".encode()
    msg = make_message(body=body, extra="X-Name: Jürgen\r\n".encode())
    with daemon.smtp() as s:
        s.ehlo()
        assert s.sendmail("sender@client.test", ["eight@localhost"], msg, mail_options=["BODY=8BITMIME"]) == {}
        # RFC 6531: a UTF-8 local part with the SMTPUTF8 parameter.
        assert (
            s.sendmail("jürgen@client.test", ["josé@localhost"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
        )
    (path,) = daemon.wait_delivered("localhost", "eight", 1)
    assert_delivered_copy(path.read_bytes(), msg)
    (path,) = daemon.wait_delivered("localhost", "josé", 1)
    assert_delivered_copy(path.read_bytes(), msg, reverse_path="jürgen@client.test")


def test_relay_is_denied_and_postmaster_accepted(daemon):
    with daemon.smtp() as s:
        s.ehlo()
        assert s.mail("sender@client.test")[0] == 250
        code, text = s.rcpt("victim@remote.example")
        assert code == 554 and b"5.7.1" in text, (code, text)
        code, text = s.rcpt("postmaster@users.test")  # not in the user list, still accepted
        assert code == 250, (code, text)
        code, text = s.rcpt("postmaster")  # RFC 5321 §4.5.1: bare postmaster
        assert code == 250, (code, text)
        code, text = s.data(make_message())
        assert code == 250, text
    daemon.wait_delivered("users.test", "postmaster", 1)
    with daemon.smtp() as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("sender@client.test", ["victim@remote.example"], make_message())
        assert e.value.recipients["victim@remote.example"][0] == 554
    assert not (daemon.data_dir / "mail" / "remote.example").exists()


def test_unknown_user_of_a_domain_with_a_user_list(daemon):
    with daemon.smtp() as s:
        s.ehlo()
        s.mail("sender@client.test")
        code, text = s.rcpt("mallory@users.test")
        assert code == 550 and b"5.1.1" in text, (code, text)
        assert s.rcpt("alice@users.test")[0] == 250
        assert s.data(make_message())[0] == 250
    daemon.wait_delivered("users.test", "alice", 1)
    assert not daemon.maildir("users.test", "mallory").exists()


def test_size_limit(daemon_factory):
    d = daemon_factory(max_data_size_bytes=10_000)
    with d.smtp() as s:
        s.ehlo()
        assert int(s.esmtp_features["size"]) == 10_000
        code, text = s.mail("sender@client.test", ["SIZE=20000"])
        assert code == 552 and b"5.3.4" in text, (code, text)
        # A client that lies in SIZE (or gives none) is stopped at DATA.
        assert s.mail("sender@client.test")[0] == 250
        assert s.rcpt("big@localhost")[0] == 250
        code, text = s.data(make_message(body=(b"x" * 76 + b"\r\n") * 200))
        assert code == 552, (code, text)
        assert s.noop()[0] == 250  # the session goes on
    assert d.send("sender@client.test", ["small@localhost"], make_message()) == {}
    d.wait_delivered("localhost", "small", 1)
    assert d.delivered("localhost", "big") == []


def test_smuggling_sequences_are_refused(daemon):
    """SMTP smuggling: a bare-LF end of data ("\\n.\\n" or "\\n.\\r\\n") must
    not end DATA on our side while ending it on another; the message gets
    a 5xx and the smuggled MAIL never becomes a transaction."""
    for seq in (b"\n.\n", b"\n.\r\n", b"\r\n.\n"):
        with RawSmtp(daemon.port) as c:
            c.cmd(b"EHLO client.e2e.test")
            assert c.cmd(b"MAIL FROM:<s@client.test>")[0] == 250
            assert c.cmd(b"RCPT TO:<smuggle@localhost>")[0] == 250
            assert c.cmd(b"DATA")[0] == 354
            c.send(
                b"Subject: outer\r\n\r\nouter"
                + seq
                + b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<smuggled@localhost>\r\nDATA\r\nSubject: inner\r\n\r\ninner\r\n.\r\n"
            )
            code, text = c.reply()
            assert 500 <= code < 600, (seq, code, text)
    assert not daemon.maildir("localhost", "smuggled").exists()
    assert daemon.delivered("localhost", "smuggle") == []


def test_log_lines_carry_the_queue_id(daemon):
    assert daemon.send("sender@client.test", ["logged@localhost"], make_message()) == {}
    daemon.wait_delivered("localhost", "logged", 1)
    m = daemon.wait_log(r"^\S+ INFO delivered .*\bid=(\S+)")
    queue_id = m.group(1)
    assert daemon.events("listening")
    assert daemon.events("connection")
    queued = [line for line in daemon.events("queued") if f"id={queue_id}" in line]
    assert len(queued) == 1, daemon.log_tail()
    delivered = [line for line in daemon.events("delivered") if f"id={queue_id}" in line]
    assert len(delivered) == 1 and "logged@localhost" in delivered[0], delivered
    assert "Traceback" not in daemon.log_text()


def test_utf8_address_needs_smtputf8(daemon):
    """RFC 6531 §3.4: a non-ASCII address without the SMTPUTF8 parameter
    is refused (553 5.6.7 is the usual reply)."""
    with RawSmtp(daemon.port) as c:
        c.cmd(b"EHLO client.e2e.test")
        code, text = c.cmd("MAIL FROM:<jürgen@client.test>".encode())
        assert 500 <= code < 600, text
        assert c.cmd("MAIL FROM:<jürgen@client.test> SMTPUTF8".encode())[0] == 250
        assert c.cmd("RCPT TO:<ñandú@localhost>".encode())[0] == 250


def test_too_many_recipients(daemon_factory):
    d = daemon_factory(max_recipients=3)
    with d.smtp() as s:
        s.ehlo()
        s.mail("sender@client.test")
        for n in range(3):
            assert s.rcpt(f"r{n}@localhost")[0] == 250
        code, text = s.rcpt("r3@localhost")
        assert code == 452 and b"4.5.3" in text, (code, text)  # RFC 5321 §4.5.3.1.8
        assert s.data(make_message())[0] == 250
    for n in range(3):
        d.wait_delivered("localhost", f"r{n}", 1)
    assert d.delivered("localhost", "r3") == []


def test_queue_full_is_a_temporary_refusal(daemon_factory):
    """Back-pressure: at max_queue_items new mail gets 452 4.3.1; nothing
    queued is dropped, and once the queue drains mail is accepted again."""
    d = daemon_factory(start=False, max_queue_items=2, retry="{ initial_seconds: 0.3 max_seconds: 0.5 }")
    blocker = d.block_mailbox("localhost", "held")
    d.start()
    for n in range(2):
        assert d.send("sender@client.test", ["held@localhost"], make_message()) == {}
    # The gauge holds the counts as of the last Enqueued its QueueManager
    # handled (actors/queue.py), a moment after the 250: an item's first
    # deferral shows it was counted.
    ids = d.queued_ids()
    assert len(ids) == 2, ids
    for queue_id in ids:
        d.wait_log(rf"deferred id={queue_id} ")
    with d.smtp() as s:
        s.ehlo()
        code, text = s.mail("sender@client.test")
        if code == 250:  # refusing at RCPT or DATA is as good
            code, text = s.rcpt("more@localhost")
            if code == 250:
                code, text = s.data(make_message())
        assert code == 452 and b"4.3.1" in text, (code, text)
    assert len(d.queued_ids()) == 2
    blocker.unlink()
    d.wait_delivered("localhost", "held", 2)
    d.wait_queue_empty(timeout=30)
    assert d.send("sender@client.test", ["more@localhost"], make_message()) == {}
    d.wait_delivered("localhost", "more", 1)


def test_idle_and_data_timeouts_close_with_421(daemon_factory):
    """RFC 5321 §4.5.3.2: a client that stops talking is timed out, waiting
    for a command (idle_timeout_seconds) and inside DATA (data_timeout_seconds),
    with 421 4.4.2; a client that keeps talking within the limit is not."""
    import time

    d = daemon_factory(idle_timeout_seconds=1.0, data_timeout_seconds=1.5)
    with RawSmtp(d.port) as c:
        assert c.cmd(b"EHLO client.test")[0] == 250
        for _ in range(4):  # 2 s of activity, never 1 s idle
            time.sleep(0.5)
            assert c.cmd(b"NOOP")[0] == 250
        t0 = time.monotonic()
        code, text = c.reply()
        waited = time.monotonic() - t0
        assert code == 421 and b"4.4.2" in text, text
        assert 0.9 < waited < 3.0, waited
        assert c.sock.recv(100) == b""  # closed
    with RawSmtp(d.port) as c:
        assert c.cmd(b"EHLO client.test")[0] == 250
        assert c.cmd(b"MAIL FROM:<a@client.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<slow@localhost>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(b"Subject: half a message\r\n\r\nand then")
        t0 = time.monotonic()
        code, text = c.reply()
        assert code == 421 and b"4.4.2" in text, text
        assert 1.4 < time.monotonic() - t0 < 3.5
    assert d.delivered("localhost", "slow") == []
    assert d.queued_ids() == []
