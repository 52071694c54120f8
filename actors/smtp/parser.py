"""Parsing of SMTP command lines, paths and ESMTP parameters.

Grammar: RFC 5321 §4.1.2 (Path, Mailbox, Local-part as Dot-string or
Quoted-string, Domain, address-literal, Mail-parameters) and §4.1.3
(address literals), widened by RFC 6531 §3.3 when SMTPUTF8 is in use:
atext, qtextSMTP, sub-domain (U-labels) and esmtp-value may hold non-ASCII
UTF-8. Whether non-ASCII is *allowed* in a given transaction is the state
machine's call (RFC 6531 §3.7.4.1); the parser takes `str` (the command's
bytes decoded as UTF-8) and checks syntax only.

Every error is a `ParseError` carrying the reply to send; all regexes are
anchored and use possessive repeats so a hostile 512-octet line cannot make
them backtrack.
"""

from __future__ import annotations

import ipaddress
import re

from estafeta.actors.smtp.replies import NEED_DOMAIN, Reply

_NONASCII = "\u0080-\U0010ffff"
# No possessive quantifiers (*+, ++): CPython 3.11 before 3.11.3 matched
# some of them wrongly (gh-101955), and Debian 12's python3 is 3.11.2.
# Every repetition below is unambiguous (a dot or hyphen must be followed
# by a character the repetition cannot take), so backtracking stays linear.
# RFC 5321 §4.1.2 atext (RFC 5322 §3.2.3) + RFC 6531 UTF8-non-ascii.
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NONASCII}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
# qtextSMTP = %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP = "\" %d32-126.
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NONASCII}]|\\[\x20-\x7e])*"'
_LET_DIG = rf"[A-Za-z0-9{_NONASCII}]"
# sub-domain = Let-dig [Ldh-str]: no leading or trailing hyphen.
_SUB_DOMAIN = rf"{_LET_DIG}(?:-*{_LET_DIG})*"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
# address-literal = "[" ... "]" with dcontent = %d33-90 / %d94-126; the
# IPv4 / IPv6 / General forms are checked by _check_literal.
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_PATH = (
    rf"<(?:@{_DOMAIN}(?:,@{_DOMAIN})*:)?"  # A-d-l: source route, ignored (§4.1.1.3, App. C)
    rf"(?P<mailbox>(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_ADDRESS_LITERAL}))>"
)
_PATH_RE = re.compile(_PATH)
_POSTMASTER_RE = re.compile(r"<(?P<mailbox>postmaster)>", re.IGNORECASE)
# esmtp-param = esmtp-keyword ["=" esmtp-value]; value: CHAR but "=", SP, CTL
# (RFC 5321 §4.1.2), plus UTF-8 (RFC 6531 §3.3).
_PARAM_RE = re.compile(rf"(?P<key>[A-Za-z0-9][A-Za-z0-9-]*)(?:=(?P<value>[\x21-\x3c\x3e-\x7e{_NONASCII}]+))?")
_LDH_STR = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# Controls that never belong in a command line (TAB and SP do; CR/LF are
# line ends and were removed).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")  # RFC 3463 X.1.7
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")  # RFC 3463 X.1.3
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
PARAM_SYNTAX = Reply(501, "5.5.4", "Bad parameter syntax")
DUPLICATE_PARAM = Reply(501, "5.5.4", "Parameter given twice")


