"""Plain-text rendering of stored traces for the terminal (`estafeta traces list/show`).

render_trace draws one trace as an indented waterfall:

    trace 4bf9...4736  started 2026-05-01 12:00:03.123 UTC  lasted 2.0 d  5 spans, 1 error
    SPAN                START     DURATION  STATUS  TIMELINE                         DETAILS
    smtp.transaction    +0.00 ms  12.3 ms   OK      [=                             ] estafeta.queue_id=Q1
      ~ linked from smtp.session trace 0af7...319c (span 00f067aa0ba902b7)
      * rcpt            +1.20 ms                                                     smtp.rcpt_to=a@b
      queue.enqueue     +10.1 ms  1.20 ms   OK      [=                             ]
      delivery.attempt  +2.0 d    1.50 s    ERROR   [                             =] error.type=...

Times switch units with their size (ms, s, min, h, d), so a retry days
after the transaction reads as "+2.0 d". Everything is ASCII and the
timeline has a fixed width, so the output survives any terminal and log.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from estafeta.store.spans import SpanRow, TraceSummary

#: Width of the timeline bar, characters between the brackets.
TIMELINE_WIDTH = 30
_NAME_MAX = 48
_VALUE_MAX = 60

#: Attributes shown next to a span, in this order (OTel semantic conventions
#: first, then ours); every "smtp.reply.*" attribute is shown as well.
KEY_ATTRIBUTES = (
    "estafeta.queue_id",
    "estafeta.recipient",
    "estafeta.attempt",
    "estafeta.courier",
    "smtp.helo",
    "smtp.mail_from",
    "smtp.rcpt_to",
    "smtp.rcpt_count",
    "smtp.reply.code",
    "smtp.reply.enhanced",
    "smtp.reply.text",
    "client.address",
    "network.peer.address",
    "server.address",
    "server.port",
    "estafeta.mailbox",
    "estafeta.destination",
    "estafeta.mx.hosts",
    "dns.question.name",
    "dns.response_code",
    "dns.answers",
    "tls.protocol.version",
    "tls.cipher",
    "estafeta.tls.verified",
    "estafeta.outcome",
    "estafeta.next_attempt_in_s",
    # mail authentication (actors/checks/): each check's verdict, what the
    # session did with it, what the enqueue added
    "dnsbl.listed",
    "iprev.result",
    "spf.result",
    "spf.identity",
    "dkim.result",
    "dkim.signatures",
    "arc.result",
    "dmarc.result",
    "dmarc.disposition",
    "dmarc.reason",
    "estafeta.checks.action",
    "estafeta.refused",
    "estafeta.dkim.signed",
    "estafeta.srs.reverse_path",
    "estafeta.arc.sealed",
    "error.type",
)
_KEY_SET = frozenset(KEY_ATTRIBUTES)

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


def format_duration(ns: int) -> str:
    """A duration in the unit that fits it: "0.05 ms", "12.3 ms", "250 ms",
    "1.50 s", "4.2 min", "3.0 h", "2.1 d" (1 d = 86400 s); negative is 0."""
    ns = max(0, ns)
    if ns < _NS_PER_S:
        ms = ns / _NS_PER_MS
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    s = ns / _NS_PER_S
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def format_time(ns: int, *, millis: bool = False) -> str:
    """An epoch time in ns as "YYYY-MM-DD HH:MM:SS[.mmm] UTC"."""
    t = datetime.datetime.fromtimestamp(ns / _NS_PER_S, tz=datetime.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{t.microsecond // 1000:03d}" if millis else "") + " UTC"


def _value(v) -> str:
    if isinstance(v, str):
        s = v if v and not any(c in v for c in ' "=\t\r\n') else json.dumps(v, ensure_ascii=False)
    elif isinstance(v, (list, tuple)):
        s = ",".join(_value(x) for x in v)
    else:
        s = json.dumps(v)
    return s if len(s) <= _VALUE_MAX else s[: _VALUE_MAX - 3] + "..."


def _details(attrs: Mapping, *, all_attributes: bool) -> str:
    if all_attributes:
        keys = list(attrs)
    else:
        keys = [k for k in KEY_ATTRIBUTES if k in attrs]
        keys += [k for k in attrs if k.startswith("smtp.reply.") and k not in _KEY_SET]
    return " ".join(f"{k}={_value(attrs[k])}" for k in keys)


def span_tree(spans: Sequence[SpanRow]) -> list[tuple[int, SpanRow, bool, bool]]:
    """(depth, span, orphan, under_orphan) in tree order: children under
    their parent, siblings by start time; spans whose parent is not in the
    trace (lost in a crash, or trimmed) come out at depth 0 with orphan=True,
    their descendants with under_orphan=True."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[SpanRow]] = {}
    tops = []
    for s in spans:
        if s.parent_span_id is not None and s.parent_span_id in by_id and s.parent_span_id != s.span_id:
            children.setdefault(s.parent_span_id, []).append(s)
        else:
            tops.append(s)
    key = lambda s: (s.start_ns, s.span_id)  # noqa: E731
    out: list[tuple[int, SpanRow, bool, bool]] = []
    seen: set[int] = set()

    def walk(roots: Iterable[SpanRow], orphan_if_parented: bool) -> None:
        stack = [(0, s, False) for s in sorted(roots, key=key, reverse=True)]
        while stack:
            depth, s, under = stack.pop()
            if id(s) in seen:
                continue
            seen.add(id(s))
            orphan = orphan_if_parented and depth == 0 and s.parent_span_id is not None
            out.append((depth, s, orphan, under))
            for c in sorted(children.get(s.span_id, ()), key=key, reverse=True):
                stack.append((depth + 1, c, under or orphan))

    walk(tops, True)
    # Spans caught in a parent cycle (corrupt data) are never reached from a
    # top: show them as orphans rather than lose them.
    rest = [s for s in spans if id(s) not in seen]
    if rest:
        walk(rest, True)
    return out


