"""The local span store: a sqlite file (``<data_dir>/traces.db``) of finished spans.

Written by the daemon's span processor (estafeta.tracing.processor), read by
``estafeta traces list/show`` while the daemon runs: the file is in WAL mode,
so readers never block the writer and the writer never blocks readers.

Every method here is a blocking sqlite call that never yields to gevent
(DESIGN.md, "Known hazards"): a caller on the hub runs them in
``gevent.get_hub().threadpool``. One SpanStore (one connection) must be used
by one thread at a time; the processor serialises its writes.

Tables:

- ``spans``: one row per span (columns in SPAN_COLUMNS); ``attributes`` is a
  JSON object, ``events`` a JSON list of {name, time_ns, attributes},
  ``links`` a JSON list of {trace_id, span_id, attributes}; NULL for none.
  ``queue_id`` / ``message_id`` are copied out of the attributes
  ``estafeta.queue_id`` / ``estafeta.message_id`` so they can be indexed.
- ``traces``: one summary row per trace, kept up to date by insert() in the
  same transaction, so listing and trimming never scan the spans table;
  ``outcome`` is the trace's latest outcome (delivered, deferred, bounced,
  refused, quarantined: store/tracesearch.py says which span sets which).
- ``trace_keys``: the search index, (key, start_ns, trace_id): every queue
  id, Message-ID, address and domain, and a session's client IP, that a
  trace's spans carry (store/tracesearch.py), lower-cased.
- ``meta``: key/value counters (``dropped``: spans the daemon could not store).

Size bound: the file is created with ``auto_vacuum=INCREMENTAL``. Deleted
traces' pages go to sqlite's freelist and are reused by later inserts, so the
file stops growing once trimming keeps the live data under the bound; pages
beyond the bound are handed back with ``PRAGMA incremental_vacuum`` (cheap,
unlike a full VACUUM, which would rewrite the whole file).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Sequence

import sqlite_utils

from estafeta.store import tracesearch
from estafeta.store.spanquery import SpanQueries, SpanRow, TraceSummary
from estafeta.store.tracesearch import IndexEntry

#: Order of the values in a row given to SpanStore.insert().
SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "attributes",
    "events",
    "links",
    "queue_id",
    "message_id",
    "service",
)
_I_TRACE, _I_PARENT, _I_NAME, _I_START, _I_END, _I_STATUS, _I_MSGID = 0, 2, 3, 5, 6, 7, 13
_I_ATTRS, _I_EVENTS, _I_QID = 9, 10, 12

_INSERT_SPAN = f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES "
_SPAN_VALUES = f"({', '.join('?' * len(SPAN_COLUMNS))})"
#: Most rows in one INSERT statement. A batch goes in as statements of 256,
#: 128, ..., 1 rows (at most 9 distinct statements, all in the connection's
#: statement cache): one sqlite3_step per statement, where executemany
#: makes one per row and releases and retakes the GIL around each — in the
#: writer thread of a busy hub, a GIL hand-over per span (strace: ~2 futex
#: calls per message in the serving process). Alone, both cost the same
#: ~15 µs per span (sqlite's own work).
_ROWS_PER_INSERT = 256
# One summary row per trace, merged batch by batch: a trace's spans arrive
# over days (delivery attempts), in any order (children end before parents).
_UPSERT_TRACE = """
INSERT INTO traces (trace_id, start_ns, end_ns, span_count, error_count, root_name, message_id, outcome, outcome_ns)
VALUES {values}
ON CONFLICT (trace_id) DO UPDATE SET
  start_ns = min(start_ns, excluded.start_ns),
  end_ns = max(end_ns, excluded.end_ns),
  span_count = span_count + excluded.span_count,
  error_count = error_count + excluded.error_count,
  root_name = coalesce(root_name, excluded.root_name),
  message_id = coalesce(message_id, excluded.message_id),
  outcome = CASE WHEN excluded.outcome IS NOT NULL AND excluded.outcome_ns >= coalesce(outcome_ns, 0)
            THEN excluded.outcome ELSE outcome END,
  outcome_ns = CASE WHEN excluded.outcome IS NOT NULL AND excluded.outcome_ns >= coalesce(outcome_ns, 0)
               THEN excluded.outcome_ns ELSE outcome_ns END
