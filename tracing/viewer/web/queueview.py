"""The queue as the web page shows it: items read from their files (like
`estafeta queue list`, supervisor/queuecli.py), filtered and sorted.

Blocking file reads: the page runs these off the hub. Items are replaced
by atomic renames, so a reader sees whole files; one delivered while we
list is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from google.protobuf import text_format

from estafeta.proto import queue_pb2
from estafeta.store.queue import QueueStore
from estafeta.supervisor.queuecli import RECIPIENT_STATUS, read_header

#: Most items read for one page (oldest first); the page says when there are more.
MAX_ITEMS = 5000
STATES = ("queued", "quarantined", "held")
SORT_KEYS = ("id", "age", "size", "sender", "state", "attempts", "next")
_STATE_NAMES: dict[int, str] = {
    queue_pb2.QUEUED: "queued",
    queue_pb2.QUARANTINED: "quarantined",
    queue_pb2.DONE: "done",
}


def state_name(value: int, kind: str = "item") -> str:
    """ "queued", "quarantined", "held", ... for an ItemState; "pending",
    "delivered", "failed" for a RecipientStatus (kind "recipient")."""
    if kind == "recipient":
        return RECIPIENT_STATUS.get(value, "?")
    name = _STATE_NAMES.get(value)
    if name is None:  # states added later (HELD) are named by the enum itself
        try:
            name = queue_pb2.ItemState.Name(value).lower()
        except ValueError:
            name = "?"
    return name


@dataclass
class QueueView:
    """Items read (at most MAX_ITEMS, oldest first), how many ids were left
    out, and the files that could not be parsed."""

    items: list[queue_pb2.QueueItem] = field(default_factory=list)
    truncated: int = 0
    unreadable: list[str] = field(default_factory=list)


def load(queue_dir: str) -> QueueView:
    """Read the queue directory."""
    store = QueueStore(queue_dir)
    try:
        ids = store.list_ids()
    except FileNotFoundError:
        return QueueView()
    view = QueueView(truncated=max(0, len(ids) - MAX_ITEMS))
    for queue_id in ids[:MAX_ITEMS]:
        try:
            view.items.append(store.load(queue_id))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, text_format.ParseError):
            view.unreadable.append(queue_id)
    return view


def exists(queue_dir: str, queue_id: str) -> bool:
    """Is the item still queued (its file there)?"""
    try:
        return os.path.exists(QueueStore(queue_dir).item_path(queue_id))
    except ValueError:
        return False


def load_one(queue_dir: str, queue_id: str) -> tuple[queue_pb2.QueueItem, str, str] | None:
    """(item, its file's text as is, the message's header section) or None
    if it is not queued. Raises ValueError for an id that is not one."""
    store = QueueStore(queue_dir)
    path = store.item_path(queue_id)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    item = queue_pb2.QueueItem()
    try:
        text_format.Parse(text, item)
    except text_format.ParseError:
        item.id = queue_id  # shown as is; the text says what is wrong
    return item, text, read_header(store, item)


def select(
    items: list[queue_pb2.QueueItem], *, state: str = "", dest: str = "", sort: str = "age", descending: bool = False
) -> list[queue_pb2.QueueItem]:
    """Items in `state` (one of STATES, "" all) with a recipient at domain
    `dest` ("" all; case-insensitive), sorted by SORT_KEYS `sort`."""
    out = items
    if state:
        out = [i for i in out if state_name(i.state) == state]
    if dest:
        dest = dest.lstrip("@")
        out = [i for i in out if any(r.address.lower().rpartition("@")[2] == dest for r in i.recipients)]
    key = {
        "id": lambda i: i.id,
        "age": lambda i: -i.created_at,
        "size": lambda i: i.body_size,
        "sender": lambda i: i.reverse_path.lower(),
        "state": lambda i: state_name(i.state),
        "attempts": lambda i: i.attempts,
        "next": lambda i: i.next_attempt_at,
    }[sort]
    return sorted(out, key=key, reverse=descending)


def trace_id_of(item: queue_pb2.QueueItem) -> str | None:
    """The item's trace id, from the W3C traceparent stored in it."""
    parent = item.trace.traceparent if item.HasField("trace") else ""
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def item_json(item: queue_pb2.QueueItem, now: float) -> dict:
    """One item for /queue?format=json."""
    return {
        "id": item.id,
        "state": state_name(item.state),
        "age_seconds": round(now - item.created_at, 3),
        "created_at": item.created_at,
        "size": item.body_size,
        "sender": item.reverse_path,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at,
        "last_error": item.last_error,
        "quarantine_reason": item.quarantine_reason,
        "recipients": [
            {"address": r.address, "status": state_name(r.status, "recipient"), "last_error": r.last_error}
            for r in item.recipients
        ],
        "trace_id": trace_id_of(item),
    }
