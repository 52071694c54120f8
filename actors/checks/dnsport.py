"""The DNS port every check takes, and the record of the lookups it made.

A check never talks to the network itself: it is given a *resolver* with
the shape of estafeta.actors.dns.Resolver — in the daemon the DNS actor's
client (its cache and its trace see every query), in tests a real
authoritative server on loopback —

    resolver.query(name: str, rdtype: str, *, context=None, trace_cached=True) -> Answer

where an Answer has ``name``, ``rdtype``, ``rcode`` ("NOERROR",
"NXDOMAIN", "SERVFAIL", "TIMEOUT", ...), ``records`` (presentation form:
a TXT record's strings concatenated, an MX as "10 mx.example.net", an
address, a PTR name without its trailing dot), ``ttl`` (seconds),
``canonical_name`` and ``secure``. ``query`` never raises for a DNS
outcome.

Each check wraps the resolver in a `Recorder`, which keeps every lookup
(name, type, rcode, number of records) for the check's span and result;
it asks with trace_cached=False: a lookup the Resolver answers from its
cache is only in that list, a query that goes to the network is also a
`dns.<type>` span under the check's (where its time is seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Response codes that mean "the name does not exist" or "it exists and
#: this is its data" (possibly none). Every other rcode — SERVFAIL,
#: TIMEOUT, REFUSED, FORMERR, ... — is a temporary failure for the checks
#: (RFC 7208 §2.6.6 temperror, RFC 8601 §2.7 temperror).
FINAL_RCODES = frozenset({"NOERROR", "NXDOMAIN"})


class Answer(Protocol):
    """What estafeta.actors.dns.Resolver.query returns (see module docstring)."""

    @property
    def name(self) -> str: ...
    @property
    def rdtype(self) -> str: ...
    @property
    def rcode(self) -> str: ...
    @property
    def records(self) -> Sequence[str]: ...
    @property
    def ttl(self) -> float: ...
    @property
    def canonical_name(self) -> str: ...
    @property
    def secure(self) -> bool: ...


class DnsPort(Protocol):
    """A resolver: estafeta.actors.dns.Resolver, or anything with its shape."""

    def query(self, name: str, rdtype: str, *, context: Any = None, trace_cached: bool = True) -> Answer: ...


@dataclass(frozen=True, slots=True)
class Lookup:
    """One DNS query a check made: the name and type asked, the rcode and
    how many records came back."""

    name: str
    rdtype: str
    rcode: str
    count: int

    def __str__(self) -> str:
        return f"{self.rdtype} {self.name} {self.rcode} {self.count}"


def is_temporary_rcode(rcode: str) -> bool:
    """True if `rcode` is a temporary failure (not NOERROR nor NXDOMAIN)."""
    return rcode not in FINAL_RCODES


def is_temporary(answer: Answer) -> bool:
    """True if the answer is a temporary failure (no final rcode)."""
    return answer.rcode not in FINAL_RCODES


@dataclass(frozen=True, slots=True)
class _NoSuchName:
    """The Answer for a name that cannot be asked (see Recorder.query)."""

    name: str
    rdtype: str
    rcode: str = "NXDOMAIN"
    records: tuple[str, ...] = ()
    ttl: float = 0.0
    canonical_name: str = ""
    secure: bool = False


class Recorder:
    """A DnsPort that passes each query to `resolver` (with `context`, the
    caller's trace context) and records it as a `Lookup`.

    Names are queried without their trailing dot, lower-cased, as the DNS
    compares them (RFC 4343)."""

    __slots__ = ("resolver", "context", "lookups")

    def __init__(self, resolver: DnsPort, context: Any = None) -> None:
        self.resolver = resolver
        self.context = context
        self.lookups: list[Lookup] = []

    def query(self, name: str, rdtype: str) -> Answer:
        """The resolver's answer. A name that cannot be a domain name (the
        Resolver's ValueError: names in checks come from the message and
        the sender's DNS) is answered NXDOMAIN — no such name — and
        recorded with rcode "BADNAME"."""
        name = name.rstrip(".").lower()
        try:
            answer = self.resolver.query(name, rdtype, context=self.context, trace_cached=False)
        except ValueError:
            self.lookups.append(Lookup(name, rdtype, "BADNAME", 0))
            return _NoSuchName(name, rdtype)
        self.lookups.append(Lookup(name, rdtype, answer.rcode, len(answer.records)))
        return answer

    def recorded(self) -> tuple[Lookup, ...]:
        """The lookups so far, in order."""
        return tuple(self.lookups)


def lookup_attributes(prefix: str, lookups: Sequence[Lookup]) -> dict[str, Any]:
    """Span attributes for a check's lookups: ``<prefix>.dns.lookups``, one
    string per query ("TXT example.org NOERROR 1"), and
    ``<prefix>.dns.lookup_count``."""
    return {f"{prefix}.dns.lookups": tuple(str(x) for x in lookups), f"{prefix}.dns.lookup_count": len(lookups)}
