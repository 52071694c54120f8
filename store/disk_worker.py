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
socketpair whose end is file descriptor ARGV[1]. Two lanes, each a
thread that takes everything queued for the lane as one batch (group
commit): queue writes (one directory fsync per batch) and Maildir
deliveries (one fsync per new/ directory per batch). Replies go back as
each batch finishes.

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

import collections
import ctypes
import os
import signal
import socket
import struct
import sys
import threading
from typing import Callable, Sequence

from estafeta.proto import disk_pb2
from estafeta.store import maildir
from estafeta.store.batchwriter import BatchWriter
from estafeta.store.blocking import Request

#: Frame header: the length of the encoded message that follows, bytes.
FRAME = struct.Struct(">I")
#: Most requests in one batch of a lane.
MAX_BATCH = 256
#: Threads per lane (batches in flight at once). 1: two were measured
#: slower here (smaller batches, more flushes on a disk that does not
#: overlap them; docs/PERFORMANCE.md).
LANE_THREADS = 1
_PR_SET_PDEATHSIG = 1


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
    """Runs batches of DiskRequests (blocking). Shared by the lanes."""

    def __init__(self) -> None:
        self._writers: dict[str, BatchWriter] = {}
        self._lock = threading.Lock()

    def queue_writes(self, batch: Sequence[disk_pb2.DiskRequest]) -> list[disk_pb2.DiskReply]:
        """QueueWrite requests, one group commit per directory."""
        by_dir: dict[str, list] = {}
        for pb in batch:
            by_dir.setdefault(pb.queue_write.directory, []).append(pb)
        replies = []
        for directory, pbs in by_dir.items():
            with self._lock:  # lanes may run several threads
                writer = self._writers.get(directory)
                if writer is None:
                    writer = self._writers[directory] = BatchWriter(directory, recycle=True)
            reqs = [
                Request((
                    tuple((f.path, f.data, f.exclusive) for f in pb.queue_write.writes),
                    tuple(pb.queue_write.unlinks),
                ))
                for pb in pbs
            ]
            writer.execute(reqs)
            replies.extend(reply_for(pb.id, req) for pb, req in zip(pbs, reqs))
        return replies

    def maildir_deliveries(self, batch: Sequence[disk_pb2.DiskRequest]) -> list[disk_pb2.DiskReply]:
        """MaildirDelivery requests, as one maildir.deliver_batch."""
        reqs = []
        for pb in batch:
            m = pb.maildir
            reqs.append(Request((
                m.root, m.mailbox, m.name, m.header_prefix, m.body or None, m.body_path or None, m.check_existing,
            )))
        maildir.deliver_batch(reqs)
        return [reply_for(pb.id, req) for pb, req in zip(batch, reqs)]


class Lane:
    """`threads` threads that execute the requests queued for the lane: a
    free thread takes all that are waiting (at most MAX_BATCH) as one
    batch, and sends their replies. With more than one thread a batch may
    start while another waits for its fdatasyncs (safe: requests on one
    path are never in two batches at once, since each caller waits for its
    reply before it sends the next write of that file)."""

    def __init__(self, name: str, execute: Callable[[list], list], send: Callable[[list], None], threads: int = 1):
        self._execute = execute
        self._send = send
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def put(self, request: disk_pb2.DiskRequest) -> None:
        with self._cond:
            self._items.append(request)
            self._cond.notify()

    def close(self) -> None:
        """Finish everything queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        items = self._items
        while True:
            with self._cond:
                while not items and not self._closed:
                    self._cond.wait()
                if not items:
                    return
                batch = [items.popleft() for _ in range(min(len(items), MAX_BATCH))]
            try:
                replies = self._execute(batch)
            except Exception as e:  # noqa: BLE001 - a bug: fail the batch, keep serving
                replies = [
                    disk_pb2.DiskReply(id=pb.id, error_type="Error", error=f"{type(e).__name__}: {e}") for pb in batch
                ]
            self._send(replies)


class Worker:
    """Reads requests from `sock`, runs them in their lanes, sends replies."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._send_lock = threading.Lock()
        executor = Executor()
        self._executor = executor
        self._lanes = {
            "queue_write": Lane("queue", executor.queue_writes, self._send, threads=LANE_THREADS),
            "maildir": Lane("maildir", executor.maildir_deliveries, self._send, threads=LANE_THREADS),
        }

    def _send(self, replies: list) -> None:
        data = b"".join(encode_frame(r) for r in replies)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError:
                pass  # the daemon is gone: nobody waits for these replies

    def run(self) -> int:
        """Serve until end-of-file; returns the exit status (0, or 2 for a
        corrupt stream)."""
        buf = bytearray()
        status = 0
        try:
            while True:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
                for request in split_frames(buf, disk_pb2.DiskRequest.FromString):
                    lane = self._lanes.get(request.WhichOneof("op") or "")
                    if lane is None:
                        self._send([disk_pb2.DiskReply(id=request.id, error_type="Error", error="unknown request")])
                    else:
                        lane.put(request)
        except Exception as e:  # noqa: BLE001 - a corrupt frame or a dead socket
            print(f"estafeta disk worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            status = 2
        finally:
            for lane in self._lanes.values():
                lane.close()
        return status


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL us when the daemon dies (Linux), and exit
    now if it is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: end-of-file still ends us
        pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m estafeta.store.disk_worker FD PARENT_PID", file=sys.stderr)
        return 2
    fd, parent_pid = int(args[0]), int(args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)  # the daemon's end is non-blocking (gevent); the flag is shared
    return Worker(sock).run()


if __name__ == "__main__":
    sys.exit(main())