"""
_TRACE_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Search keys: a key row per (key, trace) of a batch; the same key of the
# same trace in a later batch (a retry) adds a row only if its start differs.
_INSERT_KEYS = "INSERT OR IGNORE INTO trace_keys (day, key, start_ns, trace_id) VALUES {values}"
_KEY_VALUES = "(?, ?, ?, ?)"
_DAY_NS = tracesearch.DAY_NS
# Trim to this fraction of max_bytes when over it, so trimming happens in
# chunks rather than a few traces after every flush.
_TRIM_TO = 0.9
# The WAL is truncated to this after checkpoints (bytes): it would otherwise
# stay at its high-water mark next to the bounded main file.
_WAL_LIMIT = 4 * 1024 * 1024


__all__ = ["SPAN_COLUMNS", "SpanRow", "SpanStore", "StoreMissing", "TraceSummary"]


class StoreMissing(FileNotFoundError):
    """The span store file does not exist (the daemon has not run with tracing yet)."""


class SpanStore(SpanQueries):
    """A span store file.

    ``SpanStore(path)`` opens (creating if needed) for writing: schema, WAL,
    incremental auto-vacuum. ``SpanStore(path, readonly=True)`` opens an
    existing file for reading only (the CLI), raising StoreMissing if there
    is none. Raises sqlite3.Error for a file that is not a usable database.
    """

    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        if readonly:
            if not os.path.exists(path):
                raise StoreMissing(f"no span store at {path}: the daemon has not recorded any trace yet")
            uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
            self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            return
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one
        # transaction per batch. check_same_thread=False: the hub's
        # threadpool runs each call on whichever worker is free.
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self._create_schema()

    def _create_schema(self) -> None:
        c = self.conn
        # auto_vacuum can only be chosen before the first table exists.
        if not c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            c.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db = sqlite_utils.Database(c)
        db.enable_wal()
        # WAL + synchronous=NORMAL: commits do not fsync (only checkpoints
        # do); losing the last second of spans in a power cut is acceptable.
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        spans = db.table("spans")
        spans.create(
            {
                "trace_id": str,
                "span_id": str,
                "parent_span_id": str,
                "name": str,
                "kind": str,
                "start_ns": int,
                "end_ns": int,
                "status": str,
                "status_message": str,
                "attributes": str,
                "events": str,
                "links": str,
                "queue_id": str,
                "message_id": str,
                "service": str,
            },
            not_null=["trace_id", "span_id", "name", "start_ns", "end_ns"],
            if_not_exists=True,
        )
        spans.create_index(["trace_id"], if_not_exists=True)
        # Lookups by queue id and Message-ID go through trace_keys (one row
        # per trace, not per span).
        # WITHOUT ROWID: the rows live in the trace_id B-tree itself, one
        # tree fewer to update per upsert than a rowid table with a PK index
        # (sqlite-utils cannot declare it).
        c.execute(
            "CREATE TABLE IF NOT EXISTS traces (trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, "
            "end_ns INTEGER NOT NULL, span_count INTEGER NOT NULL, error_count INTEGER NOT NULL, "
            "root_name TEXT, message_id TEXT, outcome TEXT, outcome_ns INTEGER) WITHOUT ROWID"
        )
        have = {r[1] for r in c.execute("PRAGMA table_info(traces)")}
        for col, kind in (("outcome", "TEXT"), ("outcome_ns", "INTEGER")):
            if col not in have:  # a store made before the search existed
                c.execute(f"ALTER TABLE traces ADD COLUMN {col} {kind}")
        traces = db.table("traces")
        traces.create_index(["start_ns"], if_not_exists=True)
        traces.create_index(["end_ns"], if_not_exists=True)
        # The search's filters (store/tracesearch.py): outcome, newest
        # first; and the traces with an error (few), newest first.
        c.execute(
            "CREATE INDEX IF NOT EXISTS idx_traces_outcome ON traces (outcome, start_ns) WHERE outcome IS NOT NULL"
        )
        c.execute("CREATE INDEX IF NOT EXISTS idx_traces_errors ON traces (start_ns) WHERE error_count > 0")
        # The search keys (store/tracesearch.py), WITHOUT ROWID: the key
        # B-tree is the table, no other index. By UTC day first: a batch's
        # inserts land in today's part of the tree (the pages a week-old
        # store keeps hot are one day's), trimming removes whole days, and
        # within a day and a key the newest come first in a backwards scan.
        c.execute(
            "CREATE TABLE IF NOT EXISTS trace_keys (day INTEGER NOT NULL, key TEXT NOT NULL, "
            "start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL, PRIMARY KEY (day, key, start_ns, trace_id)) "
            "WITHOUT ROWID"
        )
        db.table("meta").create({"key": str, "value": int}, pk="key", if_not_exists=True)

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when writing)."""
        self.conn.close()

    # -- writing -----------------------------------------------------------

    def insert(self, rows: Sequence[tuple], dropped: int = 0, index: Sequence[IndexEntry] | None = None) -> None:
        """Insert span rows (tuples in SPAN_COLUMNS order) and update the
        trace summaries and the search keys, in one transaction; ``dropped``
        spans are added to the drop counter in the same transaction.
        ``index``: each row's (search keys, outcome) as
        tracesearch.index_entry gives them from the span itself (the
        daemon's flusher, which has the attributes as dicts); None: derived
        here from the rows' JSON. Raises sqlite3.Error (the transaction is
        rolled back)."""
        if index is None:
            index = [_index_of_row(r) for r in rows]
        summary: dict[str, list] = {}
        keys: dict[str, set[str]] = {}
        for r, (row_keys, outcome) in zip(rows, index, strict=True):
            t = r[_I_TRACE]
            s = summary.get(t)
            err = r[_I_STATUS] == "ERROR"
            root = r[_I_NAME] if r[_I_PARENT] is None else None
            if s is None:
                s = summary[t] = [t, r[_I_START], r[_I_END], 1, err, root, r[_I_MSGID], None, None]
            else:
                if r[_I_START] < s[1]:
                    s[1] = r[_I_START]
                if r[_I_END] > s[2]:
                    s[2] = r[_I_END]
                s[3] += 1
                s[4] += err
                s[5] = s[5] or root
                s[6] = s[6] or r[_I_MSGID]
            if outcome is not None and (s[8] is None or r[_I_END] >= s[8]):
                s[7], s[8] = outcome, r[_I_END]
            if row_keys:
                k = keys.get(t)
                if k is None:
                    keys[t] = set(row_keys)
                else:
                    k.update(row_keys)
        key_rows: list[tuple] = []
        for t, ks in keys.items():
            start = summary[t][1]
            day = start // _DAY_NS
            key_rows.extend((day, k, start, t) for k in ks)
        key_rows.sort()  # in key order: each statement's inserts walk the tree once
        c = self.conn
        c.execute("BEGIN")
        try:
            _insert_rows(c, rows, _span_insert)
            _insert_rows(c, list(summary.values()), _trace_upsert)
            _insert_rows(c, key_rows, _keys_insert)
            if dropped:
                self._add_dropped(dropped)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _add_dropped(self, n: int) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (n,),
        )

    def add_dropped(self, n: int) -> None:
        """Add n to the persistent count of spans the daemon had to drop."""
        self._add_dropped(n)

    def used_bytes(self) -> int:
        """Bytes of the database's pages that hold data (file size minus free
        pages waiting for reuse); includes changes still in the WAL."""
        c = self.conn
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * c.execute("PRAGMA page_size").fetchone()[0]

    def cleanup(self, retention_seconds: float, max_bytes: int, *, now_ns: int | None = None) -> int:
        """Remove whole traces whose newest span ended more than
        retention_seconds ago, then the oldest traces (by start) until the
        data fits in 90% of max_bytes; hand free pages beyond max_bytes back
        to the file system and truncate the WAL. 0 disables either bound.
        Returns the number of traces removed."""
        c = self.conn
        removed = 0
        if retention_seconds > 0:
            cutoff = (now_ns if now_ns is not None else time.time_ns()) - int(retention_seconds * 1e9)
            ids = [r[0] for r in c.execute("SELECT trace_id FROM traces WHERE end_ns < ?", (cutoff,))]
            removed += self._delete_traces(ids)
        if max_bytes > 0:
            target = int(max_bytes * _TRIM_TO)
            used = self.used_bytes()
            while used > target:
                count = c.execute("SELECT count(*) FROM traces").fetchone()[0]
                if not count:
                    break
                # Delete the share of traces that should free the excess,
                # assuming similar sizes; loop if they were smaller.
                n = max(1, int(count * (used - target) / used) + 1)
                ids = [r[0] for r in c.execute("SELECT trace_id FROM traces ORDER BY start_ns LIMIT ?", (n,))]
                removed += self._delete_traces(ids)
                used = self.used_bytes()
            page_size = c.execute("PRAGMA page_size").fetchone()[0]
            excess = c.execute("PRAGMA page_count").fetchone()[0] - max_bytes // page_size
            if excess > 0:
                # executescript, not execute: the pragma frees one page per
                # sqlite3_step, and execute() steps it only once.
                c.executescript(f"PRAGMA incremental_vacuum({int(excess)});")
        if removed:
            self._trim_keys()
        if removed or max_bytes > 0:
            # Moves the WAL's pages into the main file and truncates the WAL
            # (readers in the middle of a read just make it partial).
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return removed

    def _trim_keys(self) -> None:
        """Remove the search keys of the days before the oldest trace left:
        never a key of a stored trace (a trace's keys are no older than
        its start); keys of removed traces younger than that stay until
        their day goes, and searches join them away."""
        c = self.conn
        oldest = c.execute("SELECT min(start_ns) FROM traces").fetchone()[0]
        c.execute("BEGIN")
        try:
            if oldest is None:
                c.execute("DELETE FROM trace_keys")
            else:
                c.execute("DELETE FROM trace_keys WHERE day < ?", (oldest // _DAY_NS,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _delete_traces(self, ids: list[str]) -> int:
        if not ids:
            return 0
        c = self.conn
        params = [(i,) for i in ids]
        c.execute("BEGIN")
        try:
            c.executemany("DELETE FROM spans WHERE trace_id = ?", params)
            c.executemany("DELETE FROM traces WHERE trace_id = ?", params)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return len(ids)

    # -- reading -----------------------------------------------------------


def _span_insert(n: int) -> str:
    return _INSERT_SPAN + ", ".join([_SPAN_VALUES] * n)


def _keys_insert(n: int) -> str:
    return _INSERT_KEYS.format(values=", ".join([_KEY_VALUES] * n))


def _index_of_row(r: Sequence) -> IndexEntry:
    """(keys, outcome) of a stored row, its JSON decoded (tests, benches,
    any writer without the span objects)."""
    keys, outcome = tracesearch.index_entry(
        r[_I_NAME],
        r[_I_STATUS],
        json.loads(r[_I_ATTRS]) if r[_I_ATTRS] else None,
        [(e.get("name"), e.get("attributes")) for e in json.loads(r[_I_EVENTS])] if r[_I_EVENTS] else None,
    )
    # The id columns, whether or not the attributes repeat them.
    ids = tuple(tracesearch.normalize_key(v) for v in (r[_I_QID], r[_I_MSGID]) if v)
    return keys + ids, outcome


def _trace_upsert(n: int) -> str:
    # Unique trace ids within one statement (insert() merges a batch's
    # spans per trace), so no row conflicts with another of the same VALUES.
    return _UPSERT_TRACE.format(values=", ".join([_TRACE_VALUES] * n))


_STATEMENTS: dict[tuple, str] = {}


def _insert_rows(c: sqlite3.Connection, rows: Sequence[Sequence], statement) -> None:
    """Execute `statement(n)` (an INSERT of n rows) over `rows`, in chunks
    of _ROWS_PER_INSERT, 128, ..., 1 rows (see _ROWS_PER_INSERT)."""
    pos, total = 0, len(rows)
    size = _ROWS_PER_INSERT
    while pos < total:
        while size > total - pos:
            size //= 2
        sql = _STATEMENTS.get((statement, size))
        if sql is None:
            sql = _STATEMENTS[(statement, size)] = statement(size)
        c.execute(sql, [v for r in rows[pos : pos + size] for v in r])
        pos += size
