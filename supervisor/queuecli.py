"""`estafeta queue list|dump|show|release`: the queue dump tool.

Reads the item files directly — no daemon needed, and safe while it runs
(items are replaced by atomic renames, so a reader sees the old or the new
file, never a torn one). Unknown ids exit 1 with a clear message.
"""

from __future__ import annotations

import os
import sys
import time

from google.protobuf import text_format

from estafeta.proto import queue_pb2
from estafeta.store.queue import QueueStore

_STATUS = {queue_pb2.PENDING: "pending", queue_pb2.DELIVERED: "delivered", queue_pb2.FAILED: "failed"}
_STATE = {queue_pb2.QUEUED: "queued", queue_pb2.QUARANTINED: "QUARANTINED", queue_pb2.DONE: "done"}


def _age(seconds: float) -> str:
    """Compact duration: 42s, 3m12s, 5h03m, 2d04h."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _load_all(store: QueueStore) -> list[queue_pb2.QueueItem]:
    items = []
    for queue_id in store.list_ids():
        try:
            items.append(store.load(queue_id))
        except FileNotFoundError:
            continue  # delivered while we listed
        except (OSError, text_format.ParseError) as e:
            print(f"estafeta: {store.item_path(queue_id)}: unreadable: {e}", file=sys.stderr)
    return items


def _describe(item: queue_pb2.QueueItem, now: float) -> list[str]:
    state = _STATE.get(item.state, "?")
    lines = [
        f"{item.id}  {_age(now - item.created_at):>7}  {item.body_size:>9}  <{item.reverse_path}>  {state}"
        + (f"  attempts={item.attempts}" if item.attempts else "")
    ]
    if item.state == queue_pb2.QUARANTINED:
        lines.append(f"    quarantined: {item.quarantine_reason}")
    elif item.crashes:
        lines.append(f"    crashes={item.crashes} last: {item.last_crash}")
    for r in item.recipients:
        status = _STATUS.get(r.status, "?")
        extra = ""
        if r.status == queue_pb2.PENDING and item.next_attempt_at > now:
            extra = f"  next attempt in {_age(item.next_attempt_at - now)}"
        if r.last_error:
            extra += f"  last: {r.last_error}"
        lines.append(f"    <{r.address}>  {status}{extra}")
    return lines


def cmd_list(store: QueueStore, out=sys.stdout) -> int:
    """Like mailq: one block per item; a summary line at the end."""
    items = _load_all(store)
    now = time.time()
    if items:
        print(f"{'ID':<22}  {'AGE':>7}  {'SIZE':>9}  SENDER  STATE", file=out)
    for item in items:
        print("\n".join(_describe(item, now)), file=out)
    total = sum(i.body_size for i in items)
    print(f"-- {len(items)} item(s), {total} bytes in {store.queue_dir}", file=out)
    return 0


def _missing(store: QueueStore, queue_id: str) -> int:
    print(f"estafeta: no queue item {queue_id!r} in {store.queue_dir}", file=sys.stderr)
    return 1


def cmd_dump(store: QueueStore, ids: list[str], out=sys.stdout) -> int:
    """The item files exactly as they are on disk, each after a '# path' line."""
    status = 0
    for queue_id in ids or store.list_ids():
        path = store.item_path(queue_id)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            status = _missing(store, queue_id)
            continue
        print(f"# {path}", file=out)
        out.write(text if text.endswith("\n") or not text else text + "\n")
    return status


def cmd_show(store: QueueStore, queue_id: str, out=sys.stdout) -> int:
    """The item, then the message's header section."""
    try:
        item = store.load(queue_id)
    except FileNotFoundError:
        return _missing(store, queue_id)
    print("\n".join(_describe(item, time.time())), file=out)
    print(f"# {store.item_path(queue_id)}", file=out)
    out.write(text_format.MessageToString(item, as_utf8=True))
    print(f"# header of {store.body_path(queue_id)}", file=out)
    out.write(read_header(store, item))
    return 0


def read_header(store: QueueStore, item: queue_pb2.QueueItem) -> str:
    """The message's header section (up to the blank line, at most 256 KiB),
    LF line endings, undecodable bytes replaced; "(body file missing)\n"
    if there is no body."""
    try:
        with open(store.body_path(item.id), "rb") as f:
            head = f.read(256 * 1024)
    except FileNotFoundError:
        return "(body file missing)\n"
    end = head.find(b"\r\n\r\n")
    head = head if end < 0 else head[: end + 2]
    return head.decode("utf-8", "replace").replace("\r\n", "\n")


def cmd_release(store: QueueStore, ids: list[str], out=sys.stdout) -> int:
    """Release quarantined items: state QUEUED, crash count reset. A running
    daemon picks them up at its next queue sweep (Config.queue_sweep_seconds,
    30 s by default)."""
    status = 0
    for queue_id in ids:
        try:
            item = store.load(queue_id)
        except FileNotFoundError:
            status = _missing(store, queue_id)
            continue
        item.state = queue_pb2.QUEUED
        item.crashes = 0
        item.quarantine_reason = ""
        item.next_attempt_at = 0
        store.update(item)
        print(f"released {queue_id}", file=out)
    return status


def queue_dir(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), "queue")
