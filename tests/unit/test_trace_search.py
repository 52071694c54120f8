"""Trace search (store/tracesearch.py through SpanStore.search): what each
span indexes, the outcome rules, every filter and both query plans, and
the keys' trimming with the traces."""

from __future__ import annotations

import json

import pytest

from estafeta.store import tracesearch
from estafeta.store.spans import SpanStore
from estafeta.store.tracesearch import DAY_NS, index_entry

S = 1_000_000_000
T0 = 1_790_000_000 * S


def row(trace: int, span: int, parent, name, start, end, *, status="UNSET", attrs=None, events=None, links=None):
    a = attrs or {}
    return (
        f"{trace:032x}",
        f"{span:016x}",
        f"{parent:016x}" if parent is not None else None,
        name,
        "INTERNAL",
        start,
        end,
        status,
        None,
        json.dumps(a) if a else None,
        json.dumps(events) if events else None,
        json.dumps(links) if links else None,
        a.get("estafeta.queue_id"),
        a.get("estafeta.message_id"),
        "estafeta",
    )


def message(n: int, t: int, sender: str, rcpt: str, outcome: str | None = "delivered", status="UNSET"):
    qid = f"q{n:04d}"
    attempt = {"estafeta.queue_id": qid, "estafeta.attempt": 1}
    if outcome:
        attempt["estafeta.outcome"] = outcome
    return [
        row(n, 1, None, "smtp.transaction", t, t + 5 * 10**6,
            attrs={"smtp.mail_from": sender, "smtp.rcpt_to": [rcpt], "estafeta.queue_id": qid,
                   "estafeta.message_id": f"m{n}@Example.ORG"}),
        row(n, 2, 1, "queue.enqueue", t + 10**6, t + 2 * 10**6, attrs={"estafeta.queue_id": qid}),
        row(n, 3, 1, "delivery.attempt", t + 6 * 10**6, t + 9 * 10**6, attrs=attempt, status=status),
    ]  # fmt: skip


@pytest.fixture
def store(tmp_path):
    s = SpanStore(str(tmp_path / "traces.db"))
    yield s
    s.close()


def tid(n: int) -> str:
    return f"{n:032x}"


def test_index_entry_keys_and_outcomes():
    keys, outcome = index_entry(
        "smtp.transaction",
        "OK",
        {"smtp.mail_from": "Alice@Example.org", "smtp.rcpt_to": ("b@x.test", "c@y.test"), "estafeta.queue_id": "Q1"},
        [("rcpt.rejected", {"smtp.rcpt_to": "d@relay.test"})],
    )
    assert set(keys) == {"q1", "alice@example.org", "example.org", "b@x.test", "x.test", "c@y.test", "y.test",
                         "d@relay.test", "relay.test"}  # fmt: skip
    assert outcome is None  # queued: not refused, not delivered yet
    assert index_entry("delivery.attempt", "ERROR", {"estafeta.queue_id": "Q"}, None)[1] == "deferred"
    assert index_entry("delivery.attempt", "OK", {}, None)[1] == "delivered"
    assert index_entry("delivery.attempt", "OK", {"estafeta.outcome": "bounced"}, None)[1] == "bounced"
    assert index_entry("smtp.transaction", "ERROR", {"smtp.mail_from": ""}, None)[1] == "refused"
    assert index_entry("smtp.transaction", "UNSET", {}, [("rcpt.rejected", {})])[1] == "refused"
    assert index_entry("smtp.transaction", "UNSET", {}, [("transaction.aborted", {})])[1] is None
    keys, outcome = index_entry(
        "smtp.session", "UNSET", {"estafeta.refused": "rate_limited", "network.peer.address": "192.0.2.9"}, None
    )
    assert outcome == "refused" and keys == ("192.0.2.9",)
    assert index_entry("smtp.session", "UNSET", {"network.peer.address": "192.0.2.9"}, None) == ((), None)
    assert index_entry("x", "UNSET", {"estafeta.outcome": "nonsense"}, None)[1] is None
    assert tracesearch.normalize_key("  <AbC@Host> ") == "abc@host"


def test_search_by_every_kind_of_key_newest_first(store):
    for n in range(1, 7):
        store.insert(message(n, T0 + n * S, f"s{n % 2}@senders.test", f"r{n}@dest.test"))
    ids = lambda **kw: [t.trace_id for t in store.search(**kw)]  # noqa: E731
    assert ids(q="q0003") == [tid(3)]
    assert ids(q="<M3@example.org>") == [tid(3)]
    assert ids(q=tid(4)) == [tid(4)]
    assert ids(q="S1@senders.test") == [tid(5), tid(3), tid(1)]
    assert ids(q="senders.test") == [tid(n) for n in (6, 5, 4, 3, 2, 1)]
    assert ids(q="dest.test", limit=2) == [tid(6), tid(5)]
    assert ids(q="r2@dest.test") == [tid(2)]
    assert ids(q="nobody@nowhere.test") == []
    t = store.search(q="q0003")[0]
    assert (t.outcome, t.senders, t.recipients, t.queue_ids) == (
        "delivered",
        ("s1@senders.test",),
        ("r3@dest.test",),
        ("q0003",),
    )


