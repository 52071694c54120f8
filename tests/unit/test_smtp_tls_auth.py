"""The SMTP protocol's listener modes, STARTTLS (RFC 3207) and AUTH
(RFC 4954) steps, the AUTH= MAIL parameter, and repeated recipients
(actors/smtp), driven without I/O."""

from __future__ import annotations

import base64

import pytest

from estafeta.actors import smtp
from estafeta.actors.smtp import (
    AuthAborted,
    Authenticated,
    AuthResponse,
    AuthStart,
    MailFrom,
    Mode,
    ProtocolUsageError,
    RcptTo,
    Reply,
    ServerParams,
    SmtpServer,
    StartTls,
    State,
)

MECHS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN")


def params(mode=Mode.SUBMISSION, starttls=True, mechs=MECHS):
    return ServerParams("mx.test", 10_000, mode=mode, starttls=starttls, auth_mechanisms=mechs)


class Run:
    """Feeds lines, collects events and replies; decisions by `decide`."""

    def __init__(self, p: ServerParams, peer="192.0.2.7", tls=False, cb=False, decide=None):
        self.s = SmtpServer(p, peer, tls=tls, channel_binding=cb)
        self.s.greet()
        self.s.data_to_send()
        self.events: list = []
        self.decide = decide or (lambda s, e: s.accept())

    def feed(self, data: bytes) -> bytes:
        s = self.s
        s.receive_data(data)
        while True:
            e = s.next_event()
            if e is smtp.NEED_DATA or e is smtp.CLOSED:
                break
            self.events.append(e)
            if isinstance(e, smtp.DECISIONS):
                self.decide(s, e)
                if s.state is State.TLS or s._pending is not None:  # handshake next, or left undecided
                    break
        return s.data_to_send()

    def codes(self, data: bytes) -> list[str]:
        """Each reply's last line, e.g. ["250 2.1.0 Ok"]."""
        out = self.feed(data).decode()
        return [line for line in out.split("\r\n") if line and line[3] == " "]

    def ehlo(self) -> list[str]:
        out = self.feed(b"EHLO c.test\r\n").decode()
        return [line[4:] for line in out.split("\r\n") if line][1:]


# ------------------------------------------------------------------ EHLO keywords
@pytest.mark.parametrize(
    "mode, starttls, peer, tls, cb, expected",
    [
        (Mode.SMTP, False, "192.0.2.7", False, False, []),
        (Mode.SMTP, True, "192.0.2.7", False, False, ["STARTTLS"]),
        (Mode.SMTP, True, "192.0.2.7", True, True, []),  # no AUTH on the MX, even over TLS
        (Mode.SUBMISSION, True, "192.0.2.7", False, False, ["STARTTLS"]),  # AUTH only after TLS
        (Mode.SUBMISSION, True, "192.0.2.7", True, False, ["AUTH SCRAM-SHA-256 PLAIN LOGIN"]),
        (Mode.SUBMISSION, True, "192.0.2.7", True, True, ["AUTH " + " ".join(MECHS)]),
        (Mode.SUBMISSION, True, "127.0.0.1", False, False, ["STARTTLS", "AUTH SCRAM-SHA-256 PLAIN LOGIN"]),
        (Mode.SUBMISSION, False, "::1", False, False, ["AUTH SCRAM-SHA-256 PLAIN LOGIN"]),
        (Mode.SUBMISSION, False, "::ffff:127.0.0.9", False, False, ["AUTH SCRAM-SHA-256 PLAIN LOGIN"]),
        (Mode.SUBMISSIONS, True, "192.0.2.7", True, True, ["AUTH " + " ".join(MECHS)]),
    ],
)
def test_ehlo_keywords_follow_mode_and_state(mode, starttls, peer, tls, cb, expected):
    r = Run(params(mode, starttls), peer, tls=tls, cb=cb)
    words = r.ehlo()
    extra = [w for w in words if w.startswith(("STARTTLS", "AUTH"))]
    assert extra == expected
    assert words[0] == "PIPELINING" and words[-1] == "HELP"


