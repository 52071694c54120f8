"""SPF (RFC 7208) through pyspf, its DNS routed through our resolver.

    check_spf(resolver, client_ip, helo, mail_from, *, receiver="", context=None) -> SpfResult

The identity checked is the MAIL FROM reverse-path (RFC 7208 §2.4); when
it is null (``MAIL FROM:<>``) the HELO identity is checked instead, as
"postmaster@<helo>" (§2.3, §2.4). pyspf enforces the processing limits of
§4.6.4: at most 10 mechanisms or modifiers that query DNS (include, a, mx,
ptr, exists, redirect) and at most 2 "void" lookups (NXDOMAIN or no
answer); past either the result is permerror. The results are those of
§2.6: none, neutral, pass, fail, softfail, temperror, permerror.

pyspf looks names up through a module-level function, ``spf.DNSLookup``;
it is replaced once, at import, by `_lookup`, which sends the query to the
resolver of the check running in the current greenlet (a ContextVar:
greenlets each have their own context), and to pyspf's own dnspython
lookup when no check is running (pyspf used directly elsewhere).
"""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass
from typing import Any

import spf

from estafeta.actors.checks.dnsport import DnsPort, Lookup, Recorder, is_temporary, lookup_attributes

#: The results of RFC 7208 §2.6, as pyspf names them.
RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")

#: Most seconds the whole evaluation may take before it is temperror
#: (RFC 7208 §4.6.4: "at least 20 seconds").
DEFAULT_TIMEOUT = 20.0

_current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("estafeta_spf_recorder", default=None)
_pyspf_lookup = spf.DNSLookup


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list:
    """pyspf's DNSLookup contract: a list of ((name, type), value) — an
    address string for A/AAAA, (preference, exchange) for MX, a name for
    PTR, a list of bytes strings for TXT — empty for NXDOMAIN or no data;
    spf.TempError for a temporary failure."""
    recorder = _current.get()
    if recorder is None:
        return _pyspf_lookup(name, qtype, strict, timeout)
    if qtype == "SPF":  # RR type 99, obsolete (RFC 7208 §3.1); pyspf asks only in "harsh" mode
        return []
    answer = recorder.query(name, qtype)
    if is_temporary(answer):
        raise spf.TempError(f"DNS {answer.rcode} for {name} {qtype}")
    key = (name, qtype)
    if qtype == "TXT":
        return [(key, [r.encode("utf-8", "surrogateescape")]) for r in answer.records]
    if qtype == "MX":
        out = []
        for r in answer.records:
            pref, _, exchange = r.partition(" ")
            out.append((key, (int(pref), exchange.rstrip("."))))
        return out
    return [(key, r.rstrip(".")) for r in answer.records]


spf.DNSLookup = _lookup


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The SPF verdict on one identity.

    - result: one of RESULTS (RFC 7208 §2.6);
    - identity: "mailfrom" or "helo" (RFC 8601 ptype smtp.mailfrom /
      smtp.helo);
    - domain: the domain checked (the reverse-path's, or the HELO name);
    - mail_from: the reverse-path as given ("" for <>);
    - helo: the HELO/EHLO name;
    - reason: pyspf's explanation (or the domain's exp= text);
    - lookups: the DNS queries made, in order.
    """

    result: str
    identity: str
    domain: str
    mail_from: str
    helo: str
    reason: str
    lookups: tuple[Lookup, ...] = ()

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.spf span."""
        attrs = {
            "spf.result": self.result,
            "spf.identity": self.identity,
            "spf.domain": self.domain,
            "spf.reason": self.reason,
        }
        attrs.update(lookup_attributes("spf", self.lookups))
        return attrs


def _helo_domain(helo: str) -> str:
    """The HELO name as a domain, or "" for an address literal or a name
    that is not a fully qualified domain (RFC 7208 §2.3: no check)."""
    h = helo.strip().rstrip(".").lower()
    if not h or h.startswith("[") or "." not in h:
        return ""
    try:
        ipaddress.ip_address(h)
        return ""
    except ValueError:
        return h


def check_spf(
    resolver: DnsPort,
    client_ip: str,
    helo: str,
    mail_from: str,
    *,
    receiver: str = "",
    context: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SpfResult:
    """Evaluate SPF for a client at `client_ip` ("192.0.2.1", "2001:db8::1")
    that said HELO/EHLO `helo` and MAIL FROM:<`mail_from`> ("" for the null
    reverse-path). `receiver` is our host name (the %{r} macro). Never
    raises: problems are results (permerror for an address pyspf rejects,
    temperror for DNS failures or past `timeout` seconds)."""
    recorder = Recorder(resolver, context)
    identity = "mailfrom" if mail_from else "helo"
    helo_domain = _helo_domain(helo)
    if mail_from:
        domain = mail_from.rpartition("@")[2].rstrip(".").lower()
    else:
        domain = helo_domain
    if not domain:
        why = "HELO is not a domain name" if identity == "helo" else "no domain in MAIL FROM"
        return SpfResult("none", identity, domain, mail_from, helo, why)
    token = _current.set(recorder)
    try:
        try:
            q = spf.query(
                i=client_ip,
                s=mail_from,
                h=helo_domain or helo,
                receiver=receiver or "unknown",
                timeout=timeout,
                querytime=timeout,
            )
            result, _code, explanation = q.check()
        except spf.PermError as e:  # raised by query() for a bad client address
            result, explanation = "permerror", str(e)
    finally:
        _current.reset(token)
    if result not in RESULTS:  # pyspf's older names, never expected from check()
        result = {"error": "temperror", "unknown": "permerror", "tempfail": "temperror"}.get(result, "permerror")
    return SpfResult(result, identity, domain, mail_from, helo, explanation or "", recorder.recorded())
