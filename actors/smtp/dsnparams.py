"""The DSN extension's SMTP parameters (RFC 3461), for the server (parse
what a client sent on MAIL and RCPT) and the client (write them for a
server that offers DSN).

    MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159
    RCPT TO:<b@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.net

- xtext (§4): printable ASCII but "+" and "=", and "+XX" (two upper-case
  hex digits) for any other octet; `xtext_encode`, `xtext_decode`.
- NOTIFY (§4.1): "NEVER" alone, or a comma list of SUCCESS, FAILURE,
  DELAY; absent, an MTA behaves as for FAILURE,DELAY (§4.1).
- ORCPT (§4.2): addr-type ";" xtext, e.g. "rfc822;bob@example.org"; the
  address decoded must be printable ASCII. For the addr-type "utf-8"
  (RFC 6533 §3) the address is utf-8-addr-xtext — "\\x{HEX}" escapes for
  non-ASCII and for "+", "=", "\\", space and controls — or, when the
  transaction is SMTPUTF8, utf-8-addr-unitext (raw UTF-8 allowed too).
- RET (§4.3): FULL or HDRS. ENVID (§4.4): xtext of at most 100
  characters, printable ASCII once decoded.

Keywords and the values NEVER, SUCCESS, FULL, ... are case-insensitive
(RFC 5321 §2.4). Every error is actors/smtp/parser.py's ParseError
carrying 501 5.5.4 (RFC 3463: invalid command arguments) and a text that
names the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from estafeta.actors.smtp.parser import ParseError
from estafeta.actors.smtp.replies import Reply

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
DELAY = "DELAY"
NEVER = "NEVER"
#: NOTIFY's order when written (the order of RFC 3461 §4.1's grammar).
_NOTIFY_ORDER = (SUCCESS, FAILURE, DELAY)
#: What an MTA does when the client gave no NOTIFY (RFC 3461 §4.1).
DEFAULT_NOTIFY = frozenset({FAILURE, DELAY})
FULL = "FULL"
HDRS = "HDRS"
#: RFC 3461 §4.4: an ENVID is at most 100 characters.
MAX_ENVID = 100

_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
# RFC 5322 §3.2.3 atom (addr-type = atom, RFC 3461 §4.2).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
# RFC 6533 §3: EmbeddedUnicodeChar "\x{HEX}", 1 to 6 hex digits.
_EMBEDDED = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def _error(text: str) -> ParseError:
    return ParseError(Reply(501, "5.5.4", text))


def _printable_ascii(text: str) -> bool:
    """RFC 3461 §4.2/§4.4: printable (graphic and white space) US-ASCII."""
    return all(32 <= ord(c) < 127 for c in text)


# ---------------------------------------------------------------- xtext
def xtext_encode(value: str | bytes) -> str:
    """xtext of `value` (RFC 3461 §4): octets 33-126 but "+" and "=" as
    they are, every other octet "+XX" (a str is encoded as UTF-8 first)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return "".join(chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in data)


def xtext_decode(text: str, what: str = "xtext") -> str:
    """The value an xtext stands for, decoded as UTF-8. Lower-case hex
    digits are tolerated. Raises ParseError (501 5.5.4, naming `what`) for
    anything that is not xtext."""
    if not _XTEXT.fullmatch(text):
        raise _error(f"Syntax error in {what}: not xtext (RFC 3461 §4)")
    data = bytearray()
    pos = 0
    for m in _HEXCHAR.finditer(text):
        data += text[pos : m.start()].encode("ascii")
        data.append(int(m.group(1), 16))
        pos = m.end()
    data += text[pos:].encode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(f"Syntax error in {what}: not UTF-8 once decoded") from None


# ---------------------------------------------------------------- NOTIFY
def parse_notify(value: str | None) -> frozenset[str]:
    """NOTIFY=... (RFC 3461 §4.1) -> {"NEVER"} or a non-empty subset of
    {"SUCCESS", "FAILURE", "DELAY"}. Raises ParseError."""
    if not value:
        raise _error("Syntax error in NOTIFY: a value is required")
    words = [w.upper() for w in value.split(",")]
    if words == [NEVER]:
        return frozenset({NEVER})
    if not all(w in _NOTIFY_ORDER for w in words):
        raise _error("Syntax error in NOTIFY: NEVER alone, or a list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)")
    return frozenset(words)