def test_no_auth_keyword_without_mechanisms():
    r = Run(params(mechs=()), tls=True)
    assert not [w for w in r.ehlo() if w.startswith("AUTH")]
    assert r.codes(b"AUTH PLAIN\r\n") == ["503 5.5.1 Authentication not enabled"]


# ------------------------------------------------------------------ STARTTLS
def test_starttls_discards_pipelined_plaintext_and_starts_over():
    """RFC 3207 §4.2 / CVE-2011-0411: a command sent in the same packet
    after STARTTLS must not be executed inside the TLS session."""
    r = Run(params(Mode.SMTP))
    r.ehlo()
    injected = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@mx.test>\r\n"
    out = r.feed(b"STARTTLS\r\n" + injected)
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    assert r.s.state is State.TLS and r.s.starttls_discarded == len(injected)
    assert isinstance(r.events[-1], StartTls)
    with pytest.raises(ProtocolUsageError):
        r.s.receive_data(b"NOOP\r\n")  # plaintext may not be fed before the handshake is done
    with pytest.raises(ProtocolUsageError):
        r.s.next_event()
    r.s.tls_started(channel_binding=False)
    assert r.s.tls and r.s.state is State.GREETED and not r.s.helo_name
    # The injected MAIL is gone; the client must say EHLO again (RFC 3207 §4.2).
    assert r.codes(b"MAIL FROM:<a@c.test>\r\n") == ["503 5.5.1 Bad sequence of commands: send EHLO or HELO first"]
    assert not [e for e in r.events if isinstance(e, MailFrom)]
    assert "STARTTLS" not in r.ehlo()
    assert r.s.protocol_name == "ESMTPS"


def test_starttls_refusals():
    r = Run(params(Mode.SMTP))
    assert r.codes(b"STARTTLS\r\n")[0].startswith("503 5.5.1")  # before EHLO
    r.ehlo()
    assert r.codes(b"STARTTLS now\r\n")[0].startswith("501 5.5.4")
    r.codes(b"MAIL FROM:<a@c.test>\r\n")
    assert r.codes(b"STARTTLS\r\n") == ["503 5.5.1 Bad sequence of commands: mail transaction in progress"]
    r.codes(b"RSET\r\n")
    r.decide = lambda s, e: s.reject(smtp.replies.TLS_NOT_AVAILABLE)
    assert r.codes(b"STARTTLS\r\n") == ["454 4.7.0 TLS not available due to temporary reason"]
    assert r.s.state is State.READY and not r.s.tls
    r.decide = lambda s, e: s.accept()
    r.feed(b"STARTTLS\r\n")
    r.s.tls_started()
    r.ehlo()
    assert r.codes(b"STARTTLS\r\n") == ["503 5.5.1 Bad sequence of commands: TLS already active"]
    no_cert = Run(params(Mode.SMTP, starttls=False))
    no_cert.ehlo()
    assert no_cert.codes(b"STARTTLS\r\n") == ["502 5.5.1 Command not implemented"]
    implicit = Run(params(Mode.SUBMISSIONS), tls=True)
    implicit.ehlo()
    assert implicit.codes(b"STARTTLS\r\n")[0].startswith("503 5.5.1")


def test_starttls_accept_needs_220_and_tls_started_needs_starttls():
    r = Run(params(Mode.SMTP), decide=lambda s, e: None)
    r.ehlo()
    r.feed(b"STARTTLS\r\n")
    with pytest.raises(ProtocolUsageError):
        r.s.accept(Reply(250, "2.0.0", "no"))
    with pytest.raises(ProtocolUsageError):
        Run(params(Mode.SMTP)).s.tls_started()


