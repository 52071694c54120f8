"""DNS blocklists (RFC 5782), optional, off by default.

    check_dnsbl(resolver, client_ip, zones, threshold, *, context=None) -> DnsblResult

The client's address is looked up in each zone (IPv4: its octets
reversed, "2.0.0.127.<zone>"; IPv6: its 32 nibbles reversed, RFC 5782
§2.4) as an A record; an answer in 127.0.0.0/8 means listed (§2.3), except
127.255.255.0/24, which the large lists answer to tell a resolver it is
refused or unknown (not a listing). A listed client's TXT record gives the
list's reason. Each zone has a weight; the client is refused when the
weights of the zones that list it add up to the threshold (like mox's
"dnsbl" and SpamAssassin's scores) — with a threshold of 1 and weights of
1, any one list refuses. A refused client gets
554 5.7.1 naming the zones, at connect (RFC 5321 §3.1: 554 instead of the
greeting), so its mail is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from estafeta.actors.checks.dnsport import DnsPort, Lookup, Recorder, is_temporary, lookup_attributes
from estafeta.actors.smtp.replies import Reply

_LISTED = ipaddress.ip_network("127.0.0.0/8")
_ERROR_CODES = ipaddress.ip_network("127.255.255.0/24")


@dataclass(frozen=True, slots=True)
class DnsblZone:
    """A blocklist: its DNS zone and the weight of a listing in it."""

    zone: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class DnsblHit:
    """A zone that lists the client: the A records and the TXT reason."""

    zone: str
    weight: float
    codes: tuple[str, ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class DnsblResult:
    """The lists' verdict: `listed` when the hits' weights reach the
    threshold; `score` their sum; `errors` the zones whose lookup failed
    temporarily (not counted); the lookups made."""

    listed: bool
    score: float
    hits: tuple[DnsblHit, ...] = ()
    errors: tuple[str, ...] = ()
    lookups: tuple[Lookup, ...] = ()

    def reply(self) -> Reply | None:
        """554 5.7.1 naming the listing zones (and the first reason), or
        None when the client is not refused."""
        if not self.listed:
            return None
        zones = ", ".join(h.zone for h in self.hits)
        text = f"client blocked using {zones}"
        reason = next((h.text for h in self.hits if h.text), "")
        if reason:
            text += f": {reason[:200]}"
        return Reply(554, "5.7.1", text)

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.dnsbl span."""
        attrs: dict[str, Any] = {
            "dnsbl.listed": self.listed,
            "dnsbl.score": self.score,
            "dnsbl.hits": tuple(f"{h.zone} {','.join(h.codes)}" for h in self.hits),
            "dnsbl.errors": self.errors,
        }
        attrs.update(lookup_attributes("dnsbl", self.lookups))
        return attrs


def query_name(client_ip: str, zone: str) -> str:
    """The name to look up for `client_ip` in `zone` (RFC 5782 §2.1, §2.4).
    Raises ValueError for an address that does not parse."""
    addr = ipaddress.ip_address(client_ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        labels = str(addr).split(".")
    else:
        labels = list(addr.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone.rstrip(".")


def _listing_codes(records: Sequence[str]) -> tuple[str, ...]:
    codes = []
    for r in records:
        try:
            a = ipaddress.ip_address(r)
        except ValueError:
            continue
        if a in _LISTED and a not in _ERROR_CODES:
            codes.append(r)
    return tuple(codes)


def check_dnsbl(
    resolver: DnsPort,
    client_ip: str,
    zones: Sequence[DnsblZone],
    threshold: float = 1.0,
    *,
    context: Any = None,
) -> DnsblResult:
    """Look `client_ip` up in every zone (any address: the session does not
    call this for submission or relay_network clients). Never raises."""
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        return DnsblResult(False, 0.0)
    if not zones:
        return DnsblResult(False, 0.0)
    recorder = Recorder(resolver, context)
    hits, errors = [], []
    for z in zones:
        name = query_name(client_ip, z.zone)
        answer = recorder.query(name, "A")
        if is_temporary(answer):
            errors.append(z.zone)
            continue
        codes = _listing_codes(answer.records)
        if not codes:
            continue
        txt = recorder.query(name, "TXT")
        hits.append(DnsblHit(z.zone, z.weight, codes, txt.records[0] if txt.records else ""))
    score = sum(h.weight for h in hits)
    return DnsblResult(bool(hits) and score >= threshold, score, tuple(hits), tuple(errors), recorder.recorded())