def format_notify(notify: Iterable[str]) -> str:
    """The NOTIFY value for a set from parse_notify: "NEVER" or e.g.
    "SUCCESS,FAILURE". Raises ValueError for an empty or mixed set."""
    items = {n.upper() for n in notify}
    if items == {NEVER}:
        return NEVER
    if not items or not items <= set(_NOTIFY_ORDER):
        raise ValueError(f"NOTIFY must be NEVER or SUCCESS/FAILURE/DELAY, not {sorted(items)}")
    return ",".join(n for n in _NOTIFY_ORDER if n in items)


def notify_wants(notify: frozenset[str] | None, kind: str) -> bool:
    """Whether a DSN of `kind` (SUCCESS, FAILURE or DELAY) is to be sent for
    a recipient with this NOTIFY (None: the client gave none, so FAILURE
    and DELAY, RFC 3461 §4.1)."""
    return kind in (DEFAULT_NOTIFY if notify is None else notify)


# ---------------------------------------------------------------- ORCPT
@dataclass(frozen=True)
class OriginalRecipient:
    """ORCPT decoded: addr_type in lower case ("rfc822", "utf-8", ...) and
    the address as the client meant it. str() is the form of a DSN's
    Original-Recipient field (RFC 3464 §2.3.1), "rfc822;bob@example.org"."""

    addr_type: str
    address: str

    def __str__(self) -> str:
        return f"{self.addr_type};{self.address}"


def _utf8_addr_decode(text: str, smtputf8: bool) -> str:
    """utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 §3) -> the address."""
    out = []
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c == "\\":
            m = _EMBEDDED.match(text, pos)
            if m is None:
                raise _error('Syntax error in ORCPT: "\\" must start \\x{HEX} (RFC 6533 §3)')
            code = int(m.group(1), 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise _error("Syntax error in ORCPT: \\x{HEX} is not a Unicode scalar value")
            out.append(chr(code))
            pos = m.end()
            continue
        if c in "+=" or ord(c) <= 32 or ord(c) == 127 or (ord(c) > 127 and not smtputf8):
            raise _error("Syntax error in ORCPT: character not allowed in a utf-8 address (RFC 6533 §3)")
        out.append(c)
        pos += 1
    return "".join(out)


def utf8_address_encode(address: str, *, smtputf8: bool = False) -> str:
    """An address as RFC 6533 §3's utf-8-addr-xtext (ASCII only: "\\x{HEX}"
    for non-ASCII characters and for "+", "=", "\\", space and controls),
    or utf-8-addr-unitext with `smtputf8` (non-ASCII characters as they
    are). For ORCPT and for a DSN's address fields."""
    out = []
    for c in address:
        o = ord(c)
        if c in "+=\\" or o <= 32 or o == 127 or (o > 127 and not smtputf8):
            out.append(f"\\x{{{o:X}}}")
        else:
            out.append(c)
    return "".join(out)


def parse_orcpt(value: str | None, *, smtputf8: bool = False) -> OriginalRecipient:
    """ORCPT=addr-type;xtext (RFC 3461 §4.2; the "utf-8" type per RFC 6533
    §3, raw UTF-8 only when `smtputf8`). Raises ParseError."""
    if not value:
        raise _error("Syntax error in ORCPT: a value is required")
    addr_type, semi, rest = value.partition(";")
    if not semi or not _ATOM.fullmatch(addr_type) or not rest:
        raise _error("Syntax error in ORCPT: addr-type;address expected, e.g. rfc822;bob@example.org")
    addr_type = addr_type.lower()
    if addr_type == "utf-8":
        return OriginalRecipient(addr_type, _utf8_addr_decode(rest, smtputf8))
    address = xtext_decode(rest, "ORCPT")
    if not _printable_ascii(address):
        raise _error("Syntax error in ORCPT: the address must be printable ASCII (RFC 3461 §4.2)")
    return OriginalRecipient(addr_type, address)


def format_orcpt(orcpt: OriginalRecipient, *, smtputf8: bool = False) -> str:
    """The ORCPT value for a server: "rfc822;" + xtext for an ASCII
    address; a non-ASCII one as "utf-8;" + utf-8-addr-xtext (unitext when
    the transaction is SMTPUTF8), RFC 6533 §3."""
    if orcpt.addr_type == "utf-8" or not orcpt.address.isascii():
        return "utf-8;" + utf8_address_encode(orcpt.address, smtputf8=smtputf8)
    return f"{orcpt.addr_type};{xtext_encode(orcpt.address)}"


# ---------------------------------------------------------------- RET, ENVID
def parse_ret(value: str | None) -> str:
    """RET=FULL|HDRS (RFC 3461 §4.3) -> "FULL" or "HDRS". Raises ParseError."""
    ret = (value or "").upper()
    if ret not in (FULL, HDRS):
        raise _error("Syntax error in RET: FULL or HDRS (RFC 3461 §4.3)")
    return ret


def parse_envid(value: str | None) -> str:
    """ENVID=xtext (RFC 3461 §4.4) -> the envelope id decoded. Raises
    ParseError when it is empty, over 100 characters, not xtext or not
    printable ASCII once decoded."""
    if not value:
        raise _error("Syntax error in ENVID: a value is required")
    if len(value) > MAX_ENVID:
        raise _error(f"Syntax error in ENVID: longer than {MAX_ENVID} characters (RFC 3461 §4.4)")
    envid = xtext_decode(value, "ENVID")
    if not _printable_ascii(envid):
        raise _error("Syntax error in ENVID: must be printable ASCII (RFC 3461 §4.4)")
    return envid


# ---------------------------------------------------------------- per command
@dataclass(frozen=True)
class MailDsn:
    """The DSN parameters of MAIL: ret "FULL", "HDRS" or None (not given);
    envid decoded, or None."""

    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True)
