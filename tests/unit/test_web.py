"""The web page's Flask application (tracing/viewer/web/app.py) with
Flask's test client: every route and its JSON twin, access control,
escaping, bad parameters; the waterfall's compressed axis."""

from __future__ import annotations

import json
import logging

import pytest

from estafeta.proto import common_pb2, control_pb2, queue_pb2
from estafeta.store.queue import QueueStore, new_id
from estafeta.store.spans import SpanRow, SpanStore
from estafeta.tracing.viewer.web.app import WebContext, create_app
from estafeta.tracing.viewer.web.waterfall import Axis, layout

S = 1_000_000_000
T0 = 1_790_000_000 * S
TID = "ab" * 16
SESSION = "cd" * 16
EVIL = "<script>alert(1)</script>"
TOKEN = "s3cret-token"


def row(trace, span, parent, name, start, end, attrs=None, status="UNSET", links=None, events=None):
    return (trace, span, parent, name, "INTERNAL", start, end, status, None,
            json.dumps(attrs) if attrs else None, json.dumps(events) if events else None,
            json.dumps(links) if links else None, (attrs or {}).get("estafeta.queue_id"), None, "estafeta")  # fmt: skip


@pytest.fixture
def env(tmp_path):
    db = tmp_path / "traces.db"
    qdir = tmp_path / "queue"
    qdir.mkdir()
    store = QueueStore(str(qdir))
    qid = new_id(1)
    item = queue_pb2.QueueItem(
        id=qid,
        state=queue_pb2.QUEUED,
        reverse_path=f'"{EVIL}"@example.org',
        created_at=T0 / S,
        body_size=10,
        trace=common_pb2.TraceContext(traceparent=f"00-{TID}-{'1' * 16}-01"),
    )
    item.recipients.add(address="held@localhost", status=queue_pb2.PENDING, last_error="451 4.3.0 busy")
    store.put(item, f"Subject: {EVIL}\r\nMessage-ID: <{EVIL}@x>\r\n\r\nbody\r\n".encode())
    quarantined = queue_pb2.QueueItem(id=new_id(0), state=queue_pb2.QUARANTINED, reverse_path="q@a.test",
                                      quarantine_reason="actor crashed 5 times", created_at=T0 / S - 60)  # fmt: skip
    quarantined.recipients.add(address="x@other.test", status=queue_pb2.PENDING)
    store.put(quarantined, b"Subject: q\r\n\r\n")
    spans = SpanStore(str(db))
    spans.insert(
        [
            row(SESSION, "5" * 16, None, "smtp.session", T0 - S, T0 + 2 * S, {"network.peer.address": "127.0.0.1"}),
            row(TID, "1" * 16, None, "smtp.transaction", T0, T0 + 10**7,
                {"smtp.mail_from": f'"{EVIL}"@example.org', "smtp.rcpt_to": ["held@localhost"], "estafeta.queue_id": qid},
                links=[{"trace_id": SESSION, "span_id": "5" * 16, "attributes": {}}]),
            row(TID, "2" * 16, "1" * 16, "queue.enqueue", T0 + 10**6, T0 + 2 * 10**6, {"estafeta.queue_id": qid}),
            row(TID, "3" * 16, "1" * 16, "delivery.attempt", T0 + 2 * 86400 * S, T0 + 2 * 86400 * S + 10**7,
                {"estafeta.queue_id": qid, "estafeta.outcome": "deferred"}, status="ERROR",
                events=[{"name": "retry", "time_ns": T0 + 2 * 86400 * S, "attributes": {"why": EVIL}}]),
            row("ef" * 16, "4" * 16, None, "queue.quarantine", T0 + S, T0 + 2 * S,
                {"estafeta.queue_id": quarantined.id, "estafeta.outcome": "quarantined"}),
        ]
    )  # fmt: skip
    spans.close()
    calls = []

    def control(req, process):
        calls.append((req, process))
        if req.WhichOneof("op") == "tree":
            node = control_pb2.SupervisorNode(name="root", strategy="one_for_one", intensity=3, period_seconds=30,
                                              restarts_in_window=1, crashes=7, last_crash=f"x: {EVIL}")  # fmt: skip
            node.children.add(child_id="x", actor_class="Worker", restart="permanent", state="running", restarts=1,
                              restarts_in_window=1, last_error=EVIL)  # fmt: skip
            return [control_pb2.ControlReply(process=0, tree=node), control_pb2.ControlReply(process=1, error="gone")]
        return [
            control_pb2.ControlReply(
                process=process, results=[control_pb2.QueueActionResult(queue_id=req.queue.queue_ids[0], ok=True)]
            )
        ]

    ctx = WebContext(
        data_dir=str(tmp_path),
        queue_dir=str(qdir),
        traces_db=str(db),
        token=TOKEN,
        processes=2,
        health=lambda: (True, {"root": "ok"}),
        ready=lambda: (False, {"process 1": "no answer"}),
        metrics=lambda: (b"estafeta_x_total 1.0\n", "text/plain; version=0.0.4"),
        control=control,
        blocking=lambda fn, *a: fn(*a),
    )
    app = create_app(ctx)
    return app.test_client(), qid, quarantined.id, calls


