"""The terminal trace viewer: waterfall and list rendering, and the CLI commands."""

from __future__ import annotations

import io
import json
import re

import pytest

from estafeta.store.spans import SpanRow, SpanStore, TraceSummary
from estafeta.tracing.viewer import render
from estafeta.tracing.viewer.cli import cmd_list, cmd_show
from estafeta.tracing.viewer.render import format_duration, render_list, render_trace

MS = 1_000_000
S = 1000 * MS
DAY = 86400 * S
T0 = 1_767_225_600 * S  # 2026-01-01 00:00:00 UTC
TID = "0af7651916cd43dd8448eb211c80319c"
SESSION_TID = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(sid, parent, name, start, dur, *, status="OK", msg=None, attrs=None, events=(), links=(), trace_id=TID):
    return SpanRow(
        trace_id,
        sid,
        parent,
        name,
        "INTERNAL",
        T0 + start,
        T0 + start + dur,
        status,
        msg,
        dict(attrs or {}),
        list(events),
        list(links),
    )


def known_trace() -> list[SpanRow]:
    """A message accepted, a first attempt deferred, a retry two days later
    delivered; plus a span whose parent was lost (an orphan) with a child."""
    return [
        span(
            "c000000000000005",
            "a000000000000001",
            "delivery.attempt",
            2 * DAY,
            1500 * MS,
            attrs={"estafeta.queue_id": "Q1", "estafeta.recipient": "bob@example.org", "estafeta.attempt": 2},
        ),
        span(
            "a000000000000001",
            None,
            "smtp.transaction",
            0,
            12 * MS,
            attrs={"estafeta.queue_id": "Q1", "network.peer.address": "192.0.2.7", "unlisted.attr": "x"},
            events=[{"name": "rcpt", "time_ns": T0 + 2 * MS, "attributes": {"smtp.rcpt_to": "bob@example.org"}}],
            links=[{"trace_id": SESSION_TID, "span_id": "00f067aa0ba902b7", "attributes": {}}],
        ),
        span("b000000000000002", "a000000000000001", "queue.enqueue", 10 * MS, 1 * MS),
        span(
            "c000000000000003",
            "a000000000000001",
            "delivery.attempt",
            13 * MS,
            250 * MS,
            status="ERROR",
            msg="451 4.4.1 no answer",
            attrs={"error.type": "timeout", "smtp.reply.code": 451},
        ),
        span(
            "d000000000000006",
            "c000000000000005",
            "courier.local",
            2 * DAY + 100 * MS,
            90 * S,
            attrs={"estafeta.mailbox": "bob"},
        ),
        span("e000000000000007", "ffffffffffffffff", "maildir.write", 3 * 3600 * S, 40 * MS),
        span("e000000000000008", "e000000000000007", "fsync", 3 * 3600 * S + 1 * MS, 30 * MS),
    ]


@pytest.mark.parametrize(
    "ns,text",
    [
        (0, "0.00 ms"),
        (50_000, "0.05 ms"),
        (1_234_567, "1.23 ms"),
        (12_345_678, "12.3 ms"),
        (250 * MS, "250 ms"),
        (1500 * MS, "1.50 s"),
        (90 * S, "1.5 min"),
        (3 * 3600 * S, "3.0 h"),
        (2 * DAY + 3600 * S, "2.0 d"),
        (-5, "0.00 ms"),
    ],
)
def test_format_duration_switches_units(ns, text):
    assert format_duration(ns) == text