class RcptDsn:
    """The DSN parameters of RCPT: notify as parse_notify gives it, or None
    (not given: FAILURE and DELAY apply, see notify_wants); orcpt, or None."""

    notify: frozenset[str] | None = None
    orcpt: OriginalRecipient | None = None

    def wants(self, kind: str) -> bool:
        """notify_wants(self.notify, kind)."""
        return notify_wants(self.notify, kind)


def mail_dsn(params: Mapping[str, str | None]) -> MailDsn:
    """RET and ENVID from MAIL's parameters (parser.parse_params' dict,
    upper-case keys). Raises ParseError."""
    return MailDsn(
        ret=parse_ret(params["RET"]) if "RET" in params else None,
        envid=parse_envid(params["ENVID"]) if "ENVID" in params else None,
    )


def rcpt_dsn(params: Mapping[str, str | None], *, smtputf8: bool = False) -> RcptDsn:
    """NOTIFY and ORCPT from RCPT's parameters (parser.parse_params' dict);
    `smtputf8`: the transaction's MAIL had SMTPUTF8. Raises ParseError."""
    return RcptDsn(
        notify=parse_notify(params["NOTIFY"]) if "NOTIFY" in params else None,
        orcpt=parse_orcpt(params["ORCPT"], smtputf8=smtputf8) if "ORCPT" in params else None,
    )


def format_mail_dsn(dsn: MailDsn) -> list[str]:
    """MAIL parameters for a server that offers DSN, e.g.
    ["RET=HDRS", "ENVID=QQ314159"]; [] when there is nothing to pass on."""
    out = []
    if dsn.ret:
        out.append(f"RET={dsn.ret}")
    if dsn.envid is not None:
        out.append(f"ENVID={xtext_encode(dsn.envid)}")
    return out


def format_rcpt_dsn(dsn: RcptDsn, *, smtputf8: bool = False) -> list[str]:
    """RCPT parameters for a server that offers DSN, e.g.
    ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@example.net"]."""
    out = []
    if dsn.notify is not None:
        out.append(f"NOTIFY={format_notify(dsn.notify)}")
    if dsn.orcpt is not None:
        out.append(f"ORCPT={format_orcpt(dsn.orcpt, smtputf8=smtputf8)}")
    return out
