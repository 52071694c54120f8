"""Trace search over the span store (store/spans.py): what each span adds
to the index, and the queries behind `SpanStore.search`.

The question it answers is the postmaster's "what happened to the mail
from X to Y?": find a message's trace (and the session traces of refused
connections) by any of its names, newest first, with its outcome.

**Keys** (table ``trace_keys``: UTC day, key lower-cased, the start of the
trace's spans in the batch that stored it, trace id), taken from a span's
attributes and its events' attributes:

- ``estafeta.queue_id``; ``estafeta.message_id`` (without <>);
- every address in ``smtp.mail_from``, ``smtp.rcpt_to`` (a string or a
  list of strings) and ``estafeta.recipient``, and the domain of each;
- the client IP (``network.peer.address`` or ``client.address``) of a
  span that says the client was refused (``estafeta.refused``).

**Outcome** (column ``traces.outcome``): the outcome of the trace's span
that ended last among those that give one:

- ``estafeta.outcome`` (one of OUTCOMES) on any span, as the queue sets it
  on ``delivery.attempt`` (delivered, deferred, bounced) and on the
  span of a quarantine (quarantined);
- else ``estafeta.refused`` (a reason, e.g. "relay_denied",
  "rate_limited", "max_connections") on any span: refused;
- else a ``delivery.attempt`` span: deferred if its status is ERROR,
  delivered if not;
- else an ``smtp.transaction`` span that got no queue id and either failed
  or had a RCPT refused (event ``rcpt.rejected``): refused.

Search plans (every one bounded by an index; bench: tests/bench/span_store.py):
no key: the traces table by start (or its outcome / error index); a key:
its key rows newest first, each trace's filters checked as it comes; a key
and a filter: driven from whichever side has fewer rows (counted up to
PLAN_PROBE), the other tested per row through an index.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

#: The outcomes a trace can have, as the search page lists them.
OUTCOMES = ("delivered", "deferred", "bounced", "refused", "quarantined")
_OUTCOME_SET = frozenset(OUTCOMES)
#: Attributes holding addresses (a str or a sequence of str).
ADDRESS_ATTRIBUTES = ("smtp.mail_from", "smtp.rcpt_to", "estafeta.recipient")
#: Most results a search returns.
MAX_LIMIT = 1000
#: Rows counted on each side to choose a plan for a key with a filter.
PLAN_PROBE = 20000
_FOREVER = (1 << 63) - 1
#: trace_keys.day: start_ns // DAY_NS (UTC days since the epoch).
DAY_NS = 86400 * 1_000_000_000
TRACE_ID_RE = re.compile(r"[0-9a-fA-F]{32}")

#: (search keys, outcome or None) of one span.
IndexEntry = tuple[tuple[str, ...], str | None]


def normalize_key(q: str) -> str:
    """A search key as stored: trimmed, without surrounding <>, lower case."""
    q = q.strip()
    if q.startswith("<") and q.endswith(">"):
        q = q[1:-1].strip()
    return q.lower()


def _add_addresses(value, keys: list[str]) -> None:
    for a in (value,) if isinstance(value, str) else value:
        if not isinstance(a, str):
            continue
        a = a.strip().strip("<>").lower()
        if not a:
            continue  # the null reverse-path <>
        keys.append(a)
        at = a.rfind("@")
        if 0 <= at < len(a) - 1:
            keys.append(a[at + 1 :])


def index_entry(
    name: str,
    status: str,
    attributes: Mapping | None,
    events: Iterable[tuple[str, Mapping | None]] | None,
) -> IndexEntry:
    """The search keys and the outcome a span gives its trace (see the
    module docstring). ``status`` is "OK", "ERROR" or "UNSET"; ``events``
    (name, attributes) pairs. About 1-2 µs for the daemon's spans."""
    keys: list[str] = []
    outcome = None
    refused = None
    queue_id = None
    if attributes:
        get = attributes.get
        queue_id = get("estafeta.queue_id")
        if queue_id:
            keys.append(str(queue_id).lower())
        v = get("estafeta.message_id")
        if v:
            keys.append(normalize_key(str(v)))
        for a in ADDRESS_ATTRIBUTES:
            v = get(a)
            if v:
                _add_addresses(v, keys)
        outcome = get("estafeta.outcome")
        refused = get("estafeta.refused")
        if refused:  # a refused client is found by its IP too
            v = get("network.peer.address") or get("client.address")
            if v:
                keys.append(str(v).lower())
    rejected = False
    if events:
        for ev_name, ev_attrs in events:
            if ev_name == "rcpt.rejected":
                rejected = True
            if ev_attrs:
                for a in ADDRESS_ATTRIBUTES:
                    v = ev_attrs.get(a)
                    if v:
                        _add_addresses(v, keys)
    if outcome not in _OUTCOME_SET:
        outcome = None
        if refused:
            outcome = "refused"
        elif name == "delivery.attempt":
            outcome = "deferred" if status == "ERROR" else "delivered"
        elif name == "smtp.transaction" and not queue_id and (status == "ERROR" or rejected):
            outcome = "refused"
    return tuple(keys), outcome


