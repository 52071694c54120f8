"""The on-disk queue: `<queue_dir>/<id>.item` (text-format QueueItem, see
proto/queue.proto) next to `<id>.body` (the raw message, CRLF line endings).

Durability (DESIGN.md; Postfix's rule: fsync before "250 OK"): `put()`
returns only when the body and the item are on disk and so are their
directory entries: body created with O_EXCL, written, fdatasync'd; item
written to a temp file, fdatasync'd, renamed into place; then the
directory fsync'd. Writes go through a batchwriter.BatchWriter (group
commit): the puts, updates and removes of every caller waiting at the
same moment run as ONE batch with ONE directory fsync, in call order — in
the daemon's disk worker process when the store has a DiskChannel (the
daemon), else in the hub threadpool (tests) or inline (the CLI). The hub
thread pays the text-format serialisation (~2-4 µs, queuefile.to_text),
building one request frame and a share of the worker's round trip.

Queue ids name the serving process that accepted the message (new_id,
process_of): with Config.processes > 1 each process runs its own items.

Readers (`estafeta queue`, load after a restart) need no lock: items are
only ever replaced by rename, so a reader sees the old or the new file.

Interrupted callers: an exception thrown into a greenlet waiting in put /
update / remove (`ShutdownRequested`, `gevent.Timeout`) does not cancel the
write, which still happens in call order. A put() retried after such an
interruption (actors/session.py does) joins the pending one instead of
failing on its own body file.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from estafeta.proto import disk_pb2, queue_pb2
from estafeta.store import maildir, queuefile
from estafeta.store.batchwriter import BatchWriter
from estafeta.store.blocking import Request, in_hub_context, run_blocking
from estafeta.store.disk_client import DiskChannel, Pending

ITEM_SUFFIX = ".item"
BODY_SUFFIX = ".body"

#: Per-process counter behind new_id(); the random start keeps two
#: processes started in the same microsecond apart.
_id_counter = itertools.count(random.getrandbits(20))


@dataclass(frozen=True, slots=True)
class MaildirTarget:
    """One Maildir delivery of a queued message (QueueStore.deliver_maildirs):
    the mailbox "<domain>/<localpart>", the file name (maildir.unique_name),
    the delivery headers to put in front (maildir.delivery_headers) and
    the Maildir++ folder ("Junk"; "" for the inbox)."""

    mailbox: str
    name: str
    header_prefix: bytes
    folder: str = ""


def new_id(process: int = 0) -> str:
    """A fresh queue id: 16 hex digits of microseconds since the epoch,
    one of the serving process that accepted it (Config.processes, 0-15),
    then 5 of a per-process counter (e.g. "00062f1a2b3c4d5e1a1b2c": process
    1), 22 chars.

    Ids sort by arrival (the clock permitting) and are unique across
    processes (the process digit) and restarts (a new process starts at a
    later microsecond and a random counter value).
    """
    return f"{time.time_ns() // 1000:016x}{process & 0xF:x}{next(_id_counter) & 0xFFFFF:05x}"


def process_of(queue_id: str, processes: int) -> int:
    """Which of `processes` serving processes owns the item: the one whose
    number is in its id (new_id), modulo the count, so that ids from a run
    with more processes still have an owner. 0 for ids not in that form."""
    try:
        return int(queue_id[16], 16) % processes
    except (IndexError, ValueError):
        return 0


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

    Attributes: `queue_dir` (str, as given), `writer` (the BatchWriter;
    `writer.batches` counts jobs and directory fsyncs, `writer.requests`
    the puts, updates and removes).
    """

    def __init__(self, queue_dir: str, disk: DiskChannel | None = None, process: int = 0):
        """No disk access here; `recover()` creates the directory.

        `disk`: where the daemon's disk worker process is found
        (store/disk_client.py); writes then go to it. `process`: the
        serving process whose ids new_id() makes. Without one (the CLI,
        tests) they run through `writer` in the hub threadpool, or inline
        outside a hub.
        """
        self.queue_dir = os.fspath(queue_dir)
        self._prefix = os.path.join(self.queue_dir, "")  # "<queue_dir>/": paths by concatenation
        self.writer = BatchWriter(self.queue_dir)
        self.disk = disk
        #: The serving process this store makes ids for (new_id).
        self.process = process
        # id -> the pending put of a caller that was interrupted waiting
        self._interrupted_puts: dict[str, Request | Pending] = {}

    # ------------------------------------------------------------- paths
    def new_id(self) -> str:
        """A fresh queue id of this store's process (see new_id())."""
        return new_id(self.process)

    def item_path(self, queue_id: str) -> str:
        """`<queue_dir>/<id>.item`. Raises ValueError for an id that could
        name a file outside the queue directory."""
        return self._prefix + _check_id(queue_id) + ITEM_SUFFIX

    def body_path(self, queue_id: str) -> str:
        """`<queue_dir>/<id>.body`. Raises ValueError like item_path."""
        return self._prefix + _check_id(queue_id) + BODY_SUFFIX

    # ------------------------------------------------------------ writes
    def put(self, item: queue_pb2.QueueItem, body: bytes) -> None:
        """Store a new item and its body durably; returns once both files and
        their directory entries are on disk (send "250" after this).

        `item.id` names the files (from new_id()). Blocks only the calling
        greenlet. Raises OSError (e.g. ENOSPC: answer 452/451), and
        FileExistsError if the id is already used; on error nothing is left
        behind (at worst, after a crash, an orphan body recover() removes).
        """
        qid = item.id
        op = self._interrupted_puts.pop(qid, None)
        if op is None:
            writes = ((self.body_path(qid), body, True), (self.item_path(qid), queuefile.to_text(item), False))
            if self.disk is not None:
                op = self.disk.submit(self._disk_request(writes, ()))
            elif not in_hub_context():
                self.writer.write(writes)
                return
            else:
                op = self.writer.submit(Request((writes, ())))
        try:
            if isinstance(op, Pending):
                op.wait()
            else:
                self.writer.wait(op)
        except BaseException:
            if not _finished(op):  # interrupted: the write goes on; a retry joins it
                if len(self._interrupted_puts) >= 1000:  # callers that never retried
                    self._interrupted_puts = {k: v for k, v in self._interrupted_puts.items() if not _finished(v)}
                self._interrupted_puts[qid] = op
            raise

    def update(self, item: queue_pb2.QueueItem) -> None:
        """Rewrite an item atomically and durably (temp, fdatasync, rename,
        group-committed directory fsync): write a transition before acting on
        it. Blocks only the calling greenlet. Raises OSError; on error the
        old file stays."""
        self._write(((self.item_path(item.id), queuefile.to_text(item), False),), ())

    def remove(self, queue_id: str) -> None:
        """Delete an item: the item file first, then the body. Missing files
        are fine (idempotent). Raises OSError otherwise.

        Not fsync'd for its own sake (it rides in a batch whose directory
        fsync may or may not come later): if a crash undoes the unlink, the
        item comes back as last written (e.g. DONE, or a recipient PENDING
        whose delivery had in fact finished). Its next attempt re-delivers
        with check_existing, and the Maildir's deterministic file name
        (maildir.unique_name) finds the earlier copy: still exactly once.
        Item before body, so a crash in between leaves an orphan body
        (removed by recover()), never an item without its body.
        """
        self._write((), self._unlinks(queue_id))

    def deliver_maildirs(
        self,
        queue_id: str,
        mail_root: str,
        targets: Sequence[MaildirTarget],
        check_existing: bool,
        remove_item: bool = False,
    ) -> tuple[list[tuple[str, bool] | Exception], bool]:
        """Deliver the item's message (its body file) into Maildirs under
        `mail_root` (store/maildir.py: durable, exactly once by file name),
        one per target. Returns (per target: (path, already_there) or the
        exception — ValueError for a mailbox or name that could escape the
        root, OSError otherwise —, removed).

        remove_item: if every delivery succeeds, the item's files are
        removed too (remove()), and `removed` is True. For a single target
        this rides in the delivery's own request to the disk worker, done
        once the Maildir file is durable: one round trip per message
        instead of two (the common case: one local recipient).
        Blocks only the calling greenlet."""
        if self.disk is None:
            body_path = self.body_path(queue_id)
            reqs = [
                Request((mail_root, t.mailbox, t.name, t.header_prefix, None, body_path, check_existing, t.folder))
                for t in targets
            ]
            run_blocking(maildir.deliver_batch, reqs)
            results: list[tuple[str, bool] | Exception] = [r.error or r.result for r in reqs]  # type: ignore[misc]
            removed = False
        else:
            results, removed = self._deliver_via_worker(queue_id, mail_root, targets, check_existing, remove_item)
        if remove_item and not removed and not any(isinstance(r, Exception) for r in results):
            self.remove(queue_id)
            removed = True
        return results, removed

    def _deliver_via_worker(
        self, queue_id: str, mail_root: str, targets: Sequence[MaildirTarget], check_existing: bool, remove_item: bool
    ) -> tuple[list[tuple[str, bool] | Exception], bool]:
        """deliver_maildirs through the disk worker: every request sent at
        once (they share the worker's batch), then waited for. A single
        target with remove_item carries the removal (MaildirDelivery.
        remove_after); returns (results, whether the worker removed the
        item)."""
        body_path = self.body_path(queue_id)
        carry_removal = remove_item and len(targets) == 1
        pendings: list[Pending | Exception] = []
        for t in targets:
            delivery = disk_pb2.MaildirDelivery(
                root=mail_root,
                mailbox=t.mailbox,
                name=t.name,
                header_prefix=t.header_prefix,
                body_path=body_path,
                check_existing=check_existing,
                folder=t.folder,
            )
            if carry_removal:
                delivery.remove_after.CopyFrom(self._queue_write((), self._unlinks(queue_id)))
            try:
                pendings.append(self.disk.submit(disk_pb2.DiskRequest(maildir=delivery)))
            except OSError as e:
                pendings.append(e)
        results: list[tuple[str, bool] | Exception] = []
        removed = False
        for p in pendings:
            if isinstance(p, Exception):
                results.append(p)
                continue
            try:
                reply = p.wait()
            except (OSError, ValueError) as e:
                results.append(e)
                continue
            results.append((reply.path, reply.already_there))
            removed = reply.removed
        return results, removed

    def _unlinks(self, queue_id: str) -> tuple[str, str]:
        return self.item_path(queue_id), self.body_path(queue_id)  # item first: see remove()

    def _write(self, writes: tuple, unlinks: tuple) -> None:
        if self.disk is not None:
            self.disk.call(self._disk_request(writes, unlinks))
        else:
            self.writer.write(writes, unlinks)

    def _disk_request(self, writes: tuple, unlinks: tuple) -> disk_pb2.DiskRequest:
        return disk_pb2.DiskRequest(queue_write=self._queue_write(writes, unlinks))

    def _queue_write(self, writes: tuple, unlinks: tuple) -> disk_pb2.QueueWrite:
        return disk_pb2.QueueWrite(
            writes=[disk_pb2.FileWrite(path=p, data=d, exclusive=x) for p, d, x in writes],
            unlinks=unlinks,
            directory=self.queue_dir,
        )

    # ------------------------------------------------------------- reads
    def load(self, queue_id: str) -> queue_pb2.QueueItem:
        """Read `<id>.item` (~140-280 µs of parsing: start-up and restarts
        only). Raises FileNotFoundError, OSError, or
        queuefile.CorruptFileError (a text_format.ParseError naming the file;
        also when the file's id is not its name, e.g. an empty file)."""
        return run_blocking(self._load_job, queue_id)

    def read_body(self, queue_id: str) -> bytes:
        """The body file's bytes as put: the message as accepted (our
        Received header first). Raises FileNotFoundError / OSError."""
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

    # ------------------------------------------ threadpool jobs (blocking)
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


def _finished(op: Request | Pending) -> bool:
    return op.ready() if isinstance(op, Pending) else op.finished


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