def test_search_page_and_its_json_twin(env):
    client, qid, _, _ = env
    r = client.get("/traces?q=held@localhost")
    assert r.status_code == 200 and b"&lt;script&gt;" in r.data and b"<script>alert" not in r.data
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    j = client.get("/traces?q=held@localhost", headers={"Accept": "application/json"}).get_json()
    assert [t["trace_id"] for t in j["traces"]] == [TID]
    assert j["traces"][0]["outcome"] == "deferred" and j["traces"][0]["queue_ids"] == [qid]
    assert client.get("/traces?q=localhost&format=json").get_json()["traces"][0]["recipients"] == ["held@localhost"]
    assert client.get("/traces?outcome=quarantined&format=json").get_json()["traces"][0]["root"] == "queue.quarantine"
    assert client.get("/traces?since=2h&format=json").get_json()["traces"] == []  # all of it is older
    assert client.get("/traces?since=nonsense").status_code == 400
    assert client.get("/traces?outcome=lost&format=json").get_json()["error"].startswith('outcome "lost"')
    assert client.get("/").headers["Location"].endswith("/traces")


def test_trace_page_waterfall_links_and_escaping(env):
    client, qid, _, _ = env
    r = client.get(f"/traces/{TID}")
    html = r.data.decode()
    assert r.status_code == 200 and "<script>alert" not in html and "&lt;script&gt;" in html
    names = [
        n
        for n in ("smtp.session", "smtp.transaction", "queue.enqueue", "delivery.attempt")
        if f'data-name="{n}"' in html
    ]
    assert names == ["smtp.session", "smtp.transaction", "queue.enqueue", "delivery.attempt"]
    assert html.index('data-name="smtp.session"') < html.index('data-name="smtp.transaction"')
    assert f'href="/traces/{SESSION}"' in html  # the connection's trace
    assert f'href="/queue/{qid}"' in html and "still queued" in html
    assert "≈ 2.0 d" in html  # the retry two days later, compressed
    j = client.get(f"/traces/{TID}?format=json").get_json()
    assert [s["name"] for s in j["spans"]] == ["smtp.transaction", "queue.enqueue", "delivery.attempt"]
    assert j["linked"][0]["name"] == "smtp.session" and j["queued"] == [qid]
    assert client.get("/traces/" + "0" * 32).status_code == 404
    assert client.get("/traces/not-a-trace").status_code == 404


def test_queue_list_filters_sorts_and_escapes(env):
    client, qid, qq, _ = env
    html = client.get("/queue").data.decode()
    assert qid in html and qq in html and "<script>alert" not in html
    j = client.get("/queue?format=json").get_json()
    assert j["total"] == 2
    assert [i["id"] for i in client.get("/queue?state=quarantined&format=json").get_json()["items"]] == [qq]
    assert [i["id"] for i in client.get("/queue?dest=localhost&format=json").get_json()["items"]] == [qid]
    assert [i["id"] for i in client.get("/queue?sort=age&order=desc&format=json").get_json()["items"]] == [qq, qid]
    assert [i["id"] for i in client.get("/queue?sort=size&order=asc&format=json").get_json()["items"]][0] == qq
    assert client.get("/queue?sort=nope").status_code == 400
    assert client.get("/queue?state=nope").status_code == 400


def test_queue_item_page(env):
    client, qid, _, _ = env
    html = client.get(f"/queue/{qid}").data.decode()
    assert "<script>alert" not in html
    assert "Subject: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f'href="/traces/{TID}"' in html and "451 4.3.0 busy" in html
    j = client.get(f"/queue/{qid}?format=json").get_json()
    assert j["trace_id"] == TID and j["process"] == 1 and 'reverse_path: "\\"<script>' in j["file"]
    assert client.get("/queue/" + "0" * 22).status_code == 404
    assert client.get("/queue/.spare").status_code == 404  # not an id: never a path outside the queue