@dataclass(frozen=True, slots=True)
class Details:
    """What a trace's spans say about its message, for a result list."""

    queue_ids: tuple[str, ...]
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    refused: str | None


def details(rows: Iterable[tuple]) -> Details:
    """Details from (queue_id, attributes JSON, events JSON) rows of one trace."""
    qids: dict[str, None] = {}
    senders: dict[str, None] = {}
    rcpts: dict[str, None] = {}
    refused = None

    def take(attrs: Mapping) -> None:
        nonlocal refused
        v = attrs.get("smtp.mail_from")
        if isinstance(v, str):
            senders[v] = None
        for a in ("smtp.rcpt_to", "estafeta.recipient"):
            v = attrs.get(a)
            for r in (v,) if isinstance(v, str) else v or ():
                if isinstance(r, str) and r:
                    rcpts[r] = None
        refused = refused or attrs.get("estafeta.refused")

    for qid, attrs, events in rows:
        if qid:
            qids[qid] = None
        if attrs:
            take(json.loads(attrs))
        if events:
            for e in json.loads(events):
                take(e.get("attributes") or {})
    return Details(tuple(qids), tuple(senders), tuple(rcpts), str(refused) if refused else None)


def search(
    conn: sqlite3.Connection,
    q: str = "",
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    outcome: str | None = None,
    errors_only: bool = False,
    limit: int = 50,
) -> list[str]:
    """Trace ids matching every filter, newest first (see SpanStore.search).
    Raises ValueError for an outcome not in OUTCOMES."""
    if outcome is not None and outcome not in _OUTCOME_SET:
        raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
    limit = max(1, min(limit, MAX_LIMIT))
    lo = since_ns if since_ns is not None else 0
    hi = until_ns if until_ns is not None else _FOREVER
    q = q.strip()
    filters, params = _filters(outcome, errors_only)
    if not q:
        index = _index_hint(outcome, errors_only)
        return [
            r[0]
            for r in conn.execute(
                f"SELECT trace_id FROM traces t {index} WHERE t.start_ns >= ? AND t.start_ns < ?{filters} "
                "ORDER BY t.start_ns DESC LIMIT ?",
                (lo, hi, *params, limit),
            )
        ]
    if TRACE_ID_RE.fullmatch(q):
        tid = q.lower()
        r = conn.execute(
            f"SELECT trace_id FROM traces t WHERE t.trace_id = ? AND t.start_ns >= ? AND t.start_ns < ?{filters}",
            (tid, lo, hi, *params),
        ).fetchone()
        if r is not None:
            return [tid]
    key = normalize_key(q)
    days = _days(conn, lo // DAY_NS, hi // DAY_NS)
    if filters and _filter_side_smaller(conn, key, days, lo, hi, outcome, errors_only):
        index = _index_hint(outcome, errors_only)
        # The trace's keys as its first batch stored them: that day, from its start.
        return [
            r[0]
            for r in conn.execute(
                f"SELECT t.trace_id FROM traces t {index} WHERE t.start_ns >= ? AND t.start_ns < ?{filters} "
                "AND EXISTS (SELECT 1 FROM trace_keys k WHERE k.day = t.start_ns / ? AND k.key = ? "
                "AND k.start_ns >= t.start_ns AND k.start_ns <= t.end_ns AND k.trace_id = t.trace_id) "
                "ORDER BY t.start_ns DESC LIMIT ?",
                (lo, hi, *params, DAY_NS, key, limit),
            )
        ]
    # A trace has a key row per batch that carried the key: dedupe here,
    # reading day by day, newest first, until `limit` distinct traces.
    seen: dict[str, None] = {}
    for day in days:
        for (tid,) in conn.execute(
            "SELECT k.trace_id FROM trace_keys k JOIN traces t ON t.trace_id = k.trace_id "
            "WHERE k.day = ? AND k.key = ? AND k.start_ns >= ? AND k.start_ns < ? "
            f"AND t.start_ns >= ? AND t.start_ns < ?{filters} ORDER BY k.start_ns DESC",
            (day, key, lo, hi, lo, hi, *params),
        ):
            seen[tid] = None
            if len(seen) >= limit:
                return list(seen)
    return list(seen)


def lookup(conn: sqlite3.Connection, key: str) -> list[str]:
    """Every trace with the (normalized) key, oldest first."""
    found: dict[str, int] = {}
    for day in _days(conn, 0, _FOREVER // DAY_NS):
        for tid, start in conn.execute(
            "SELECT k.trace_id, t.start_ns FROM trace_keys k JOIN traces t ON t.trace_id = k.trace_id "
            "WHERE k.day = ? AND k.key = ?",
            (day, key),
        ):
            found[tid] = start
    return sorted(found, key=lambda t: found[t])


def _days(conn: sqlite3.Connection, lo_day: int, hi_day: int) -> list[int]:
    """The days in [lo_day, hi_day] that have keys, newest first: one
    O(log n) step of the primary key per day (a skip scan)."""
    out: list[int] = []
    below = hi_day + 1
    while True:
        (day,) = conn.execute("SELECT max(day) FROM trace_keys WHERE day < ?", (below,)).fetchone()
        if day is None or day < lo_day:
            return out
        out.append(day)
        below = day


def _filters(outcome: str | None, errors_only: bool) -> tuple[str, tuple]:
    sql, params = "", cast(tuple, ())
    if outcome is not None:
        sql, params = " AND t.outcome = ?", (outcome,)
    if errors_only:
        sql += " AND t.error_count > 0"
    return sql, params


def _index_hint(outcome: str | None, errors_only: bool) -> str:
    # Without a hint sqlite may walk the start_ns index and filter, which
    # for a rare outcome reads most of the table.
    if outcome is not None:
        return "INDEXED BY idx_traces_outcome"
    if errors_only:
        return "INDEXED BY idx_traces_errors"
    return ""


def _count_keys(conn: sqlite3.Connection, key: str, days: list[int]) -> int:
    n = 0
    for day in days:
        n += conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM trace_keys WHERE day = ? AND key = ? LIMIT ?)",
            (day, key, PLAN_PROBE - n),
        ).fetchone()[0]
        if n >= PLAN_PROBE:
            break
    return n


def _filter_side_smaller(
    conn: sqlite3.Connection, key: str, days: list[int], lo: int, hi: int, outcome: str | None, errors_only: bool
) -> bool:
    """Are there fewer traces passing the filters than rows of the key?
    Each side counted only as far as the other needs."""
    n_key = _count_keys(conn, key, days)
    if n_key <= 1:
        return False
    filters, params = _filters(outcome, errors_only)
    n_filter = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM traces t {_index_hint(outcome, errors_only)} "
        f"WHERE t.start_ns >= ? AND t.start_ns < ?{filters} LIMIT ?)",
        (lo, hi, *params, n_key),
    ).fetchone()[0]
    return n_filter < n_key
