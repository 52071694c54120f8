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
from opentelemetry import trace

from estafeta.actors.queuecontrol import act_on_file
from estafeta.proto import config_pb2, control_pb2, queue_pb2
from estafeta.store.queue import QueueStore
from estafeta.supervisor import control

#: A Recipient.status as `estafeta queue` and the web page show it.
RECIPIENT_STATUS: dict[int, str] = {
    queue_pb2.PENDING: "pending",
    queue_pb2.DELIVERED: "delivered",
    queue_pb2.FAILED: "failed",
}
_STATE = {queue_pb2.QUEUED: "queued", queue_pb2.QUARANTINED: "QUARANTINED", queue_pb2.DONE: "done"}


def age(seconds: float) -> str:
    """Compact duration of `seconds` (negative: 0s): 42s, 3m12s, 5h03m,
    2d04h; `estafeta queue` and the web page show ages with it."""
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
        f"{item.id}  {age(now - item.created_at):>7}  {item.body_size:>9}  <{item.reverse_path}>  {state}"
        + (f"  attempts={item.attempts}" if item.attempts else "")
    ]
    if item.state == queue_pb2.QUARANTINED:
        lines.append(f"    quarantined: {item.quarantine_reason}")
    elif item.crashes:
        lines.append(f"    crashes={item.crashes} last: {item.last_crash}")
    for r in item.recipients:
        status = RECIPIENT_STATUS.get(r.status, "?")
        extra = ""
        if r.status == queue_pb2.PENDING and item.next_attempt_at > now:
            extra = f"  next attempt in {age(item.next_attempt_at - now)}"
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


def check_queue_dir(store: QueueStore) -> int:
    """0 if the queue directory exists; else an error naming it (a wrong
    --data-dir must not look like an empty queue) and 1."""
    if os.path.isdir(store.queue_dir):
        return 0
    print(f"estafeta: no queue directory {store.queue_dir} (wrong --data-dir or --config?)", file=sys.stderr)
    return 1


_ACTIONS = {
    "flush": control_pb2.QueueAction.FLUSH,
    "hold": control_pb2.QueueAction.HOLD,
    "release": control_pb2.QueueAction.RELEASE,
    "delete": control_pb2.QueueAction.DELETE,
}
_DONE = {"flush": "flushed", "hold": "held", "release": "released", "delete": "deleted"}


def cmd_action(
    cfg: config_pb2.Config, store: QueueStore, name: str, ids: list[str], bounce: bool = False, out=sys.stdout
) -> int:
    """`estafeta queue flush|hold|release|delete`: through the running
    daemon's control channel (each serving process acts on its own items,
    actors/queuecontrol.py), or on the files when no daemon runs. Prints
    one line per item done; an id that could not be acted on (unknown,
    "not held") is an error on stderr and exit status 1."""
    action = control_pb2.QueueAction(action=_ACTIONS[name], queue_ids=ids, bounce=bounce)
    data_dir = os.path.dirname(store.queue_dir)
    try:
        replies = control.call(data_dir, control_pb2.ControlRequest(queue=action))
    except control.ControlError:
        results = _act_on_files(cfg, store, action)
    else:
        errors = [r.error for r in replies if r.error]
        for error in errors:
            print(f"estafeta: {error}", file=sys.stderr)
        results = [r for reply in replies for r in reply.results]
        if errors and not results:
            return 1
    answered = {r.queue_id for r in results}
    status = 0
    for queue_id in ids:
        if queue_id not in answered:
            results.append(control_pb2.QueueActionResult(queue_id=queue_id, error="no such item"))
    for r in results:
        if r.ok:
            print(f"{_DONE[name]} {r.queue_id}", file=out)
        else:
            print(f"estafeta: {r.queue_id}: {r.error}", file=sys.stderr)
            status = 1
    return status


def _act_on_files(
    cfg: config_pb2.Config, store: QueueStore, action: control_pb2.QueueAction
) -> list[control_pb2.QueueActionResult]:
    """No daemon runs: act on the item files directly (a DSN for DELETE
    with bounce is queued for the daemon's next start)."""
    from estafeta.actors.bounces import Bouncer
    from estafeta.actors.directory import DirectoryTables, DirectoryView
    from estafeta.actors.enqueue import Enqueuer
    from estafeta.supervisor.app import postmaster_address

    tracer = trace.get_tracer("estafeta.cli")
    tables = DirectoryTables(cfg)  # where a DSN to a local sender goes: its users and aliases
    tables.refresh(force=True)
    bouncer = Bouncer(
        Enqueuer(store, tracer), DirectoryView(tables.resolver), cfg.hostname, cfg.dsn, postmaster_address(cfg)
    )
    ids = list(action.queue_ids) or store.list_ids()
    return [act_on_file(store, bouncer, tracer, queue_id, action) for queue_id in ids]


def queue_dir(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), "queue")
