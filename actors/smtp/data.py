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
- size: once the content passes the maximum, it is no longer kept.

Text lines longer than 1000 octets (RFC 5321 §4.5.3.1.6) are accepted as
they are, neither refused nor split: the RFC allows a server to refuse
them, but real mail has them (generated HTML, long base64 without line
breaks), and Postfix and Exim accept it; splitting would break DKIM
signatures and the content.

The buffer handed in is the protocol's input buffer, set up to start with
b"\\r\\n" (the end of the DATA command line), so an empty message (".\\r\\n"
first) and a stuffed first line need no special case.
"""

from __future__ import annotations

import re

from estafeta.actors.smtp.replies import MESSAGE_TOO_BIG, SMUGGLING, Reply

END_OF_DATA = b"\r\n.\r\n"

# Every line that begins with a dot starts with b"\n." in the buffer (the
# buffer starts with the DATA line's CRLF): the end marker, a dot-stuffed
# line, and the lax ends that smuggling relies on after a LF. One search
# for it (a literal: the regex engine skips ahead) classifies them all.
_DOT_LINE = re.compile(rb"\n\.")
# A CR followed by a dot is a bare CR: \r.\r, \r.\n, \r.\r\n.
_SMUGGLE_CR = re.compile(rb"\r\.[\r\n]")

# What a b"\n." is (see _classify).
_MORE, _END, _SMUGGLE, _STUFFED, _PLAIN = range(5)


def _classify(buf: bytes | bytearray, i: int, end: int) -> int:
    """What the b"\n." at buf[i] is, from the octets around it in buf[:end]:

    - _END: b"\r\n.\r\n", the end of data (RFC 5321 §4.1.1.4);
    - _SMUGGLE: a lone dot where one of the line ends is a bare CR or LF —
      b"\n.\n", b"\r\n.\n", b"\n.\r" after a bare LF, b"\n.\r<x>" —
      which other servers may take as the end of data;
    - _STUFFED: a dot-stuffed line after a CRLF (RFC 5321 §4.5.2);
    - _PLAIN: a dot after a bare LF starting an ordinary line (not ours to
      unstuff, not an end anywhere);
    - _MORE: the octets that decide are not received yet.
    """
    if i + 2 >= end:
        return _MORE
    c = buf[i + 2]
    crlf = i > 0 and buf[i - 1] == 13
    if c == 10:
        return _SMUGGLE
    if c == 13:
        if i + 3 >= end:
            return _MORE if crlf else _SMUGGLE
        if buf[i + 3] != 10:
            return _SMUGGLE
        return _END if crlf else _SMUGGLE
    return _STUFFED if crlf else _PLAIN


def has_smuggling(buf: bytes | bytearray, start: int, end: int) -> bool:
    """True if buf[start:end] holds a lone dot between line ends where one
    of them is a bare CR or LF (see module doc; an end marker b"\r\n.\r\n"
    is not one). Octets before `start` are looked at to tell a CRLF from a
    bare LF; a sequence cut by `end` is not found (callers overlap windows
    by 4)."""
    search = _DOT_LINE.search
    m = search(buf, start, end)
    while m is not None:
        i = m.start()
        if _classify(buf, i, end) == _SMUGGLE:
            return True
        m = search(buf, i + 1, end)
    return _SMUGGLE_CR.search(buf, start, end) is not None


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

    feed(buf) is called whenever buf grew; buf[0:2] is b"\r\n" at the
    start. It returns the index of the end marker, or -1. Once an error is
    known (`error`: a Reply: SMUGGLING or MESSAGE_TOO_BIG, the first found
    wins) the content is no longer checked nor kept: feed() trims buf to
    its last 4 octets (enough to find a marker straddling chunks), so
    memory stays bounded by one chunk.

    Cost per octet: one search for b"\n." (which finds the end marker,
    dot-stuffing and LF smuggling at once) and one for b"\r."; unstuffing
    only when a stuffed line was seen.
    """

    __slots__ = ("max_size", "error", "size", "dotted", "_offset", "_scan", "_searched", "_checked")

    def __init__(self, max_size: int):
        self.max_size = max_size  # bytes of content (CRLFs and stuffing dots included)
        self.error: Reply | None = None
        self.size = 0  # bytes of content, set when the end is found
        self.dotted = False  # a dot-stuffed line was seen: take() must unstuff
        self._offset = -2  # content index of buf[0] (the leading CRLF is not content)
        self._scan = 0  # where the next b"\n." search starts
        self._searched = 0  # where the next end-marker search starts (after an error)
        self._checked = 0  # where the next b"\r." search starts

    def _dots(self, buf: bytearray, n: int) -> int:
        """Classify the b"\n." found in buf[:n] from _scan on; returns the
        end marker's index or -1. Sets `error` on smuggling, `dotted` on a
        stuffed line."""
        search = _DOT_LINE.search
        pos = self._scan
        while True:
            m = search(buf, pos, n)
            if m is None:
                self._scan = max(pos, n - 1)  # a LF at the very end may start one
                return -1
            i = m.start()
            kind = _classify(buf, i, n)
            if kind == _MORE:
                self._scan = i
                return -1
            if kind == _END:
                self._scan = i
                return i - 1
            if kind == _SMUGGLE:
                self.error = SMUGGLING
                self._scan = i
                return -1
            if kind == _STUFFED:
                self.dotted = True
            pos = i + 1

    def _check(self, buf: bytearray, end: int) -> None:
        checked = self._checked
        if _SMUGGLE_CR.search(buf, checked, end) is not None:
            self.error = SMUGGLING
            return
        self._checked = max(checked, end - 4)

    def feed(self, buf: bytearray) -> int:
        """Scan what arrived; returns the index of b"\r\n.\r\n" (the
        content is buf[2:index + 2] when no error was found) or -1 when more
        data is needed."""
        n = len(buf)
        if self.error is None:
            e = self._dots(buf, n)
            if self.error is None:
                if e >= 0:
                    self.size = self._offset + e + 2
                    if self.size > self.max_size:
                        self.error = MESSAGE_TOO_BIG
                    else:
                        self._check(buf, e + 2)
                    return e
                self._check(buf, n)
                # The marker starts at n - 4 or later, and the content ends 2
                # octets after its start.
                if self.error is None and self._offset + n - 2 > self.max_size:
                    self.error = MESSAGE_TOO_BIG
            if self.error is not None:
                self._searched = max(min(self._scan, self._checked) - 1, 0)
            else:
                return -1
        # An error is known: only the end marker matters now.
        e = buf.find(END_OF_DATA, self._searched)
        if e >= 0:
            self.size = self._offset + e + 2
            return e
        if n > 4:
            del buf[: n - 4]
            self._offset += n - 4
            self._searched = 0
        else:
            self._searched = max(n - 4, 0)
        return -1

    def take(self, buf: bytearray, end: int) -> bytes:
        """The message from buf[2:end + 2] (end from feed()), dot-unstuffed."""
        with memoryview(buf) as view:
            content = bytes(view[2 : end + 2])
        return unstuff(content) if self.dotted else content
