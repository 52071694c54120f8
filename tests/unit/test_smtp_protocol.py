"""The sans-I/O SMTP server state machine (actors/smtp/protocol.py): every
command in every state, the limits, DATA in bulk (end of data across chunk
boundaries, dot-unstuffing, smuggling), pipelining, SMTPUTF8, and the
driver contract."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estafeta.actors import smtp
from estafeta.actors.smtp import (
    CLOSED,
    DECISIONS,
    NEED_DATA,
    ConnectionClosed,
    DataStart,
    Helo,
    MailFrom,
    MessageReceived,
    MessageRejected,
    ProtocolUsageError,
    Quit,
    RcptTo,
    Reply,
    Reset,
    ServerParams,
    SmtpServer,
    State,
)

PARAMS = ServerParams(hostname="mx.test", max_message_size=10_000, max_recipients=5, max_errors=10)
MESSAGE = b"From: a@client.test\r\nSubject: hi\r\n\r\nHello\r\n"


# ------------------------------------------------------------------ harness
def parse_replies(wire: bytes) -> list[tuple[int, str, str]]:
    """b"250-a\\r\\n250 b\\r\\n" -> [(250, enhanced of the last line, "a\\nb")]."""
    out, lines = [], []
    for line in wire.split(b"\r\n")[:-1]:
        assert len(line) + 2 <= 512, line[:40]
        text = line[4:].decode("utf-8")
        lines.append(text)
        if line[3:4] == b" ":
            code = int(line[:3])
            first, _, rest = text.partition(" ")
            enhanced = first if first[:1] == str(code)[0] and first.count(".") == 2 else ""
            out.append((code, enhanced, "\n".join(lines)))
            lines = []
        else:
            assert line[3:4] == b"-", line
    assert not lines, "unterminated multi-line reply"
    return out


class Driver:
    """Plays the session actor: feeds bytes, answers decisions by `policy`
    (event -> None to accept, or a Reply to reject), records everything."""

    def __init__(self, params: ServerParams = PARAMS, policy=None, greet=True):
        self.server = SmtpServer(params, "192.0.2.9")
        self.policy = policy or (lambda event: None)
        self.events: list = []
        self.flushes: list[bytes] = []
        if greet:
            self.server.greet()

    def feed(self, data: bytes = b"", eof: bool = False) -> list:
        """Feed, run to NEED_DATA/CLOSED; returns the events of this round."""
        s = self.server
        if data:
            s.receive_data(data)
        if eof:
            s.receive_eof()
        got = []
        while True:
            event = s.next_event()
            if event is NEED_DATA or event is CLOSED:
                self.flushes.append(s.data_to_send())
                got.append(event)
                break
            got.append(event)
            if isinstance(event, DECISIONS):
                verdict = self.policy(event)
                if verdict is None:
                    s.accept()
                else:
                    s.reject(verdict)
        self.events += got
        return got

    def replies(self) -> list[tuple[int, str, str]]:
        """Replies flushed since the last call."""
        wire = b"".join(self.flushes)
        self.flushes = []
        return parse_replies(wire)

    def codes(self) -> list[int]:
        return [r[0] for r in self.replies()]

    def cmd(self, line: bytes) -> list[int]:
        self.feed(line + b"\r\n")
        return self.codes()


def in_state(name: str, params: ServerParams = PARAMS, policy=None) -> Driver:
    d = Driver(params, policy)
    script = {
        "GREETED": [],
        "READY": [b"EHLO client.test"],
        "READY_HELO": [b"HELO client.test"],
        "MAIL": [b"EHLO client.test", b"MAIL FROM:<a@client.test>"],
        "RCPT": [b"EHLO client.test", b"MAIL FROM:<a@client.test>", b"RCPT TO:<b@mx.test>"],
        "DATA": [b"EHLO client.test", b"MAIL FROM:<a@client.test>", b"RCPT TO:<b@mx.test>", b"DATA"],
    }[name]
    for line in script:
        d.cmd(line)
    d.server.data_to_send()  # the greeting, when no command flushed it
    d.flushes.clear()
    d.events.clear()
    return d


def transaction(d: Driver, message: bytes = MESSAGE) -> list[int]:
    d.feed(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
    d.feed(message + b".\r\n")
    return d.codes()


# ------------------------------------------------------------------ every command in every state
COMMANDS = {
    "EHLO": b"EHLO client.test",
    "HELO": b"HELO client.test",
    "MAIL": b"MAIL FROM:<x@client.test>",
    "RCPT": b"RCPT TO:<y@mx.test>",
    "DATA": b"DATA",
    "RSET": b"RSET",
    "NOOP": b"NOOP",
    "QUIT": b"QUIT",
    "VRFY": b"VRFY someone",
    "HELP": b"HELP",
    "unknown": b"BOGUS command",
    "empty": b"",
}
# (reply code, state after) per state; RFC 5321 §4.1.4 and §4.3.2.
EXPECTED = {
    "GREETED": {
        "EHLO": (250, State.READY),
        "HELO": (250, State.READY),
        "MAIL": (503, State.GREETED),
        "RCPT": (503, State.GREETED),
        "DATA": (503, State.GREETED),
        "RSET": (250, State.GREETED),
        "NOOP": (250, State.GREETED),
        "QUIT": (221, State.CLOSED),
        "VRFY": (252, State.GREETED),
        "HELP": (214, State.GREETED),
        "unknown": (500, State.GREETED),
        "empty": (500, State.GREETED),
    },
    "READY": {
        "EHLO": (250, State.READY),
        "HELO": (250, State.READY),
        "MAIL": (250, State.MAIL),
        "RCPT": (503, State.READY),
        "DATA": (503, State.READY),
        "RSET": (250, State.READY),
        "NOOP": (250, State.READY),
        "QUIT": (221, State.CLOSED),
        "VRFY": (252, State.READY),
        "HELP": (214, State.READY),
        "unknown": (500, State.READY),
        "empty": (500, State.READY),
    },
    "MAIL": {
        "EHLO": (250, State.READY),
        "HELO": (250, State.READY),
        "MAIL": (503, State.MAIL),
        "RCPT": (250, State.RCPT),
        "DATA": (503, State.MAIL),
        "RSET": (250, State.READY),
        "NOOP": (250, State.MAIL),
        "QUIT": (221, State.CLOSED),
        "VRFY": (252, State.MAIL),
        "HELP": (214, State.MAIL),
        "unknown": (500, State.MAIL),
        "empty": (500, State.MAIL),
    },
    "RCPT": {
        "EHLO": (250, State.READY),
        "HELO": (250, State.READY),
        "MAIL": (503, State.RCPT),
        "RCPT": (250, State.RCPT),
        "DATA": (354, State.DATA),
        "RSET": (250, State.READY),
        "NOOP": (250, State.RCPT),
        "QUIT": (221, State.CLOSED),
        "VRFY": (252, State.RCPT),
        "HELP": (214, State.RCPT),
        "unknown": (500, State.RCPT),
        "empty": (500, State.RCPT),
    },
}
EXPECTED["READY_HELO"] = EXPECTED["READY"]


@pytest.mark.parametrize("state", list(EXPECTED))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_in_every_state(state, command):
    d = in_state(state)
    code, after = EXPECTED[state][command]
    replies = (d.feed(COMMANDS[command] + b"\r\n"), d.replies())[1]
    assert [r[0] for r in replies] == [code], replies
    assert d.server.state is after
    enhanced = replies[0][1]
    if command in ("EHLO", "HELO") or code == 354:
        assert enhanced == ""  # RFC 2034 §3: not on EHLO/HELO; no 3.x.x class
    else:
        assert enhanced and enhanced[0] == str(code)[0], replies  # RFC 2034 / RFC 3463
    if command == "DATA" and state == "MAIL":
        assert enhanced == "5.5.1"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_before_the_greeting_commands_wait_for_it(command):
    """Bytes that arrive before greet() are answered after the 220, like
    any command in GREETED."""
    d = Driver(greet=False)
    d.server.receive_data(COMMANDS[command] + b"\r\n")
    assert d.server.state is State.CONNECTED
    with pytest.raises(ProtocolUsageError):
        d.server.next_event()
    d.server.greet()
    d.feed()
    assert d.codes() == [220, EXPECTED["GREETED"][command][0]]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_in_data_commands_are_content(command):
    d = in_state("DATA")
    d.feed(COMMANDS[command] + b"\r\n")
    assert d.codes() == [] and d.events == [NEED_DATA]
    assert d.server.in_data and d.server.state is State.DATA
    d.feed(b".\r\n")
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == COMMANDS[command] + b"\r\n"
    assert d.codes() == [250] and d.server.state is State.READY


@pytest.mark.parametrize("command", list(COMMANDS))
def test_after_quit_nothing_is_read(command):
    d = in_state("READY")
    assert d.cmd(b"QUIT") == [221]
    assert d.events == [Quit(), CLOSED]
    d.feed(COMMANDS[command] + b"\r\n")
    assert d.codes() == [] and d.events[-1] is CLOSED


def test_other_commands():
    d = in_state("READY")
    assert d.cmd(b"EXPN list") == [502]  # RFC 5321 §3.5.2, optional
    assert d.cmd(b"BDAT 10 LAST") == [500]  # CHUNKING is not offered
    assert d.cmd(b"STARTTLS") == [502]  # not offered without a certificate
    assert d.cmd(b"AUTH PLAIN") == [503]  # not on an SMTP listener
    assert d.cmd(b"VRFY") == [501]
    assert d.cmd(b"RSET now") == [501]
    assert d.cmd(b"NOOP anything") == [250]  # RFC 5321 §4.1.1.9
    assert d.cmd(b"noop") == [250]  # case-insensitive verbs
    assert d.cmd(b"EHLO") == [501]
    assert d.cmd(b"MAIL FROM:<a@b.test>\x00") == [500]
    d.feed(b"MAIL FROM:<\xff@b.test>\r\n")
    assert d.replies() == [(500, "5.5.2", "5.5.2 Syntax error: control characters or invalid UTF-8 in command")]


def test_ehlo_reply_and_helo_reply():
    d = Driver()
    d.feed(b"EHLO client.test\r\n")
    (greeting, (code, enhanced, text)) = d.replies()
    assert greeting == (220, "", "mx.test ESMTP estafeta")
    assert code == 250
    assert text.split("\n") == [
        "mx.test",
        "PIPELINING",
        "SIZE 10000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "DSN",
        "HELP",
    ]
    assert d.events == [Helo("client.test", True), NEED_DATA]
    assert d.server.esmtp and d.server.helo_name == "client.test" and d.server.protocol_name == "ESMTP"
    d.feed(b"HELO other.test\r\n")
    assert d.replies() == [(250, "", "mx.test")]
    assert not d.server.esmtp and d.server.helo_name == "other.test" and d.server.protocol_name == "SMTP"


def test_ehlo_in_a_transaction_resets_it():
    d = in_state("RCPT")
    assert d.cmd(b"EHLO again.test") == [250]
    assert d.events == [Reset(), Helo("again.test", True), NEED_DATA]
    assert d.server.state is State.READY and d.server.recipient_count == 0
    assert d.cmd(b"RCPT TO:<b@mx.test>") == [503]


def test_rset_resets_and_reports():
    d = in_state("RCPT")
    assert d.cmd(b"RSET") == [250]
    assert d.events == [Reset(), NEED_DATA]
    assert d.cmd(b"DATA") == [503]
    assert d.cmd(b"MAIL FROM:<a@client.test>") == [250]


# ------------------------------------------------------------------ decisions
def test_decision_events_and_default_replies():
    d = in_state("READY")
    d.feed(b"MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME\r\n")
    assert d.events[0] == MailFrom("a@client.test", {"SIZE": "100", "BODY": "8BITMIME"}, 100, False, "8BITMIME")
    assert d.server.body_type == "8BITMIME"
    d.feed(b"RCPT TO:<b@mx.test>\r\n")
    d.feed(b"DATA\r\n")
    d.feed(MESSAGE + b".\r\n")
    assert d.replies() == [
        (250, "2.1.0", "2.1.0 Ok"),
        (250, "2.1.5", "2.1.5 Ok"),
        (354, "", "End data with <CR><LF>.<CR><LF>"),
        (250, "2.0.0", "2.0.0 Ok"),
    ]
    kinds = [type(e) for e in d.events if e is not NEED_DATA]
    assert kinds == [MailFrom, RcptTo, DataStart, MessageReceived]
    assert d.server.state is State.READY and d.server.body_type == ""


def test_driver_replies_and_rejections():
    rejected = Reply(550, "5.1.1", "No such user")

    def policy(event):
        if isinstance(event, RcptTo) and event.forward_path.startswith("nobody"):
            return rejected
        return None

    d = in_state("READY", policy=policy)
    d.feed(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<nobody@mx.test>\r\nRCPT TO:<nobody2@mx.test>\r\nDATA\r\n")
    # RFC 5321 §3.3: every RCPT refused, then DATA: 554 no valid recipients.
    assert d.replies() == [
        (250, "2.1.0", "2.1.0 Ok"),
        (550, "5.1.1", "5.1.1 No such user"),
        (550, "5.1.1", "5.1.1 No such user"),
        (554, "5.5.1", "5.5.1 No valid recipients"),
    ]
    assert d.server.state is State.MAIL and d.server.error_count == 3
    d.feed(b"RCPT TO:<b@mx.test>\r\nDATA\r\n")
    assert d.codes() == [250, 354]
    d.server.receive_data(MESSAGE + b".\r\n")
    event = d.server.next_event()
    assert isinstance(event, MessageReceived) and not d.server.in_data
    d.server.accept(Reply(250, "2.0.0", "Ok: queued as Q123"))
    assert d.server.next_event() is NEED_DATA
    assert d.server.data_to_send() == b"250 2.0.0 Ok: queued as Q123\r\n"


def test_rejected_mail_leaves_no_transaction():
    d = in_state("READY", policy=lambda e: Reply(451, "4.3.1", "Try later") if isinstance(e, MailFrom) else None)
    assert d.cmd(b"MAIL FROM:<a@client.test>") == [451]
    assert d.server.state is State.READY
    assert d.cmd(b"RCPT TO:<b@mx.test>") == [503]


def test_rejected_message_ends_the_transaction():
    d = in_state("READY", policy=lambda e: Reply(554, "5.7.1", "Spam") if isinstance(e, MessageReceived) else None)
    assert transaction(d) == [250, 250, 354, 554]
    assert d.server.state is State.READY
    assert d.cmd(b"DATA") == [503]


def test_reject_with_421_closes():
    d = in_state("READY", policy=lambda e: smtp.shutting_down("mx.test"))
    assert d.cmd(b"MAIL FROM:<a@client.test>") == [421]
    assert d.events[-1] is CLOSED and d.server.state is State.CLOSED


def test_usage_errors():
    s = SmtpServer(PARAMS)
    with pytest.raises(ProtocolUsageError):
        s.next_event()  # greet() first
    s.greet()
    with pytest.raises(ProtocolUsageError):
        s.greet()
    with pytest.raises(ProtocolUsageError):
        s.accept()  # nothing pending
    s.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n")
    assert isinstance(s.next_event(), Helo)
    assert isinstance(s.next_event(), MailFrom)
    with pytest.raises(ProtocolUsageError):
        s.next_event()  # the MailFrom decision is pending
    with pytest.raises(ProtocolUsageError):
        s.reject(Reply(250, "2.0.0", "not a rejection"))
    with pytest.raises(ProtocolUsageError):
        s.accept(Reply(550, "5.0.0", "not an acceptance"))
    s.accept()
    s.receive_data(b"RCPT TO:<b@c.test>\r\nDATA\r\n")
    assert isinstance(s.next_event(), RcptTo)
    s.accept()
    assert isinstance(s.next_event(), DataStart)
    with pytest.raises(ProtocolUsageError):
        s.accept(Reply(250, "2.0.0", "DATA needs 354"))
    s.accept()
    s.receive_eof()
    with pytest.raises(ProtocolUsageError):
        s.receive_data(b"more")


def test_greeting_554_refuses_service():
    d = Driver(greet=False)
    d.server.greet(Reply(554, "5.7.1", "mx.test No SMTP service here"))
    d.feed(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n")
    assert d.codes() == [554, 503, 503, 221]  # RFC 5321 §3.1


def test_greeting_421_and_close():
    d = Driver(greet=False)
    d.server.greet(smtp.shutting_down("mx.test"))
    assert d.server.state is State.CLOSED and d.server.next_event() is CLOSED
    d = in_state("DATA")
    d.server.receive_data(b"partial message")
    d.server.close(smtp.timed_out("mx.test"))
    assert d.server.next_event() is CLOSED and not d.server.in_data
    assert d.server.data_to_send() == b"421 4.4.2 mx.test Timeout, closing connection\r\n"


@pytest.mark.parametrize("state", ["GREETED", "READY", "RCPT", "DATA"])
def test_eof_ends_the_conversation(state):
    d = in_state(state)
    d.feed(b"NOOP partial command without its CRLF", eof=True)
    assert d.events == [ConnectionClosed(), CLOSED]
    assert d.server.state is State.CLOSED and d.codes() == []


# ------------------------------------------------------------------ limits
def test_command_line_limit_is_2048_octets_with_crlf():
    """512 (RFC 5321 §4.5.3.1.4) plus what DSN and AUTH= may add (RFC 3461,
    RFC 4954 §5): a RCPT with a long ORCPT is taken."""
    d = in_state("READY")
    line = b"NOOP " + b"x" * (2046 - 5)
    assert len(line) + 2 == 2048
    assert d.cmd(line) == [250]
    assert d.cmd(line + b"x") == [500]
    d.feed(line + b"x\r\n")
    assert d.replies() == [(500, "5.5.6", "5.5.6 Line too long (command lines are limited to 2048 octets)")]
    d = in_state("MAIL")
    orcpt = b"ORCPT=rfc822;" + b"a" * 60 + b"@" + b"b" * 400 + b".test"
    rcpt = b"RCPT TO:<" + b"a" * 60 + b"@mx.test> NOTIFY=SUCCESS,FAILURE,DELAY " + orcpt
    assert 512 < len(rcpt) + 2 < 1012
    assert d.cmd(rcpt) == [250]


def test_endless_command_line_is_discarded_without_buffering():
    d = in_state("READY")
    chunk = b"y" * 4096
    for _ in range(256):  # 1 MiB without a line end
        d.feed(chunk)
        assert len(d.server._buf) <= 4096 + smtp.MAX_COMMAND_LINE  # white box: the input buffer stays bounded
    assert d.codes() == []
    d.feed(b"tail\r\nNOOP\r\n")
    assert d.codes() == [500, 250]
    assert d.server.error_count == 1


def test_max_recipients():
    d = in_state(
        "MAIL",
        policy=lambda e: Reply(550, "5.1.1", "no") if isinstance(e, RcptTo) and "bad" in e.forward_path else None,
    )
    d.feed(b"RCPT TO:<bad@mx.test>\r\n" + b"".join(b"RCPT TO:<r%d@mx.test>\r\n" % i for i in range(7)))
    replies = d.replies()
    assert [r[0] for r in replies] == [550, 250, 250, 250, 250, 250, 452, 452]
    assert replies[-1][1] == "4.5.3"  # RFC 5321 §4.5.3.1.10
    assert sum(isinstance(e, RcptTo) for e in d.events) == 6  # the 452s never reach the driver
    assert d.server.recipient_count == 5


def test_max_errors_closes_with_421():
    params = ServerParams("mx.test", 10_000, max_errors=3)
    d = Driver(params)
    d.feed(b"BOGUS\r\nEHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody>\r\nDATA\r\nNOOP\r\n")
    replies = d.replies()
    assert [r[0] for r in replies] == [220, 500, 250, 250, 501, 503, 421]
    assert replies[-1][1] == "4.7.0"
    assert d.server.state is State.CLOSED and d.events[-1] is CLOSED


def test_driver_rejections_count_as_errors():
    params = ServerParams("mx.test", 10_000, max_errors=2)
    d = in_state("MAIL", params, policy=lambda e: Reply(550, "5.1.1", "no") if isinstance(e, RcptTo) else None)
    d.feed(b"RCPT TO:<a@mx.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n")
    assert d.codes() == [550, 550, 421]
    assert d.server.state is State.CLOSED


def test_size_at_mail():
    d = in_state("READY")
    assert d.cmd(b"MAIL FROM:<a@b.test> SIZE=10001") == [552]  # RFC 1870 §6.1
    d.events.clear()
    d.feed(b"MAIL FROM:<a@b.test> SIZE=10000\r\n")
    assert d.codes() == [250] and d.events[0].size == 10000
    assert d.cmd(b"RSET") == [250]
    for bad in (b"SIZE=", b"SIZE", b"SIZE=1x", b"SIZE=-1", b"BODY=BINARYMIME", b"SMTPUTF8=yes"):
        assert d.cmd(b"MAIL FROM:<a@b.test> " + bad) == [501], bad
    assert d.cmd(b"MAIL FROM:<a@b.test> XYZZY=x") == [555]  # unknown parameter
    assert d.cmd(b"MAIL FROM:<a@b.test> SIZE=99999999999999999999999") == [501]


def test_parameters_need_ehlo():
    d = in_state("READY_HELO")
    assert d.cmd(b"MAIL FROM:<a@b.test> SIZE=10") == [555]
    assert d.cmd(b"MAIL FROM:<a@b.test>") == [250]
    assert d.cmd(b"RCPT TO:<b@mx.test> NOTIFY=NEVER") == [555]
    d = in_state("MAIL")
    assert d.cmd(b"RCPT TO:<b@mx.test> XYZZY=1") == [555]  # not a parameter RCPT takes


def test_dsn_parameters_rfc_3461():
    """MAIL RET/ENVID and RCPT NOTIFY/ORCPT are taken (DSN is offered)
    and decoded into the events; bad values get 501 5.5.4."""
    s = smtp.SmtpServer(smtp.ServerParams("mx.test", 10_000))
    s.greet()
    s.receive_data(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test> RET=hdrs ENVID=QQ+2B1\r\n"
        b"RCPT TO:<b@mx.test> NOTIFY=success,FAILURE ORCPT=rfc822;B+40x@mx.test\r\n"
        b"RCPT TO:<c@mx.test> NOTIFY=NEVER,DELAY\r\nRCPT TO:<d@mx.test> ORCPT=nonsense\r\n"
        b"MAIL FROM:<x@b.test> RET=ALL\r\n"
    )
    events = []
    while (e := s.next_event()) is not smtp.NEED_DATA:
        events.append(e)
        if isinstance(e, smtp.DECISIONS):
            s.accept()
    mail, rcpt = events[1], events[2]
    assert (mail.dsn.ret, mail.dsn.envid) == ("HDRS", "QQ+1")
    assert rcpt.dsn.notify == {"SUCCESS", "FAILURE"} and str(rcpt.dsn.orcpt) == "rfc822;B@x@mx.test"
    assert [e for e in events if isinstance(e, smtp.RcptTo)] == [rcpt]  # the others were refused
    codes = [line[:9] for line in s.data_to_send().split(b"\r\n") if line[:1] in (b"4", b"5")]
    assert codes == [b"501 5.5.4", b"501 5.5.4", b"503 5.5.1"], codes


@pytest.mark.parametrize("size, code", [(10_000, 250), (10_001, 552), (50_000, 552)])
def test_size_on_data(size, code):
    d = in_state("RCPT")
    body = b"Subject: x\r\n\r\n"
    while len(body) < size:
        n = min(78, size - len(body))
        body += b"x" * (n - 2) + b"\r\n" if n >= 3 else b"\r\n"
    assert len(body) == size
    d.feed(b"DATA\r\n")
    for i in range(0, len(body), 1000):
        d.feed(body[i : i + 1000])
        assert len(d.server._buf) <= 12_000  # white box: not kept beyond the limit
    d.feed(b".\r\nNOOP\r\n")
    replies = d.replies()
    assert [r[0] for r in replies] == [354, code, 250]
    if code == 552:
        assert replies[1][1] == "5.3.4"
        assert MessageRejected(smtp.replies.MESSAGE_TOO_BIG, "size") in d.events
        assert not any(isinstance(e, MessageReceived) for e in d.events)
    else:
        (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
        assert event.body == body


@pytest.mark.parametrize("length", [998, 999, 5000, 200_000])
def test_long_text_lines_are_accepted_whole(length):
    """RFC 5321 §4.5.3.1.6 allows refusing lines over 1000 octets; like
    Postfix and Exim we accept them, and keep them unsplit."""
    d = in_state("DATA", ServerParams(hostname="mx.test", max_message_size=1_000_000))
    line = b"z" * length
    data = b"Subject: x\r\n\r\n" + line + b"\r\n." + line + b"\r\nend\r\n.\r\n"
    for i in range(0, len(data), 4096):
        d.feed(data[i : i + 4096])
    assert d.codes()[-1] == 250
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == b"Subject: x\r\n\r\n" + line + b"\r\n" + line + b"\r\nend\r\n"


# ------------------------------------------------------------------ DATA reading
def test_empty_message_and_stuffing():
    d = in_state("DATA")
    d.feed(b".\r\n")  # the first line may be the end: an empty message
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == b"" and event.received_header_count == 0
    d = in_state("DATA")
    d.feed(b"..first\r\nmiddle\r\n..\r\n...\r\n.x\r\nlast\r\n.\r\n")
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == b".first\r\nmiddle\r\n.\r\n..\r\nx\r\nlast\r\n"  # RFC 5321 §4.5.2


def test_body_is_kept_byte_for_byte():
    content = b"Subject: t\r\n\r\n  indented \t\r\n8bit: \xc3\xbc\xff\r\nbare\nLF and bare\rCR mid-line\r\n\r\n"
    d = in_state("DATA")
    d.feed(content + b".\r\n")
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == content


def test_data_after_a_bare_lf_data_command():
    d = in_state("RCPT")
    d.feed(b"DATA\n.\r\n")
    assert d.codes() == [354, 250]
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.body == b""


SMALL = b"A: b\r\n\r\n..x\r\ny\r\n.\r\n"


def test_end_of_data_at_every_split_point():
    expected = b"A: b\r\n\r\n.x\r\ny\r\n"
    stream = SMALL + b"NOOP\r\n"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            d = in_state("DATA")
            for part in (stream[:i], stream[i:j], stream[j:]):
                d.feed(part)
            bodies = [e.body for e in d.events if isinstance(e, MessageReceived)]
            assert bodies == [expected], (i, j)
            assert d.codes() == [250, 250], (i, j)


def test_byte_at_a_time():
    d = in_state("READY")
    for b in b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n" + SMALL + b"QUIT\r\n":
        d.feed(bytes([b]))
    assert d.codes() == [250, 250, 354, 250, 221]
    assert [type(e) for e in d.events if e is not NEED_DATA and e is not CLOSED] == [
        MailFrom,
        RcptTo,
        DataStart,
        MessageReceived,
        Quit,
    ]
    assert d.events[-1] is CLOSED


SMUGGLED = b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<smuggled@mx.test>\r\nDATA\r\nSubject: inner\r\n\r\ninner\r\n"


@pytest.mark.parametrize(
    "seq",
    [
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r\n",
        b"\n.\r",
        b"\r\n.\r",
    ],
)
def test_smuggling_is_refused_and_never_splits_the_message(seq):
    stream = b"Subject: outer\r\n\r\nouter" + seq + SMUGGLED + b".\r\nNOOP\r\n"
    for chunking in (None, 1, 3):  # whole, byte by byte, odd chunks
        d = in_state("DATA")
        if chunking is None:
            d.feed(stream)
        else:
            for i in range(0, len(stream), chunking):
                d.feed(stream[i : i + chunking])
        replies = d.replies()
        assert [r[:2] for r in replies] == [(554, "5.5.2"), (250, "2.0.0")], (seq, chunking)
        events = [e for e in d.events if e is not NEED_DATA]
        # Nothing after the bare sequence was taken as a command.
        assert events == [MessageRejected(smtp.replies.SMUGGLING, "smuggling")], (seq, events)
        assert d.server.state is State.READY


@pytest.mark.parametrize("first", [b".\n", b".\r", b".\r\r\n"])
def test_smuggling_on_the_first_line(first):
    d = in_state("DATA")
    d.feed(first + SMUGGLED + b".\r\n")
    assert d.codes() == [554]
    assert [e for e in d.events if e is not NEED_DATA] == [MessageRejected(smtp.replies.SMUGGLING, "smuggling")]


def test_received_header_count_and_loop():
    d = in_state("READY")
    fifty = b"Received: from x by y; now\r\n" * 25 + b"received: from x by y; now\r\n" * 25
    assert transaction(d, fifty + b"Subject: s\r\n\r\nReceived: in the body\r\n") == [250, 250, 354, 250]
    (event,) = [e for e in d.events if isinstance(e, MessageReceived)]
    assert event.received_header_count == 50
    d.events.clear()
    codes = transaction(d, b"RECEIVED: one more\r\n" + fifty + b"\r\nbody\r\n")
    assert codes == [250, 250, 354, 554]
    assert MessageRejected(smtp.replies.MAIL_LOOP, "loop") in d.events  # RFC 5321 §6.3
    assert not any(isinstance(e, MessageReceived) for e in d.events)


# ------------------------------------------------------------------ pipelining
def test_pipelined_group_is_answered_in_one_write():
    """RFC 2920: MAIL, RCPT, RCPT, DATA in one packet -> one batch of four
    replies, flushed once (one NEED_DATA)."""
    d = in_state("READY")
    d.flushes.clear()
    got = d.feed(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n")
    assert got.count(NEED_DATA) == 1 and got[-1] is NEED_DATA
    assert len(d.flushes) == 1
    assert d.flushes[0] == b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    # The end of the message pipelined with the next transaction and QUIT.
    got = d.feed(MESSAGE + b".\r\nMAIL FROM:<>\r\nRCPT TO:<d@mx.test>\r\nQUIT\r\n")
    assert got[-1] is CLOSED and NEED_DATA not in got
    assert parse_replies(d.flushes[-1]) == [
        (250, "2.0.0", "2.0.0 Ok"),
        (250, "2.1.0", "2.1.0 Ok"),
        (250, "2.1.5", "2.1.5 Ok"),
        (221, "2.0.0", "2.0.0 Bye"),
    ]
    (mail,) = [e for e in got if isinstance(e, MailFrom)]
    assert mail.reverse_path == ""  # RFC 5321 §4.5.5 null reverse-path


# ------------------------------------------------------------------ addresses
def test_smtputf8():
    d = in_state("READY")
    d.feed("MAIL FROM:<jürgen@köln.test> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<josé@mx.test>\r\n".encode())
    assert d.codes() == [250, 250]
    mail, rcpt = [e for e in d.events if isinstance(e, (MailFrom, RcptTo))]
    assert mail.reverse_path == "jürgen@köln.test" and mail.smtputf8 and mail.body == "8BITMIME"
    assert rcpt.forward_path == "josé@mx.test"
    assert d.server.smtputf8 and d.server.protocol_name == "UTF8SMTP"  # RFC 6531 §4.3
    d.feed(b"DATA\r\n" + MESSAGE + b".\r\n")
    assert d.codes() == [354, 250]
    assert not d.server.smtputf8 and d.server.protocol_name == "ESMTP"


def test_non_ascii_without_smtputf8():
    d = in_state("READY")
    d.feed("MAIL FROM:<jürgen@köln.test>\r\n".encode())
    assert d.replies() == [(553, "5.6.7", "5.6.7 Non-ASCII address needs the SMTPUTF8 parameter on MAIL")]
    assert d.cmd(b"MAIL FROM:<a@b.test>") == [250]
    d.feed("RCPT TO:<josé@mx.test>\r\n".encode())
    assert d.replies()[0][:2] == (553, "5.6.7")  # RFC 6531 §3.7.4.1
    assert not any(isinstance(e, RcptTo) for e in d.events)


def test_quoted_local_parts_literals_and_postmaster():
    d = in_state("READY")
    d.feed(
        b'MAIL FROM:<"john doe"@client.test>\r\nRCPT TO:<"a\\"b"@mx.test>\r\n'
        b"RCPT TO:<user@[192.0.2.1]>\r\nRCPT TO:<PostMaster>\r\nRCPT TO:<postmaster@MX.test>\r\n"
    )
    assert d.codes() == [250, 250, 250, 250, 250]
    paths = [e.forward_path for e in d.events if isinstance(e, RcptTo)]
    assert paths == ['"a\\"b"@mx.test', "user@[192.0.2.1]", "PostMaster", "postmaster@MX.test"]
    assert [e.is_postmaster for e in d.events if isinstance(e, RcptTo)] == [False, False, True, True]
    (mail,) = [e for e in d.events if isinstance(e, MailFrom)]
    assert mail.reverse_path == '"john doe"@client.test'


def test_long_driver_reply_is_wrapped():
    d = in_state("READY", policy=lambda e: Reply(550, "5.7.1", "policy " * 200))
    d.feed(b"MAIL FROM:<a@b.test>\r\n")
    wire = d.flushes[-1]
    assert wire.count(b"\r\n") > 1 and all(len(line) <= 510 for line in wire.split(b"\r\n"))
    assert [r[0] for r in parse_replies(wire)] == [550]


def test_protocol_name_variants():
    s = SmtpServer(PARAMS, tls=True)
    assert s.protocol_name == "SMTP"
    s.greet()
    s.receive_data(b"EHLO c.test\r\n")
    s.next_event()
    assert s.protocol_name == "ESMTPS"
    s.authenticated = True
    assert s.protocol_name == "ESMTPSA"  # RFC 3848


# ------------------------------------------------------------------ any chunking
CONVERSATION = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<a@client.test> SIZE=200\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<bad@mx.test>\r\nDATA\r\n"
    b"Received: x\r\nSubject: s\r\n\r\n..stuffed\r\n\r\n.\r\n"
    b"MAIL FROM:<>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n"
    b"evil\n.\r\nMAIL FROM:<x@y.test>\r\n.\r\n"
    b"NOOP " + b"z" * 2100 + b"\r\n"
    b"VRFY x\r\nBOGUS\r\n\r\nRSET\r\nQUIT\r\n"
)


def run_chunked(chunks: list[bytes]) -> tuple[list, list]:
    d = Driver(
        policy=lambda e: Reply(550, "5.1.1", "no") if isinstance(e, RcptTo) and "bad" in e.forward_path else None
    )
    for chunk in chunks:
        d.feed(chunk)
        if d.server.state is State.CLOSED:
            break
    events = [e for e in d.events if e is not NEED_DATA]
    return events, d.replies()


REFERENCE = run_chunked([CONVERSATION])


def test_reference_conversation():
    events, replies = REFERENCE
    assert [r[0] for r in replies] == [
        220,
        250,
        250,
        250,
        550,
        354,
        250,
        250,
        250,
        354,
        554,
        500,
        252,
        500,
        500,
        250,
        221,
    ]
    assert [getattr(e, "__name__", type(e).__name__) for e in events] == [
        "Helo",
        "MailFrom",
        "RcptTo",
        "RcptTo",
        "DataStart",
        "MessageReceived",
        "MailFrom",
        "RcptTo",
        "DataStart",
        "MessageRejected",
        "Reset",
        "Quit",
        "CLOSED",
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(CONVERSATION)), max_size=12))
def test_any_chunking_gives_the_same_events_and_replies(cuts):
    cuts = sorted(set(cuts))
    bounds = [0, *cuts, len(CONVERSATION)]
    chunks = [CONVERSATION[a:b] for a, b in zip(bounds, bounds[1:])]
    assert run_chunked(chunks) == REFERENCE


# ------------------------------------------------------------------ odds and ends
def test_custom_354_and_close_while_a_decision_is_pending():
    s = SmtpServer(PARAMS)
    s.greet()
    s.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n")
    for _ in range(3):
        event = s.next_event()
        if isinstance(event, DECISIONS):
            s.accept()
    assert isinstance(s.next_event(), DataStart)
    s.accept(Reply(354, "", "Go ahead, end with <CRLF>.<CRLF>"))
    assert s.in_data and s.next_event() is NEED_DATA
    assert s.data_to_send().endswith(b"\r\n354 Go ahead, end with <CRLF>.<CRLF>\r\n")
    s.receive_data(b"body\r\n.\r\nMAIL FROM:<x@b.test>\r\n")
    assert isinstance(s.next_event(), MessageReceived)
    s.close(smtp.shutting_down("mx.test"))  # the driver may close with a decision pending
    assert s.next_event() is CLOSED
    assert s.data_to_send() == b"421 4.3.2 mx.test Service shutting down\r\n"


def test_message_rejected_is_a_reset_for_drivers():
    assert isinstance(MessageRejected(smtp.replies.SMUGGLING, "smuggling"), Reset)
    assert not isinstance(MessageRejected(smtp.replies.SMUGGLING, "smuggling"), DECISIONS)


def test_params_validation_and_greeting_codes():
    for bad in ({"max_message_size": 0}, {"max_message_size": 10, "max_recipients": 0}):
        with pytest.raises(ValueError):
            ServerParams("mx.test", **{"max_message_size": 10, **bad})
    s = SmtpServer(ServerParams("mx.test", 10, greeting_text="ESMTP hi"))
    with pytest.raises(ProtocolUsageError):
        s.greet(Reply(250, "", "not a greeting"))
    s.greet()
    assert s.data_to_send() == b"220 mx.test ESMTP hi\r\n"
