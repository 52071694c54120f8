"""The on-disk queue: `<queue_dir>/<id>.item` (text-format QueueItem, see
proto/queue.proto) next to `<id>.body` (the raw message, CRLF line endings).

Durability (DESIGN.md; Postfix's rule: fsync before "250 OK"): `put()`
returns only when the body and the item are on disk and their directory
entries are too. One put is ONE threadpool job: body (O_EXCL, write,
fdatasync), item (temp, fdatasync, rename), then the directory fsync,
group-committed with every other put/update in flight (queuefile.DirSync),
so N concurrent sessions pay far fewer than N directory fsyncs. Only the
text-format serialisation (~4 µs, queuefile.to_text) and one pool round
trip (15-40 µs) run on the hub thread.

Readers (`estafeta queue`, load after a restart) need no lock: items are
only ever replaced by rename, so a reader sees the old or the new file.

Interrupted callers: an exception thrown into a greenlet waiting in put /
update / remove (`ShutdownRequested`, `gevent.Timeout`) does not stop the
job, which runs to its end in its thread. A later call for the same id
first waits for it — a retried put() joins the interrupted one instead of
failing on its own body file, and writes to one item stay in call order.
"""
from __future__ import annotations

import itertools
import os
import random
import time
from typing import Any, Callable, Iterator

from estafeta.proto import queue_pb2
from estafeta.store import queuefile
from estafeta.store.blocking import run_blocking, submit_blocking

ITEM_SUFFIX = ".item"
BODY_SUFFIX = ".body"

_BODY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

#: Per-process counter behind new_id(); the random start keeps two
#: processes started in the same microsecond apart.
_id_counter = itertools.count(random.getrandbits(24))


def new_id() -> str:
    """A fresh queue id: 16 hex digits of microseconds since the epoch then
    6 of a per-process counter (e.g. "00062f1a2b3c4d5e0a1b2c"), 22 chars.

    Ids sort by arrival (the clock permitting) and are unique across
    restarts: a new process starts at a later microsecond and a random
    counter value.
    """
    return f"{time.time_ns() // 1000:016x}{next(_id_counter) & 0xFFFFFF:06x}"


def _check_id(queue_id: str) -> str:
    # Ids come from files and from the command line: keep them inside the
    # queue directory.
    if not queue_id or "/" in queue_id or "\0" in queue_id or queue_id[0] == ".":
        raise ValueError(f"invalid queue id {queue_id!r}")
    return queue_id


