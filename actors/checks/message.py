"""The header section of a message as the checks need it (RFC 5322 §2.2).

Messages are bytes with CRLF line ends as received (a bare LF is taken as a
line end too). A header field is its name, a colon and its value, with
continuation lines starting with a space or a tab (folding, §2.2.3). The
header section ends at the first empty line; a message without one is all
header.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass

from estafeta.supervisor.config import normalize_domain

# A field starts at the beginning of the message or after a line end, with
# a name (printable ASCII but colon, §2.2), optional whitespace, a colon;
# it runs to the line end not followed by a space or a tab.
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:(?:[^\n]*\n[ \t])*[^\n]*(?:\n|\Z)")
_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: `name` as written, `raw` the whole field (name to
    line end, folding included), `start`/`end` its offsets in the message."""

    name: str
    raw: bytes
    start: int
    end: int

    def value(self) -> str:
        """The unfolded value (§2.2.3), leading and trailing blanks removed;
        non-UTF-8 octets kept as surrogate escapes."""
        v = self.raw.split(b":", 1)[1]
        return _LINE_END.sub(b"", v).strip().decode("utf-8", "surrogateescape")


def header_fields(message: bytes) -> tuple[list[HeaderField], int]:
    """The header fields of `message` in order, and the offset of the body
    (just after the empty line ending the header section; len(message) if
    there is none). A line that is not a field (no colon) ends the header
    section, as it would for a parser that reads fields until one fails."""
    fields: list[HeaderField] = []
    pos, n = 0, len(message)
    while pos < n:
        if message.startswith(b"\r\n", pos):
            return fields, pos + 2
        if message.startswith(b"\n", pos):
            return fields, pos + 1
        m = _FIELD.match(message, pos)
        if m is None:
            return fields, pos
        fields.append(HeaderField(m.group(1).decode("ascii"), m.group(0), pos, m.end()))
        pos = m.end()
    return fields, n


def has_field(message: bytes, prefix: bytes) -> bool:
    """True if a header field whose name starts with `prefix` (lower case,
    e.g. b"dkim-signature", b"arc-") may be in `message`'s header section:
    a quick test (no parse) that lets a check skip its work; a field name
    at the start of a line of the header section, in any case."""
    end = message.find(b"\r\n\r\n")
    head = message[: end if end >= 0 else len(message)].lower()
    return head.startswith(prefix) or b"\n" + prefix in head


def values(message: bytes, name: str) -> list[str]:
    """The unfolded values of every field called `name` (case-insensitive)."""
    name = name.lower()
    return [f.value() for f in header_fields(message)[0] if f.name.lower() == name]


class FromError(ValueError):
    """The message has no usable RFC5322.From (RFC 7489 §6.6.1): none, more
    than one, more than one address, or an address without a domain."""


def from_domain(message: bytes) -> str:
    """The domain of the RFC5322.From author address, as an A-label in lower
    case (RFC 7489 §3.1, §6.6.1). Raises FromError saying why there is none."""
    froms = values(message, "From")
    if not froms:
        raise FromError("no From header field")
    if len(froms) > 1:
        raise FromError(f"{len(froms)} From header fields")
    addresses = [a for _, a in email.utils.getaddresses([froms[0]]) if a]
    if len(addresses) != 1:
        raise FromError(f"From has {len(addresses)} addresses")
    local, at, domain = addresses[0].rpartition("@")
    if not at or not local or not domain:
        raise FromError(f'From address "{addresses[0]}" has no domain')
    try:
        return normalize_domain(domain)
    except ValueError as e:
        raise FromError(str(e)) from None


def remove_fields(message: bytes, fields: list[HeaderField]) -> bytes:
    """`message` without the given header fields (as found by header_fields)."""
    if not fields:
        return message
    out, pos = [], 0
    for f in sorted(fields, key=lambda f: f.start):
        out.append(message[pos : f.start])
        pos = f.end
    out.append(message[pos:])
    return b"".join(out)