def test_render_trace_waterfall_structure():
    out = render_trace(known_trace(), link_names={(SESSION_TID, "00f067aa0ba902b7"): "smtp.session"})
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {TID}  started 2026-01-01 00:00:00.000 UTC  lasted 2.0 d  7 spans, 1 error")
    header = lines[1]
    assert header.split() == ["SPAN", "START", "DURATION", "STATUS", "TIMELINE", "DETAILS"]
    body = lines[2:]

    def find(text):
        (i,) = [i for i, l in enumerate(body) if text in l]
        return i, body[i]

    # Tree order: children under their parent, siblings by start, orphan last (by start).
    names = [l.split()[0] if not l.lstrip().startswith(("*", "~", "!")) else l.split()[1] for l in body]
    assert names == [
        "smtp.transaction",
        "linked",
        "rcpt",
        "queue.enqueue",
        "delivery.attempt",
        "delivery.attempt",
        "courier.local",
        "maildir.write",
        "fsync",
    ]
    # Indentation shows depth.
    assert body[0].startswith("smtp.transaction ")
    assert find("queue.enqueue")[1].startswith("  queue.enqueue ")
    assert find("courier.local")[1].startswith("    courier.local ")
    # Link and event beneath their span, indented one level.
    assert body[1] == f"  ~ linked from smtp.session trace {SESSION_TID} (span 00f067aa0ba902b7)"
    assert re.match(r"  \* rcpt +\+2\.00 ms +smtp\.rcpt_to=bob@example\.org$", body[2])
    # Units: offsets and durations switch with size; the 2-day gap reads as days.
    first, second = [l for l in body if "delivery.attempt" in l]
    assert re.search(r"\+13\.0 ms +250 ms +ERROR ", first)
    assert 'msg="451 4.4.1 no answer"' in first and "smtp.reply.code=451" in first and "error.type=timeout" in first
    assert re.search(r"\+2\.0 d +1\.50 s +OK ", second)
    assert "estafeta.queue_id=Q1 estafeta.recipient=bob@example.org estafeta.attempt=2" in second
    assert re.search(r"\+2\.0 d +1\.5 min ", find("courier.local")[1])
    assert re.search(r"\+3\.0 h +40\.0 ms ", find("maildir.write")[1])
    # Only curated attributes by default.
    assert "unlisted.attr" not in out and "unlisted.attr=x" in render_trace(known_trace(), all_attributes=True)
    # The orphan: top level, marked, its parent named; its child stays nested under it.
    i, orphan = find("maildir.write")
    assert orphan.startswith("! maildir.write ") and "[parent ffffffffffffffff missing]" in orphan
    assert body[i + 1].startswith("    fsync ")


def test_render_trace_timeline_is_fixed_width_and_placed():
    lines = render_trace(known_trace()).splitlines()[2:]
    bars = {
        l.split()[0] if not l.startswith("!") else l.split()[1]: re.search(r"\[[ =]+\]", l).group(0)
        for l in lines
        if "[" in l and "~" not in l
    }
    assert {len(b) for b in bars.values()} == {render.TIMELINE_WIDTH + 2}
    assert bars["smtp.transaction"].startswith("[=") and bars["smtp.transaction"].count("=") == 1
    assert bars["delivery.attempt"].endswith("=]")  # the retry is at the end of the trace's time
    assert bars["maildir.write"].index("=") < render.TIMELINE_WIDTH // 4  # 3 h into 2 d


def test_render_trace_empty_and_unknown_link():
    assert render_trace([]) == ""
    out = render_trace(known_trace())
    assert f"~ linked from trace {SESSION_TID} (span 00f067aa0ba902b7)" in out


def test_render_list():
    out = render_list(
        [
            TraceSummary(TID, "smtp.transaction", T0, 2 * DAY, 6, True, ("Q1",), "abc@example.org", "bounced"),
            TraceSummary(SESSION_TID, None, T0 - S, 20 * MS, 1, False, (), None),
        ],
        dropped=12,
    ).splitlines()
    assert out[0].split() == [
        "TRACE",
        "ID",
        "START",
        "DURATION",
        "SPANS",
        "STATUS",
        "OUTCOME",
        "QUEUE",
        "ID",
        "ROOT",
        "MESSAGE-ID",
    ]
    assert out[1].split() == [
        TID,
        "2026-01-01",
        "00:00:00",
        "UTC",
        "2.0",
        "d",
        "6",
        "ERROR",
        "bounced",
        "Q1",
        "smtp.transaction",
        "<abc@example.org>",
    ]
    assert out[2].split() == [
        SESSION_TID,
        "2025-12-31",
        "23:59:59",
        "UTC",
        "20.0",
        "ms",
        "1",
        "ok",
        "-",
        "-",
        "(root",
        "missing)",
        "-",
    ]
    assert out[3].startswith("2 traces; 12 spans dropped")
    assert render_list([]) == "no traces\n"


