"""Kept for DMARC aggregate reports: every DMARC evaluation, in sqlite.

The file ``<data_dir>/dmarc.db`` (WAL mode: the report job reads while
sessions write) has one table, ``evaluations``, one row per message
evaluated (RFC 7489 §7.2 and appendix C: what an aggregate report's
<record> is made of):

    id                 integer primary key
    time               seconds since the epoch (float) of the evaluation
    source_ip          the SMTP client's address
    header_from        RFC5322.From domain
    envelope_from      RFC5321.MailFrom domain ("" for <>)
    envelope_to        a recipient domain ("" if unknown)
    policy_domain      where the policy was found (_dmarc.<policy_domain>)
    p, sp, adkim, aspf, pct   the published policy ("" / NULL without one)
    result             none, pass, fail, temperror, permerror
    disposition        none, quarantine, reject (after sampling, overrides)
    override, override_comment   RFC 7489 PolicyOverrideType and its comment
    spf_domain, spf_result, spf_aligned (0/1)
    dkim               JSON list of {"domain", "selector", "result"}
    dkim_aligned       0/1

Rows older than the retention are deleted by trim() (the report job, or
the daemon once a day); nothing else bounds the table.

Every method is a blocking sqlite call that never yields to gevent: a
caller on the hub runs it through store.blocking.run_blocking (or the disk
worker). One DmarcReportStore (one connection) per thread at a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from estafeta.actors.checks.dkim_verify import DkimResult
from estafeta.actors.checks.dmarc import DmarcResult

#: The store file under the data directory.
FILE_NAME = "dmarc.db"
#: Default retention of rows, seconds (RFC 7489 reports cover one day by
#: default, ri=86400; a month leaves room for late or re-run reports).
DEFAULT_RETENTION_SECONDS = 30 * 86400.0

_COLUMNS = {
    "id": int,
    "time": float,
    "source_ip": str,
    "header_from": str,
    "envelope_from": str,
    "envelope_to": str,
    "policy_domain": str,
    "p": str,
    "sp": str,
    "adkim": str,
    "aspf": str,
    "pct": int,
    "result": str,
    "disposition": str,
    "override": str,
    "override_comment": str,
    "spf_domain": str,
    "spf_result": str,
    "spf_aligned": int,
    "dkim": str,
    "dkim_aligned": int,
}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One stored row, as read back (columns in the module docstring;
    `dkim` decoded)."""

    id: int
    time: float
    source_ip: str
    header_from: str
    envelope_from: str
    envelope_to: str
    policy_domain: str
    p: str
    sp: str
    adkim: str
    aspf: str
    pct: int | None
    result: str
    disposition: str
    override: str
    override_comment: str
    spf_domain: str
    spf_result: str
    spf_aligned: bool
    dkim_aligned: bool
    dkim: list[dict] = field(default_factory=list)


def row_of(
    result: DmarcResult,
    dkim: DkimResult | None,
    *,
    source_ip: str,
    envelope_from: str,
    envelope_to: str = "",
    now: float | None = None,
) -> dict:
    """The row for one evaluation (what DmarcReportStore.add takes)."""
    pol = result.policy
    return {
        "time": time.time() if now is None else now,
        "source_ip": source_ip,
        "header_from": result.from_domain,
        "envelope_from": envelope_from.rpartition("@")[2].lower(),
        "envelope_to": envelope_to.rpartition("@")[2].lower(),
        "policy_domain": pol.domain if pol else "",
        "p": pol.p if pol else "",
        "sp": pol.sp if pol else "",
        "adkim": pol.adkim if pol else "",
        "aspf": pol.aspf if pol else "",
        "pct": pol.pct if pol else None,
        "result": result.result,
        "disposition": result.disposition,
        "override": result.override,
        "override_comment": result.override_comment,
        "spf_domain": result.spf_domain,
        "spf_result": result.spf_result,
        "spf_aligned": int(result.spf_aligned),
        "dkim": json.dumps(
            [
                {"domain": s.domain, "selector": s.selector, "result": s.result}
                for s in (dkim.signatures if dkim else ())
            ]
        ),
        "dkim_aligned": int(result.dkim_aligned),
    }


class DmarcReportStore:
    """The evaluations table at `path` (created if missing), rows kept
    `retention_seconds`."""

    def __init__(self, path: str, retention_seconds: float = DEFAULT_RETENTION_SECONDS) -> None:
        self.path = path
        self.retention_seconds = retention_seconds
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.db = sqlite_utils.Database(self.conn)
        table = self.db.table("evaluations")
        if not table.exists():
            table.create(_COLUMNS, pk="id")
            table.create_index(["time"])
            table.create_index(["header_from", "time"])
        self.table = table

    @classmethod
    def in_data_dir(cls, data_dir: str, retention_seconds: float = DEFAULT_RETENTION_SECONDS) -> DmarcReportStore:
        return cls(os.path.join(data_dir, FILE_NAME), retention_seconds)

    def add(self, row: dict) -> None:
        """Store one evaluation (a row_of() dict)."""
        self.table.insert(row)

    def add_many(self, rows: list[dict]) -> None:
        """Store several evaluations in one transaction."""
        if rows:
            with self.conn:
                self.table.insert_all(rows)

    def trim(self, now: float | None = None) -> int:
        """Delete rows older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_seconds
        cur = self.conn.execute("DELETE FROM evaluations WHERE time < ?", (cutoff,))
        return cur.rowcount

    def evaluations(
        self, since: float = 0.0, until: float | None = None, header_from: str = ""
    ) -> Iterator[Evaluation]:
        """Rows with since <= time < until (every one by default), oldest
        first, optionally of one From domain."""
        where = "time >= ?"
        args: list[Any] = [since]
        if until is not None:
            where += " AND time < ?"
            args.append(until)
        if header_from:
            where += " AND header_from = ?"
            args.append(header_from.lower())
        for r in self.table.rows_where(where, args, order_by="time, id"):
            r["spf_aligned"] = bool(r["spf_aligned"])
            r["dkim_aligned"] = bool(r["dkim_aligned"])
            r["dkim"] = json.loads(r["dkim"] or "[]")
            yield Evaluation(**r)

    def close(self) -> None:
        self.conn.close()
