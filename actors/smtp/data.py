"""Bulk reading of DATA content (RFC 5321 §4.1.1.4, §4.5.2).

The content is scanned in whole chunks with C-speed searches, never line by
line in Python:

- the end of data is the first b"\\r\\n.\\r\\n" (bytes.find, resumed 4 bytes
  before the previous buffer end so a marker straddling chunks is found);
- SMTP smuggling: a lone dot next to a bare CR or LF ("\\n.\\n", "\\r.\\r",
  "\\r\\n.\\n", "\\n.\\r\\n", ...) is what other servers may take as the end of
  data (SEC Consult 2023, CVE-2023-51764 and kin); RFC 5321 §2.3.8 and
  §4.1.1.4 allow only <CRLF>.<CRLF>. Two regexes with a literal first byte
  (so the regex engine skips ahead like memchr) find them; the message is
  refused at its real end and never split;
- text lines longer than 1000 octets with CRLF (RFC 5321 §4.5.3.1.6): LF-free
  500-octet windows are looked for with bytes.find (a line of 1000+ octets
  must contain one), and only such a window is checked exactly by regex;
- size: once the content passes the maximum, it is no longer kept.

The buffer handed in is the protocol's input buffer, set up to start with
b"\\r\\n" (the end of the DATA command line), so an empty message (".\\r\\n"
first) and a stuffed first line need no special case.
"""
from __future__ import annotations

import re

from estafeta.actors.smtp.replies import MESSAGE_TOO_BIG, SMUGGLING, TEXT_LINE_TOO_LONG, Reply

END_OF_DATA = b"\r\n.\r\n"
#: RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF,
#: "not counting the leading dot duplicated for transparency".
MAX_TEXT_LINE = 1000

# After "\n.": a LF (\n.\n, \r\n.\n), a CR not followed by LF (\r\n.\r<x>),
# or a CR at all when the LF was bare (\n.\r\n): lookbehind sees before the
# search start, so windows may begin anywhere.
_SMUGGLE_LF = re.compile(rb"\n\.(?:\n|\r[^\n]|(?<!\r\n\.)\r)")
# A CR followed by a dot is a bare CR: \r.\r, \r.\n, \r.\r\n.
_SMUGGLE_CR = re.compile(rb"\r\.[\r\n]")
# A line (LF to LF, so its CR counts as one of the 1000) of 999 octets plus
# CRLF or more; a dot-stuffing dot is skipped first (possessively).
_LONG_LINE = re.compile(rb"\n\.?+[^\n]{%d}" % MAX_TEXT_LINE)
# Any run of >= 2*_WINDOW - 1 LF-free octets contains an aligned window.
_WINDOW = MAX_TEXT_LINE // 2


def has_smuggling(buf: bytes | bytearray, start: int, end: int) -> bool:
    """True if buf[start:end] holds a lone dot between line ends where one
    of them is a bare CR or LF (see module doc). Patterns are at most 4
    octets; the caller overlaps windows by 4."""
    return _SMUGGLE_LF.search(buf, start, end) is not None or _SMUGGLE_CR.search(buf, start, end) is not None


def has_long_line(buf: bytes | bytearray, start: int, end: int) -> bool:
    """True if a line that begins after the LF at buf[start] and lies in
    buf[start:end] is over MAX_TEXT_LINE octets with its CRLF (a dot-stuffing
    dot not counted). Cost: one bytes.find per 500 octets, which stops at
    the first LF, so ordinary text is skimmed."""
    find = buf.find
    for s in range(start, end - _WINDOW + 1, _WINDOW):
        if find(10, s, s + _WINDOW) < 0:  # 10: LF (an int needle is cheaper to parse)
            line_start = buf.rfind(10, start, s)
            if _LONG_LINE.match(buf, line_start, end) is not None:
                return True
    return False


def unstuff(content: bytes) -> bytes:
    """Undo dot-stuffing (RFC 5321 §4.5.2): the first dot of every line that
    begins with one is removed. `content` is the data up to and including
    the CRLF before the final ".", so every b"\\r\\n." in it starts a stuffed
    line. Copies only when there is something to remove (split + join is
    about twice as fast as bytes.replace here)."""
    pieces = content.split(b"\r\n.")
    if len(pieces) > 1:
        content = b"\r\n".join(pieces)
    if content[:1] == b".":
        content = content[1:]
    return content


def count_received(message: bytes) -> int:
    """Number of header fields named "Received" (any case) in the header
    section, i.e. before the first empty line (RFC 5322 §2.1, §3.6.7)."""
    if message[:2] == b"\r\n":
        return 0
    end = message.find(b"\r\n\r\n")
    head = (message if end < 0 else message[: end + 2]).lower()
    return head.count(b"\nreceived:") + head.startswith(b"received:")


class DataReader:
    """Incremental state of one DATA transfer over the growing input buffer.

    feed(buf) is called whenever buf grew; buf[0:2] is b"\\r\\n" at the
    start. It returns the index of the end marker, or -1. Once an error is
    known (`error`: a Reply: SMUGGLING, MESSAGE_TOO_BIG or
    TEXT_LINE_TOO_LONG, the first found wins) the content is no longer
    checked nor kept: feed() trims buf to its last 4 octets (enough to find
    a marker straddling chunks), so memory stays bounded by one chunk.
    """

    __slots__ = ("max_size", "error", "size", "_offset", "_searched", "_checked", "_line_start")

    def __init__(self, max_size: int):
        self.max_size = max_size  # bytes of content (CRLFs and stuffing dots included)
        self.error: Reply | None = None
        self.size = 0  # bytes of content, set when the end is found
        self._offset = -2  # content index of buf[0] (the leading CRLF is not content)
        self._searched = 0  # where the next end-marker search starts
        self._checked = 0  # where the next smuggling search starts
        self._line_start = 1  # the LF that starts the line not yet fully checked

    def _check(self, buf: bytearray, end: int) -> None:
        checked = self._checked
        if has_smuggling(buf, checked, end):
            self.error = SMUGGLING
            return
        self._checked = max(checked, end - 4)
        line_start = self._line_start
        if has_long_line(buf, line_start, end):
            self.error = TEXT_LINE_TOO_LONG
            return
        last = buf.rfind(b"\n", line_start, end)
        if last >= 0:
            self._line_start = last

    def feed(self, buf: bytearray) -> int:
        """Scan what arrived; returns the index of b"\\r\\n.\\r\\n" (the
        content is buf[2:index + 2] when no error was found) or -1 when more
        data is needed."""
        n = len(buf)
        e = buf.find(END_OF_DATA, self._searched)
        if e >= 0:
            self.size = self._offset + e + 2
            if self.error is None:
                if self.size > self.max_size:
                    self.error = MESSAGE_TOO_BIG
                else:
                    self._check(buf, e + 2)
            return e
        if self.error is None:
            self._check(buf, n)
            # The marker starts at n - 4 or later, and the content ends 2
            # octets after its start.
            if self._offset + n - 2 > self.max_size:
                self.error = MESSAGE_TOO_BIG
        if self.error is not None and n > 4:
            del buf[: n - 4]
            self._offset += n - 4
            self._searched = 0
        else:
            self._searched = max(n - 4, 0)
        return -1

    @staticmethod
    def take(buf: bytearray, end: int) -> bytes:
        """The message from buf[2:end + 2] (end from feed()), dot-unstuffed."""
        with memoryview(buf) as view:
            content = bytes(view[2 : end + 2])
        return unstuff(content)
