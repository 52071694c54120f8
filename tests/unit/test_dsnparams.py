"""RFC 3461 parameters (actors/smtp/dsnparams.py): xtext, NOTIFY, ORCPT
(with RFC 6533's utf-8 addresses), RET, ENVID; through the SMTP parser's
parameter syntax too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estafeta.actors.smtp import dsnparams as D
from estafeta.actors.smtp.dsnparams import OriginalRecipient
from estafeta.actors.smtp.parser import ParseError, parse_mail_from, parse_params, parse_rcpt_to

texts = st.text(st.characters(exclude_categories=("Cs",)))
printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1)


def assert_501(fn, *args, **kw):
    with pytest.raises(ParseError) as e:
        fn(*args, **kw)
    assert (e.value.reply.code, e.value.reply.enhanced) == (501, "5.5.4")
    return e.value.reply.text


# -- xtext ---------------------------------------------------------------------------


def test_xtext_examples():
    assert D.xtext_encode("bob+tag@example.org") == "bob+2Btag@example.org"
    assert D.xtext_encode("a=b c") == "a+3Db+20c"
    assert D.xtext_encode("é") == "+C3+A9"
    assert D.xtext_encode(b"\x00\xff") == "+00+FF"
    assert D.xtext_decode("bob+2Btag@example.org") == "bob+tag@example.org"
    assert D.xtext_decode("+c3+a9") == "é"  # lower-case hex tolerated
    assert D.xtext_decode("") == ""


@pytest.mark.parametrize("bad", ["a b", "a=b", "+2", "+GG", "x+", "caf\u00e9", "+FF"])
def test_xtext_errors(bad):
    assert_501(D.xtext_decode, bad)


@given(texts)
def test_xtext_round_trip(s):
    encoded = D.xtext_encode(s)
    assert encoded.isascii() and "=" not in encoded and " " not in encoded
    assert D.xtext_decode(encoded) == s
    if encoded:  # xtext is always a valid esmtp-value (RFC 5321 §4.1.2)
        assert parse_params(f"X={encoded}") == {"X": encoded}


@given(st.binary())
def test_xtext_of_any_octets_is_ascii_without_specials(data):
    encoded = D.xtext_encode(data)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert len(encoded) >= len(data)


# -- NOTIFY ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expect",
    [
        ("NEVER", {"NEVER"}),
        ("never", {"NEVER"}),
        ("SUCCESS", {"SUCCESS"}),
        ("failure,DELAY", {"FAILURE", "DELAY"}),
        ("DELAY,SUCCESS,FAILURE", {"SUCCESS", "FAILURE", "DELAY"}),
    ],
)
def test_notify(value, expect):
    assert D.parse_notify(value) == expect


@pytest.mark.parametrize("bad", [None, "", "NEVER,SUCCESS", "SUCCESS,", "SOMETIMES", "SUCCESS FAILURE", ","])
def test_notify_errors(bad):
    assert "NOTIFY" in assert_501(D.parse_notify, bad)


def test_notify_format_and_wants():
    assert D.format_notify({"DELAY", "SUCCESS"}) == "SUCCESS,DELAY"
    assert D.format_notify({"NEVER"}) == "NEVER"
    with pytest.raises(ValueError):
        D.format_notify({"NEVER", "SUCCESS"})
    assert D.notify_wants(None, D.FAILURE) and D.notify_wants(None, D.DELAY)
    assert not D.notify_wants(None, D.SUCCESS)
    assert not D.notify_wants(frozenset({"NEVER"}), D.FAILURE)
    assert D.RcptDsn(notify=frozenset({"SUCCESS"})).wants(D.SUCCESS)


# -- ORCPT -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, smtputf8, addr_type, address",
    [
        ("rfc822;bob@example.org", False, "rfc822", "bob@example.org"),
        ("RFC822;bob+2Btag@example.org", False, "rfc822", "bob+tag@example.org"),
        ("rfc822;+22john+20doe+22@example.org", False, "rfc822", '"john doe"@example.org'),
        ("utf-8;j\\x{F6}ran@b\\x{FC}cher.example", False, "utf-8", "jöran@bücher.example"),
        ("utf-8;jöran@bücher.example", True, "utf-8", "jöran@bücher.example"),
        ("utf-8;a\\x{2B}b@example.org", False, "utf-8", "a+b@example.org"),
        ("x400;c+3Dus+3Ba+3Datt", False, "x400", "c=us;a=att"),
    ],
)
def test_orcpt(value, smtputf8, addr_type, address):
    o = D.parse_orcpt(value, smtputf8=smtputf8)
    assert (o.addr_type, o.address) == (addr_type, address)


@pytest.mark.parametrize(
    "value, smtputf8",
    [
        (None, False),
        ("bob@example.org", False),  # no addr-type
        (";bob@example.org", False),
        ("rfc822;", False),
        ("rfc 822;bob@example.org", False),
        ("rfc822;bob=x@example.org", False),  # "=" is not xtext
        ("rfc822;+C3+A9@example.org", False),  # not printable ASCII once decoded
        ("rfc822;jöran@example.org", True),  # raw UTF-8 is not xtext
        ("utf-8;jöran@example.org", False),  # raw UTF-8 needs SMTPUTF8
        ("utf-8;a+b@example.org", True),
        ("utf-8;a\\b@example.org", False),
        ("utf-8;a\\x{D800}@example.org", False),  # a surrogate
        ("utf-8;a\\x{110000}@example.org", False),
    ],
)
def test_orcpt_errors(value, smtputf8):
    assert "ORCPT" in assert_501(D.parse_orcpt, value, smtputf8=smtputf8)


def test_orcpt_format():
    assert D.format_orcpt(OriginalRecipient("rfc822", "bob+tag@example.org")) == "rfc822;bob+2Btag@example.org"
    assert D.format_orcpt(OriginalRecipient("rfc822", "jöran@example.org")) == "utf-8;j\\x{F6}ran@example.org"
    assert D.format_orcpt(OriginalRecipient("utf-8", "jöran@example.org"), smtputf8=True) == "utf-8;jöran@example.org"
    assert str(OriginalRecipient("rfc822", "bob@example.org")) == "rfc822;bob@example.org"


@given(printable)
def test_orcpt_rfc822_round_trip(address):
    value = D.format_orcpt(OriginalRecipient("rfc822", address))
    assert D.parse_orcpt(value) == OriginalRecipient("rfc822", address)


@given(texts.filter(bool), st.booleans())
def test_orcpt_utf8_round_trip(address, smtputf8):
    value = D.format_orcpt(OriginalRecipient("utf-8", address), smtputf8=smtputf8)
    if not smtputf8:
        assert value.isascii()
    assert D.parse_orcpt(value, smtputf8=smtputf8) == OriginalRecipient("utf-8", address)


# -- RET, ENVID ------------------------------------------------------------------------


def test_ret():
    assert D.parse_ret("full") == "FULL" and D.parse_ret("HDRS") == "HDRS"
    for bad in (None, "", "ALL", "HEADERS"):
        assert "RET" in assert_501(D.parse_ret, bad)


def test_envid():
    assert D.parse_envid("QQ314159") == "QQ314159"
    assert D.parse_envid("a+2Bb+20c") == "a+b c"
    assert D.parse_envid("x" * 100) == "x" * 100
    for bad in (None, "", "x" * 101, "a=b", "+00", "+C3+A9"):
        assert "ENVID" in assert_501(D.parse_envid, bad)


# -- through the parser, and back -----------------------------------------------------------


def test_mail_and_rcpt_parameters_from_command_lines():
    path, params = parse_mail_from("FROM:<a@example.org> RET=HDRS ENVID=QQ+2B314159 SIZE=100")
    assert D.mail_dsn(params) == D.MailDsn(ret="HDRS", envid="QQ+314159")
    assert D.mail_dsn(parse_mail_from("FROM:<a@example.org>")[1]) == D.MailDsn()
    _, params = parse_rcpt_to("TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net")
    r = D.rcpt_dsn(params)
    assert r.notify == {"SUCCESS", "FAILURE"} and r.orcpt == OriginalRecipient("rfc822", "b@example.net")
    _, params = parse_rcpt_to("TO:<jöran@bücher.example> ORCPT=utf-8;jöran@bücher.example")
    assert D.rcpt_dsn(params, smtputf8=True).orcpt.address == "jöran@bücher.example"
    assert_501(D.rcpt_dsn, params)
    assert_501(D.mail_dsn, {"RET": None})


def test_client_side_parameters():
    assert D.format_mail_dsn(D.MailDsn(ret="FULL", envid="a b")) == ["RET=FULL", "ENVID=a+20b"]
    assert D.format_mail_dsn(D.MailDsn()) == []
    r = D.RcptDsn(notify=frozenset({"DELAY", "FAILURE"}), orcpt=OriginalRecipient("rfc822", "b@example.net"))
    assert D.format_rcpt_dsn(r) == ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@example.net"]
    line = "TO:<b@example.net> " + " ".join(D.format_rcpt_dsn(r))
    assert D.rcpt_dsn(parse_rcpt_to(line)[1]) == r
