"""Where to deliver mail for a domain: MX resolution per RFC 5321 §5.1.

`plan(domain, resolver)` asks a Resolver-like object (anything with
actors/dns.py's `query(name, rdtype, *, context=None) -> Answer`) and
returns an `MxPlan`: the hosts to try, in order, each with its addresses —
or the reason there are none, as a `Reply` whose class says permanent (5)
or temporary (4). Pure apart from those queries (and the shuffle among
equal preferences), so the ordering rules are unit-tested with a fake
resolver.

The rules:
- the domain is normalised to its IDNA2008/UTS 46 A-label; a name that
  cannot be one fails permanently, 553 5.1.2 (RFC 3463: bad destination
  system address);
- an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") is its own and
  only host (RFC 5321 §5.1: "the address literal ... is used");
- MX records are sorted by preference, equal preferences in random order
  (§5.1: "randomized to spread the load");
- no MX record (NODATA) means the implicit MX: the domain itself, at
  preference 0, with its A/AAAA addresses (§5.1); the host name is the
  domain's canonical name when it is a CNAME ("processed as if it were the
  initial name");
- a null MX (RFC 7505: the single record "0 .") fails at once: 556 5.1.10
  (RFC 7505 §3.3/§4.3, RFC 7504 for 556);
- NXDOMAIN fails permanently: 550 5.1.2; SERVFAIL, REFUSED and timeouts
  temporarily: 451 4.4.3 (RFC 3463: directory server failure);
- CNAMEs are followed (dnspython does, for MX and address lookups);
- a host in `our_names` (this server's names): only the hosts strictly
  more preferred than the best of ours are kept (§5.1: "If the SMTP
  client finds its own name ... it MUST discard that MX and all less
  preferred ones"); none left is a mail loop: 554 5.4.6 (RFC 3463:
  routing loop);
- each host's addresses: its A records first, then its AAAA records
  (`ipv6_first=True` reverses it), each in the order received. IPv4 first
  because outbound IPv6 is more often broken or unreverse-mapped than IPv4
  (mail receivers tend to judge a sender's IPv6 address more harshly);
  the courier tries every address of every host in order;
- a host with no address is skipped; when no host has any, the failure is
  temporary (451 4.4.3) if a lookup of them failed temporarily, permanent
  otherwise: 550 5.4.4 (RFC 3463: unable to route);
- at most `max_hosts` hosts are looked up (default 10), so a hostile MX
  set cannot make a delivery ask thousands of queries.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.context import Context

from estafeta.actors.dns import Answer
from estafeta.actors.smtp.replies import Reply
from estafeta.supervisor.config import normalize_domain

#: Hosts looked up at most per plan (the rest of a long MX set is ignored).
MAX_HOSTS = 10
_RNG = random.Random()


class ResolverLike(Protocol):
    """What plan() needs of a resolver: actors/dns.py's Resolver or DnsView."""

    def query(self, name: str, rdtype: str, *, context: Context | None = None) -> Answer: ...


@dataclass(frozen=True)
class MxHost:
    """One host to try. name: A-label, lower case, no trailing dot (for an
    address literal, the literal as given, e.g. "[192.0.2.1]"); preference:
    its MX preference (0 for the implicit MX and a literal); addresses: IP
    addresses in the order to try them."""

    name: str
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class MxPlan:
    """The outcome of plan(): `hosts` in the order to try them, or `error`
    (a Reply: 4yz temporary, 5yz permanent) when there is none to try.
    domain: the domain planned for, A-label; implicit: no MX record, the
    domain's own addresses are used (RFC 5321 §5.1)."""

    domain: str
    hosts: tuple[MxHost, ...] = ()
    error: Reply | None = None
    implicit: bool = False

    @property
    def permanent(self) -> bool:
        """A 5yz failure: do not retry."""
        return self.error is not None and self.error.code >= 500

    @property
    def temporary(self) -> bool:
        """A 4yz failure: retry later."""
        return self.error is not None and self.error.code < 500

    def attempts(self) -> Iterator[tuple[MxHost, str]]:
        """(host, address) pairs in the order to connect to them."""
        for host in self.hosts:
            for address in host.addresses:
                yield host, address


def _fail(domain: str, code: int, enhanced: str, text: str) -> MxPlan:
    return MxPlan(domain=domain, error=Reply(code, enhanced, text))