class ParseError(ValueError):
    """A command that cannot be parsed; `reply` is what to answer (5xx)."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def has_control_characters(line: bytes) -> bool:
    """True if a command line (without its CRLF) holds a C0 control other
    than TAB, or DEL: never valid in a command (RFC 5321 §4.1.1)."""
    return _CONTROL.search(line) is not None


def split_command(line: bytes) -> tuple[bytes, bytes]:
    """b"mail FROM:<a@b>" -> (b"MAIL", b"FROM:<a@b>"): the verb upper-cased
    (commands are case-insensitive, RFC 5321 §2.4) and the rest after the
    first space (b"" when there is none). The line has no CRLF."""
    sp = line.find(b" ")
    if sp < 0:
        return line.upper(), b""
    return line[:sp].upper(), line[sp + 1 :]


def _check_literal(literal: str) -> bool:
    """RFC 5321 §4.1.3: IPv4-address-literal, "IPv6:" IPv6-addr, or
    General-address-literal (Standardized-tag ":" 1*dcontent)."""
    if literal[:5].lower() == "ipv6:":
        addr = literal[5:]
        if "%" in addr:  # zone ids are not in the RFC 5321 grammar
            return False
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return False
        return True
    if ":" in literal:
        tag, _, content = literal.partition(":")
        return bool(content) and _LDH_STR.fullmatch(tag) is not None
    if _IPV4.fullmatch(literal) is None:
        return False
    return all(int(part) <= 255 for part in literal.split("."))


def _check_domain(domain: str) -> bool:
    """DNS limits on an ASCII domain (RFC 1035 §2.3.4: labels of at most 63
    octets, RFC 5321 §4.5.3.1.2: 255 octets) and a valid address literal."""
    if domain[0] == "[":
        return _check_literal(domain[1:-1])
    if not domain.isascii():
        return True  # U-labels: the A-label's length is the resolver's business
    if len(domain) > 255:
        return False
    return all(len(label) <= 63 for label in domain.split("."))


def parse_path(text: str, pos: int, bad: Reply, *, null: bool = False, postmaster: bool = False) -> tuple[str, int]:
    """Parse a Path (RFC 5321 §4.1.2) at text[pos:]: "<local@domain>", with
    an optional source route (dropped, §4.1.1.3 / Appendix C); "<>" when
    `null` (the null reverse-path, §4.5.5); "<postmaster>" in any case when
    `postmaster` (§4.1.1.3, §4.5.1). Returns (mailbox as written, without
    brackets and route — "" for <>, "postmaster" as written — and the index
    after ">"). Raises ParseError(bad) on bad syntax."""
    if null and text.startswith("<>", pos):
        return "", pos + 2
    m = _PATH_RE.match(text, pos)
    if m is None:
        if postmaster:
            m = _POSTMASTER_RE.match(text, pos)
            if m is not None:
                return m.group("mailbox"), m.end()
        raise ParseError(bad)
    if not _check_domain(m.group("domain")):
        raise ParseError(bad)
    return m.group("mailbox"), m.end()


def parse_params(text: str) -> dict[str, str | None]:
    """Mail-parameters / Rcpt-parameters (RFC 5321 §4.1.2): "SIZE=10 BODY=8BITMIME
    SMTPUTF8" -> {"SIZE": "10", "BODY": "8BITMIME", "SMTPUTF8": None}. Keys are
    upper-cased (keywords are case-insensitive); extra spaces are tolerated.
    Raises ParseError (501 5.5.4) on bad syntax or a repeated keyword."""
    params: dict[str, str | None] = {}
    for word in text.split():
        m = _PARAM_RE.fullmatch(word)
        if m is None:
            raise ParseError(PARAM_SYNTAX)
        key = m.group("key").upper()
        if key in params:
            raise ParseError(DUPLICATE_PARAM)
        params[key] = m.group("value")
    return params


def _parse_command_path(arg: str, keyword: str, syntax: Reply, bad: Reply, *, null: bool, postmaster: bool):
    n = len(keyword)
    if arg[:n].upper() != keyword:
        raise ParseError(syntax)
    pos = n
    # RFC 5321 has no space after the colon; many clients send one anyway.
    while pos < len(arg) and arg[pos] == " ":
        pos += 1
    if pos == len(arg) or arg[pos] != "<":
        raise ParseError(syntax if pos == len(arg) else bad)
    path, end = parse_path(arg, pos, bad, null=null, postmaster=postmaster)
    rest = arg[end:]
    if not rest or rest.isspace():
        return path, {}
    if rest[0] != " ":
        raise ParseError(bad)
    return path, parse_params(rest)


def parse_mail_from(arg: str) -> tuple[str, dict[str, str | None]]:
    """The argument of MAIL (RFC 5321 §4.1.1.2): "FROM:<reverse-path> [params]"
    -> (reverse-path, params); "" for the null reverse-path <>. Raises
    ParseError: 501 5.5.4 for the command's shape, 501 5.1.7 for the address."""
    return _parse_command_path(arg, "FROM:", MAIL_SYNTAX, BAD_SENDER, null=True, postmaster=False)


def parse_rcpt_to(arg: str) -> tuple[str, dict[str, str | None]]:
    """The argument of RCPT (RFC 5321 §4.1.1.3): "TO:<forward-path> [params]"
    -> (forward-path, params); "<Postmaster>" without a domain is accepted
    (any case) and returned as written. Raises ParseError: 501 5.5.4 for the
    command's shape, 501 5.1.3 for the address."""
    return _parse_command_path(arg, "TO:", RCPT_SYNTAX, BAD_RECIPIENT, null=False, postmaster=True)


def is_postmaster(forward_path: str) -> bool:
    """True for "postmaster" or "postmaster@<any domain>", any case
    (RFC 5321 §4.5.1: every domain must accept mail for it)."""
    local, at, _ = forward_path.rpartition("@")
    return (local if at else forward_path).lower() == "postmaster"


def parse_helo(arg: bytes) -> str:
    """The argument of EHLO/HELO (RFC 5321 §4.1.1.1): the client's domain or
    address literal. Liberal, as deployed servers are: the first word is
    taken as it is (clients send bare names and private names), decoded as
    UTF-8. Raises ParseError (501 5.5.4) when there is none or it is not
    UTF-8."""
    words = arg.split()
    if not words:
        raise ParseError(NEED_DOMAIN)
    try:
        return words[0].decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(Reply(501, "5.5.4", "Syntax error: EHLO/HELO domain is not UTF-8")) from None
