"""`estafeta traces list` / `estafeta traces show KEY`: read the span store and print.

The argparse wiring is in estafeta.supervisor.cli; these take plain values
and return the process exit status: 0 ok, 1 nothing found (message on
stderr), 2 no usable span store (message on stderr). They open the store
read-only, so they work while the daemon writes (WAL mode: readers see the
last committed flush and never block it).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import TextIO

from estafeta.store.spans import SpanStore, StoreMissing
from estafeta.store.tracesearch import OUTCOMES
from estafeta.tracing.viewer.render import parse_time, render_list, render_trace

EXIT_OK, EXIT_NOT_FOUND, EXIT_NO_STORE = 0, 1, 2


def _open(db_path: str, err: TextIO) -> SpanStore | None:
    try:
        return SpanStore(db_path, readonly=True)
    except StoreMissing:
        err.write(f"estafeta: no trace store at {db_path} (has the daemon run here with tracing enabled?)\n")
    except sqlite3.Error as e:
        err.write(f"estafeta: cannot read the trace store {db_path}: {e}\n")
    return None


def cmd_list(
    db_path: str,
    limit: int = 20,
    errors_only: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    key: str = "",
    since: str = "",
    until: str = "",
    outcome: str = "",
) -> int:
    """Print the newest ``limit`` traces, one a line, and the daemon's span
    drop counter; filtered like the web page's search (SpanStore.search):
    ``key`` a queue id, Message-ID, address, domain, client IP or trace
    id; ``since``/``until`` times as render.parse_time reads them;
    ``outcome``; ``errors_only``. Exit status as above, 2 also for a bad
    filter (message on stderr); nothing found prints "no traces" and
    returns 0."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        since_ns = parse_time(since) if since else None
        until_ns = parse_time(until) if until else None
        if outcome and outcome not in OUTCOMES:
            raise ValueError(f'outcome "{outcome}" is not one of {", ".join(OUTCOMES)}')
    except ValueError as e:
        err.write(f"estafeta: {e}\n")
        return EXIT_NO_STORE
    store = _open(db_path, err)
    if store is None:
        return EXIT_NO_STORE
    try:
        if key or since_ns is not None or until_ns is not None or outcome:
            found = store.search(
                key,
                since_ns=since_ns,
                until_ns=until_ns,
                outcome=outcome or None,
                errors_only=errors_only,
                limit=limit,
            )
        else:
            found = store.list_traces(limit, errors_only)
        out.write(render_list(found, dropped=store.dropped()))
    except sqlite3.Error as e:
        err.write(f"estafeta: cannot read the trace store {db_path}: {e}\n")
        return EXIT_NO_STORE
    finally:
        store.close()
    return EXIT_OK


def cmd_show(db_path: str, key: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the trace(s) for ``key`` (a 32-hex trace id, a queue id, or a
    Message-ID with or without <>) as waterfalls, oldest first, with the
    names of linked spans (the connection's smtp.session) where stored.
    Exit status 1 with a message on stderr when nothing matches."""
    out = out or sys.stdout
    err = err or sys.stderr
    store = _open(db_path, err)
    if store is None:
        return EXIT_NO_STORE
    try:
        trace_ids = store.resolve(key)
        if not trace_ids:
            err.write(f"estafeta: no trace found for {key!r} (tried it as a trace id, a queue id and a Message-ID)\n")
            return EXIT_NOT_FOUND
        parts = []
        for tid in trace_ids:
            spans = store.spans(tid)
            targets = {(lk.get("trace_id"), lk.get("span_id")) for s in spans for lk in s.links}
            parts.append(render_trace(spans, link_names=store.span_names(targets)))
        out.write("\n".join(parts))
    except sqlite3.Error as e:
        err.write(f"estafeta: cannot read the trace store {db_path}: {e}\n")
        return EXIT_NO_STORE
    finally:
        store.close()
    return EXIT_OK
