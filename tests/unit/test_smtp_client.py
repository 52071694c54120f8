"""The sans-I/O SMTP/LMTP client (actors/smtp/client.py, clientreplies.py,
transaction.py): reply parsing, EHLO keywords, pipelining, per-recipient
outcomes, LMTP's per-recipient replies, STARTTLS, AUTH, the client's own
refusals (SIZE, 8BITMIME, SMTPUTF8), DSN parameters, dot-stuffing, and
every way a session can break."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estafeta.actors.smtp.client import (
    CLOSED,
    NEED_DATA,
    ClientParams,
    Credentials,
    ReplyReceived,
    SendContent,
    SmtpClient,
    StartTls,
    Step,
    TlsPolicy,
)
from estafeta.actors.smtp.clientreplies import Extensions, ReplyError, ReplyReader
from estafeta.actors.smtp.data import unstuff
from estafeta.actors.smtp.events import ProtocolUsageError
from estafeta.actors.smtp.replies import Reply
from estafeta.actors.smtp.transaction import DotStuffer, Envelope, Recipient, rcpt_command

EHLO_ALL = (
    b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-DSN\r\n"
    b"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"
)
EHLO_PLAIN = b"250-mx.test\r\n250 ENHANCEDSTATUSCODES\r\n"  # no pipelining, nothing
MESSAGE = b"Subject: hi\r\n\r\nHello\r\n.dot\r\n"


def env(*rcpts: str, **kw) -> Envelope:
    recipients = tuple(r if isinstance(r, Recipient) else Recipient(r) for r in rcpts or ("b@x.test",))
    return Envelope(kw.pop("reverse_path", "a@y.test"), recipients, kw.pop("size", len(MESSAGE)), **kw)


class Run:
    """Drives a client the way the I/O driver does, against scripted server
    bytes; records the commands it wrote and the events."""

    def __init__(self, envelope: Envelope, **params):
        params.setdefault("tls", TlsPolicy.NONE)
        self.c = SmtpClient(ClientParams("client.test", peer="mx.test[192.0.2.1]", **params), envelope)
        self.sent: list[bytes] = []  # one entry per write
        self.events: list = []
        self.content = b""

    def step(self, server: bytes = b"", eof: bool = False, message: bytes = MESSAGE):
        """Feed `server` (then EOF if asked), run to NEED_DATA/CLOSED."""
        if server:
            self.c.receive_data(server)
        if eof:
            self.c.receive_eof()
        while True:
            ev = self.c.next_event()
            if ev is NEED_DATA or ev is CLOSED:
                out = self.c.data_to_send()
                if out:
                    self.sent.append(out)
                return ev
            self.events.append(ev)
            if isinstance(ev, SendContent):
                wire = self.c.send_content(message[:5]) + self.c.send_content(message[5:]) + self.c.end_content()
                self.content = wire
            elif isinstance(ev, StartTls):
                return ev

    @property
    def last(self) -> bytes:
        return self.sent[-1] if self.sent else b""

    def replies(self) -> list[tuple[Step, str, int]]:
        return [(e.step, e.command, e.reply.code) for e in self.events if isinstance(e, ReplyReceived)]


def codes(c: SmtpClient) -> list:
    return [v.reply.code if v else None for v in c.verdicts]


# ------------------------------------------------------------------ replies
def test_reply_reader_multiline_and_enhanced_codes():
    r = ReplyReader()
    r.feed(b"250-2.1.0 first\r\n250-2.1.0 second\r\n250 2.1.0 ")
    assert r.next_reply() is None
    r.feed(b"third\r\n550 5.1.1 <b@x>: no such user\r\n")
    assert r.next_reply() == Reply(250, "2.1.0", "first\nsecond\nthird")
    assert r.next_reply() == Reply(550, "5.1.1", "<b@x>: no such user")
    assert r.next_reply() is None


@pytest.mark.parametrize(
    "wire, expected",
    [
        (b"250 Ok\r\n", Reply(250, "", "Ok")),
        (b"250\r\n", Reply(250, "", "")),
        (b"250 \r\n", Reply(250, "", "")),
        (b"250 2.0.0\r\n", Reply(250, "2.0.0", "")),
        (b"550 4.1.1 wrong class\r\n", Reply(550, "", "4.1.1 wrong class")),  # mismatched: dropped
        (b"550 5.1 too short\r\n", Reply(550, "", "5.1 too short")),  # malformed: dropped
        (b"550 5.1.1234 long\r\n", Reply(550, "", "5.1.1234 long")),
        (b"550 5.01.1 lead\r\n", Reply(550, "5.1.1", "lead")),
        (b"451 4.3.0 bare LF\n", Reply(451, "4.3.0", "bare LF")),
        (b"250-a\r\n251 b\r\n", Reply(251, "", "a\nb")),  # mixed codes: the last line's
        (b"550 caf\xc3\xa9 \xff\r\n", Reply(550, "", "caf\u00e9 \ufffd")),
    ],
)
def test_reply_reader_is_liberal(wire, expected):
    r = ReplyReader()
    r.feed(wire)
    assert r.next_reply() == expected


@pytest.mark.parametrize("wire", [b"hello\r\n", b"099 x\r\n", b"600 x\r\n", b"25 x\r\n", b"250x\r\n"])
def test_reply_reader_refuses_what_is_not_a_reply(wire):
    r = ReplyReader()
    r.feed(wire)
    with pytest.raises(ReplyError):
        r.next_reply()


def test_reply_reader_bounds_lines():
    r = ReplyReader()
    r.feed(b"250-" + b"x" * 5000)
    with pytest.raises(ReplyError):
        r.next_reply()
    r = ReplyReader()
    r.feed(b"250-x\r\n" * 300)
    with pytest.raises(ReplyError):
        r.next_reply()


@given(st.binary(max_size=300), st.integers(1, 20))
def test_reply_reader_never_crashes(data, cut):
    r = ReplyReader()
    for i in range(0, len(data), cut):
        r.feed(data[i : i + cut])
        try:
            while r.next_reply() is not None:
                pass
        except ReplyError:
            return


def test_extensions_keywords():
    ext = Extensions.from_reply(
        Reply(250, "", "mx\nPIPELINING\nSIZE 35882577\nAUTH PLAIN login\nAUTH=LOGIN CRAM-MD5\n8BITMIME\nx y z\n\n")
    )
    assert ext.pipelining and ext.eightbitmime and not ext.smtputf8 and not ext.starttls and not ext.dsn
    assert ext.size == 35882577
    assert ext.auth == {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert Extensions.from_reply(Reply(250, "", "mx\nSIZE")).size == 0
    assert Extensions.from_reply(Reply(250, "", "mx")).size is None


# ------------------------------------------------------------------ a whole transaction
def test_pipelined_transaction_per_recipient_outcomes():
    r = Run(env("ok1@x.test", "bad@x.test", "ok2@x.test"))
    assert r.step() is NEED_DATA and r.sent == []
    r.step(b"220 mx.test ESMTP\r\n")
    assert r.last == b"EHLO client.test\r\n"
    r.step(EHLO_ALL)
    # RFC 2920: MAIL, every RCPT and DATA in one write.
    assert r.last == (
        b"MAIL FROM:<a@y.test> SIZE=%d\r\nRCPT TO:<ok1@x.test>\r\nRCPT TO:<bad@x.test>\r\n"
        b"RCPT TO:<ok2@x.test>\r\nDATA\r\n" % len(MESSAGE)
    )
    assert r.c.awaiting is Step.MAIL
    r.step(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n250 2.1.5 Ok\r\n354 go\r\n")
    assert r.content == b"Subject: hi\r\n\r\nHello\r\n..dot\r\n.\r\n"
    assert r.c.awaiting is Step.DOT and r.c.dot_sent
    r.step(b"250 2.0.0 queued as X\r\n")
    assert r.last == b"QUIT\r\n"
    assert r.step(b"221 2.0.0 Bye\r\n") is CLOSED
    assert codes(r.c) == [250, 550, 250]
    v = r.c.verdicts
    assert v[0].step is Step.DOT and v[0].remote and v[0].reply.text == "queued as X"
    assert v[1].step is Step.RCPT and v[1].reply.enhanced == "5.1.1"
    assert r.c.session_error is None and not r.c.try_next and not r.c.unknown_after_dot
    assert [s for s, _, _ in r.replies()] == [
        Step.GREETING, Step.EHLO, Step.MAIL, Step.RCPT, Step.RCPT, Step.RCPT, Step.DATA, Step.DOT, Step.QUIT
    ]  # fmt: skip
    rcpt_events = [e for e in r.events if isinstance(e, ReplyReceived) and e.step is Step.RCPT]
    assert [e.recipient for e in rcpt_events] == ["ok1@x.test", "bad@x.test", "ok2@x.test"]


def test_without_pipelining_each_command_waits():
    r = Run(env("b1@x.test", "b2@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_PLAIN)
    assert r.last == b"MAIL FROM:<a@y.test>\r\n"  # no SIZE: not offered
    r.step(b"250 ok\r\n")
    assert r.last == b"RCPT TO:<b1@x.test>\r\n"
    r.step(b"450 4.2.1 later\r\n")
    assert r.last == b"RCPT TO:<b2@x.test>\r\n"
    r.step(b"250 ok\r\n")
    assert r.last == b"DATA\r\n"
    r.step(b"354 go\r\n250 2.0.0 ok\r\n")
    assert r.last == b"QUIT\r\n"
    assert codes(r.c) == [450, 250]


def test_all_recipients_refused_no_data():
    r = Run(env("b1@x.test", "b2@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_PLAIN)
    r.step(b"250 ok\r\n550 5.1.1 no\r\n")
    r.step(b"551 5.1.6 moved\r\n")
    assert r.last == b"QUIT\r\n"
    assert codes(r.c) == [550, 551]


def test_pipelined_mail_refused_applies_to_everyone():
    r = Run(env("b1@x.test", "b2@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    r.step(b"553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no\r\n")
    assert r.last == b"QUIT\r\n"
    assert [v.step for v in r.c.verdicts] == [Step.MAIL, Step.MAIL]
    assert codes(r.c) == [553, 553]


def test_pipelined_354_without_recipients_sends_a_lone_dot():
    """RFC 2920 §3.1: a server that says 354 after refusing every RCPT gets
    an empty message, whose reply changes nothing."""
    r = Run(env("b@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    r.step(b"250 ok\r\n550 no\r\n354 go\r\n")
    assert r.last == b".\r\n" and not any(isinstance(e, SendContent) for e in r.events)
    r.step(b"250 ok\r\n")
    assert r.last == b"QUIT\r\n"
    assert codes(r.c) == [550]


def test_data_refused_applies_to_accepted_recipients():
    r = Run(env("b1@x.test", "b2@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    r.step(b"250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n554 5.5.1 no thanks\r\n")
    assert [v.step for v in r.c.verdicts] == [Step.DATA, Step.RCPT]
    assert codes(r.c) == [554, 452]


def test_lmtp_one_reply_per_accepted_recipient():
    r = Run(env("u1@x.test", "nobody@x.test", "u2@x.test"), lmtp=True)
    r.step(b"220 lmtp\r\n")
    assert r.last == b"LHLO client.test\r\n"
    r.step(b"250-lmtp\r\n250 PIPELINING\r\n")
    r.step(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n")
    r.step(b"250 2.0.0 u1 saved\r\n")
    assert r.c.awaiting is Step.DOT
    r.step(b"452 4.2.2 u2 over quota\r\n")
    assert r.last == b"QUIT\r\n"
    assert codes(r.c) == [250, 550, 452]
    dots = [e for e in r.events if isinstance(e, ReplyReceived) and e.step is Step.DOT]
    assert [e.recipient for e in dots] == ["u1@x.test", "u2@x.test"]


def test_lmtp_has_no_helo_fallback():
    r = Run(env(), lmtp=True)
    r.step(b"220 lmtp\r\n")
    r.step(b"500 5.5.1 what\r\n")
    assert r.last == b"QUIT\r\n" and r.c.session_error.step is Step.EHLO


def test_helo_fallback_after_ehlo_5xx():
    r = Run(env(), tls=TlsPolicy.OPPORTUNISTIC)
    r.step(b"220 old\r\n")
    r.step(b"502 unrecognized\r\n")
    assert r.last == b"HELO client.test\r\n"
    r.step(b"250 old\r\n")
    assert r.last == b"MAIL FROM:<a@y.test>\r\n"
    assert not r.c.extensions.esmtp


# ------------------------------------------------------------------ session errors
@pytest.mark.parametrize("greeting", [b"554 5.7.1 go away\r\n", b"450 busy\r\n"])
def test_refused_greeting_quits_and_tries_next(greeting):
    r = Run(env())
    r.step(greeting)
    assert r.last == b"QUIT\r\n"
    e = r.c.session_error
    assert e.step is Step.GREETING and e.remote and e.reply.code == int(greeting[:3])
    assert r.c.try_next and codes(r.c) == [None]


def test_421_anywhere_ends_the_session_without_quit():
    r = Run(env("b1@x.test", "b2@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    assert r.step(b"250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n") is CLOSED
    assert r.last.startswith(b"MAIL")  # nothing written after
    assert codes(r.c) == [None, None]
    assert r.c.session_error.reply.code == 421 and r.c.session_error.step is Step.RCPT and r.c.try_next


def test_421_to_the_dot_is_the_recipients_verdict():
    r = Run(env("b1@x.test"))
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    assert r.step(b"250 ok\r\n250 ok\r\n354 go\r\n421 4.4.2 timeout\r\n") is CLOSED
    assert codes(r.c) == [421] and r.c.session_error is None


@pytest.mark.parametrize(
    "replies, step",
    [
        (b"", Step.GREETING),
        (b"220 mx\r\n", Step.EHLO),
        (b"220 mx\r\n" + EHLO_ALL, Step.MAIL),
        (b"220 mx\r\n" + EHLO_ALL + b"250 ok\r\n", Step.RCPT),
        (b"220 mx\r\n" + EHLO_ALL + b"250 ok\r\n250 ok\r\n", Step.DATA),
    ],
)
def test_connection_closed_before_the_dot_tries_next(replies, step):
    r = Run(env())
    r.step()
    assert r.step(replies, eof=True) is CLOSED
    e = r.c.session_error
    assert e.step is step and not e.remote and e.reply.code == 421 and e.reply.enhanced == "4.4.2"
    assert r.c.try_next and not r.c.unknown_after_dot and codes(r.c) == [None]


def test_connection_closed_after_the_dot_is_unknown():
    r = Run(env())
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    assert r.step(b"250 ok\r\n250 ok\r\n354 go\r\n", eof=True) is CLOSED
    assert r.c.unknown_after_dot and not r.c.try_next
    assert r.c.session_error.step is Step.DOT and codes(r.c) == [None]


def test_lmtp_connection_closed_midway_after_the_dot():
    r = Run(env("u1@x.test", "u2@x.test"), lmtp=True)
    r.step(b"220 lmtp\r\n")
    r.step(b"250-lmtp\r\n250 PIPELINING\r\n")
    r.step(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 u1 saved\r\n", eof=True)
    assert codes(r.c) == [250, None] and r.c.unknown_after_dot


def test_timeout_and_lost_connection_texts():
    r = Run(env())
    r.step(b"220 mx\r\n")
    r.c.timed_out(300)
    assert r.c.next_event() is CLOSED
    assert "timeout after 300 s waiting for the reply to EHLO" in r.c.session_error.reply.text
    r = Run(env())
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    r.c.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert isinstance(r.c.next_event(), ReplyReceived)
    while not isinstance(r.c.next_event(), SendContent):
        pass
    r.c.send_content(b"x")
    r.c.connection_lost("Broken pipe")
    assert "while sending the message: Broken pipe" in r.c.session_error.reply.text
    assert r.c.try_next and not r.c.unknown_after_dot


def test_malformed_reply_ends_the_session():
    r = Run(env())
    r.step(b"220 mx\r\n")
    assert r.step(b"HTTP/1.1 400 Bad Request\r\n") is CLOSED
    assert "malformed reply" in r.c.session_error.reply.text and r.c.try_next


def test_abort_is_local_and_final():
    r = Run(env())
    r.step(b"220 mx\r\n")
    r.step(EHLO_ALL)
    r.c.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    while not isinstance(r.c.next_event(), SendContent):
        pass
    r.c.abort("cannot read the queued message: ENOENT")
    assert r.c.next_event() is CLOSED
    assert r.c.session_error.reply.enhanced == "4.3.0" and not r.c.try_next


def test_driver_contract_errors():
    r = Run(env())
    with pytest.raises(ProtocolUsageError):
        r.c.send_content(b"x")
    with pytest.raises(ProtocolUsageError):
        r.c.tls_started()
    r.c.receive_eof()
    with pytest.raises(ProtocolUsageError):
        r.c.receive_data(b"220 x\r\n")


# ------------------------------------------------------------------ STARTTLS
def test_starttls_discards_buffered_plaintext_and_starts_over():
    """RFC 3207 §4.2: what follows the 220 in the same read (an injected
    reply) is thrown away; EHLO is sent again over TLS."""
    r = Run(env(), tls=TlsPolicy.OPPORTUNISTIC)
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
    assert r.last == b"STARTTLS\r\n"
    ev = r.step(b"220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
    assert isinstance(ev, StartTls)
    with pytest.raises(ProtocolUsageError):
        r.c.next_event()
    r.c.tls_started()
    r.step()
    assert r.last == b"EHLO client.test\r\n" and r.c.tls and r.c.extensions is None
    r.step(b"250-mx\r\n250 8BITMIME\r\n")
    assert r.c.extensions.keywords == {"8BITMIME": ""}
    assert r.last == b"MAIL FROM:<a@y.test>\r\n"  # no STARTTLS twice


def test_starttls_refused_opportunistic_continues_in_plaintext():
    r = Run(env(), tls=TlsPolicy.OPPORTUNISTIC)
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250 STARTTLS\r\n")
    r.step(b"454 4.7.0 TLS not available\r\n")
    assert r.last == b"MAIL FROM:<a@y.test>\r\n" and not r.c.tls


@pytest.mark.parametrize("policy", [TlsPolicy.REQUIRED, TlsPolicy.VERIFY])
def test_tls_required(policy):
    r = Run(env(), tls=policy)
    r.step(b"220 mx\r\n")
    r.step(b"250 mx\r\n")  # no STARTTLS offered
    assert r.last == b"QUIT\r\n" and r.c.session_error.reply.enhanced == "4.7.4" and r.c.try_next
    r = Run(env(), tls=policy)
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250 STARTTLS\r\n")
    r.step(b"454 4.7.0 no TLS now\r\n")
    assert r.last == b"QUIT\r\n" and r.c.session_error.remote


def test_tls_handshake_failure():
    r = Run(env(), tls=TlsPolicy.OPPORTUNISTIC)
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250 STARTTLS\r\n")
    r.step(b"220 go\r\n")
    r.c.tls_failed("wrong version number")
    assert r.c.next_event() is CLOSED
    assert r.c.session_error.step is Step.STARTTLS and r.c.try_next


def test_no_tls_policy_never_starts_tls():
    r = Run(env(), tls=TlsPolicy.NONE)
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250 STARTTLS\r\n")
    assert r.last.startswith(b"MAIL")


# ------------------------------------------------------------------ AUTH
def _tls_session(creds, ehlo=b"250-mx\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n"):
    r = Run(env(), tls=TlsPolicy.REQUIRED, credentials=creds)
    r.step(b"220 mx\r\n")
    r.step(ehlo)
    r.step(b"220 go\r\n")
    r.c.tls_started()
    r.step()
    return r


def test_auth_plain_masked():
    r = _tls_session(Credentials("user", "s3cret"))
    r.step(b"250-mx\r\n250 AUTH LOGIN PLAIN\r\n")
    token = base64.b64encode(b"\0user\0s3cret")
    assert r.last == b"AUTH PLAIN " + token + b"\r\n"
    r.step(b"235 2.7.0 ok\r\n")
    assert r.last.startswith(b"MAIL") and r.c.authenticated
    auth = [e for e in r.events if isinstance(e, ReplyReceived) and e.step is Step.AUTH]
    assert auth[0].command == "AUTH PLAIN ****"
    assert "s3cret" not in repr(Credentials("user", "s3cret"))


def test_auth_login_masked():
    r = _tls_session(Credentials("user", "pw"))
    r.step(b"250-mx\r\n250 AUTH LOGIN\r\n")
    assert r.last == b"AUTH LOGIN\r\n"
    r.step(b"334 VXNlcm5hbWU6\r\n")
    assert r.last == base64.b64encode(b"user") + b"\r\n"
    r.step(b"334 UGFzc3dvcmQ6\r\n")
    assert r.last == base64.b64encode(b"pw") + b"\r\n"
    r.step(b"535 5.7.8 bad credentials\r\n")
    assert r.last == b"QUIT\r\n"
    e = r.c.session_error
    assert e.step is Step.AUTH and e.reply.code == 535 and r.c.try_next  # soft bounce (Postfix)
    assert [e.command for e in r.events if isinstance(e, ReplyReceived) and e.step is Step.AUTH] == [
        "AUTH LOGIN", "****", "****"
    ]  # fmt: skip


def test_auth_never_over_plaintext():
    r = Run(env(), tls=TlsPolicy.OPPORTUNISTIC, credentials=Credentials("u", "p"))
    r.step(b"220 mx\r\n")
    r.step(b"250-mx\r\n250 AUTH PLAIN\r\n")
    assert r.last == b"QUIT\r\n" and b"AUTH" not in b"".join(r.sent)
    assert r.c.session_error.reply.enhanced == "4.7.11"


def test_auth_without_a_common_mechanism():
    r = _tls_session(Credentials("u", "p"))
    r.step(b"250-mx\r\n250 AUTH CRAM-MD5\r\n")
    assert r.last == b"QUIT\r\n" and "CRAM-MD5" in r.c.session_error.reply.text


# ------------------------------------------------------------------ decisions
def _offer(keywords: bytes, envelope: Envelope, headers_non_ascii: bool = False) -> SmtpClient:
    c = SmtpClient(ClientParams("c.test", peer="mx", tls=TlsPolicy.NONE), envelope, headers_non_ascii=headers_non_ascii)
    for server in (b"220 mx\r\n", b"250-mx\r\n" + keywords):
        c.data_to_send()  # (the EHLO)
        c.receive_data(server)
        while c.next_event() is not NEED_DATA:
            pass
    return c


def test_size_over_the_limit_is_refused_without_sending():
    c = _offer(b"250 SIZE 100\r\n", env(size=101))
    assert c.data_to_send() == b"QUIT\r\n"
    assert c.verdicts[0].reply.code == 552 and c.verdicts[0].reply.enhanced == "5.3.4"
    assert c.verdicts[0].step is None and not c.verdicts[0].remote
    c = _offer(b"250 SIZE 0\r\n", env(size=10**9))  # 0: no limit
    assert b"MAIL FROM:<a@y.test> SIZE=1000000000" in c.data_to_send()


def test_8bitmime():
    c = _offer(b"250 SIZE 1000\r\n", env(body="8BITMIME"))
    assert c.verdicts[0].reply.enhanced == "5.6.3"
    c = _offer(b"250 8BITMIME\r\n", env(body="8BITMIME"))
    assert b"MAIL FROM:<a@y.test> BODY=8BITMIME\r\n" in c.data_to_send()
    c = _offer(b"250 SIZE\r\n", env(body=""))  # undeclared 8-bit content: sent as is
    assert b"MAIL FROM:<a@y.test> SIZE=" in c.data_to_send()


def test_smtputf8():
    intl = env("b\u00fccher@x.test", smtputf8=True)
    c = _offer(b"250 8BITMIME\r\n", intl)
    assert c.verdicts[0].reply.code == 553 and c.verdicts[0].reply.enhanced == "5.6.7"
    c = _offer(b"250-PIPELINING\r\n250 SMTPUTF8\r\n", intl)
    assert c.data_to_send().decode().startswith("MAIL FROM:<a@y.test> SMTPUTF8\r\nRCPT TO:<b\u00fccher@x.test>")
    # Requested, ASCII envelope: needed only for non-ASCII header fields.
    c = _offer(b"250 8BITMIME\r\n", env(smtputf8=True), headers_non_ascii=True)
    assert c.verdicts[0].reply.enhanced == "5.6.7"
    c = _offer(b"250 8BITMIME\r\n", env(smtputf8=True), headers_non_ascii=False)
    assert c.data_to_send() == b"MAIL FROM:<a@y.test>\r\n"


def test_dsn_parameters_only_to_servers_offering_dsn():
    e = env(
        Recipient("b@x.test", ("SUCCESS", "DELAY"), "rfc822;B+1=2@x.test"),
        Recipient("c@x.test", ("NEVER",)),
        ret="HDRS",
        envid="id+1 =x",
    )
    c = _offer(b"250-DSN\r\n250 PIPELINING\r\n", e)
    assert c.data_to_send() == (
        b"MAIL FROM:<a@y.test> RET=HDRS ENVID=id+2B1+20+3Dx\r\n"
        b"RCPT TO:<b@x.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;B+2B1+3D2@x.test\r\n"
        b"RCPT TO:<c@x.test> NOTIFY=NEVER\r\nDATA\r\n"
    )
    c = _offer(b"250 PIPELINING\r\n", e)
    assert c.data_to_send() == b"MAIL FROM:<a@y.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n"


def test_non_ascii_orcpt_is_rfc6533_utf8():
    """actors/smtp/dsnparams.py writes it: utf-8-addr-xtext, or raw UTF-8
    (unitext) when the transaction is SMTPUTF8."""
    rcpt = Recipient("b@x.test", orcpt="rfc822;\u00e9+@x.test")
    ext = Extensions({"DSN": ""})
    assert rcpt_command(rcpt, ext) == "RCPT TO:<b@x.test> ORCPT=utf-8;\\x{E9}\\x{2B}@x.test"
    assert rcpt_command(rcpt, ext, smtputf8=True) == "RCPT TO:<b@x.test> ORCPT=utf-8;\u00e9\\x{2B}@x.test"
    intl = env(Recipient("b\u00fc@x.test", orcpt="utf-8;b\u00fc@x.test"), smtputf8=True)
    c = _offer(b"250-DSN\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n", intl)
    assert "ORCPT=utf-8;b\u00fc@x.test" in c.data_to_send().decode()


def test_envelope_refuses_what_cannot_go_on_the_wire():
    with pytest.raises(ValueError):
        Recipient("b@x.test\r\nRSET")
    with pytest.raises(ValueError):
        Recipient("b@x.test", ("NEVER", "SUCCESS"))
    with pytest.raises(ValueError):
        Envelope("a\n@b", (Recipient("b@x"),), 1)
    with pytest.raises(ValueError):
        Envelope("a@b", (), 1)
    with pytest.raises(ValueError):
        Envelope("a@b", (Recipient("b@x"),), 1, body="BINARYMIME")


# ------------------------------------------------------------------ dot-stuffing
@pytest.mark.parametrize(
    "message, wire",
    [
        (b"", b".\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n..b", b"a\r\n...b\r\n.\r\n"),  # no final CRLF: one is added
        (b"a\n.b\r\n", b"a\n.b\r\n.\r\n"),  # after a bare LF: not a line start to the server
    ],
)
def test_dot_stuffing(message, wire):
    s = DotStuffer()
    assert s.feed(message) + s.end() == wire


@given(st.lists(st.sampled_from([b".", b"\r\n", b"\r", b"\n", b"a", b".."]), max_size=30), st.data())
def test_dot_stuffing_any_chunking_roundtrips(parts, data):
    """Whatever the chunking, the server's unstuffing gives the message
    back (with a final CRLF), and the terminator appears only at the end."""
    message = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=5)))
    s = DotStuffer()
    wire, prev = b"", 0
    for cut in cuts + [len(message)]:
        wire += s.feed(message[prev:cut])
        prev = cut
    wire += s.end()
    body = b"\r\n" + wire
    assert body.find(b"\r\n.\r\n") == len(body) - 5
    expected = message if message.endswith(b"\r\n") or not message else message + b"\r\n"
    assert unstuff(wire[:-3]) == expected


_LINES = [
    b"220 mx\r\n", b"250 ok\r\n", b"250-mx\r\n", b"250 PIPELINING\r\n", b"250-STARTTLS\r\n", b"250 AUTH PLAIN\r\n",
    b"354 go\r\n", b"334 VXNlcm5hbWU6\r\n", b"235 2.7.0 ok\r\n", b"421 4.3.2 bye\r\n", b"450 4.2.1 later\r\n",
    b"550 5.1.1 no\r\n", b"500 what\r\n", b"garbage\r\n", b"221 bye\r\n",
]  # fmt: skip


@given(
    st.lists(st.sampled_from(_LINES), max_size=25),
    st.integers(1, 40),
    st.sampled_from(list(TlsPolicy)),
    st.booleans(),
    st.booleans(),
)
def test_any_server_ends_in_a_consistent_outcome(lines, cut, policy, lmtp, eof):
    """Whatever a server says, in any chunking, the client never raises,
    and once CLOSED every recipient has a verdict or the session error
    covers it."""
    c = SmtpClient(
        ClientParams("c.test", lmtp=lmtp, tls=policy, credentials=Credentials("u", "p")),
        env("b1@x.test", "b2@x.test"),
    )
    wire = b"".join(lines)
    chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
    state = None
    for chunk in [*chunks, None]:
        if chunk is None:
            if not eof:
                break
            c.receive_eof()
        else:
            c.receive_data(chunk)
        while True:
            state = c.next_event()
            if state is NEED_DATA or state is CLOSED:
                c.data_to_send()
                break
            if isinstance(state, StartTls):
                c.tls_started()
            elif isinstance(state, SendContent):
                c.send_content(MESSAGE)
                c.end_content()
        if state is CLOSED:
            break
    if state is CLOSED:
        assert c.session_error is not None or None not in c.verdicts
        assert not c.unknown_after_dot or c.dot_sent
    if eof:
        assert state is CLOSED
