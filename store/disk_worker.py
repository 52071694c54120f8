"""The disk worker: a child process that does the daemon's durable file work.

`estafeta serve` starts one (actors/disk.py owns it, store/disk_client.py
talks to it) and sends it every queue write (put, update, remove) and every
Maildir delivery. It answers once the work is durable: data fdatasync'd,
renames done, directories fsync'd — exactly the discipline of
store/queuefile.py and store/maildir.py, whose code it runs.

Why a process and not the hub's threadpool (docs/PERFORMANCE.md): a pool
thread needs the GIL back after every syscall it makes (open, write,
fdatasync, rename, close), and under load the hub holds it, so each syscall
waited for a GIL hand-over (futex wake-ups, up to the 5 ms switch interval
each): a put took ~30 ms of wall time for ~0.4 ms of work. Here the
syscalls run on the other CPU under this process's own GIL, and the hub
pays one send and one receive per request.

Protocol: proto/disk.proto, length-prefixed binary frames over the
socketpair whose end is file descriptor ARGV[1]. One thread takes
everything that has arrived as one batch of each kind (group commit):
queue writes (one directory fsync per batch), then Maildir deliveries
(one fsync per new/ directory per batch). Replies go back as each batch
finishes.

Lifetime: it exits when its socket reaches end-of-file — the daemon closed
it (shutdown) or died — after finishing the batches already received.
SIGINT and SIGTERM are ignored (a Ctrl-C or a service manager's SIGTERM
reaches the whole process group, and the daemon then shuts down in order
and closes the socket); PR_SET_PDEATHSIG has the kernel SIGKILL it if the
daemon dies without closing it. Nothing is lost by an abrupt end: every
operation is crash-safe on disk, and a request whose reply never reached
the daemon was never reported done (a put's client got no 250).

    python -m estafeta.store.disk_worker FD PARENT_PID
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence

from estafeta.proto import disk_pb2
from estafeta.store import maildir
from estafeta.store.batchwriter import BatchWriter
from estafeta.store.blocking import Request
from estafeta.supervisor.osproc import die_with_parent

#: Frame header: the length of the encoded message that follows, bytes.
FRAME = struct.Struct(">I")
#: Most requests in one batch.
MAX_BATCH = 256


def encode_frame(msg) -> bytes:
    """One message as a frame: 4-byte big-endian length, then the message."""
    data = msg.SerializeToString()
    return FRAME.pack(len(data)) + data


def split_frames(buf: bytearray, parse: Callable[[bytes], object]) -> list:
    """Parse every complete frame at the start of `buf` with `parse` and
    remove them from it; an incomplete frame stays for the next read."""
    out = []
    pos, end = 0, len(buf)
    view = memoryview(buf)
    try:
        while end - pos >= 4:
            (n,) = FRAME.unpack_from(buf, pos)
            if end - pos - 4 < n:
                break
            out.append(parse(bytes(view[pos + 4 : pos + 4 + n])))
            pos += 4 + n
    finally:
        view.release()
    if pos:
        del buf[:pos]
    return out


def reply_for(request_id: int, req: Request) -> disk_pb2.DiskReply:
    """The DiskReply for one executed request (its result or error)."""
    reply = disk_pb2.DiskReply(id=request_id)
    e = req.error
    if e is None:
        if req.result is not None:
            reply.path, reply.already_there = req.result
    elif isinstance(e, OSError):
        reply.error_type = "OSError"
        reply.errno = e.errno or 0
        reply.error = e.strerror or str(e)
        reply.path = os.fsdecode(e.filename) if e.filename is not None else ""
    elif isinstance(e, ValueError):
        reply.error_type, reply.error = "ValueError", str(e)
    else:
        reply.error_type, reply.error = "Error", f"{type(e).__name__}: {e}"
    return reply


class Executor:
    """Runs batches of DiskRequests (blocking)."""

    def __init__(self) -> None:
        self._writers: dict[str, BatchWriter] = {}

    def queue_writes(self, batch: Sequence[disk_pb2.DiskRequest]) -> list[disk_pb2.DiskReply]:
        """QueueWrite requests, one group commit per directory."""
        by_dir: dict[str, list] = {}
        for pb in batch:
            by_dir.setdefault(pb.queue_write.directory, []).append(pb)
        replies: list[disk_pb2.DiskReply] = []
        for directory, pbs in by_dir.items():
            writer = self._writers.get(directory)
            if writer is None:
                writer = self._writers[directory] = BatchWriter(directory, recycle=True)
            reqs = [
                Request(
                    (
                        tuple((f.path, f.data, f.exclusive) for f in pb.queue_write.writes),
                        tuple(pb.queue_write.unlinks),
                    )
                )
                for pb in pbs
            ]
            writer.execute(reqs)
            replies.extend(reply_for(pb.id, req) for pb, req in zip(pbs, reqs, strict=True))
        return replies

    def maildir_deliveries(self, batch: Sequence[disk_pb2.DiskRequest]) -> list[disk_pb2.DiskReply]:
        """MaildirDelivery requests, as one maildir.deliver_batch; then the
        removals of the items they finished (remove_after), as one queue
        batch."""
        reqs = []
        for pb in batch:
            m = pb.maildir
            reqs.append(
                Request(
                    (
                        m.root,
                        m.mailbox,
                        m.name,
                        m.header_prefix,
                        m.body or None,
                        m.body_path or None,
                        m.check_existing,
                        m.folder,
                    )
                )
            )
        maildir.deliver_batch(reqs)
        replies = [reply_for(pb.id, req) for pb, req in zip(batch, reqs, strict=True)]
        # The items these deliveries finish, removed now that the Maildir
        # files are durable (MaildirDelivery.remove_after): one queue batch.
        removals = [
            (pb, reply)
            for pb, req, reply in zip(batch, reqs, replies, strict=True)
            if req.error is None and pb.maildir.HasField("remove_after")
        ]
        if removals:
            done = self.queue_writes(
                [disk_pb2.DiskRequest(id=pb.id, queue_write=pb.maildir.remove_after) for pb, _ in removals]
            )
            for (_, reply), result in zip(removals, done, strict=True):
                reply.removed = not result.error_type
        return replies


class Worker:
    """Reads requests from `sock`, runs them, sends replies: one thread.

    Each turn takes every request that has arrived (at most MAX_BATCH of
    each kind) and runs the queue writes as one batch, replies, then the
    Maildir deliveries as one batch, replies. Requests arriving meanwhile
    wait in the socket and make the next turn's batches. Queue writes go
    first: a client waits for its 250 on a put. (One thread was measured
    cheaper than a thread per kind of work, ~30 % less kernel time, at the
    same throughput: every hand-over between threads was a wake-up and a
    context switch; docs/PERFORMANCE.md.)
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = bytearray()
        self._eof = False
        self._executor = Executor()
        self._runs = {"queue_write": self._executor.queue_writes, "maildir": self._executor.maildir_deliveries}

    def _send(self, replies: list) -> None:
        try:
            self._sock.sendall(b"".join(encode_frame(r) for r in replies))
        except OSError:
            pass  # the daemon is gone: nobody waits for these replies

    def _run_batch(self, kind: str, batch: list) -> None:
        for k in range(0, len(batch), MAX_BATCH):
            part = batch[k : k + MAX_BATCH]
            try:
                replies = self._runs[kind](part)
            except Exception as e:  # noqa: BLE001 - a bug: fail the batch, keep serving
                replies = [
                    disk_pb2.DiskReply(id=pb.id, error_type="Error", error=f"{type(e).__name__}: {e}") for pb in part
                ]
            self._send(replies)

    def _sort(self, requests: list, queue: list, maildir: list) -> None:
        unknown: list[disk_pb2.DiskRequest] = []
        pings: list[disk_pb2.DiskRequest] = []
        for request in requests:
            op = request.WhichOneof("op")
            (
                queue if op == "queue_write" else maildir if op == "maildir" else pings if op == "ping" else unknown
            ).append(request)
        if pings:  # answered at once: the readiness probe
            self._send([disk_pb2.DiskReply(id=r.id) for r in pings])
        if unknown:
            self._send([disk_pb2.DiskReply(id=r.id, error_type="Error", error="unknown request") for r in unknown])

    def _more(self) -> list:
        """Requests that arrived meanwhile, without waiting."""
        try:
            chunk = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return []
        if not chunk:
            self._eof = True
            return []
        self._buf += chunk
        return split_frames(self._buf, disk_pb2.DiskRequest.FromString)

    def _turn(self, requests: list) -> None:
        """Run one turn's requests: queue writes first, then once more the
        queue writes that arrived while those ran (a put's client waits for
        its 250; a delivery can wait one batch), then the deliveries."""
        queue: list = []
        maildir: list = []
        self._sort(requests, queue, maildir)
        if queue:
            self._run_batch("queue_write", queue)
            queue = []
            self._sort(self._more(), queue, maildir)
            if queue:
                self._run_batch("queue_write", queue)
        if maildir:
            self._run_batch("maildir", maildir)

    def run(self) -> int:
        """Serve until end-of-file, finishing what was received; returns the
        exit status (0, or 2 for a corrupt stream)."""
        try:
            while not self._eof:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    return 0
                self._buf += chunk
                requests = split_frames(self._buf, disk_pb2.DiskRequest.FromString)
                if requests:
                    self._turn(requests)
            return 0
        except Exception as e:  # noqa: BLE001 - a corrupt frame or a dead socket
            print(f"estafeta disk worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m estafeta.store.disk_worker FD PARENT_PID", file=sys.stderr)
        return 2
    fd, parent_pid = int(args[0]), int(args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)  # the daemon's end is non-blocking (gevent); the flag is shared
    return Worker(sock).run()


if __name__ == "__main__":
    sys.exit(main())
