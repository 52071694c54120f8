"""iprev (RFC 8601 §3): forward-confirmed reverse DNS of the SMTP client.

    check_iprev(resolver, client_ip, *, context=None) -> IprevResult

The client's address is looked up as a PTR (in-addr.arpa / ip6.arpa);
each name found (at most MAX_NAMES, like SPF's "ptr", RFC 7208 §5.5) is
looked up as A or AAAA (the client's family); the check passes when one
of them includes the client's address. Results (§2.7.3):

- pass: a name maps back to the address;
- fail: PTR names exist but none maps back (their forward lookups found
  other addresses, or NXDOMAIN / no data);
- permerror: no PTR data (NXDOMAIN or an empty answer);
- temperror: a lookup failed temporarily (SERVFAIL, timeout) and no name
  passed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from estafeta.actors.checks.dnsport import DnsPort, Lookup, Recorder, is_temporary, lookup_attributes

#: Most PTR names whose addresses are looked up.
MAX_NAMES = 10


@dataclass(frozen=True, slots=True)
class IprevResult:
    """The iprev verdict: result (pass, fail, permerror, temperror), the
    client's address, the confirmed name ("" unless pass), every PTR name
    found, a reason, and the lookups made."""

    result: str
    client_ip: str
    name: str = ""
    ptr_names: tuple[str, ...] = ()
    reason: str = ""
    lookups: tuple[Lookup, ...] = ()

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.iprev span."""
        attrs: dict[str, Any] = {
            "iprev.result": self.result,
            "iprev.name": self.name,
            "iprev.ptr_names": self.ptr_names,
            "iprev.reason": self.reason,
        }
        attrs.update(lookup_attributes("iprev", self.lookups))
        return attrs


def check_iprev(resolver: DnsPort, client_ip: str, *, context: Any = None) -> IprevResult:
    """Forward-confirmed reverse DNS of `client_ip`. Never raises (an
    unparsable address is permerror)."""
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return IprevResult("permerror", client_ip, reason="not an IP address")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    recorder = Recorder(resolver, context)
    ptr = recorder.query(addr.reverse_pointer, "PTR")
    if is_temporary(ptr):
        return IprevResult("temperror", str(addr), reason=f"PTR: DNS {ptr.rcode}", lookups=recorder.recorded())
    names = tuple(dict.fromkeys(n.rstrip(".").lower() for n in ptr.records))
    if not names:
        return IprevResult("permerror", str(addr), reason="no PTR record", lookups=recorder.recorded())
    rdtype = "A" if addr.version == 4 else "AAAA"
    temporary = ""
    for name in names[:MAX_NAMES]:
        answer = recorder.query(name, rdtype)
        if is_temporary(answer):
            temporary = temporary or f"{name} {rdtype}: DNS {answer.rcode}"
            continue
        for record in answer.records:
            try:
                if ipaddress.ip_address(record) == addr:
                    return IprevResult("pass", str(addr), name, names, lookups=recorder.recorded())
            except ValueError:
                continue
    if temporary:
        return IprevResult("temperror", str(addr), "", names, temporary, recorder.recorded())
    return IprevResult("fail", str(addr), "", names, "no PTR name maps back to the address", recorder.recorded())
