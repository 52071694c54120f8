"""Parsing (RFC 5321 §4.1.2, RFC 6531), reply formatting (RFC 5321
§4.2, §4.5.3.1.5; RFC 2034) and the DATA scanning helpers of actors/smtp."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estafeta.actors.smtp import data as D
from estafeta.actors.smtp.parser import (
    ParseError,
    has_control_characters,
    is_postmaster,
    parse_helo,
    parse_mail_from,
    parse_params,
    parse_rcpt_to,
    split_command,
)
from estafeta.actors.smtp.replies import Reply, format_reply


# ------------------------------------------------------------------ commands
@pytest.mark.parametrize(
    "line, verb, arg",
    [
        (b"EHLO client.test", b"EHLO", b"client.test"),
        (b"mail FROM:<a@b.test> SIZE=1", b"MAIL", b"FROM:<a@b.test> SIZE=1"),
        (b"QUIT", b"QUIT", b""),
        (b"", b"", b""),
        (b"noop  x", b"NOOP", b" x"),
    ],
)
def test_split_command(line, verb, arg):
    assert split_command(line) == (verb, arg)


def test_control_characters():
    assert has_control_characters(b"MAIL FROM:<a\x00@b>")
    assert has_control_characters(b"NOOP \r x")
    assert has_control_characters(b"NOOP \x7f")
    assert not has_control_characters(b"NOOP \tx y")
    assert not has_control_characters("MAIL FROM:<jürgen@x>".encode())


# ------------------------------------------------------------------ paths
@pytest.mark.parametrize(
    "arg, path",
    [
        ("FROM:<>", ""),  # RFC 5321 §4.5.5 null reverse-path
        ("FROM:<a@b.test>", "a@b.test"),
        ("from:<a@b.test>", "a@b.test"),  # case-insensitive keyword
        ("FROM: <a@b.test>", "a@b.test"),  # deployed clients put a space there
        ("FROM:<first.last+tag@sub.b-c.test>", "first.last+tag@sub.b-c.test"),
        ("FROM:<!#$%&'*+-/=?^_`{|}~@x.test>", "!#$%&'*+-/=?^_`{|}~@x.test"),
        ('FROM:<"john doe"@x.test>', '"john doe"@x.test'),  # Quoted-string local part
        ('FROM:<"a\\"b"@x.test>', '"a\\"b"@x.test'),  # quoted-pairSMTP
        ('FROM:<"a>b@c"@x.test>', '"a>b@c"@x.test'),  # ">" and "@" inside quotes
        ('FROM:<""@x.test>', '""@x.test'),
        ("FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"),  # §4.1.3 address literals
        ("FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]"),
        ("FROM:<a@[ipv6:::ffff:192.0.2.1]>", "a@[ipv6:::ffff:192.0.2.1]"),
        ("FROM:<a@[x-tag:anything]>", "a@[x-tag:anything]"),  # General-address-literal
        ("FROM:<@relay.test,@other.test:a@b.test>", "a@b.test"),  # source route dropped
        ("FROM:<jürgen@köln.test>", "jürgen@köln.test"),  # RFC 6531 syntax (policy elsewhere)
        ('FROM:<"jü rgen"@x.test>', '"jü rgen"@x.test'),
        ("FROM:<a@" + "l" * 63 + ".test>", "a@" + "l" * 63 + ".test"),
    ],
)
def test_mail_from_paths(arg, path):
    assert parse_mail_from(arg) == (path, {})


@pytest.mark.parametrize(
    "arg, enhanced",
    [
        ("FROM:a@b.test", "5.1.7"),  # angle brackets are required
        ("FROM:<a@b.test", "5.1.7"),
        ("FROM:<a>", "5.1.7"),  # no domain
        ("FROM:<@b.test>", "5.1.7"),  # empty local part
        ("FROM:<.a@b.test>", "5.1.7"),
        ("FROM:<a.@b.test>", "5.1.7"),
        ("FROM:<a..b@b.test>", "5.1.7"),
        ("FROM:<a b@b.test>", "5.1.7"),
        ("FROM:<a@b.test.>", "5.1.7"),  # no trailing dot in a Domain
        ("FROM:<a@-b.test>", "5.1.7"),
        ("FROM:<a@b-.test>", "5.1.7"),
        ("FROM:<a@b..test>", "5.1.7"),
        ("FROM:<a@" + "l" * 64 + ".test>", "5.1.7"),  # label over 63 octets
        ("FROM:<a@" + ("l" * 60 + ".") * 5 + "test>", "5.1.7"),  # domain over 255
        ('FROM:<"unterminated@b.test>', "5.1.7"),
        ('FROM:<"a\x01b"@b.test>', "5.1.7"),
        ("FROM:<a@[300.1.1.1]>", "5.1.7"),
        ("FROM:<a@[1.2.3]>", "5.1.7"),
        ("FROM:<a@[IPv6:zz::1]>", "5.1.7"),
        ("FROM:<a@[IPv6:fe80::1%eth0]>", "5.1.7"),
        ("FROM:<a@[a_b:x]>", "5.1.7"),  # Standardized-tag is an Ldh-str
        ("FROM:<a@[:x]>", "5.1.7"),
        ("FROM:<a@[tag:]>", "5.1.7"),
        ("FROM:<a@b.test>x", "5.1.7"),  # junk glued to the path
        ("FROM:<a@b.test> SIZE==1", "5.5.4"),
        ("FROM:<a@b.test> =1", "5.5.4"),
        ("FROM:<a@b.test> SIZE=1 size=2", "5.5.4"),  # repeated keyword
        ("FROM:", "5.5.4"),
        ("FROM:   ", "5.5.4"),
        ("TO:<a@b.test>", "5.5.4"),
        ("", "5.5.4"),
    ],
)
def test_mail_from_errors(arg, enhanced):
    with pytest.raises(ParseError) as e:
        parse_mail_from(arg)
    assert e.value.reply.code == 501
    assert e.value.reply.enhanced == enhanced


def test_mail_from_params():
    path, params = parse_mail_from("FROM:<a@b.test>  SIZE=1000 body=8BITMIME SMTPUTF8 X-Y=z")
    assert path == "a@b.test"
    assert params == {"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": None, "X-Y": "z"}
    assert parse_mail_from("FROM:<> SIZE=5 ") == ("", {"SIZE": "5"})


def test_params_utf8_value_allowed():
    assert parse_params("X=é") == {"X": "é"}


@pytest.mark.parametrize(
    "arg, path",
    [
        ("TO:<postmaster>", "postmaster"),  # RFC 5321 §4.1.1.3 / §4.5.1
        ("TO:<PostMaster>", "PostMaster"),
        ("to:<Postmaster@x.test>", "Postmaster@x.test"),
        ("TO:<b@c.test>", "b@c.test"),
        ("TO:<@r.test:b@c.test>", "b@c.test"),
    ],
)
def test_rcpt_to(arg, path):
    assert parse_rcpt_to(arg) == (path, {})


@pytest.mark.parametrize(
    "arg, enhanced",
    [
        ("TO:<>", "5.1.3"),  # the null path is for MAIL only
        ("TO:<bob>", "5.1.3"),  # only postmaster may go without a domain
        ("TO:<postmaster2>", "5.1.3"),
        ("FROM:<b@c.test>", "5.5.4"),
        ("TO:", "5.5.4"),
    ],
)
def test_rcpt_to_errors(arg, enhanced):
    with pytest.raises(ParseError) as e:
        parse_rcpt_to(arg)
    assert (e.value.reply.code, e.value.reply.enhanced) == (501, enhanced)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("postmaster", True),
        ("POSTMASTER", True),
        ("Postmaster@x.test", True),
        ("postmaster2@x.test", False),
        ("bob@x.test", False),
        ('"postmaster"@x.test', False),
    ],
)
def test_is_postmaster(path, expected):
    assert is_postmaster(path) is expected


def test_parse_helo():
    assert parse_helo(b"client.test") == "client.test"
    assert parse_helo(b" [192.0.2.1]  extra words") == "[192.0.2.1]"
    assert parse_helo("köln.test".encode()) == "köln.test"
    for bad in (b"", b"   ", b"\xff\xfe"):
        with pytest.raises(ParseError) as e:
            parse_helo(bad)
        assert e.value.reply.code == 501


def test_hostile_lines_parse_fast():
    """Possessive repeats: a 500-octet line built to make a backtracking
    regex explode is refused at once."""
    import time

    for arg in ("FROM:<" + "a." * 250, "FROM:<a@" + "b-" * 250, 'FROM:<"' + "\\" * 499, "FROM:<a@" + "b" * 498 + "!"):
        t = time.perf_counter()
        with pytest.raises(ParseError):
            parse_mail_from(arg)
        assert time.perf_counter() - t < 0.05, arg[:20]


# ------------------------------------------------------------------ replies
def test_reply_single_line():
    assert Reply(250, "2.1.0", "Ok").wire == b"250 2.1.0 Ok\r\n"
    assert Reply(354, "", "Go ahead").wire == b"354 Go ahead\r\n"
    assert str(Reply(550, "5.1.1", "No such user")) == "550 5.1.1 No such user"


def test_reply_multi_line_carries_code_and_enhanced_code_on_every_line():
    # RFC 5321 §4.2.1 multi-line form; RFC 2034 §4: enhanced code on each line.
    assert Reply(250, "2.0.0", "one\ntwo\nthree").wire == b"250-2.0.0 one\r\n250-2.0.0 two\r\n250 2.0.0 three\r\n"


@pytest.mark.parametrize(
    "text",
    [
        "word " * 300,  # wraps at spaces
        "x" * 2000,  # no space: hard cuts
        "ü" * 700,  # 1400 octets of 2-octet characters: never split inside one
        ("a" * 505 + " ") * 3,
    ],
)
def test_reply_wrapping_keeps_lines_within_512_octets(text):
    wire = Reply(554, "5.7.1", text).wire
    lines = wire.split(b"\r\n")[:-1]
    assert len(lines) > 1
    for line in lines[:-1]:
        assert line.startswith(b"554-5.7.1 ")
    assert lines[-1].startswith(b"554 5.7.1 ")
    assert all(len(line) + 2 <= 512 for line in lines)
    # Nothing is lost but the spaces used as break points.
    body = b"".join(line[10:] for line in lines).decode("utf-8")
    assert body.replace(" ", "") == text.replace(" ", "")


def test_reply_text_cannot_inject_lines():
    wire = format_reply(550, "5.0.0", "evil\r250 2.0.0 fake\x00")
    assert wire == b"550 5.0.0 evil 250 2.0.0 fake \r\n"


@pytest.mark.parametrize("code, enhanced", [(199, ""), (600, ""), (250, "5.0.0"), (550, "2.0.0"), (550, "5.0")])
def test_reply_validation(code, enhanced):
    with pytest.raises(ValueError):
        Reply(code, enhanced, "x")


# ------------------------------------------------------------------ DATA helpers
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
        b"\r\n.\rx",
    ],
)
def test_has_smuggling_finds_each_sequence(seq):
    buf = b"\r\nabc" + seq + b"def\r\n"
    assert D.has_smuggling(buf, 0, len(buf))


@pytest.mark.parametrize("first", [b".\n", b".\rx", b".\r\r\n"])
def test_has_smuggling_on_the_first_line(first):
    # The content starts after DATA's CRLF: "." then a bare CR/LF there is
    # an end of data for a lax server too.
    buf = b"\r\n" + first + b"rest\r\n"
    assert D.has_smuggling(buf, 0, len(buf))


@pytest.mark.parametrize(
    "content",
    [
        b"\r\nplain\r\ntext\r\n",
        b"\r\n..\r\n",  # a stuffed lone dot: not an end
        b"\r\nbare\nLF and bare\rCR\r\n",
        b"\r\n.leading dot\r\n",
        b"\r\na.\nb\r\n",  # dot before a bare LF, not after one
    ],
)
def test_has_smuggling_leaves_clean_content(content):
    assert not D.has_smuggling(content, 0, len(content))


def test_has_smuggling_window_start_sees_behind():
    # "\r\n.\r\n" preceded by CR: fine; the lookbehind looks before `start`.
    buf = b"xx\r\n.\r\nyy"
    assert not D.has_smuggling(buf, 3, len(buf))
    assert D.has_smuggling(b"xx\n.\r\nyy", 2, 9)


@pytest.mark.parametrize(
    "stuffed, message",
    [
        (b"", b""),
        (b"..\r\n", b".\r\n"),
        (b"a\r\n..b\r\n...\r\n", b"a\r\n.b\r\n..\r\n"),
        (b".x\r\n", b"x\r\n"),  # RFC 5321 §4.5.2: any leading dot is removed
        (b"a\n..b\r\n", b"a\n..b\r\n"),  # not after a bare LF
    ],
)
def test_unstuff(stuffed, message):
    assert D.unstuff(stuffed) == message


def test_count_received():
    head = b"Received: a\r\nreceived: b\r\nRECEIVED:c\r\nX-Received: no\r\nSubject: s\r\n\treceived: folded, no\r\n"
    assert D.count_received(head + b"\r\nReceived: in the body\r\n") == 3
    assert D.count_received(head) == 3  # no body at all
    assert D.count_received(b"\r\nReceived: body only\r\n") == 0


# ------------------------------------------------ DataReader against a model
# A plain model of DATA content, written for clarity not speed: the first
# CRLF.CRLF ends it; the regexes below are the textbook form of the
# smuggling rule (RFC 5321 §4.1.1.4: only <CRLF>.<CRLF> ends data) that
# DataReader implements with one search for "\n." and one for "\r.".
_MODEL_SMUGGLE = re.compile(rb"\n\.(?:\n|\r[^\n]|(?<!\r\n\.)\r)|\r\.[\r\n]")


def _model(content_and_end: bytes, max_size: int):
    """(end index, error reply or None, message) for a buffer starting with
    the DATA line's CRLF, or None when it holds no end marker."""
    e = content_and_end.find(D.END_OF_DATA)
    if e < 0:
        return None
    inside = content_and_end[: e + 2]
    if e > max_size:
        return e, D.MESSAGE_TOO_BIG, None
    if _MODEL_SMUGGLE.search(inside):
        return e, D.SMUGGLING, None
    return e, None, D.unstuff(inside[2:])


_PIECES = st.sampled_from([b"a", b"text ", b".", b"..", b"\r\n", b"\n", b"\r", b"\r\n.", b"\n.", b"x" * 700])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40), st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_data_reader_matches_the_model_in_any_chunking(pieces, cuts):
    wire = b"\r\n" + b"".join(pieces) + b"\r\n.\r\n" + b"NOOP\r\n"
    expected = _model(wire, 10_000)
    reader = D.DataReader(10_000)
    buf = bytearray()
    got = None
    pos, k = 0, 0
    while pos < len(wire):
        step = cuts[k % len(cuts)]
        k += 1
        buf += wire[pos : pos + step]
        pos += step
        e = reader.feed(buf)
        if e >= 0:
            got = (reader.error, reader.take(buf, e) if reader.error is None else None)
            break
    assert got is not None
    exp_error, exp_message = expected[1], expected[2]
    if exp_error is None:
        assert got == (None, exp_message)
    else:  # which error is reported first may differ (size and smuggling); that one is refused is what matters
        assert got[0] is not None and got[1] is None
        if exp_error is D.SMUGGLING:
            assert got[0] is D.SMUGGLING
