"""DNS lookups: the `Resolver` (dnspython underneath, a TTL-bounded cache in
front), its `Answer`s, and the `DnsResolver` actor that owns it.

A lookup runs in the caller's greenlet: under gevent's monkey patching
dnspython's sockets and selectors are cooperative, so one slow lookup
never holds up another, and no actor round trip is paid per query. The
DnsResolver actor owns the Resolver, publishes it in a `DnsView` (the
project's published-table pattern, docs/ARCHITECTURE.md), and purges
expired cache entries on a timer.

`Resolver.query()` never raises for a DNS outcome: NXDOMAIN, NODATA (NOERROR
with no record), SERVFAIL, REFUSED and timeouts are all `Answer`s; only a
name that cannot be a domain name, or a record type that cannot be asked
for, is a ValueError. estafeta is a stub resolver: the configured resolvers
must recurse (Config.resolver; default the system's /etc/resolv.conf).

Caching (RFC 2308 for negative answers, RFC 9520 for failures): an answer
is kept for its TTL (the smallest along a CNAME chain), capped at
`max_ttl`; NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308 §5),
capped at `max_negative_ttl`; SERVFAIL, REFUSED and timeouts for
`failure_ttl` (RFC 9520 §3.2). A cached answer comes back with the TTL it
has left, as from a recursive resolver.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
import gevent
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.proto import config_pb2, dns_pb2
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import normalize_domain, parse_resolver_address

log = logging.getLogger("estafeta.dns")

#: Response codes of a resolution failure (Answer.rcode), besides the DNS
#: RCODEs a server may return (RFC 1035 §4.1.1, RFC 6895 §2.3): the
#: lookup ran out of time (TIMEOUT); no nameserver gave a usable response
#: (UNREACHABLE: a network error, a malformed or mismatched response).
TIMEOUT = "TIMEOUT"
UNREACHABLE = "UNREACHABLE"
#: Most queries made to finish a CNAME chain a server left unfinished.
MAX_CNAME_HOPS = 8
#: The resolver's EDNS UDP payload size, octets (DNS flag day 2020).
EDNS_PAYLOAD = 1232


@dataclass(frozen=True)
class Answer:
    """The outcome of one DNS query.

    name: the name asked, an A-label in lower case without trailing dot;
    rdtype: the record type asked ("MX", "A", "AAAA", "TXT", "PTR", "TLSA",
    "CNAME", ...); rcode: "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED",
    "TIMEOUT" (no answer in time), "UNREACHABLE" (no usable response) or
    another RCODE's mnemonic — NOERROR
    with no records is NODATA; records: the answer's records in
    presentation form (MX "10 mx.example.net", target in lower case without
    trailing dot, a null MX "0 ."; A/AAAA the address; TXT each record's
    strings concatenated, without quotes, decoded as UTF-8; PTR, CNAME, NS
    the name without trailing dot, lower case; other types dnspython's
    presentation form), in the order received; ttl: seconds the answer
    stays valid (for a cached answer, what is left); canonical_name: the
    name after following CNAMEs, "" when there was none; secure: the
    resolver said the answer is DNSSEC-validated (the AD bit; trust it
    only from a validating resolver on a trusted path).
    """

    name: str
    rdtype: str
    rcode: str
    records: tuple[str, ...] = ()
    ttl: float = 0.0
    canonical_name: str = ""
    secure: bool = False

    @property
    def ok(self) -> bool:
        """NOERROR: the name exists (records may still be empty: NODATA)."""
        return self.rcode == "NOERROR"

    @property
    def nodata(self) -> bool:
        """NOERROR with no record of the type asked (RFC 2308 §2.2)."""
        return self.rcode == "NOERROR" and not self.records

    @property
    def nxdomain(self) -> bool:
        """The name does not exist (RFC 1035 §4.1.1 RCODE 3, RFC 8020)."""
        return self.rcode == "NXDOMAIN"

    @property
    def temporary(self) -> bool:
        """The lookup failed and may work later: SERVFAIL, REFUSED, TIMEOUT
        or any RCODE other than NOERROR and NXDOMAIN."""
        return self.rcode not in ("NOERROR", "NXDOMAIN")

    def __str__(self) -> str:
        shown = ", ".join(self.records) if self.records else ("NODATA" if self.ok else self.rcode)
        return f"{self.name} {self.rdtype}: {shown}"


def reverse_name(ip: str) -> str:
    """The PTR name of an IPv4 or IPv6 address (RFC 1035 §3.5, RFC 3596
    §2.5), without trailing dot: "192.0.2.1" -> "1.2.0.192.in-addr.arpa".
    Raises ValueError for a string that is not an IP address."""
    ipaddress.ip_address(ip)  # a clear ValueError
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


def _presentation(rdtype: int, rdata) -> str:
    """One record in presentation form (see Answer.records)."""
    if rdtype == dns.rdatatype.MX:
        exchange = rdata.exchange
        host = "." if exchange == dns.name.root else exchange.to_text(omit_final_dot=True).lower()
        return f"{rdata.preference} {host}"
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address
    if rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME, dns.rdatatype.NS):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


def _question_name(name: str) -> tuple[str, dns.name.Name]:
    """(A-label form without trailing dot, absolute dnspython Name).
    IDNA2008/UTS 46 through normalize_domain, label by label so that
    underscore labels (_dmarc, _25._tcp) pass. Raises ValueError."""
    text = name.strip().rstrip(".")
    if not text:
        raise ValueError("empty domain name")
    if not text.isascii():
        text = ".".join(normalize_domain(label) if not label.isascii() else label for label in text.split("."))
    text = text.lower()
    try:
        return text, dns.name.from_text(text + ".")
    except dns.exception.DNSException as e:
        raise ValueError(f'"{name}" is not a valid domain name: {e}') from None


def _rdtype(rdtype: str) -> dns.rdatatype.RdataType:
    """The numeric type of "MX", "a", ...; ValueError for an unknown type or
    a meta-type (ANY, AXFR, ...: not asked of a stub resolver)."""
    try:
        value = dns.rdatatype.from_text(rdtype.upper())
    except dns.exception.DNSException:
        raise ValueError(f"unknown DNS record type {rdtype!r}") from None
    if dns.rdatatype.is_metatype(value):
        raise ValueError(f"DNS record type {rdtype!r} cannot be asked for")
    return value


#: rdtype as callers write it ("TXT", "a") -> (its number, its name, the
#: name of its lookup span), for the types asked so far (valid ones only).
_TYPES: dict[str, tuple[dns.rdatatype.RdataType, str, str]] = {}


def _type_of(rdtype: str) -> tuple[dns.rdatatype.RdataType, str, str]:
    """(number, "TXT", "dns.txt") of `rdtype`; ValueError as _rdtype."""
    found = _TYPES.get(rdtype)
    if found is None:
        qtype = _rdtype(rdtype)
        tname = dns.rdatatype.to_text(qtype)
        found = _TYPES[rdtype] = (qtype, tname, f"dns.{tname.lower()}")
    return found


def _failure_rcode(errors) -> str:
    """The rcode that sums up dnspython's per-nameserver errors
    (NoNameservers.kwargs["errors"]: (server, tcp, port, error, response)).
    SERVFAIL if any server said so, then REFUSED, then any other RCODE a
    server gave; TIMEOUT if one timed out; else UNREACHABLE."""
    said = [e[3] for e in errors or () if isinstance(e[3], str)]
    for rcode in ("SERVFAIL", "REFUSED"):
        if rcode in said:
            return rcode
    if said:
        return said[0]
    if any(isinstance(e[3], dns.exception.Timeout) for e in errors or ()):
        return TIMEOUT
    return UNREACHABLE


class Resolver:
    """DNS lookups with a cache; see the module docstring.

    nameservers: "host:port" strings (IP addresses, IPv6 as "[::1]:53");
    empty: the system's /etc/resolv.conf (127.0.0.1:53 when it names none,
    as glibc does). timeout: seconds per query to one nameserver;
    attempts: rounds over the nameservers before TIMEOUT. cache_size: most
    cached answers (0: no cache); max_ttl, max_negative_ttl, failure_ttl:
    seconds (see the module docstring). tracer: spans `dns.<type>` for
    queries given a `context`. clock: monotonic seconds (tests).
    Raises ValueError for a bad nameserver address.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        attempts: int = 2,
        cache_size: int = 10000,
        max_ttl: float = 86400.0,
        max_negative_ttl: float = 3600.0,
        failure_ttl: float = 5.0,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if nameservers:
            r = dns.resolver.Resolver(configure=False)
            servers = []
            for text in nameservers:
                addr = parse_resolver_address(text)
                servers.append(dns.nameserver.Do53Nameserver(addr.host, addr.port))
            r.nameservers = servers
        else:
            try:
                r = dns.resolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                r = dns.resolver.Resolver(configure=False)
                r.nameservers = ["127.0.0.1"]
            r.search = []
        r.cache = None  # ours, below: it knows hits, failures and caps
        r.timeout = timeout
        r.lifetime = timeout * max(1, attempts) * max(1, len(r.nameservers))
        # RFC 6840 §5.7: AD in a query asks for the AD bit in the answer.
        r.flags = dns.flags.RD | dns.flags.AD
        r.use_edns(0, 0, EDNS_PAYLOAD)
        self._resolver = r
        self._cache: collections.OrderedDict[tuple[str, dns.rdatatype.RdataType], tuple[float, Answer]] = (
            collections.OrderedDict()
        )
        self._cache_size = cache_size
        self._max_ttl = max_ttl
        self._max_negative_ttl = max_negative_ttl
        self._failure_ttl = failure_ttl
        self._clock = clock
        self.tracer = tracer

    @classmethod
    def from_config(cls, cfg: config_pb2.Config, tracer: trace.Tracer | None = None) -> Resolver:
        """A Resolver for Config.resolver and Config.dns."""
        d = cfg.dns
        return cls(
            list(cfg.resolver),
            timeout=d.timeout_seconds,
            attempts=d.attempts,
            cache_size=d.cache_size,
            max_ttl=d.max_ttl_seconds,
            max_negative_ttl=d.max_negative_ttl_seconds,
            failure_ttl=d.failure_ttl_seconds,
            tracer=tracer,
        )

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The nameservers asked, as "host:port" ("[::1]:53" for IPv6)."""
        out = []
        for ns in self._resolver.nameservers:
            host, port = (ns.address, ns.port) if isinstance(ns, dns.nameserver.Do53Nameserver) else (str(ns), 53)
            out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return tuple(out)

    # ------------------------------------------------------------ queries
    def query(self, name: str, rdtype: str, *, context: Context | None = None, trace_cached: bool = True) -> Answer:
        """Look up `name` (U-label or A-label, trailing dot optional) for
        records of `rdtype`; from the cache when it has a live answer.
        CNAMEs are followed. With a `context` and a tracer, the lookup is a
        span `dns.<type>` under it — a cached answer too, unless
        `trace_cached` is False (the checks: their span lists every lookup
        they made, actors/checks/dnsport.py). Raises ValueError for a bad
        name or type, never for a DNS outcome."""
        qtype, tname, span_name = _type_of(rdtype)
        # The cache is looked at before the name is parsed (dnspython's
        # parse is most of a cached lookup's cost): an ASCII name is its
        # key as written, lower case, without the trailing dot.
        text = name.strip().rstrip(".")
        ascii_name = text.isascii()
        qname = text.lower()
        answer = self._cached((qname, qtype)) if ascii_name and qname else None
        qname_dns = None
        if answer is None:
            qname, qname_dns = _question_name(name)  # ValueError for a bad name
            if not ascii_name:  # a U-label name: its key is known now
                answer = self._cached((qname, qtype))
        cached = answer is not None
        if context is None or self.tracer is None or (cached and not trace_cached):
            if answer is None:
                answer = self._resolve_chain(qname, qname_dns, qtype)
                self._store((qname, qtype), answer)
            return answer
        span = self.tracer.start_span(
            span_name,
            context=context,
            kind=SpanKind.CLIENT,
            attributes={"dns.question.name": qname, "dns.question.type": tname},
        )
        try:
            if answer is None:
                answer = self._resolve_chain(qname, qname_dns, qtype)
                self._store((qname, qtype), answer)
        finally:
            _end_span(span, answer, cached=cached)
        return answer

    def ptr(self, ip: str, *, context: Context | None = None) -> Answer:
        """The PTR records of an IP address (its names, for iprev: RFC 8601
        §3). Raises ValueError for a string that is not an IP address."""
        return self.query(reverse_name(ip), "PTR", context=context)

    def _resolve_chain(self, qname: str, qname_dns: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Answer:
        """_resolve, then the rest of a CNAME chain the server left
        unfinished (an authoritative server does not follow a CNAME out of
        its zones; a recursive one always does, and then this costs one
        more query only when the chain ends in NODATA). At most
        MAX_CNAME_HOPS more queries; the answer is the last name's, under
        the name asked (RFC 6604: the RCODE is the last name's)."""
        answer = self._resolve(qname, qname_dns, qtype)
        seen = {qname}
        while (
            answer.nodata
            and answer.canonical_name
            and answer.canonical_name not in seen
            and len(seen) <= MAX_CNAME_HOPS
        ):
            target = answer.canonical_name
            seen.add(target)
            last = self._resolve(target, dns.name.from_text(target + "."), qtype)
            answer = replace(
                last,
                name=qname,
                canonical_name=last.canonical_name or target,
                ttl=min(answer.ttl, last.ttl),
                secure=answer.secure and last.secure,
            )
        return answer

    def _resolve(self, qname: str, qname_dns: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Answer:
        tname = dns.rdatatype.to_text(qtype)
        try:
            result = self._resolver.resolve(qname_dns, qtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as e:
            return self._nxdomain(qname, tname, e)
        except dns.resolver.NoNameservers as e:
            return Answer(qname, tname, _failure_rcode(e.kwargs.get("errors")), ttl=self._failure_ttl)
        except dns.resolver.YXDOMAIN:  # a DNAME substitution overflowed (RFC 6672 §2.2)
            return Answer(qname, tname, "YXDOMAIN", ttl=self._failure_ttl)
        except dns.exception.Timeout:
            return Answer(qname, tname, TIMEOUT, ttl=self._failure_ttl)
        except dns.exception.DNSException as e:  # anything else dnspython gives up with
            log.info("dns name=%s type=%s error=%r", qname, tname, e)
            return Answer(qname, tname, UNREACHABLE, ttl=self._failure_ttl)
        canonical = result.canonical_name.to_text(omit_final_dot=True).lower()
        records = tuple(_presentation(qtype, rd) for rd in result.rrset) if result.rrset is not None else ()
        cap = self._max_ttl if records else self._max_negative_ttl
        return Answer(
            name=qname,
            rdtype=tname,
            rcode="NOERROR",
            records=records,
            ttl=float(min(result.chaining_result.minimum_ttl, cap)),
            canonical_name=canonical if canonical != qname else "",
            secure=bool(result.response.flags & dns.flags.AD),
        )

    def _nxdomain(self, qname: str, tname: str, e: dns.resolver.NXDOMAIN) -> Answer:
        """NXDOMAIN, cached for the SOA's negative TTL (RFC 2308 §5)."""
        canonical = e.canonical_name.to_text(omit_final_dot=True).lower()
        ttl = 0.0
        secure = False
        response = e.responses().get(e.canonical_name)
        if isinstance(response, dns.message.QueryMessage):
            try:
                ttl = float(response.resolve_chaining().minimum_ttl)
            except dns.exception.DNSException:
                ttl = 0.0
            secure = bool(response.flags & dns.flags.AD)
        return Answer(
            name=qname,
            rdtype=tname,
            rcode="NXDOMAIN",
            ttl=min(ttl, self._max_negative_ttl),
            canonical_name=canonical if canonical != qname else "",
            secure=secure,
        )

    # -------------------------------------------------------------- cache
    def _cached(self, key: tuple[str, dns.rdatatype.RdataType]) -> Answer | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, answer = entry
        left = expires - self._clock()
        if left <= 0:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        # (dataclasses.replace costs ~3x this)
        return Answer(
            answer.name, answer.rdtype, answer.rcode, answer.records, left, answer.canonical_name, answer.secure
        )

    def _store(self, key: tuple[str, dns.rdatatype.RdataType], answer: Answer) -> None:
        if self._cache_size <= 0 or answer.ttl <= 0:
            return
        self._cache[key] = (self._clock() + answer.ttl, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def purge(self) -> int:
        """Drop the expired answers from the cache; returns how many."""
        now = self._clock()
        dead = [key for key, (expires, _) in self._cache.items() if expires <= now]
        for key in dead:
            del self._cache[key]
        return len(dead)

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    def cache_len(self) -> int:
        """How many answers the cache holds (expired ones included until
        purged or asked for)."""
        return len(self._cache)


def _end_span(span: trace.Span, answer: Answer | None, *, cached: bool) -> None:
    """Record a lookup's outcome on its span (OpenTelemetry's DNS attribute
    names for the question and answers) and end it. `answer` is None when
    the lookup was cut short (a kill or timeout of the caller)."""
    if answer is None:
        span.set_status(Status(StatusCode.ERROR, "lookup interrupted"))
    else:
        span.set_attributes(
            {
                "dns.response_code": answer.rcode,
                "dns.answers": answer.records,
                "estafeta.dns.cached": cached,
                "estafeta.dns.ttl": answer.ttl,
                "estafeta.dns.canonical_name": answer.canonical_name,
                "estafeta.dns.secure": answer.secure,
            }
        )
        if answer.temporary:
            span.set_status(Status(StatusCode.ERROR, f"DNS lookup failed: {answer.rcode}"))
    span.end()


class DnsView:
    """The DnsResolver's Resolver, published for other actors (like an ETS
    table with one writer): `resolver` is None until the DnsResolver has
    started, then the one Resolver of the process. Actors get the view at
    construction and call `view.query(...)` in their own greenlet.
    """

    __slots__ = ("resolver",)

    def __init__(self, resolver: Resolver | None = None):
        self.resolver = resolver

    def query(self, name: str, rdtype: str, *, context: Context | None = None, trace_cached: bool = True) -> Answer:
        """Resolver.query on the published Resolver. Raises RuntimeError
        before the DnsResolver has started, ValueError for a bad name."""
        if self.resolver is None:
            raise RuntimeError("DNS resolver not started")
        return self.resolver.query(name, rdtype, context=context, trace_cached=trace_cached)

    def ptr(self, ip: str, *, context: Context | None = None) -> Answer:
        """Resolver.ptr on the published Resolver (RuntimeError before it
        started)."""
        if self.resolver is None:
            raise RuntimeError("DNS resolver not started")
        return self.resolver.ptr(ip, context=context)


class DnsResolver(Actor):
    """Owns the process's Resolver (Config.resolver, Config.dns): builds it
    on start, publishes it in its DnsView, and purges expired answers every
    Config.dns.purge_interval_seconds (a timer greenlet tells it
    PurgeDnsCache). Registered as "dns". A restart builds a fresh Resolver
    (an empty cache) and publishes it; lookups under way finish on the old
    one.
    """

    def __init__(
        self, link: Link | None, cfg: config_pb2.Config, view: DnsView | None = None, tracer: trace.Tracer | None = None
    ):
        super().__init__(link)
        self._cfg = cfg
        self._view = view
        self._tracer = tracer
        self._interval = cfg.dns.purge_interval_seconds
        self.resolver: Resolver | None = None
        self._timer: gevent.Greenlet | None = None

    def on_start(self) -> None:
        self.resolver = Resolver.from_config(self._cfg, self._tracer)
        if self._view is not None:
            self._view.resolver = self.resolver
        log.info("dns resolvers=%s", ",".join(self.resolver.nameservers))
        self._timer = gevent.spawn(self._purge_timer)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)

    on_failure = lambda self, *exc: self.on_stop()  # noqa: E731

    def _purge_timer(self) -> None:
        while True:
            gevent.sleep(self._interval)
            self.actor_ref.tell(dns_pb2.PurgeDnsCache())

    def on_receive(self, message):
        if isinstance(message, dns_pb2.PurgeDnsCache):
            return self.resolver.purge()
        raise TypeError(f"DnsResolver cannot handle {type(message).__name__}")
