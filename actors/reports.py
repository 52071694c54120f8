"""DmarcReports actor: keeps every DMARC evaluation for aggregate reports.

The sessions of a serving process append each evaluation (a row of
store/dmarcreports.py `row_of`, RFC 7489 §7.2) to the process's
`ReportBuffer` at the end of DATA — a list append, no I/O on the
message's path —, and this actor, registered "reports", writes what has
gathered once a second in one sqlite transaction (in the hub threadpool:
store.blocking.run_blocking) into `<data_dir>/dmarc.db`, which every
serving process shares (WAL). Serving process 0 also deletes the rows
older than Config.checks.dmarc_report_retention_seconds at start and
once a day (`trim`). The aggregate report job of a later issue reads the
file.

The buffer is bounded (MAX_BUFFERED rows): if the database cannot keep
up (a locked or failing file), newer evaluations are dropped and counted
(`dropped`, logged) rather than growing without bound; a write that fails
keeps its rows for the next turn, and the actor does not crash for it —
the reports are not worth a restart loop. On stop the buffer is written
once more.
"""

from __future__ import annotations

import logging
import sqlite3

import gevent

from estafeta.proto import reports_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.dmarcreports import DmarcReportStore
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.reports")

#: Most evaluations kept in memory between writes.
MAX_BUFFERED = 10_000
#: Seconds between writes of the buffer.
FLUSH_SECONDS = 1.0
#: Seconds between trims (serving process 0).
TRIM_SECONDS = 86400.0


class ReportBuffer:
    """Evaluations waiting to be written: appended by the sessions (one
    list append), taken by the DmarcReports actor. Shared by the sessions
    of one serving process, like the span processor's buffer; gevent runs
    one greenlet at a time, so no lock."""

    __slots__ = ("rows", "dropped", "limit")

    def __init__(self, limit: int = MAX_BUFFERED) -> None:
        self.rows: list[dict] = []
        self.dropped = 0
        self.limit = limit

    def add(self, row: dict) -> None:
        """Keep one evaluation (store.dmarcreports.row_of); dropped and
        counted when `limit` rows are waiting."""
        if len(self.rows) >= self.limit:
            self.dropped += 1
            return
        self.rows.append(row)

    def take(self) -> list[dict]:
        """Every waiting row, oldest first; the buffer is empty after."""
        rows, self.rows = self.rows, []
        return rows

    def put_back(self, rows: list[dict]) -> None:
        """Rows a failed write took, kept (before newer ones) within the
        limit."""
        keep = rows[: max(0, self.limit - len(self.rows))]
        self.dropped += len(rows) - len(keep)
        self.rows = keep + self.rows


class DmarcReports(Actor):
    """Writes `buffer` into the DmarcReportStore at `path` every
    `flush_seconds`; with `trims` (serving process 0) deletes rows past
    `retention_seconds` at start and every `trim_seconds`."""

    def __init__(
        self,
        link: Link | None,
        path: str,
        buffer: ReportBuffer,
        retention_seconds: float,
        *,
        trims: bool = False,
        flush_seconds: float = FLUSH_SECONDS,
        trim_seconds: float = TRIM_SECONDS,
    ) -> None:
        super().__init__(link)
        self._path = path
        self._buffer = buffer
        self._retention = retention_seconds
        self._trims = trims
        self._flush_seconds = flush_seconds
        self._trim_seconds = trim_seconds
        self._store: DmarcReportStore | None = None
        self._timers: list[gevent.Greenlet] = []
        self._dropped_logged = 0

    def on_start(self) -> None:
        self._store = run_blocking(DmarcReportStore, self._path, self._retention)
        self._timers.append(gevent.spawn(self._timer, self._flush_seconds, reports_pb2.FlushDmarcReports))
        if self._trims:
            self.actor_ref.tell(reports_pb2.TrimDmarcReports())
            self._timers.append(gevent.spawn(self._timer, self._trim_seconds, reports_pb2.TrimDmarcReports))

    def on_stop(self) -> None:
        self._stop_timers()
        if self._store is not None:
            self.flush()
            run_blocking(self._store.close)
            self._store = None

    def on_failure(self, *exc) -> None:
        self._stop_timers()

    def _stop_timers(self) -> None:
        for t in self._timers:
            t.kill(block=False)
        self._timers = []

    def _timer(self, seconds: float, message) -> None:
        while True:
            gevent.sleep(seconds)
            self.actor_ref.tell(message())

    def on_receive(self, message):
        if isinstance(message, reports_pb2.FlushDmarcReports):
            return self.flush()
        if isinstance(message, reports_pb2.TrimDmarcReports):
            return self.trim()
        raise TypeError(f"DmarcReports cannot handle {type(message).__name__}")

    def flush(self) -> int:
        """Write the buffered rows now; returns how many were written (0
        after a failed write: the rows wait for the next turn)."""
        buffer, store = self._buffer, self._store
        if buffer.dropped != self._dropped_logged:
            log.warning("dmarc evaluations dropped=%d reason=%s", buffer.dropped, kv("the report store fell behind"))
            self._dropped_logged = buffer.dropped
        rows = buffer.take()
        if not rows or store is None:
            return 0
        try:
            run_blocking(store.add_many, rows)
        except (sqlite3.Error, OSError) as e:
            buffer.put_back(rows)
            log.error("dmarc evaluations not written rows=%d error=%s", len(rows), kv(e))
            return 0
        return len(rows)

    def trim(self) -> int:
        """Delete rows past the retention; returns how many."""
        if self._store is None:
            return 0
        try:
            n = run_blocking(self._store.trim)
        except (sqlite3.Error, OSError) as e:
            log.error("dmarc evaluations not trimmed error=%s", kv(e))
            return 0
        if n:
            log.info("dmarc evaluations trimmed rows=%d", n)
        return n