def test_actions_need_the_token_and_are_logged(env, caplog):
    client, qid, _, calls = env
    caplog.set_level(logging.INFO, "estafeta.http")
    assert client.post(f"/queue/{qid}/hold").status_code == 403
    assert client.post(f"/queue/{qid}/hold", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post(f"/queue/{qid}/hold", headers={"Authorization": TOKEN}).status_code == 403
    assert calls == []
    r = client.post(f"/queue/{qid}/hold", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.get_json()["ok"]
    ((req, process),) = calls
    assert req.queue.action == control_pb2.QueueAction.HOLD and list(req.queue.queue_ids) == [qid] and process == 1
    assert client.post(f"/queue/{qid}/explode", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    lines = [r.getMessage() for r in caplog.records]
    assert f"http action=hold id={qid} from=127.0.0.1 result=forbidden" in lines
    assert f"http action=hold id={qid} from=127.0.0.1 result=ok" in lines


def test_other_hosts_need_the_token_to_read_but_not_to_probe(env):
    client, _, _, _ = env
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/traces", environ_base=remote).status_code == 403
    assert client.get("/traces", environ_base=remote, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", environ_base=remote).status_code == 200
    assert client.get("/healthz", environ_base=remote).status_code == 200
    assert client.get("/traces", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_tree_page_fragment_and_json(env):
    client, _, qq, _ = env
    html = client.get("/tree").data.decode()
    assert "tree.js" in html and 'data-sup="root"' in html and "one_for_one, 3 / 30 s" in html
    assert 'data-crashes="7"' in html and "7 crashes since start" in html
    assert "<script>alert" not in html and "gone" in html
    assert qq in html and "actor crashed 5 times" in html  # the quarantined item, highlighted
    frag = client.get("/tree?fragment=1").data.decode()
    assert "<html" not in frag and 'data-child="x"' in frag
    j = client.get("/tree?format=json").get_json()
    assert j["processes"][0]["tree"]["name"] == "root" and j["processes"][1]["error"] == "gone"
    assert j["quarantined"][0]["queue_id"] == qq


def test_probes_and_metrics(env):
    client, _, _, _ = env
    assert client.get("/healthz").data.decode().startswith("ok")
    r = client.get("/readyz")
    assert r.status_code == 503 and "process 1: no answer" in r.data.decode()
    assert client.get("/readyz?format=json").get_json() == {"ok": False, "checks": {"process 1": "no answer"}}
    r = client.get("/metrics")
    assert r.data == b"estafeta_x_total 1.0\n" and r.headers["Content-Type"].startswith("text/plain")


def _span(name, start, end, parent=None, sid=None):
    return SpanRow("a" * 32, sid or name[:16].ljust(16, "0"), parent, name, "INTERNAL", start, end, "OK", None)


def test_axis_compresses_long_gaps_only():
    quick = [_span("a", 0, 10**6), _span("b", 2 * 10**6, 3 * 10**6)]
    axis = Axis(quick)
    assert axis.gaps == [] and axis.x(0) == 0 and axis.x(3 * 10**6) == pytest.approx(100)
    assert axis.x(15 * 10**5) == pytest.approx(50)
    days = [_span("a", 0, 10**7), _span("b", 2 * 86400 * S, 2 * 86400 * S + 10**7)]
    axis = Axis(days)
    (gap,) = axis.gaps
    assert gap.label == "2.0 d" and 40 < gap.at < 50 and gap.width < 10
    assert axis.x(10**7) == pytest.approx(gap.at)
    bars, gaps = layout(days)
    assert bars[1].left > 50 and bars[0].width > 40  # both spans visible, not hairlines


def test_bars_nest_under_their_parent():
    spans = [_span("root", 0, 10, sid="1" * 16), _span("child", 2, 5, parent="1" * 16, sid="2" * 16)]
    bars, _ = layout(spans)
    assert [(b.span.name, b.depth) for b in bars] == [("root", 0), ("child", 1)]
    assert bars[1].left == pytest.approx(20)


def test_the_token_file_is_made_private_once_and_kept(tmp_path):
    from estafeta.actors.http import ensure_token

    path = tmp_path / "sub" / "http.token"
    token = ensure_token(str(path))
    assert len(token) >= 40 and path.stat().st_mode & 0o777 == 0o600
    assert ensure_token(str(path)) == token
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        ensure_token(str(path))