def _literal(domain: str) -> str | None:
    """The IP address of an address literal ("[192.0.2.1]",
    "[IPv6:2001:db8::1]", RFC 5321 §4.1.3), None if `domain` is not one.
    Raises ValueError for a bracketed string that is no address."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].upper() == "IPV6:":
        return str(ipaddress.IPv6Address(inner[5:]))
    return str(ipaddress.IPv4Address(inner))


def _temporary(domain: str, what: str, answer: Answer) -> MxPlan:
    return _fail(domain, 451, "4.4.3", f"DNS lookup of {what} failed: {answer.rcode}, will retry")


def _order(records: Iterable[str], rng: random.Random) -> list[tuple[int, str]]:
    """MX records "pref host" -> [(pref, host)] sorted by preference, in
    random order among equal preferences (RFC 5321 §5.1). Malformed
    records are ignored."""
    parsed = []
    for record in records:
        pref, _, host = record.partition(" ")
        host = host.strip().lower()
        if pref.isdigit() and host:
            parsed.append((int(pref), host if host == "." else host.rstrip(".")))
    rng.shuffle(parsed)
    parsed.sort(key=lambda p: p[0])  # stable: the shuffle stands within a preference
    return parsed


def _addresses(
    host: str, resolver: ResolverLike, context: Context | None, ipv6_first: bool
) -> tuple[tuple[str, ...], str, bool]:
    """(addresses, canonical name or "", a lookup failed temporarily)."""
    found: list[str] = []
    temporary = False
    canonical = ""
    for rdtype in ("AAAA", "A") if ipv6_first else ("A", "AAAA"):
        answer = resolver.query(host, rdtype, context=context)
        temporary = temporary or answer.temporary
        canonical = canonical or answer.canonical_name
        found.extend(r for r in answer.records if r not in found)
    return tuple(found), canonical, temporary


def plan(
    domain: str,
    resolver: ResolverLike,
    *,
    context: Context | None = None,
    our_names: Iterable[str] = (),
    ipv6_first: bool = False,
    max_hosts: int = MAX_HOSTS,
    rng: random.Random | None = None,
) -> MxPlan:
    """The hosts to deliver mail for `domain` to (see the module docstring
    for the rules and the replies). `context`: the OpenTelemetry context
    the lookups' spans go under; `our_names`: this server's host names
    (MX loop detection); `rng`: the shuffle's random source (tests).
    Never raises for a DNS outcome or a bad domain: both are MxPlan.error.
    """
    try:
        literal = _literal(domain.strip())
    except ValueError:
        return _fail(domain, 553, "5.1.2", f"Bad address literal {domain}")
    if literal is not None:
        return MxPlan(domain=domain.strip(), hosts=(MxHost(domain.strip(), 0, (literal,)),))
    try:
        name = normalize_domain(domain)
    except ValueError:
        return _fail(domain, 553, "5.1.2", f"Bad destination domain {domain!r}")
    if not name:
        return _fail(domain, 553, "5.1.2", "Empty destination domain")
    try:
        mx = resolver.query(name, "MX", context=context)
    except ValueError as e:
        return _fail(name, 553, "5.1.2", f"Bad destination domain: {e}")
    if mx.nxdomain:
        return _fail(name, 550, "5.1.2", f"Domain {name} does not exist (DNS NXDOMAIN)")
    if mx.temporary:
        return _temporary(name, f"MX of {name}", mx)
    if mx.nodata:
        return _implicit(name, mx, resolver, context, ipv6_first)
    records = _order(mx.records, rng or _RNG)
    if len(records) == 1 and records[0][1] == ".":
        # RFC 7505 §3.2/§4.1: a null MX says the domain accepts no mail.
        return _fail(name, 556, "5.1.10", f"Domain {name} accepts no mail (null MX, RFC 7505)")
    records = [r for r in records if r[1] != "."]
    ours = {_normalized(n) for n in our_names}
    mine = [pref for pref, host in records if host in ours]
    if mine:
        # RFC 5321 §5.1: only hosts more preferred than the best of ours.
        records = [(pref, host) for pref, host in records if pref < min(mine)]
        if not records:
            return _fail(name, 554, "5.4.6", f"Mail for {name} loops back to myself (this server is its best MX)")
    return _resolve_hosts(name, records[:max_hosts], resolver, context, ipv6_first)


def _normalized(name: str) -> str:
    try:
        return normalize_domain(name)
    except ValueError:
        return name.lower()


def _implicit(name: str, mx: Answer, resolver: ResolverLike, context: Context | None, ipv6_first: bool) -> MxPlan:
    """RFC 5321 §5.1: no MX, so the domain (after CNAMEs) is its own host."""
    host = mx.canonical_name or name
    addresses, canonical, temporary = _addresses(host, resolver, context, ipv6_first)
    if addresses:
        return MxPlan(domain=name, hosts=(MxHost(canonical or host, 0, addresses),), implicit=True)
    if temporary:
        return _fail(name, 451, "4.4.3", f"DNS lookup of the addresses of {host} failed, will retry")
    return _fail(name, 550, "5.4.4", f"Domain {name} has no MX and no address record: no mail server")


def _resolve_hosts(
    name: str, records: list[tuple[int, str]], resolver: ResolverLike, context: Context | None, ipv6_first: bool
) -> MxPlan:
    hosts = []
    temporary = False
    for pref, host in records:
        try:
            addresses, _, failed = _addresses(host, resolver, context, ipv6_first)
        except ValueError:
            continue  # a record whose target is no domain name: no host
        temporary = temporary or failed
        if addresses:
            hosts.append(MxHost(host, pref, addresses))
    if hosts:
        return MxPlan(domain=name, hosts=tuple(hosts))
    if temporary:
        return _fail(name, 451, "4.4.3", f"DNS lookup of the addresses of the MX hosts of {name} failed, will retry")
    return _fail(name, 550, "5.4.4", f"No MX host of {name} has an address")


def plan_host(host: str, resolver: ResolverLike, *, context: Context | None = None, ipv6_first: bool = False) -> MxPlan:
    """The addresses of one configured host (a smarthost, an LMTP server):
    an IP address as is, else its A/AAAA records — never its MX. Every
    failure is temporary (4.4.3): a smarthost that does not resolve is a
    configuration or DNS problem, not a reason to bounce mail."""
    try:
        ip = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        ip = ""
    if ip:
        return MxPlan(domain=host, hosts=(MxHost(host, 0, (ip,)),))
    try:
        addresses, canonical, _ = _addresses(_normalized(host), resolver, context, ipv6_first)
    except ValueError as e:
        return _fail(host, 451, "4.4.3", f"Bad host name {host!r}: {e}")
    if not addresses:
        return _fail(host, 451, "4.4.3", f"No address for {host}, will retry")
    return MxPlan(domain=host, hosts=(MxHost(canonical or _normalized(host), 0, addresses),))
