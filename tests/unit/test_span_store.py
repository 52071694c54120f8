"""SpanStore: schema, summaries, lookups, the drop counter, and the age/size bounds."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from estafeta.store.spans import SPAN_COLUMNS, SpanStore, StoreMissing

S = 1_000_000_000  # ns per second
DAY = 86400 * S


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def row(
    trace: int,
    span: int,
    parent: int | None,
    name: str,
    start: int,
    end: int,
    *,
    status="OK",
    message=None,
    attrs=None,
    events=None,
    links=None,
    queue_id=None,
    message_id=None,
):
    a = dict(attrs or {})
    if queue_id:
        a["estafeta.queue_id"] = queue_id
    if message_id:
        a["estafeta.message_id"] = message_id
    return (
        tid(trace),
        sid(span),
        sid(parent) if parent is not None else None,
        name,
        "INTERNAL",
        start,
        end,
        status,
        message,
        json.dumps(a) if a else None,
        json.dumps(events) if events else None,
        json.dumps(links) if links else None,
        queue_id,
        message_id,
        "estafeta",
    )


@pytest.fixture
def store(tmp_path):
    s = SpanStore(str(tmp_path / "traces.db"))
    yield s
    s.close()


def message_trace(n: int, t0: int, *, error=False, qid=None, mid=None):
    """A small message trace: transaction -> enqueue, attempt -> courier."""
    qid = qid or f"Q{n}"
    return [
        row(n, 1, None, "smtp.transaction", t0, t0 + 10 * 10**6, queue_id=qid, message_id=mid),
        row(n, 2, 1, "queue.enqueue", t0 + 5 * 10**6, t0 + 6 * 10**6),
        row(
            n,
            3,
            1,
            "delivery.attempt",
            t0 + 20 * 10**6,
            t0 + 30 * 10**6,
            queue_id=qid,
            status="ERROR" if error else "OK",
            message="451 try later" if error else None,
        ),
    ]


def test_row_layout_matches_schema(store):
    cols = [r[1] for r in store.conn.execute("PRAGMA table_info(spans)")]
    assert tuple(cols) == SPAN_COLUMNS
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_a_big_batch_goes_in_whole_in_multi_row_statements(store):
    """300 traces of 3 spans (900 rows, 300 summaries: statements of 256,
    128, ... rows) are all stored, each summary complete."""
    rows = [r for n in range(300) for r in message_trace(n + 1, (n + 1) * S)]
    store.insert(rows)
    assert store.conn.execute("select count(*) from spans").fetchone()[0] == 900
    assert store.conn.execute("select count(*), sum(span_count) from traces").fetchone() == (300, 900)
    store.insert([row(1, 9, 1, "late", S, 50 * S)])  # a trace's next batch merges into its summary
    assert store.conn.execute("select span_count, end_ns from traces where trace_id = ?", (tid(1),)).fetchone() == (
        4,
        50 * S,
    )


def test_summaries_newest_first_with_errors(store):
    store.insert(message_trace(1, 100 * S, mid="a@x"))
    store.insert(message_trace(2, 200 * S, error=True))
    # Spans of one trace arriving in separate batches (a retry, later) merge.
    store.insert([row(1, 4, 1, "delivery.attempt", 300 * S, 301 * S, queue_id="Q1")])
    got = store.list_traces()
    assert [t.trace_id for t in got] == [tid(2), tid(1)]
    t2, t1 = got
    assert t2.has_error and not t1.has_error
    assert (t1.root_name, t1.span_count, t1.message_id, t1.queue_ids) == ("smtp.transaction", 4, "a@x", ("Q1",))
    assert t1.start_ns == 100 * S and t1.duration_ns == 201 * S
    assert [t.trace_id for t in store.list_traces(errors_only=True)] == [tid(2)]
    assert len(store.list_traces(limit=1)) == 1


def test_root_missing_is_none(store):
    store.insert([row(7, 2, 1, "delivery.attempt", S, 2 * S)])
    assert store.list_traces()[0].root_name is None


def test_resolve_by_trace_id_queue_id_and_message_id(store):
    store.insert(message_trace(1, 100 * S, qid="4Xq9Tz", mid="abc.123@example.org"))
    store.insert(message_trace(2, 200 * S, qid="Zz99", mid="other@example.org"))
    assert store.resolve(tid(1)) == [tid(1)]
    assert store.resolve(tid(1).upper()) == [tid(1)]
    assert store.resolve("4Xq9Tz") == [tid(1)]
    assert store.resolve("abc.123@example.org") == [tid(1)]
    assert store.resolve("<abc.123@example.org>") == [tid(1)]
    assert store.resolve(" <other@example.org> ") == [tid(2)]
    assert store.resolve("nothing") == []
    assert store.resolve(tid(99)) == []
    assert store.resolve("") == []


def test_spans_decoded_in_start_order(store):
    ev = [{"name": "rcpt", "time_ns": 3, "attributes": {"smtp.rcpt_to": "b@x"}}]
    lk = [{"trace_id": tid(9), "span_id": sid(9), "attributes": {}}]
    store.insert([row(1, 2, 1, "child", 5, 6), row(1, 1, None, "root", 1, 9, attrs={"k": [1, 2]}, events=ev, links=lk)])
    spans = store.spans(tid(1))
    assert [s.name for s in spans] == ["root", "child"]
    assert spans[0].attributes == {"k": [1, 2]} and spans[0].events == ev and spans[0].links == lk
    assert spans[1].attributes == {} and spans[1].events == [] and spans[1].parent_span_id == sid(1)
    assert store.span_names([(tid(1), sid(2)), (tid(1), sid(77))]) == {(tid(1), sid(2)): "child"}


def test_drop_counter_persists(tmp_path):
    path = str(tmp_path / "traces.db")
    s = SpanStore(path)
    assert s.dropped() == 0
    s.add_dropped(3)
    s.insert(message_trace(1, S), dropped=4)
    s.close()
    assert SpanStore(path, readonly=True).dropped() == 7


def test_failed_insert_rolls_back(store):
    store.insert(message_trace(1, S))
    with pytest.raises(sqlite3.IntegrityError):  # name is NOT NULL
        store.insert([row(2, 1, None, "ok", S, S), row(2, 2, None, None, S, S)], dropped=5)
    assert [t.trace_id for t in store.list_traces()] == [tid(1)]
    assert store.dropped() == 0


def test_cleanup_by_age_removes_whole_old_traces(store):
    now = 10 * DAY
    store.insert(message_trace(1, now - 9 * DAY))  # all old
    store.insert(message_trace(2, now - 8 * DAY))
    store.insert([row(2, 9, 1, "delivery.attempt", now - DAY, now - DAY + S)])  # retried recently
    store.insert(message_trace(3, now - 60 * S))
    assert store.cleanup(7 * 86400, 0, now_ns=now) == 1
    assert sorted(t.trace_id for t in store.list_traces()) == [tid(2), tid(3)]
    assert store.spans(tid(1)) == []
    assert len(store.spans(tid(2))) == 4  # kept whole, old root included


def test_cleanup_by_size_keeps_file_bounded_and_newest(tmp_path):
    path = str(tmp_path / "traces.db")
    store = SpanStore(path)
    max_bytes = 512 * 1024
    blob = "x" * 1500
    sizes = []
    n = 0
    for batch in range(30):  # ~30 x 40 x 3 spans x 1.5 KB: ~5 MB written in all
        rows = []
        for _ in range(40):
            n += 1
            for r in message_trace(n, n * S):
                rows.append(r[:9] + (json.dumps({"pad": blob}),) + r[10:])
        store.insert(rows)
        store.cleanup(0, max_bytes)
        wal = path + "-wal"
        sizes.append(os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0))
    assert max(sizes) <= max_bytes
    assert store.used_bytes() <= max_bytes * 0.9
    kept = [int(t, 16) for t in (s.trace_id for s in store.list_traces(limit=10**6))]
    # The newest traces survive, the oldest went, and nothing in between is missing.
    assert max(kept) == n and min(kept) > 1
    assert sorted(kept) == list(range(min(kept), n + 1))
    # Deleted traces left no spans behind.
    assert store.conn.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0] == len(kept)
    store.close()


def test_readonly_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreMissing, match="no span store"):
        SpanStore(str(tmp_path / "nope.db"), readonly=True)


def test_reader_works_while_writer_holds_the_file(tmp_path):
    path = str(tmp_path / "traces.db")
    w = SpanStore(path)
    w.insert(message_trace(1, S, mid="m@x"))
    w.conn.execute("BEGIN IMMEDIATE")  # writer mid-transaction: WAL readers are not blocked
    w.conn.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
    r = SpanStore(path, readonly=True)
    assert r.resolve("<m@x>") == [tid(1)]
    with pytest.raises(sqlite3.OperationalError):
        r.conn.execute("DELETE FROM spans")
    w.conn.execute("COMMIT")
    r.close()
    w.close()
