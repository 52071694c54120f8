"""The client side's reading of a server: replies and EHLO keywords.

`ReplyReader` splits the bytes a server sends into `Reply` values
(RFC 5321 §4.2: "ddd-text" continuation lines, a last line "ddd text" or
"ddd"); `Extensions` is what an EHLO/LHLO reply offers (RFC 5321
§4.1.1.1, the keywords of the extensions estafeta uses).

Liberal in what it accepts, as deployed clients are: a bare LF ends a line
like CRLF; a continuation line whose code differs from the last line's
is taken with the last line's code; lines up to MAX_LINE octets (RFC 5321
§4.5.3.1.5 says 512, some servers send more); the text is UTF-8 with
undecodable octets replaced. An enhanced status code (RFC 3463 §2,
announced by ENHANCEDSTATUSCODES, RFC 2034 §4) at the start of a line's
text is taken off it; a malformed one, or one whose class is not the reply
code's first digit, is not an enhanced code: it stays in the text and
the Reply's `enhanced` is "". What cannot be a reply at all (no three-digit
code, a code outside 200..599, an endless line) raises ReplyError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from estafeta.actors.smtp.replies import Reply

#: Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5 says 512;
#: this leaves room for servers that exceed it).
MAX_LINE = 4096
#: Most lines in one multi-line reply (an EHLO reply has a dozen or two).
MAX_LINES = 200

# RFC 3463 §2: status-code = class "." subject "." detail; subject and
# detail are 1-3 digits without leading zeros in practice (accepted here).
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: +|$)")


class ReplyError(ValueError):
    """The server sent something that is not an SMTP reply (RFC 5321
    §4.2). The message says what, with the start of the offending line."""


def split_enhanced(code: int, text: str) -> tuple[str, str]:
    """("5.1.1", "rest") when `text` starts with an enhanced status code of
    the reply code's class (RFC 3463 §2, RFC 2034 §4), else ("", text)."""
    if text[1:2] != "." or text[:1] != _CLASS[code // 100]:  # the common misses, without the regex
        return "", text
    m = _ENHANCED.match(text)
    if m is None:
        return "", text
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}", text[m.end() :]


_CLASS = {2: "2", 3: "3", 4: "4", 5: "5"}


def _build(code: int, texts: list[str]) -> Reply:
    enhanced, first = split_enhanced(code, texts[0])
    if len(texts) == 1:
        return Reply(code, enhanced, first)
    lines = [first]
    for t in texts[1:]:
        e, rest = split_enhanced(code, t)
        lines.append(rest if e and e == enhanced else t)
    return Reply(code, enhanced, "\n".join(lines))


class ReplyReader:
    """Incremental reply parser: feed() bytes in any chunking, then take
    replies with next_reply() until it returns None (more input needed).

    clear() forgets everything buffered: after the 220 to STARTTLS nothing
    received in plaintext may be used (RFC 3207 §4.2)."""

    __slots__ = ("_buf", "_texts", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._texts: list[str] = []  # lines of the reply being read
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()
        self._texts.clear()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a returned reply."""
        return len(self._buf) - self._pos

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None if more input is needed. Raises
        ReplyError for input that is not a reply (the reader is then of no
        further use: the connection must be dropped)."""
        buf = self._buf
        while True:
            start = self._pos
            i = buf.find(b"\n", start)
            if i < 0:
                if len(buf) - start > MAX_LINE:
                    raise ReplyError(f"reply line longer than {MAX_LINE} octets: {bytes(buf[start : start + 40])!r}")
                if start:
                    del buf[:start]
                    self._pos = 0
                return None
            end = i - 1 if i > start and buf[i - 1] == 13 else i
            self._pos = i + 1
            n = end - start
            if n + 2 > MAX_LINE:
                raise ReplyError(f"reply line longer than {MAX_LINE} octets: {bytes(buf[start : start + 40])!r}")
            # Reply-line = Reply-code [ SP / "-" textstring ] (RFC 5321 §4.2),
            # codes 2xx..5xx; checked by hand (a regex costs more per line).
            sep = buf[start + 3] if n > 3 else 32
            if n < 3 or not (50 <= buf[start] <= 53) or not buf[start + 1 : start + 3].isdigit() or sep not in (32, 45):
                raise ReplyError(f"not an SMTP reply line: {bytes(buf[start:end][:80])!r}")
            text = buf[start + 4 : end].decode("utf-8", "replace")
            texts = self._texts
            if sep == 45:  # "-": more lines follow
                if len(texts) >= MAX_LINES:
                    raise ReplyError(f"multi-line reply of more than {MAX_LINES} lines")
                texts.append(text)
                continue
            code = int(buf[start : start + 3])
            if not texts:
                return _build(code, [text])
            texts.append(text)
            self._texts = []
            return _build(code, texts)


@dataclass(frozen=True)
class Extensions:
    """The service extensions a server offered in its EHLO/LHLO reply
    (RFC 5321 §4.1.1.1: one "keyword [params]" per line after the first).

    keywords: upper-case keyword -> its parameters as sent ("" for none);
    esmtp: False after a HELO fallback (then nothing is offered).
    The properties read the keywords estafeta's client uses; others
    (CHUNKING, XCLIENT, ...) are kept in `keywords` and ignored."""

    keywords: Mapping[str, str] = field(default_factory=dict)
    esmtp: bool = True

    @classmethod
    def from_reply(cls, reply: Reply) -> Extensions:
        """Parse an EHLO/LHLO 250 reply. Old servers announce AUTH as
        "AUTH=LOGIN PLAIN" (pre-RFC 2554 syntax, still seen): read as AUTH.
        Empty or malformed lines are skipped."""
        keywords: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            word, _, params = line.strip().partition(" ")
            if word.upper().startswith("AUTH="):
                word, params = "AUTH", word[5:] + " " + params
            if not word or not word.replace("-", "").isalnum() or not word.isascii():
                continue
            key = word.upper()
            params = params.strip()
            if key == "AUTH" and key in keywords:
                params = f"{keywords[key]} {params}".strip()
            keywords[key] = params
        return cls(keywords)

    @property
    def size(self) -> int | None:
        """RFC 1870 §4: SIZE's limit in octets; 0 when offered without one
        (or with a value that is not a number); None when not offered."""
        if "SIZE" not in self.keywords:
            return None
        value = self.keywords["SIZE"].split(" ", 1)[0]
        return int(value) if value.isdigit() else 0

    @property
    def pipelining(self) -> bool:
        """RFC 2920."""
        return "PIPELINING" in self.keywords

    @property
    def eightbitmime(self) -> bool:
        """RFC 6152."""
        return "8BITMIME" in self.keywords

    @property
    def smtputf8(self) -> bool:
        """RFC 6531."""
        return "SMTPUTF8" in self.keywords

    @property
    def starttls(self) -> bool:
        """RFC 3207."""
        return "STARTTLS" in self.keywords

    @property
    def dsn(self) -> bool:
        """RFC 3461."""
        return "DSN" in self.keywords

    @property
    def enhancedstatuscodes(self) -> bool:
        """RFC 2034."""
        return "ENHANCEDSTATUSCODES" in self.keywords

    @property
    def auth(self) -> frozenset[str]:
        """RFC 4954 §3: the SASL mechanisms offered, upper-case."""
        return frozenset(m.upper() for m in self.keywords.get("AUTH", "").split())

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" if v else k for k, v in self.keywords.items())