# -- the CLI commands, on a real store -------------------------------------------


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "traces.db")
    store = SpanStore(path)
    rows = []
    for s in known_trace():
        a = s.attributes
        rows.append(
            (
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.name,
                s.kind,
                s.start_ns,
                s.end_ns,
                s.status,
                s.status_message,
                json.dumps(a) if a else None,
                json.dumps(s.events) if s.events else None,
                json.dumps(s.links) if s.links else None,
                a.get("estafeta.queue_id"),
                None,
                "estafeta",
            )
        )
    rows[1] = rows[1][:13] + ("abc@example.org", "estafeta")
    rows.append(
        (
            SESSION_TID,
            "00f067aa0ba902b7",
            None,
            "smtp.session",
            "SERVER",
            T0 - S,
            T0 + S,
            "UNSET",
            None,
            None,
            None,
            None,
            None,
            None,
            "estafeta",
        )
    )
    store.insert(rows)
    yield path  # the writer stays open, as the daemon's would
    store.close()


def test_cmd_show_by_message_id_names_the_linked_session(db):
    out, err = io.StringIO(), io.StringIO()
    assert cmd_show(db, "<abc@example.org>", out=out, err=err) == 0
    text = out.getvalue()
    assert text.startswith(f"trace {TID}")
    assert f"~ linked from smtp.session trace {SESSION_TID}" in text
    assert err.getvalue() == ""
    out2 = io.StringIO()
    assert cmd_show(db, "Q1", out=out2) == 0 and out2.getvalue() == text


def test_cmd_show_unknown_key(db, capsys):
    assert cmd_show(db, "no-such-thing") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no trace found for 'no-such-thing'" in captured.err


def test_cmd_list(db):
    out = io.StringIO()
    assert cmd_list(db, 20, False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert [l.split()[0] for l in lines[1:3]] == [TID, SESSION_TID]  # newest first
    assert lines[-1] == "2 traces"
    out = io.StringIO()
    assert cmd_list(db, 20, True, out=out) == 0
    assert len(out.getvalue().splitlines()) == 3  # header, the failed trace, count


def test_no_store_yet(tmp_path, capsys):
    missing = str(tmp_path / "traces.db")
    assert cmd_list(missing, 20, False) == 2
    assert cmd_show(missing, TID) == 2
    err = capsys.readouterr().err
    assert err.count("no trace store at") == 2 and "Traceback" not in err


def test_not_a_database(tmp_path, capsys):
    p = tmp_path / "traces.db"
    p.write_bytes(b"this is not sqlite" * 100)
    assert cmd_list(str(p), 20, False) == 2
    assert "cannot read the trace store" in capsys.readouterr().err


def test_cmd_list_filters_like_the_web_page(db, capsys):
    out = io.StringIO()
    assert cmd_list(db, 20, False, out=out, key="bob@example.org") == 0
    lines = out.getvalue().splitlines()
    assert lines[1].split()[0] == TID and lines[-1] == "1 trace"
    assert "delivered" in lines[1].split()  # the retry two days later delivered it
    out = io.StringIO()
    assert cmd_list(db, 20, False, out=out, key="example.org", outcome="deferred") == 0
    assert out.getvalue().strip() == "no traces"
    out = io.StringIO()
    assert cmd_list(db, 20, False, out=out, since="2025-12-31T23:59:59.5", until="2026-01-02") == 0
    assert [l.split()[0] for l in out.getvalue().splitlines()[1:-1]] == [TID]
    assert cmd_list(db, 20, False, since="yesterday-ish") == 2
    assert cmd_list(db, 20, False, outcome="lost") == 2
    err = capsys.readouterr().err
    assert '"yesterday-ish" is not a time' in err and 'outcome "lost" is not one of' in err
