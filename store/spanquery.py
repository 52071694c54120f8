"""The span store's read side (store/spans.py `SpanStore` inherits it):
listing, looking up and searching traces, reading a trace's spans. Every
method is a blocking sqlite call on `self.conn` (see store/spans.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from estafeta.store import tracesearch

_TRACE_ID_RE = re.compile(r"[0-9a-fA-F]{32}")
#: Order of the columns read back (store/spans.py SPAN_COLUMNS).
_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message, "
    "attributes, events, links, queue_id, message_id, service"
)


@dataclass(frozen=True, slots=True)
class SpanRow:
    """One stored span, as read back. Times are ns since the Unix epoch;
    attributes/events/links are decoded JSON (empty when none)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    links: list = field(default_factory=list)
    queue_id: str | None = None
    message_id: str | None = None
    service: str | None = None


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace, for `estafeta traces list`: start/duration in ns; root_name
    is None when the root span is not in the store (lost, or trimmed)."""

    trace_id: str
    root_name: str | None
    start_ns: int
    duration_ns: int
    span_count: int
    has_error: bool
    queue_ids: tuple[str, ...]
    message_id: str | None
    #: The latest outcome (tracesearch.OUTCOMES), None if none yet.
    outcome: str | None = None
    #: For display (search results only): the reverse-paths, forward-paths
    #: and refusal reason its spans name.
    senders: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    refused: str | None = None


class SpanQueries:
    """Reading methods of SpanStore (needs `conn` and `readonly`)."""

    conn: sqlite3.Connection
    readonly: bool

    def _has_schema(self) -> bool:
        return (
            self.conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('spans', 'traces', 'meta', 'trace_keys')"
            ).fetchone()[0]
            == 4
        )

    def dropped(self) -> int:
        """Spans dropped (never stored) since the store was created."""
        if self.readonly and not self._has_schema():
            return 0
        r = self.conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return r[0] if r else 0

    def list_traces(self, limit: int = 20, errors_only: bool = False) -> list[TraceSummary]:
        """The newest ``limit`` traces (by start), newest first; only those
        with a span in status ERROR when errors_only."""
        if self.readonly and not self._has_schema():
            return []
        c = self.conn
        where = "WHERE error_count > 0 " if errors_only else ""
        ids = [r[0] for r in c.execute(f"SELECT trace_id FROM traces {where}ORDER BY start_ns DESC LIMIT ?", (limit,))]
        return [t for t in (self._summary(tid) for tid in ids) if t is not None]

    def _summary(self, trace_id: str, detail: bool = False) -> TraceSummary | None:
        c = self.conn
        r = c.execute(
            "SELECT start_ns, end_ns, span_count, error_count, root_name, message_id, outcome "
            "FROM traces WHERE trace_id = ?",
            (trace_id,),
        ).fetchone()
        if r is None:
            return None
        start, end, count, errors, root, msgid, outcome = r
        if not detail:
            qids = tuple(
                q[0]
                for q in c.execute(
                    "SELECT DISTINCT queue_id FROM spans WHERE trace_id = ? AND queue_id IS NOT NULL", (trace_id,)
                )
            )
            return TraceSummary(trace_id, root, start, end - start, count, errors > 0, qids, msgid, outcome)
        d = tracesearch.details(
            c.execute("SELECT queue_id, attributes, events FROM spans WHERE trace_id = ?", (trace_id,))
        )
        return TraceSummary(
            trace_id,
            root,
            start,
            end - start,
            count,
            errors > 0,
            d.queue_ids,
            msgid,
            outcome,
            d.senders,
            d.recipients,
            d.refused,
        )

    def resolve(self, key: str) -> list[str]:
        """Trace ids for a key: a 32-hex trace id, a queue id, or a Message-ID
        with or without its angle brackets (RFC 5322 §3.6.4 msg-id). Oldest
        first; empty when nothing matches."""
        key = key.strip()
        if not key or (self.readonly and not self._has_schema()):
            return []
        c = self.conn
        if _TRACE_ID_RE.fullmatch(key):
            tid = key.lower()
            if c.execute("SELECT 1 FROM traces WHERE trace_id = ?", (tid,)).fetchone():
                return [tid]
        found = tracesearch.lookup(c, tracesearch.normalize_key(key))
        if found or not self._has_old_id_indexes():
            return found
        # A store written before the search keys existed: its spans' id columns.
        bare = key[1:-1] if key.startswith("<") and key.endswith(">") else key
        rows = c.execute(
            "SELECT t.trace_id FROM traces t WHERE t.trace_id IN "
            "(SELECT trace_id FROM spans WHERE queue_id = ? UNION SELECT trace_id FROM spans WHERE message_id = ?) "
            "ORDER BY t.start_ns",
            (key, bare),
        ).fetchall()
        return [r[0] for r in rows]

    def _has_old_id_indexes(self) -> bool:
        return (
            self.conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                "AND name IN ('idx_spans_queue_id', 'idx_spans_message_id')"
            ).fetchone()[0]
            == 2
        )

    def search(
        self,
        q: str = "",
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        outcome: str | None = None,
        errors_only: bool = False,
        limit: int = 50,
    ) -> list[TraceSummary]:
        """Traces matching every filter given, newest (by start) first, at
        most ``limit``: ``q`` a queue id, Message-ID (with or without <>),
        address, domain, client IP or trace id (tracesearch.normalize_key);
        ``since_ns``/``until_ns`` the trace's start window (ns since the
        epoch, until exclusive); ``outcome`` one of tracesearch.OUTCOMES;
        ``errors_only``: a span in status ERROR. Each summary carries its
        outcome, senders, recipients and refusal reason for display. Raises
        ValueError for an unknown outcome."""
        if self.readonly and not self._has_schema():
            return []
        ids = tracesearch.search(
            self.conn,
            q,
            since_ns=since_ns,
            until_ns=until_ns,
            outcome=outcome,
            errors_only=errors_only,
            limit=limit,
        )
        return [self._summary(tid, detail=True) for tid in ids if tid is not None]

    def summary(self, trace_id: str) -> TraceSummary | None:
        """One trace's summary (with details), None if unknown."""
        if self.readonly and not self._has_schema():
            return None
        return self._summary(trace_id.lower(), detail=True)

    def spans(self, trace_id: str) -> list[SpanRow]:
        """All stored spans of a trace, by start time."""
        if self.readonly and not self._has_schema():
            return []
        loads = json.loads
        out = []
        for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns, rowid",
            (trace_id.lower(),),
        ):
            out.append(
                SpanRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    loads(r[9]) if r[9] else {},
                    loads(r[10]) if r[10] else [],
                    loads(r[11]) if r[11] else [],
                    r[12],
                    r[13],
                    r[14],
                )
            )
        return out

    def span_names(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Names of the given (trace_id, span_id) spans that are stored; used
        to name a link's target ("linked from smtp.session ...")."""
        if self.readonly and not self._has_schema():
            return {}
        out = {}
        for tid, sid in pairs:
            r = self.conn.execute("SELECT name FROM spans WHERE trace_id = ? AND span_id = ?", (tid, sid)).fetchone()
            if r:
                out[(tid, sid)] = r[0]
        return out
