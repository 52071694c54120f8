"""The monitoring web page: a Flask application (routing, Jinja templates
with autoescaping), served by the HTTP actor (actors/http.py) on gevent's
WSGI server in serving process 0.

Pages, each with a JSON twin (``Accept: application/json`` or
``?format=json``):

    GET  /traces?q=KEY&since=&until=&outcome=&errors=1   search (store/tracesearch.py)
    GET  /traces/<trace id>                              one trace, as a waterfall
    GET  /queue?state=&dest=&sort=&order=                the queue
    GET  /queue/<queue id>                               one item: file, header, recipients, trace
    POST /queue/<queue id>/flush|hold|release|delete     needs the token; through the control channel
    GET  /tree                                           every serving process's supervision tree, live
    GET  /metrics, /healthz, /readyz                     Prometheus; liveness; readiness

Access: reading needs no token from a loopback client; from any other
address every page but /metrics, /healthz and /readyz needs it too
(``Authorization: Bearer <token>``; 403 without). Actions always need it,
and every action is logged (who, what, outcome). Everything shown is
escaped by Jinja (a Subject of ``<script>`` is text); the pages' own
scripts come from /static, and the Content-Security-Policy allows no
other.

Blocking work (sqlite, queue files, the control channel's replies) runs
through `WebContext.blocking` (the hub's threadpool in the daemon), so a
slow page never stalls mail.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from google.protobuf import json_format

from estafeta.proto import control_pb2, queue_pb2
from estafeta.store.queue import QueueStore, process_of
from estafeta.store.spans import SpanStore, StoreMissing, TraceSummary
from estafeta.store.tracesearch import OUTCOMES, TRACE_ID_RE
from estafeta.supervisor.log import kv
from estafeta.supervisor.queuecli import age
from estafeta.tracing.viewer.render import format_duration, format_time, parse_time
from estafeta.tracing.viewer.web import queueview
from estafeta.tracing.viewer.web.waterfall import layout

log = logging.getLogger("estafeta.http")

#: Pages anyone who can reach the port may read (probes and scrapers).
OPEN_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
ACTIONS = {
    "flush": control_pb2.QueueAction.FLUSH,
    "hold": control_pb2.QueueAction.HOLD,
    "release": control_pb2.QueueAction.RELEASE,
    "delete": control_pb2.QueueAction.DELETE,
}
#: Search results per page.
PAGE = 50
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"

Probe = Callable[[], tuple[bool, dict]]


@dataclass
class WebContext:
    """What the pages read and whom they ask.

    data_dir / queue_dir / traces_db: paths. token: the bearer token.
    processes: serving processes (a queue id's owner: process_of).
    health / ready: probes -> (ok, {check: detail}). metrics: -> (body,
    content type). control(request, process or None) -> [ControlReply]
    (supervisor/control.py call; its socket I/O yields to the hub, so it
    is called directly). blocking(fn, *args): runs fn off the hub
    (store.blocking.run_blocking)."""

    data_dir: str
    queue_dir: str
    traces_db: str
    token: str
    processes: int
    health: Probe
    ready: Probe
    metrics: Callable[[], tuple[bytes, str]]
    control: Callable[[control_pb2.ControlRequest, int | None], list[control_pb2.ControlReply]]
    blocking: Callable[..., Any]


def wants_json() -> bool:
    """The JSON twin: ?format=json, or an Accept header preferring JSON."""
    if request.args.get("format") == "json":
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def _loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def _authorized(token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(given.strip(), token)


def create_app(ctx: WebContext) -> Flask:
    """The Flask application for `ctx`."""
    here = os.path.dirname(__file__)
    # Both paths given: Flask cannot find them itself under the implicit
    # namespace package "estafeta" (its package search raises StopIteration).
    app = Flask(__name__, root_path=here, instance_path=here)
    app.jinja_env.globals.update(
        format_time=format_time,
        format_duration=format_duration,
        age=age,
        outcomes=OUTCOMES,
        state_name=queueview.state_name,
    )
    _guard_and_headers(app, ctx)
    _trace_pages(app, ctx)
    _queue_pages(app, ctx)
    _queue_actions(app, ctx)
    _tree_and_probes(app, ctx)
    return app


def _guard_and_headers(app: Flask, ctx: WebContext) -> None:
    """Who may read (loopback, else the token) and the security headers
    of every response."""

    @app.before_request
    def guard():
        if request.path in OPEN_PATHS or request.path.startswith("/static/"):
            return None
        if request.method != "GET" or _loopback(request.remote_addr):
            return None  # actions check the token themselves
        if not _authorized(ctx.token):
            return _error(403, "reading these pages from another host needs the token (Authorization: Bearer ...)")
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp


def _trace_pages(app: Flask, ctx: WebContext) -> None:
    """/ (to /traces), /traces (the search) and /traces/<trace id> (the
    waterfall); HTML, or JSON when asked for (wants_json)."""

    @app.get("/")
    def index():
        return redirect(url_for("traces"))

    @app.get("/traces")
    def traces():
        q = request.args.get("q", "").strip()
        outcome = request.args.get("outcome", "") or None
        errors = request.args.get("errors", "") in ("1", "on", "true", "yes")
        try:
            limit = max(1, min(1000, int(request.args.get("limit", PAGE))))
            since = parse_time(request.args["since"]) if request.args.get("since") else None
            until = parse_time(request.args["until"]) if request.args.get("until") else None
            if outcome is not None and outcome not in OUTCOMES:
                raise ValueError(f'outcome "{outcome}" is not one of {", ".join(OUTCOMES)}')
        except ValueError as e:
            return _error(400, str(e))
        found, problem = ctx.blocking(_search, ctx.traces_db, q, since, until, outcome, errors, limit)
        if wants_json():
            return jsonify(
                query={"q": q, "since_ns": since, "until_ns": until, "outcome": outcome, "errors": errors},
                error=problem,
                traces=[_summary_json(t) for t in found],
            )
        return render_template(
            "traces.html",
            q=q,
            since=request.args.get("since", ""),
            until=request.args.get("until", ""),
            outcome=outcome or "",
            errors=errors,
            traces=found,
            problem=problem,
        )

    @app.get("/traces/<trace_id>")
    def trace(trace_id: str):
        if not TRACE_ID_RE.fullmatch(trace_id):
            return _error(404, f"{trace_id!r} is not a trace id (32 hex digits)")
        spans, linked, summary, queued = ctx.blocking(_trace, ctx.traces_db, ctx.queue_dir, trace_id.lower())
        if not spans:
            return _error(404, f"no trace {trace_id} in the span store")
        if wants_json():
            return jsonify(
                trace_id=trace_id.lower(),
                outcome=summary.outcome if summary else None,
                queued=queued,
                spans=[_span_json(s) for s in spans],
                linked=[{"trace_id": s.trace_id, **_span_json(s)} for s in linked],
            )
        bars, gaps = layout(spans, linked)
        t0 = min(s.start_ns for s in [*spans, *linked])
        t1 = max(max(s.end_ns, s.start_ns) for s in [*spans, *linked])
        return render_template(
            "trace.html",
            trace_id=trace_id.lower(),
            bars=bars,
            gaps=gaps,
            t0=t0,
            total=t1 - t0,
            summary=summary,
            link_names={f"{s.trace_id}/{s.span_id}": s.name for s in linked},
            queued=queued,
        )


def _queue_pages(app: Flask, ctx: WebContext) -> None:
    """/queue (the items, filtered and sorted) and /queue/<queue id> (one
    item's file); HTML, or JSON when asked for."""

    @app.get("/queue")
    def queue():
        state = request.args.get("state", "")
        dest = request.args.get("dest", "").strip().lower()
        sort = request.args.get("sort", "age")
        order = request.args.get("order", "desc" if sort in ("size", "attempts") else "asc")
        if sort not in queueview.SORT_KEYS:
            return _error(400, f"sort must be one of {', '.join(queueview.SORT_KEYS)}")
        if state and state not in queueview.STATES:
            return _error(400, f"state must be one of {', '.join(queueview.STATES)}")
        view = ctx.blocking(queueview.load, ctx.queue_dir)
        items = queueview.select(view.items, state=state, dest=dest, sort=sort, descending=order == "desc")
        now = time.time()
        if wants_json():
            return jsonify(
                total=len(view.items),
                truncated=view.truncated,
                unreadable=view.unreadable,
                items=[queueview.item_json(i, now) for i in items],
            )
        return render_template(
            "queue.html",
            items=items,
            view=view,
            state=state,
            dest=dest,
            sort=sort,
            order=order,
            now=now,
        )

    @app.get("/queue/<queue_id>")
    def queue_item(queue_id: str):
        try:
            found = ctx.blocking(queueview.load_one, ctx.queue_dir, queue_id)
        except ValueError:
            return _error(404, f"{queue_id!r} is not a queue id")
        if found is None:
            return _error(404, f"no queue item {queue_id} (delivered, or never queued)")
        item, text, header = found
        trace_id = queueview.trace_id_of(item)
        if wants_json():
            return jsonify(
                item=json_format.MessageToDict(item, preserving_proto_field_name=True),
                file=text,
                header=header,
                trace_id=trace_id,
                process=process_of(queue_id, ctx.processes),
            )
        return render_template("item.html", item=item, text=text, header=header, trace_id=trace_id, now=time.time())


def _queue_actions(app: Flask, ctx: WebContext) -> None:
    """POST /queue/<queue id>/<flush|hold|release|delete>: the token
    always (403 without), sent to the serving process that owns the item
    over the control channel; 200, 409 (refused) or 502 (no reply)."""

    @app.post("/queue/<queue_id>/<action>")
    def queue_action(queue_id: str, action: str):
        who = request.remote_addr or "-"
        if not _authorized(ctx.token):
            log.warning("http action=%s id=%s from=%s result=forbidden", kv(action), kv(queue_id), who)
            return _error(403, "this action needs the token: Authorization: Bearer <token>")
        if action not in ACTIONS:
            return _error(404, f"no action {action!r} (flush, hold, release, delete)")
        try:
            QueueStore(ctx.queue_dir).item_path(queue_id)  # a sane id
        except ValueError:
            return _error(404, f"{queue_id!r} is not a queue id")
        req = control_pb2.ControlRequest(
            queue=control_pb2.QueueAction(
                action=ACTIONS[action], queue_ids=[queue_id], bounce=request.args.get("bounce") == "1"
            )
        )
        replies = ctx.control(req, process_of(queue_id, ctx.processes))
        reply = replies[0] if replies else control_pb2.ControlReply(error="no reply")
        ok = not reply.error and all(r.ok for r in reply.results) and bool(reply.results)
        why = reply.error or "; ".join(r.error for r in reply.results if r.error)
        log.info("http action=%s id=%s from=%s result=%s%s", action, queue_id, who, "ok" if ok else "failed",
                 f" error={kv(why)}" if why else "")  # fmt: skip
        body = {
            "ok": ok,
            "error": why,
            "process": reply.process,
            "results": [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in reply.results],
        }
        return jsonify(body), 200 if ok else 409 if reply.results else 502


def _tree_and_probes(app: Flask, ctx: WebContext) -> None:
    """/tree (every serving process's supervision tree, and the
    quarantined items), /metrics, /healthz and /readyz."""

    @app.get("/tree")
    def tree():
        try:
            processes = ctx.control(control_pb2.ControlRequest(tree=control_pb2.TreeQuery()), None)
        except Exception as e:  # noqa: BLE001 - no daemon here: the page says so
            processes = [control_pb2.ControlReply(error=str(e))]
        quarantined = ctx.blocking(_quarantined, ctx.traces_db, ctx.queue_dir, ctx.processes)
        if wants_json():
            return jsonify(
                processes=[
                    {
                        "process": r.process,
                        "error": r.error,
                        "tree": json_format.MessageToDict(r.tree, preserving_proto_field_name=True)
                        if r.HasField("tree")
                        else None,
                    }
                    for r in processes
                ],
                quarantined=quarantined,
            )
        template = "tree_body.html" if request.args.get("fragment") == "1" else "tree.html"
        return render_template(template, processes=processes, quarantined=quarantined, now=time.time())

    # ------------------------------------------------------------- probes
    @app.get("/metrics")
    def metrics():
        body, content_type = ctx.blocking(ctx.metrics)
        return Response(body, content_type=content_type)

    @app.get("/healthz")
    def healthz():
        return _probe(ctx.health())

    @app.get("/readyz")
    def readyz():
        return _probe(ctx.ready())


def _probe(result: tuple[bool, dict]) -> tuple[Response, int]:
    ok, checks = result
    if wants_json():
        return jsonify(ok=ok, checks=checks), 200 if ok else 503
    text = ("ok" if ok else "failing") + "\n" + "".join(f"{k}: {v}\n" for k, v in checks.items())
    return Response(text, content_type="text/plain; charset=utf-8"), 200 if ok else 503


def _error(status: int, message: str):
    if wants_json():
        return jsonify(error=message), status
    return render_template("error.html", status=status, message=message), status


# ------------------------------------------------------------ blocking work
def _open_store(path: str) -> SpanStore | None:
    try:
        return SpanStore(path, readonly=True)
    except StoreMissing:
        return None


def _search(db: str, q: str, since, until, outcome, errors: bool, limit: int) -> tuple[list[TraceSummary], str | None]:
    store = _open_store(db)
    if store is None:
        return [], "no span store yet: the daemon has not recorded any trace"
    try:
        return store.search(q, since_ns=since, until_ns=until, outcome=outcome, errors_only=errors, limit=limit), None
    finally:
        store.close()


def _trace(db: str, queue_dir: str, trace_id: str):
    """(spans, the spans of other traces they link to, summary, the queue
    ids of the trace still queued)."""
    store = _open_store(db)
    if store is None:
        return [], [], None, []
    try:
        spans = store.spans(trace_id)
        summary = store.summary(trace_id)
        linked = []
        for tid in sorted({lk.get("trace_id") for s in spans for lk in s.links} - {trace_id, None}):
            wanted = {lk.get("span_id") for s in spans for lk in s.links if lk.get("trace_id") == tid}
            linked += [s for s in store.spans(tid) if s.span_id in wanted]
    finally:
        store.close()
    qids = sorted({s.queue_id for s in spans if s.queue_id})
    queued = [q for q in qids if queueview.exists(queue_dir, q)]
    return spans, linked, summary, queued


def _quarantined(db: str, queue_dir: str, processes: int) -> list[dict]:
    """The quarantined items: the span store's quarantine outcomes whose
    item is still quarantined on disk (newest 100)."""
    out: list[dict] = []
    store = _open_store(db)
    if store is None:
        return out
    try:
        found = store.search(outcome="quarantined", limit=100)
    finally:
        store.close()
    for t in found:
        for qid in t.queue_ids:
            got = queueview.load_one(queue_dir, qid)
            if got is not None and got[0].state == queue_pb2.QUARANTINED:
                out.append(
                    {
                        "queue_id": qid,
                        "trace_id": t.trace_id,
                        "reason": got[0].quarantine_reason,
                        "process": process_of(qid, processes),
                    }
                )
    return out


def _summary_json(t: TraceSummary) -> dict:
    return {
        "trace_id": t.trace_id,
        "start": format_time(t.start_ns, millis=True),
        "start_ns": t.start_ns,
        "duration_ns": t.duration_ns,
        "outcome": t.outcome,
        "root": t.root_name,
        "spans": t.span_count,
        "error": t.has_error,
        "queue_ids": list(t.queue_ids),
        "message_id": t.message_id,
        "senders": list(t.senders),
        "recipients": list(t.recipients),
        "refused": t.refused,
    }


def _span_json(s) -> dict:
    return {
        "span_id": s.span_id,
        "parent_span_id": s.parent_span_id,
        "name": s.name,
        "kind": s.kind,
        "start_ns": s.start_ns,
        "end_ns": s.end_ns,
        "status": s.status,
        "status_message": s.status_message,
        "attributes": s.attributes,
        "events": s.events,
        "links": s.links,
    }


__all__ = ["ACTIONS", "WebContext", "create_app"]
