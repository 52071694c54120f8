"""A resolver with the shape of estafeta.actors.dns.Resolver over a dict,
for unit tests of the checks' pure logic (the real-DNS tests use knot).

    zone = FakeDns({"example.org": {"TXT": ["v=spf1 -all"], "A": ["192.0.2.1"]},
                    "broken.example": "SERVFAIL"})
    zone.query("example.org", "TXT")  -> FakeAnswer(rcode="NOERROR", records=("v=spf1 -all",))

A name absent from the dict is NXDOMAIN; a present name without the type
asked is NOERROR with no records; a name mapped to a string answers every
query with that rcode. Every query is kept in `.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeAnswer:
    name: str
    rdtype: str
    rcode: str
    records: tuple[str, ...]
    ttl: float = 300.0
    canonical_name: str = ""
    secure: bool = False


class FakeDns:
    def __init__(self, data: dict | None = None):
        self.data = {k.lower().rstrip("."): v for k, v in (data or {}).items()}
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rdtype: str, *records: str) -> None:
        self.data.setdefault(name.lower().rstrip("."), {}).setdefault(rdtype, []).extend(records)

    def query(self, name: str, rdtype: str, *, context=None, trace_cached=True) -> FakeAnswer:
        name = name.lower().rstrip(".")
        self.queries.append((name, rdtype))
        entry = self.data.get(name)
        if entry is None:
            return FakeAnswer(name, rdtype, "NXDOMAIN", (), canonical_name=name)
        if isinstance(entry, str):
            return FakeAnswer(name, rdtype, entry, (), canonical_name=name)
        return FakeAnswer(name, rdtype, "NOERROR", tuple(entry.get(rdtype, ())), canonical_name=name)