def test_filters_window_outcome_errors_and_both_plans(store, monkeypatch):
    rows = []
    for n in range(1, 41):
        outcome = "bounced" if n % 10 == 0 else "delivered"
        rows += message(n, T0 + n * S, "s@senders.test", f"r{n}@dest.test", outcome, "ERROR" if n % 10 == 0 else "OK")
    store.insert(rows)
    ids = lambda **kw: [t.trace_id for t in store.search(**kw)]  # noqa: E731
    assert ids(outcome="bounced") == [tid(40), tid(30), tid(20), tid(10)]
    assert ids(errors_only=True) == [tid(40), tid(30), tid(20), tid(10)]
    assert ids(since_ns=T0 + 38 * S) == [tid(40), tid(39), tid(38)]
    assert ids(since_ns=T0 + 5 * S, until_ns=T0 + 7 * S) == [tid(6), tid(5)]
    # A key with a rare filter: driven from the filter's side ...
    assert ids(q="senders.test", outcome="bounced") == [tid(40), tid(30), tid(20), tid(10)]
    # ... and from the key's side when the key is the rarer one.
    assert ids(q="r30@dest.test", outcome="bounced") == [tid(30)]
    assert ids(q="r31@dest.test", outcome="bounced") == []
    monkeypatch.setattr(tracesearch, "_filter_side_smaller", lambda *a: False)  # force the key-driven plan
    assert ids(q="senders.test", outcome="bounced", errors_only=True) == [tid(40), tid(30), tid(20), tid(10)]
    assert ids(q=tid(30), outcome="delivered") == []
    with pytest.raises(ValueError, match="unknown outcome"):
        store.search(outcome="lost")


def test_the_latest_outcome_wins_across_batches(store):
    store.insert(message(1, T0, "s@a.test", "r@b.test", "deferred", "ERROR"))
    assert store.search(q="q0001")[0].outcome == "deferred"
    retry = row(1, 9, 1, "delivery.attempt", T0 + 3600 * S, T0 + 3601 * S,
                attrs={"estafeta.queue_id": "q0001", "estafeta.outcome": "delivered"})  # fmt: skip
    store.insert([retry])
    assert store.search(q="q0001")[0].outcome == "delivered"
    assert [t.trace_id for t in store.search(outcome="deferred")] == []
    store.insert([row(1, 8, 1, "late.old", T0 + 10, T0 + 20, attrs={"estafeta.outcome": "bounced"})])
    assert store.search(q="q0001")[0].outcome == "delivered"  # ended earlier: does not override


def test_keys_by_day_and_their_trimming(store):
    day0 = (T0 // DAY_NS) * DAY_NS
    store.insert(message(1, day0 + 3600 * S, "s@a.test", "r@b.test"))
    store.insert(message(2, day0 + DAY_NS + 3600 * S, "s@a.test", "r@b.test"))
    store.insert(message(3, day0 + 3 * DAY_NS + 3600 * S, "s@a.test", "r@b.test"))
    assert [t.trace_id for t in store.search(q="a.test")] == [tid(3), tid(2), tid(1)]
    assert [t.trace_id for t in store.search(q="a.test", limit=2)] == [tid(3), tid(2)]
    assert store.resolve("q0002") == [tid(2)]
    days = lambda: [r[0] for r in store.conn.execute("SELECT DISTINCT day FROM trace_keys ORDER BY day")]  # noqa: E731
    assert days() == [T0 // DAY_NS, T0 // DAY_NS + 1, T0 // DAY_NS + 3]
    removed = store.cleanup(2 * 86400, 0, now_ns=day0 + 3 * DAY_NS + 7200 * S)
    assert removed == 2
    assert days() == [T0 // DAY_NS + 3]
    assert [t.trace_id for t in store.search(q="a.test")] == [tid(3)]


def test_readonly_store_of_an_older_schema_searches_empty(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE spans (trace_id TEXT)")
    c.close()
    s = SpanStore(str(path), readonly=True)
    assert s.search(q="x") == [] and s.summary(tid(1)) is None
    s.close()


def test_a_store_from_before_the_search_keys_still_resolves_ids(tmp_path):
    """Traces stored before trace_keys existed are found by queue id and
    Message-ID through the old span indexes, where the store has them."""
    path = str(tmp_path / "old.db")
    s = SpanStore(path)
    s.conn.execute("CREATE INDEX idx_spans_queue_id ON spans (queue_id) WHERE queue_id IS NOT NULL")
    s.conn.execute("CREATE INDEX idx_spans_message_id ON spans (message_id) WHERE message_id IS NOT NULL")
    s.insert(message(1, T0, "s@a.test", "r@b.test"))
    s.conn.execute("DELETE FROM trace_keys")  # as an old store has none
    assert s.resolve("q0001") == [tid(1)]
    assert s.resolve("<m1@Example.ORG>") == [tid(1)]
    assert s.resolve("nothing") == []
    s.close()