def test_starttls_forgets_authentication():
    r = Run(params(), peer="127.0.0.1", decide=plain_ok)
    r.ehlo()
    r.codes(b"AUTH PLAIN " + b64(b"\0alice@mx.test\0pw") + b"\r\n")
    assert r.s.authenticated
    r.decide = lambda s, e: s.accept()
    r.feed(b"STARTTLS\r\n")
    r.s.tls_started()
    assert not r.s.authenticated and r.s.auth_identity == ""


# ------------------------------------------------------------------ AUTH
def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def plain_ok(s: SmtpServer, e) -> None:
    if isinstance(e, AuthStart | AuthResponse):
        s.auth_succeeded("alice@mx.test")
    else:
        s.accept()


def test_auth_plain_with_initial_response_then_mail():
    seen = []

    def decide(s, e):
        seen.append(e)
        plain_ok(s, e)

    r = Run(params(), tls=True, decide=decide)
    r.ehlo()
    assert r.codes(b"MAIL FROM:<alice@mx.test>\r\n") == ["530 5.7.0 Authentication required"]
    replies = r.codes(b"AUTH plain " + b64(b"\0alice@mx.test\0secret") + b"\r\nMAIL FROM:<alice@mx.test>\r\n")
    assert replies == ["235 2.7.0 Authentication successful", "250 2.1.0 Ok"]
    assert seen[0] == AuthStart("PLAIN", b"\0alice@mx.test\0secret")
    assert Authenticated("alice@mx.test", "PLAIN") in r.events
    assert r.s.authenticated and r.s.auth_identity == "alice@mx.test" and r.s.auth_mechanism == "PLAIN"
    assert r.s.protocol_name == "ESMTPSA"  # RFC 3848
    assert r.codes(b"RSET\r\nAUTH PLAIN\r\n")[-1] == "503 5.5.1 Bad sequence of commands: already authenticated"