class QueueStore:
    """The queue directory: put / update / remove / load queue items and
    read their bodies. Safe to use from many greenlets at once (and from the
    CLI without a gevent hub: then everything runs inline).

    Attributes: `queue_dir` (str, as given), `dirsync` (the group-commit
    state; `dirsync.fsyncs` counts directory fsyncs).
    """

    def __init__(self, queue_dir: str):
        """No disk access here; `recover()` creates the directory."""
        self.queue_dir = os.fspath(queue_dir)
        self.dirsync = queuefile.DirSync(self.queue_dir)
        # id -> (kind, pending result) of a job whose caller was interrupted
        self._inflight: dict[str, tuple[str, Any]] = {}

    # ------------------------------------------------------------- paths
    new_id = staticmethod(new_id)

    def item_path(self, queue_id: str) -> str:
        """`<queue_dir>/<id>.item`. Raises ValueError for an id that could
        name a file outside the queue directory."""
        return os.path.join(self.queue_dir, _check_id(queue_id) + ITEM_SUFFIX)

    def body_path(self, queue_id: str) -> str:
        """`<queue_dir>/<id>.body`. Raises ValueError like item_path."""
        return os.path.join(self.queue_dir, _check_id(queue_id) + BODY_SUFFIX)

    # ------------------------------------------------------------ writes
    def put(self, item: queue_pb2.QueueItem, body: bytes) -> None:
        """Store a new item and its body durably; returns once both files and
        their directory entries are on disk (send "250" after this).

        `item.id` names the files (from new_id()). Blocks only the calling
        greenlet. Raises OSError (e.g. ENOSPC: answer 452/451), and
        FileExistsError if the id is already used; on error nothing is left
        behind but, at worst, an orphan body that recover() removes.
        """
        qid = item.id
        pending = self._inflight.get(qid)
        if pending is not None and pending[0] == "put":
            self._wait(qid, pending[1])  # retry of an interrupted put: join it
            return
        text = queuefile.to_text(item)
        self._run(qid, "put", self._put_job, self.item_path(qid), self.body_path(qid), text, body)

    def update(self, item: queue_pb2.QueueItem) -> None:
        """Rewrite an item atomically and durably (temp, fdatasync, rename,
        group-committed directory fsync): write a transition before acting on
        it. Blocks only the calling greenlet. Raises OSError; on error the
        old file stays."""
        qid = item.id
        text = queuefile.to_text(item)
        self._run(qid, "update", self._update_job, self.item_path(qid), text)

    def remove(self, queue_id: str) -> None:
        """Delete an item: the item file first, then the body. Missing files
        are fine (idempotent). Raises OSError otherwise.

        No fsync: if a crash undoes the unlink, the item comes back as it was
        last written (e.g. DONE, or a recipient still PENDING whose delivery
        had in fact finished). Its next attempt re-delivers with
        check_existing, and the Maildir's deterministic file name
        (maildir.unique_name) finds the earlier copy: still exactly once.
        Item before body, so a crash in between leaves an orphan body
        (removed by recover()), never an item without its body.
        """
        self._run(queue_id, "remove", self._remove_job, queue_id)

    # ------------------------------------------------------------- reads
    def load(self, queue_id: str) -> queue_pb2.QueueItem:
        """Read `<id>.item` (~140-280 µs of parsing: start-up and restarts
        only). Raises FileNotFoundError, OSError, or
        queuefile.CorruptFileError (a text_format.ParseError naming the file;
        also when the file's id is not its name, e.g. an empty file)."""
        return run_blocking(self._load_job, queue_id)

    def read_body(self, queue_id: str) -> bytes:
        """The raw message (bytes). Raises FileNotFoundError / OSError."""
        return run_blocking(_read_file, self.body_path(queue_id))

    def list_ids(self) -> list[str]:
        """Ids of all item files, sorted (i.e. by arrival); [] if the queue
        directory does not exist yet. Temp files are not items."""
        return run_blocking(self._list_ids_job)

    def iter_items(self) -> Iterator[queue_pb2.QueueItem]:
        """Each item on disk, in id order, read directly (safe while the
        daemon runs). Items removed while listing are skipped; a corrupt one
        raises CorruptFileError."""
        for queue_id in self.list_ids():
            try:
                yield self.load(queue_id)
            except FileNotFoundError:
                continue  # delivered and removed meanwhile

    def list_items(self) -> list[queue_pb2.QueueItem]:
        """list(iter_items()): for `estafeta queue`."""
        return list(self.iter_items())

    def recover(self) -> list[str]:
        """Start-up clean-up, before any writer runs: create the directory if
        needed, remove temp files a crash left, remove orphan bodies (a body
        without item: the crash came before the item's rename, so the client
        never got its 250), and return the ids of all items, sorted.

        Items whose body is missing are returned too: the caller quarantines
        them. Raises OSError.
        """
        return run_blocking(self._recover_job)

    # ------------------------------------------------- hub-side plumbing
    def _run(self, qid: str, kind: str, job: Callable[..., Any], *args: Any) -> Any:
        pending = self._inflight.get(qid)
        if pending is not None:
            # An interrupted caller's job for this id may still run: let it
            # finish first so writes land in call order. Its outcome was
            # nobody's to hear any more.
            try:
                self._wait(qid, pending[1])
            except Exception:  # noqa: BLE001
                pass
        result = submit_blocking(job, *args)
        if not result.ready():
            self._inflight[qid] = (kind, result)
        return self._wait(qid, result)

    def _wait(self, qid: str, result: Any) -> Any:
        try:
            value = result.get()
        except BaseException:
            if not result.ready():
                raise  # thrown into us while waiting: the job runs on
            self._forget(qid, result)
            raise
        self._forget(qid, result)
        return value

    def _forget(self, qid: str, result: Any) -> None:
        pending = self._inflight.get(qid)
        if pending is not None and pending[1] is result:
            del self._inflight[qid]

    # ------------------------------------------ threadpool jobs (blocking)
    def _put_job(self, item_path: str, body_path: str, text: bytes, body: bytes) -> None:
        fd = os.open(body_path, _BODY_FLAGS, 0o600)
        try:
            try:
                queuefile.write_all(fd, body)
                queuefile.sync_data(fd)
            finally:
                os.close(fd)
            queuefile.atomic_write(item_path, text, fsync_dir=False)
        except Exception:
            try:
                os.unlink(body_path)
            except OSError:
                pass
            raise
        # One directory fsync makes both new entries (body create, item
        # rename) durable; shared with the other puts in flight.
        self.dirsync.sync()

    def _update_job(self, item_path: str, text: bytes) -> None:
        queuefile.atomic_write(item_path, text, fsync_dir=False)
        self.dirsync.sync()

    def _remove_job(self, queue_id: str) -> None:
        for path in (self.item_path(queue_id), self.body_path(queue_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _load_job(self, queue_id: str) -> queue_pb2.QueueItem:
        path = self.item_path(queue_id)
        item = queuefile.read_message(path, queue_pb2.QueueItem)
        if item.id != queue_id:
            raise queuefile.CorruptFileError(f"{path}: holds id {item.id!r}, not {queue_id!r}")
        return item

    def _list_ids_job(self) -> list[str]:
        try:
            names = os.listdir(self.queue_dir)
        except FileNotFoundError:
            return []
        n = len(ITEM_SUFFIX)
        return sorted(name[:-n] for name in names if name.endswith(ITEM_SUFFIX) and name[0] != ".")

    def _recover_job(self) -> list[str]:
        os.makedirs(self.queue_dir, mode=0o700, exist_ok=True)
        queuefile.remove_temp_files(self.queue_dir)
        items: list[str] = []
        bodies: list[str] = []
        with os.scandir(self.queue_dir) as it:
            for entry in it:
                name = entry.name
                if name[0] == ".":
                    continue
                if name.endswith(ITEM_SUFFIX):
                    items.append(name[: -len(ITEM_SUFFIX)])
                elif name.endswith(BODY_SUFFIX):
                    bodies.append(name[: -len(BODY_SUFFIX)])
        for orphan in set(bodies).difference(items):
            try:
                os.unlink(os.path.join(self.queue_dir, orphan + BODY_SUFFIX))
            except FileNotFoundError:
                pass
        return sorted(items)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
