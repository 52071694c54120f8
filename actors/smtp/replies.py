"""SMTP replies: the `Reply` value, its wire format, and the standard replies.

A reply is a three-digit code (RFC 5321 §4.2), an enhanced status code
(RFC 3463, announced by ENHANCEDSTATUSCODES, RFC 2034) and a text. On the
wire every line carries the code, and every line carries the enhanced code
too (RFC 2034 §4: "each line of a multi-line response"); the 220 greeting,
the EHLO/HELO replies and the 354 go without one (RFC 2034 §3, and 3xx is
not a class RFC 3463 defines), so they use enhanced="".

No reply line may exceed 512 octets including CRLF (RFC 5321 §4.5.3.1.5):
long texts are wrapped at spaces (or cut, never inside a UTF-8 sequence)
into a multi-line reply "250-..." / "250 ...".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

#: RFC 5321 §4.5.3.1.5: a reply line, CRLF included, is at most 512 octets.
MAX_REPLY_LINE = 512


@dataclass(frozen=True)
class Reply:
    """One SMTP reply.

    code: 200..599 (RFC 5321 §4.2.1); enhanced: "" or "class.subject.detail"
    whose class equals the code's first digit (RFC 3463 §2), e.g. "2.1.5";
    text: free text, "\\n" separates lines of a multi-line reply. Raises
    ValueError for a code out of range or an enhanced code of the wrong
    class. `wire` is the encoded reply (UTF-8, CRLF line ends), computed
    once per Reply.
    """

    code: int
    enhanced: str = ""
    text: str = ""

    def __post_init__(self):
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        e = self.enhanced
        if e and (e[0] != str(self.code)[0] or e.count(".") != 2):
            raise ValueError(f"enhanced status code {e!r} does not fit reply code {self.code}")

    @cached_property
    def wire(self) -> bytes:
        """The reply as sent: b"250 2.1.0 Ok\\r\\n" or a wrapped multi-line one."""
        return format_reply(self.code, self.enhanced, self.text)

    @property
    def is_error(self) -> bool:
        """True for a permanent negative reply (5yz, RFC 5321 §4.2.1)."""
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}" if self.enhanced else f"{self.code} {self.text}"


def _wrap(text: bytes, budget: int) -> list[bytes]:
    """Split one line of text into pieces of at most `budget` octets, at a
    space when there is one, otherwise between UTF-8 sequences."""
    out = []
    while len(text) > budget:
        cut = text.rfind(b" ", 0, budget + 1)
        if cut > 0:
            out.append(text[:cut])
            text = text[cut + 1 :]
            continue
        cut = budget
        while cut > 0 and (text[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        out.append(text[:cut])
        text = text[cut:]
    out.append(text)
    return out


def format_reply(code: int, enhanced: str, text: str) -> bytes:
    """Encode a reply, wrapped so no line exceeds 512 octets with CRLF
    (RFC 5321 §4.5.3.1.5, multi-line form §4.2.1). "\\n" in `text` starts a
    new line; CR and other C0 controls are replaced by spaces (a reply must
    never inject a line end). Returns the bytes to send."""
    code_b = b"%d" % code
    enh = enhanced.encode("ascii") + b" " if enhanced else b""
    budget = MAX_REPLY_LINE - 2 - 4 - len(enh)
    if not text.isprintable():
        text = "".join(c if c == "\n" or c.isprintable() else " " for c in text)
    pieces: list[bytes] = []
    for line in text.split("\n"):
        b = line.encode("utf-8")
        if len(b) <= budget:
            pieces.append(b)
        else:
            pieces.extend(_wrap(b, budget))
    if len(pieces) == 1:
        return code_b + b" " + enh + pieces[0] + b"\r\n"
    cont = code_b + b"-" + enh
    return b"".join([cont + p + b"\r\n" for p in pieces[:-1]]) + code_b + b" " + enh + pieces[-1] + b"\r\n"


# ---------------------------------------------------------------- standard
# Positive completion (RFC 5321 §4.2.2 for the codes, RFC 3463 for the rest).
OK = Reply(250, "2.0.0", "Ok")
MAIL_OK = Reply(250, "2.1.0", "Ok")  # RFC 3463 X.1.0: sender address
RCPT_OK = Reply(250, "2.1.5", "Ok")  # RFC 3463 X.1.5: destination valid
MESSAGE_OK = Reply(250, "2.0.0", "Ok")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "2.0.0", "Bye")
HELP = Reply(
    214,
    "2.0.0",
    "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\n"
    "See RFC 5321 (https://www.rfc-editor.org/rfc/rfc5321)",
)
# RFC 5321 §3.5.3: a server that will not verify answers 252 ("will accept
# the message and attempt delivery"), not 502, so clients do not give up.
CANNOT_VRFY = Reply(252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery")

# Command syntax and sequence (RFC 5321 §4.2.2; RFC 3463 X.5.x protocol).
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error")
BAD_CHARACTERS = Reply(500, "5.5.2", "Syntax error: control characters or invalid UTF-8 in command")
# RFC 5321 §4.5.3.1.4 (512 octets) and §4.5.3.1.9 ("500 Line too long").
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long (command lines are limited to 2048 octets)")
NO_ARGUMENTS = Reply(501, "5.5.4", "Syntax error: no arguments allowed")
NEED_DOMAIN = Reply(501, "5.5.4", "Syntax error: EHLO/HELO needs a domain or address literal")
NEED_ARGUMENT = Reply(501, "5.5.4", "Syntax error: argument required")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
NEED_HELO = Reply(503, "5.5.1", "Bad sequence of commands: send EHLO or HELO first")
NESTED_MAIL = Reply(503, "5.5.1", "Bad sequence of commands: a transaction is already open")
NEED_MAIL = Reply(503, "5.5.1", "Bad sequence of commands: send MAIL first")
NEED_RCPT = Reply(503, "5.5.1", "Bad sequence of commands: send RCPT first")
NO_SERVICE = Reply(503, "5.5.1", "Bad sequence of commands: no service here, send QUIT")
# RFC 5321 §3.3: DATA after every RCPT was refused may get 554 "no valid recipients".
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")

# Envelope (RFC 5321 §4.1.1.2-3, RFC 1870, RFC 6152, RFC 6531).
PARAMS_NEED_EHLO = Reply(555, "5.5.4", "MAIL/RCPT parameters need EHLO")
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter")
# RFC 5321 §4.5.3.1.10 and RFC 3463 X.5.3: 452 so the client sends the rest later.
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
# RFC 1870 §6.1 (at MAIL) and §6.3 (at the end of data): 552, X.3.4.
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# RFC 6531 §3.7.4.1: non-ASCII address without SMTPUTF8 is 553 5.6.7.
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter on MAIL")

# Message content (end of data: RFC 5321 §4.3.2 lists 554 for a failed DATA).
# RFC 5321 §6.3 / RFC 5598: too many Received headers means a loop; X.4.6 routing loop.
MAIL_LOOP = Reply(554, "5.4.6", "Too many Received headers: mail loop detected")
# SMTP smuggling (SEC Consult, 2023; CVE-2023-51764 and kin): RFC 5321 §2.3.8
# and §4.1.1.4 make <CRLF>.<CRLF> the only end of data; a bare CR or LF next to
# a lone dot is what other servers may take as one. 554 (§4.3.2) with X.5.2
# (RFC 3463 §3.6: syntax error), like Postfix and chasquid's bare-LF refusals.
SMUGGLING = Reply(554, "5.5.2", "Bare CR or LF in an end-of-data sequence refused (SMTP smuggling)")


# RFC 5321 §4.1.1.3 says nothing of a repeated RCPT; delivering once is what
# Postfix's cleanup does (duplicate_filter). Answered by the protocol itself.
DUPLICATE_RCPT = Reply(250, "2.1.5", "Ok (duplicate recipient: delivered once)")

# STARTTLS (RFC 3207 §4).
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_ACTIVE = Reply(503, "5.5.1", "Bad sequence of commands: TLS already active")
TLS_IN_TRANSACTION = Reply(503, "5.5.1", "Bad sequence of commands: mail transaction in progress")
# RFC 3207 §4: 454 "TLS not available due to temporary reason".
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")

# AUTH (RFC 4954 §4, §6; RFC 3463 and RFC 4954's X.7.8, X.7.11).
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_ALREADY = Reply(503, "5.5.1", "Bad sequence of commands: already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "Bad sequence of commands: AUTH is not permitted in a mail transaction")
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Authentication not enabled")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64 response")
AUTH_BAD_FINAL = Reply(501, "5.5.2", "Expected an empty response")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
BAD_AUTH_PARAM = Reply(501, "5.5.4", "Bad AUTH= parameter: xtext of <> or a mailbox (RFC 4954 §5)")


def too_many_errors(hostname: str) -> Reply:
    """421 4.7.0 after the error limit (RFC 5321 §3.8: the server closes)."""
    return Reply(421, "4.7.0", f"{hostname} Too many errors, closing connection")


def shutting_down(hostname: str) -> Reply:
    """421 4.3.2 for a server going down (RFC 5321 §3.8, RFC 3463 X.3.2)."""
    return Reply(421, "4.3.2", f"{hostname} Service shutting down")


def timed_out(hostname: str) -> Reply:
    """421 4.4.2 for an idle or data timeout (RFC 5321 §4.5.3.2, RFC 3463 X.4.2)."""
    return Reply(421, "4.4.2", f"{hostname} Timeout, closing connection")
