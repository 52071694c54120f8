"""Addresses of local domains: one spelling per user.

A local part is compared after PRECIS UsernameCaseMapped (RFC 8265 §3.3,
the `precis_i18n` package: width mapping, lower case, NFC, and the
IdentifierClass repertoire), so "Alice@Example.org", "ALICE@example.org"
and "ａｌｉｃｅ@example.org" are one user, for logging in and for delivery.
Domains are compared as IDNA2008/UTS 46 A-labels in lower case
(supervisor.config.normalize_domain).

Beyond that, `AddressRules` gives the lookup keys of chasquid's drop
characters and suffix separators: with drop "." and suffix "+",
"a.lice+lists" is looked up as "alice+lists" (drops removed before the
suffix), then as "alice" (the suffix removed too).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import precis_i18n

from estafeta.supervisor.config import normalize_domain

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
#: RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64


class AddressError(ValueError):
    """An address or local part that cannot name a user (not PRECIS-valid,
    empty, too long, no domain); str() says why."""


def split_address(address: str) -> tuple[str, str]:
    """ "local@domain" -> (local, domain), split at the last "@" (a quoted
    local part may hold "@"); ("postmaster", "") for a bare local part."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def unquote_local_part(local: str) -> str:
    """`"john doe"` -> `john doe`: the content of a Quoted-string local part
    (RFC 5321 §4.1.2, backslash pairs undone); others unchanged."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        inner = local[1:-1]
        out, i = [], 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return "".join(out)
    return local


@lru_cache(maxsize=8192)
def normalize_local(local: str) -> str:
    """A local part (quoted or not) as PRECIS UsernameCaseMapped enforces it
    (RFC 8265 §3.3). Printable ASCII (the common case) is just lower-cased:
    for it the profile's rules reduce to that. Raises AddressError for one
    the profile refuses (spaces, controls, compatibility characters, empty)
    or longer than 64 octets."""
    name = unquote_local_part(local)
    if name.isascii() and name.isprintable() and " " not in name and name:
        norm = name.lower()
    else:
        try:
            norm = _USERNAME.enforce(name)
        except UnicodeEncodeError as e:
            raise AddressError(f"{local!r} is not a valid user name ({e.reason})") from None
    if len(norm.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError(f"{local!r} is longer than {MAX_LOCAL_PART} octets")
    return norm


def normalize_address(address: str) -> str:
    """ "Alice@Example.ORG" -> "alice@example.org": normalize_local and
    normalize_domain. Raises AddressError (no domain, bad local part or
    domain)."""
    local, domain = split_address(address)
    if not domain:
        raise AddressError(f'"{address}" has no domain (user@domain)')
    try:
        dom = normalize_domain(domain)
    except ValueError as e:
        raise AddressError(str(e)) from None
    return f"{normalize_local(local)}@{dom}"


@dataclass(frozen=True)
class AddressRules:
    """chasquid's drop characters and suffix separators (Config
    drop_characters, suffix_separators), applied to normalised local parts
    of local domains only."""

    suffix_separators: str = "+"
    drop_characters: str = "."

    def _suffix_at(self, local: str) -> int:
        seps = self.suffix_separators
        cut = len(local)
        for sep in seps:
            i = local.find(sep)
            if 0 <= i < cut:
                cut = i
        return cut

    def without_drops(self, local: str) -> str:
        """The drop characters removed up to the first suffix separator, the
        suffix kept as is: "a.lice+x.y" -> "alice+x.y"."""
        drops = self.drop_characters
        if not drops:
            return local
        cut = self._suffix_at(local)
        head = "".join(c for c in local[:cut] if c not in drops)
        return head + local[cut:]

    def base(self, local: str) -> str:
        """The drop characters and any suffix removed: "a.lice+x" -> "alice"."""
        cut = self._suffix_at(local)
        drops = self.drop_characters
        head = local[:cut]
        return "".join(c for c in head if c not in drops) if drops else head

    def keys(self, local: str) -> tuple[str, ...]:
        """The lookup keys of a normalised local part, most specific first
        and without repeats: (without_drops, base)."""
        exact = self.without_drops(local)
        base = self.base(local)
        return (exact,) if base == exact or not base else (exact, base)