def _timeline(start: int, end: int, t0: int, total: int) -> str:
    w = TIMELINE_WIDTH
    a = min(w - 1, (start - t0) * w // total)
    b = min(w, max(a + 1, -(-(end - t0) * w // total)))
    return "[" + " " * a + "=" * (b - a) + " " * (w - b) + "]"


def _link_line(link: Mapping, link_names: Mapping[tuple[str, str], str]) -> str:
    tid, sid = link.get("trace_id", "?"), link.get("span_id", "?")
    name = link_names.get((tid, sid))
    what = f"{name} trace" if name else "trace"
    extra = _details(link.get("attributes") or {}, all_attributes=True)
    return f"~ linked from {what} {tid} (span {sid})" + (f" {extra}" if extra else "")


#: A row of the waterfall: (name cell, start, duration, status, timeline,
#: details); a link's row has only its name cell.
_Row = tuple[str, str, str, str, str, str]


def _rows(
    spans: Sequence[SpanRow],
    t0: int,
    total: int,
    link_names: Mapping[tuple[str, str], str],
    all_attributes: bool,
) -> list[_Row]:
    """The waterfall's rows in tree order: each span, then its links and
    its events; offsets from `t0`, timelines over `total` (ns)."""
    rows: list[_Row] = []
    blank_timeline = " " * (TIMELINE_WIDTH + 2)
    for depth, s, orphan, under_orphan in span_tree(spans):
        # An orphan's "! " mark shifts its subtree right by 2 to stay nested.
        pad = "  " * (depth + under_orphan)
        name = ("! " if orphan else "") + pad + s.name
        details = _details(s.attributes, all_attributes=all_attributes)
        if orphan:
            details = f"[parent {s.parent_span_id} missing] " + details
        if s.status == "ERROR" and s.status_message:
            details = f"msg={_value(s.status_message)} " + details
        rows.append(
            (
                name,
                "+" + format_duration(s.start_ns - t0),
                format_duration(s.end_ns - s.start_ns),
                s.status if s.status in ("OK", "ERROR") else "-",
                _timeline(s.start_ns, max(s.end_ns, s.start_ns), t0, total),
                details.rstrip(),
            )
        )
        sub = ("  " if orphan else "") + pad + "  "
        for link in s.links:
            rows.append((sub + _link_line(link, link_names), "", "", "", "", ""))
        for ev in s.events:
            rows.append(
                (
                    sub + "* " + str(ev.get("name", "?")),
                    "+" + format_duration(ev.get("time_ns", t0) - t0),
                    "",
                    "",
                    blank_timeline,
                    _details(ev.get("attributes") or {}, all_attributes=True),
                )
            )

    return rows


def render_trace(
    spans: Sequence[SpanRow], *, link_names: Mapping[tuple[str, str], str] | None = None, all_attributes: bool = False
) -> str:
    """One trace (its stored spans, any order) as a waterfall, one line per
    span in tree order: name indented by depth, start offset from the trace's
    start, duration, status, a fixed-width ASCII timeline, key attributes
    (KEY_ATTRIBUTES, or all). Beneath a span: its links ("~ linked from ...",
    named from ``link_names`` {(trace_id, span_id): span name} when known)
    and its events ("* name", with their offsets). Spans whose parent is
    missing are at top level, marked "! ... [parent <id> missing]".
    Returns "" for no spans."""
    if not spans:
        return ""
    link_names = link_names or {}
    t0 = min(s.start_ns for s in spans)
    t_end = max(max(s.end_ns, s.start_ns) for s in spans)
    total = max(1, t_end - t0)
    errors = sum(1 for s in spans if s.status == "ERROR")
    head = (
        f"trace {spans[0].trace_id}  started {format_time(t0, millis=True)}  lasted {format_duration(total)}"
        f"  {len(spans)} span{'s' if len(spans) != 1 else ''}"
        + (f", {errors} error{'s' if errors != 1 else ''}" if errors else "")
    )

    rows = _rows(spans, t0, total, link_names, all_attributes)
    span_rows = [r for r in rows if r[1] or r[4]]
    name_w = min(_NAME_MAX, max([4] + [len(r[0]) for r in span_rows]))
    start_w = max([5] + [len(r[1]) for r in rows])
    dur_w = max([8] + [len(r[2]) for r in rows])
    lines = [
        head,
        f"{'SPAN':<{name_w}}  {'START':<{start_w}}  {'DURATION':<{dur_w}}  STATUS  "
        f"{'TIMELINE':<{TIMELINE_WIDTH + 2}}  DETAILS",
    ]
    for name, start, dur, status, bar, details in rows:
        if not start and not bar:  # a link: free text, not in columns
            lines.append(name)
            continue
        if len(name) > name_w:
            name = name[: name_w - 3] + "..."
        lines.append(f"{name:<{name_w}}  {start:<{start_w}}  {dur:<{dur_w}}  {status:<6}  {bar}  {details}".rstrip())
    return "\n".join(lines) + "\n"


def render_list(summaries: Sequence[TraceSummary], *, dropped: int = 0) -> str:
    """Traces one per line, like mailq: trace id, start (UTC), duration, span
    count, status (ERROR if any span failed), outcome (delivered, deferred,
    bounced, refused, quarantined; "-" none yet), queue id(s), root span name,
    Message-ID; then a count line, with the store's drop counter when not 0."""
    lines = []
    if summaries:
        rows = [
            (
                t.trace_id,
                format_time(t.start_ns),
                format_duration(t.duration_ns),
                str(t.span_count),
                "ERROR" if t.has_error else "ok",
                t.outcome or "-",
                ",".join(t.queue_ids) or "-",
                t.root_name or "(root missing)",
                f"<{t.message_id}>" if t.message_id else "-",
            )
            for t in summaries
        ]
        heads = ("TRACE ID", "START", "DURATION", "SPANS", "STATUS", "OUTCOME", "QUEUE ID", "ROOT", "MESSAGE-ID")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        for r in [heads, *rows]:
            lines.append("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)).rstrip())
    n = len(summaries)
    lines.append(f"{n} trace{'s' if n != 1 else ''}" if n else "no traces")
    if dropped:
        lines[-1] += f"; {dropped} spans dropped by the daemon (span buffer full or store write failed)"
    return "\n".join(lines) + "\n"


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float | None = None) -> int:
    """A time for the search's since/until, as ns since the epoch: an ISO
    date or date-time ("2026-11-22", "2026-11-22T14:50", "2026-11-22
    14:50:01", UTC unless it says otherwise, e.g. "+01:00"), Unix seconds
    ("1795000000"), or an age ("90m", "2h", "3d", "1w": that long before
    `now`). Raises ValueError with a readable reason."""
    t = text.strip()
    m = _RELATIVE.fullmatch(t)
    if m:
        now = time.time() if now is None else now
        return int((now - float(m.group(1)) * _UNIT_S[m.group(2).lower()]) * _NS_PER_S)
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return int(float(t) * _NS_PER_S)
    try:
        d = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f'"{text}" is not a time: give 2026-11-22, 2026-11-22T14:50, Unix seconds, or an age like 2h or 3d'
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.UTC)
    return int(d.timestamp()) * _NS_PER_S + d.microsecond * 1000