def test_auth_challenge_exchange_and_empty_initial_response():
    def decide(s, e):
        if isinstance(e, AuthStart):
            s.auth_challenge(b"Username:")
        elif isinstance(e, AuthResponse) and e.response == b"alice":
            s.auth_challenge(b"")
        elif isinstance(e, AuthResponse):
            s.auth_succeeded("alice@mx.test")

    r = Run(params(), tls=True, decide=decide)
    r.ehlo()
    assert r.feed(b"AUTH LOGIN =\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert r.events[-1] == AuthStart("LOGIN", b"")
    assert r.feed(b64(b"alice") + b"\r\n") == b"334 \r\n"
    assert r.feed(b"\r\n") == b"235 2.7.0 Authentication successful\r\n"  # an empty line is an empty response
    assert [e.response for e in r.events if isinstance(e, AuthResponse)] == [b"alice", b""]


def test_auth_success_data_goes_in_a_last_334():
    """RFC 4954 §4: additional data with success (SCRAM's server-final)."""
    r = Run(params(), tls=True, decide=lambda s, e: s.auth_succeeded("a@mx.test", b"v=sig"))
    r.ehlo()
    assert r.feed(b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=a,r=x") + b"\r\n") == b"334 " + b64(b"v=sig") + b"\r\n"
    assert not r.s.authenticated
    assert r.feed(b"\r\n") == b"235 2.7.0 Authentication successful\r\n"
    assert r.s.authenticated
    r2 = Run(params(), tls=True, decide=lambda s, e: s.auth_succeeded("a@mx.test", b"v=sig"))
    r2.ehlo()
    r2.feed(b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=a,r=x") + b"\r\n")
    assert r2.codes(b"Zm9v\r\n") == ["501 5.5.2 Expected an empty response"]
    assert not r2.s.authenticated and isinstance(r2.events[-1], AuthAborted)


def test_auth_cancel_bad_base64_and_failure():
    r = Run(params(), tls=True, decide=lambda s, e: s.auth_challenge(b""))
    r.ehlo()
    r.feed(b"AUTH PLAIN\r\n")
    assert r.codes(b"*\r\n") == ["501 5.0.0 Authentication cancelled"]  # RFC 4954 §4
    assert r.events[-1] == AuthAborted("cancelled", smtp.replies.AUTH_CANCELLED)
    r.feed(b"AUTH PLAIN\r\n")
    assert r.codes(b"not base64!\r\n") == ["501 5.5.2 Cannot decode base64 response"]
    assert r.codes(b"AUTH PLAIN !!!\r\n") == ["501 5.5.2 Cannot decode base64 response"]
    r.decide = lambda s, e: s.reject(Reply(535, "5.7.8", "Authentication credentials invalid"))
    assert r.codes(b"AUTH PLAIN " + b64(b"\0a\0b") + b"\r\n") == ["535 5.7.8 Authentication credentials invalid"]
    assert not r.s.authenticated
    assert r.codes(b"NOOP\r\n") == ["250 2.0.0 Ok"]  # back to commands


def test_auth_refusals_by_state_and_mode():
    r = Run(params(), tls=True)
    assert r.codes(b"AUTH PLAIN\r\n")[0].startswith("503 5.5.1")  # before EHLO
    r.ehlo()
    assert r.codes(b"AUTH\r\n") == ["501 5.5.4 Syntax: AUTH mechanism [initial-response]"]
    assert r.codes(b"AUTH CRAM-MD5\r\n") == ["504 5.5.4 Unrecognized authentication type"]
    plain = Run(params(), peer="192.0.2.7")
    plain.ehlo()
    # RFC 4954 §6: 538 over plaintext (not loopback), and MAIL says to STARTTLS first.
    assert plain.codes(b"AUTH PLAIN\r\n") == ["538 5.7.11 Encryption required for requested authentication mechanism"]
    assert plain.codes(b"MAIL FROM:<a@b.test>\r\n") == ["530 5.7.0 Must issue a STARTTLS command first"]
    loop = Run(params(), peer="127.0.0.1")
    loop.ehlo()
    assert loop.codes(b"AUTH SCRAM-SHA-256-PLUS\r\n")[0].startswith("538 5.7.11")
    no_cb = Run(params(), tls=True, cb=False)
    no_cb.ehlo()
    assert no_cb.codes(b"AUTH SCRAM-SHA-256-PLUS\r\n")[0].startswith("504 5.5.4")
    mx = Run(params(Mode.SMTP), tls=True)
    mx.ehlo()
    assert mx.codes(b"AUTH PLAIN\r\n") == ["503 5.5.1 Authentication not enabled"]
    assert mx.codes(b"MAIL FROM:<a@b.test>\r\n") == ["250 2.1.0 Ok"]  # no AUTH needed on the MX
    assert (
        mx.codes(b"AUTH PLAIN\r\n")[0]
        == "503 5.5.1 Bad sequence of commands: AUTH is not permitted in a mail transaction"
    )


def test_auth_lines_up_to_12288_octets():
    r = Run(params(), tls=True, decide=plain_ok)
    r.ehlo()
    long_ir = b64(b"\0alice@mx.test\0" + b"p" * 6000)  # 8000+ octets: fine for AUTH (RFC 4954 §4)
    assert r.codes(b"AUTH PLAIN " + long_ir + b"\r\n") == ["235 2.7.0 Authentication successful"]
    r2 = Run(params(), tls=True, decide=lambda s, e: s.auth_challenge(b""))
    r2.ehlo()
    r2.feed(b"AUTH PLAIN\r\n")
    assert r2.codes(b"A" * 13000 + b"\r\n") == ["500 5.5.6 Authentication Exchange line is too long"]
    assert r2.events[-1].reason == "too-long"
    assert r2.codes(b"NOOP " + b"x" * 3000 + b"\r\n")[0].startswith("500 5.5.6 Line too long")  # commands: 2048


def test_auth_steps_only_for_auth_events():
    r = Run(params(), tls=True, decide=lambda s, e: None)
    r.ehlo()
    r.feed(b"AUTH PLAIN\r\n")
    with pytest.raises(ProtocolUsageError):
        r.s.accept()
    r.s.auth_challenge(b"")
    r2 = Run(params(), tls=True, decide=plain_ok)
    r2.ehlo()
    r2.feed(b"AUTH PLAIN " + b64(b"\0a@mx.test\0b") + b"\r\n")
    r2.decide = lambda s, e: None
    r2.feed(b"MAIL FROM:<a@mx.test>\r\n")
    with pytest.raises(ProtocolUsageError):
        r2.s.auth_challenge(b"x")


# ------------------------------------------------------------------ AUTH= parameter
@pytest.mark.parametrize(
    "param, expected",
    [
        (b"AUTH=<>", ""),
        (b"AUTH=e+3Dmc2@mx.test", "e=mc2@mx.test"),  # RFC 4954 §5's example, xtext-decoded
        (b"AUTH=alice@mx.test", "alice@mx.test"),
        (b"AUTH=", None),
        (b"AUTH=a+3x@mx.test", None),  # "+" must be followed by two hex digits (RFC 3461 §4)
        (b"AUTH=not-an-address", None),
    ],
)
def test_auth_mail_parameter(param, expected):
    r = Run(params(), tls=True, decide=plain_ok)
    r.ehlo()
    r.feed(b"AUTH PLAIN " + b64(b"\0alice@mx.test\0pw") + b"\r\n")
    replies = r.codes(b"MAIL FROM:<alice@mx.test> " + param + b"\r\n")
    if expected is None:
        assert replies[0].startswith("501 5.5.4")
    else:
        assert replies == ["250 2.1.0 Ok"]
        assert [e.auth for e in r.events if isinstance(e, MailFrom)] == [expected]


def test_auth_mail_parameter_only_where_auth_is_offered():
    mx = Run(params(Mode.SMTP))
    mx.ehlo()
    assert mx.codes(b"MAIL FROM:<a@b.test> AUTH=<>\r\n") == ["555 5.5.4 Unsupported parameter"]


# ------------------------------------------------------------------ repeated RCPT
def test_repeated_recipient_is_one_event():
    r = Run(params(Mode.SMTP))
    r.ehlo()
    replies = r.codes(
        b"MAIL FROM:<a@c.test>\r\nRCPT TO:<bob@mx.test>\r\nRCPT TO:<bob@MX.TEST>\r\n"
        b"RCPT TO:<Bob@mx.test>\r\nRCPT TO:<bob@mx.test>\r\n"
    )
    assert replies == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "250 2.1.5 Ok (duplicate recipient: delivered once)",
        "250 2.1.5 Ok",  # another local part spelling: the session resolves and merges it
        "250 2.1.5 Ok (duplicate recipient: delivered once)",
    ]
    assert [e.forward_path for e in r.events if isinstance(e, RcptTo)] == ["bob@mx.test", "Bob@mx.test"]
    assert r.s.recipient_count == 2
    # A new transaction starts afresh.
    r.codes(b"RSET\r\nMAIL FROM:<a@c.test>\r\n")
    assert r.codes(b"RCPT TO:<bob@mx.test>\r\n") == ["250 2.1.5 Ok"]


def test_refused_recipient_may_be_given_again():
    calls = []

    def decide(s, e):
        if isinstance(e, RcptTo):
            calls.append(e.forward_path)
            if len(calls) == 2:
                s.reject(Reply(450, "4.2.0", "later"))
                return
        s.accept()

    r = Run(params(Mode.SMTP), decide=decide)
    r.ehlo()
    r.codes(b"MAIL FROM:<a@c.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\nRCPT TO:<y@mx.test>\r\n")
    assert calls == ["x@mx.test", "y@mx.test", "y@mx.test"]
