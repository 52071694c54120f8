"""The daemon's end of the disk worker process (store/disk_worker.py).

`DiskClient` starts one worker (`python -m estafeta.store.disk_worker`) on
a socketpair. A request is sent at once by the greenlet that submits it
(a non-blocking send); only when the socket buffer is full, or frames are
already waiting, does it go to a sender greenlet, which writes everything
waiting in one send, in order. A reader greenlet matches replies to
requests by id and wakes their callers.
Greenlets that call `call()` block only themselves.

`DiskChannel` is where the QueueStore and the couriers find the client
that is running now: the DiskWriter actor (actors/disk.py) sets it on
start and clears it on stop, so a restarted worker is picked up by the
next request. While no worker runs, requests fail at once with
OSError(EAGAIN): a session answers 451 and the client retries later.

Errors: a request the worker could not do raises what the worker caught —
OSError with its errno (so FileExistsError, ENOSPC, ... as usual),
ValueError for a path or name refused as unsafe — or OSError(EIO) naming a
worker-side bug. If the worker exits, every request in flight raises
OSError(EIO, "disk worker exited ..."): its outcome on disk is unknown (the
write may or may not have happened), so the caller reports failure, never
success (a put's client gets a 4xx and sends again: at least once, never
lost).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import gevent
import gevent.event

from estafeta.proto import disk_pb2
from estafeta.store.disk_worker import encode_frame, split_frames
from estafeta.supervisor import metrics

log = logging.getLogger("estafeta.disk")

_monotonic = time.monotonic
#: Frames larger than this are sent on their own rather than joined with
#: others into one buffer (a big body is not copied once more).
_JOIN_LIMIT = 256 * 1024


class Pending:
    """A submitted request: `wait()` for its reply; `ready()` once it came."""

    __slots__ = ("id", "_result", "op", "sent")

    def __init__(self, request_id: int, op: str = "", sent: float = 0.0):
        self.id = request_id
        self._result = gevent.event.AsyncResult()
        #: The request's kind (DiskRequest's op) and time.monotonic() at
        #: submit: the disk request latency metric.
        self.op = op
        self.sent = sent

    def ready(self) -> bool:
        return self._result.ready()

    def wait(self) -> disk_pb2.DiskReply:
        """Block this greenlet until the reply; returns it, or raises its
        error (see the module docstring)."""
        reply = self._result.get()
        if reply.error_type:
            raise _error(reply)
        return reply


def _error(reply: disk_pb2.DiskReply) -> Exception:
    if reply.error_type == "OSError":
        return OSError(reply.errno, reply.error, reply.path) if reply.path else OSError(reply.errno, reply.error)
    if reply.error_type == "ValueError":
        return ValueError(reply.error)
    return OSError(errno.EIO, f"disk worker: {reply.error}")


class DiskClient:
    """One disk worker process and the greenlets that talk to it.

    `on_exit(reason)` is called (in the reader greenlet) once the worker's
    socket closed — it exited, crashed or was killed — after every pending
    request was failed. Not called after `close()`.
    """

    def __init__(self, on_exit: Callable[[str], None] | None = None):
        self._on_exit = on_exit
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._outbox: list[bytes] = []
        self._wake = gevent.event.Event()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._closing = False
        self._sending = False  # the sender greenlet is writing frames
        self.alive = False
        #: Requests sent and sends made (a send carries one or more requests).
        self.requests = 0
        self.sends = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the worker process. Raises OSError if it cannot be run."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "estafeta.store.disk_worker", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        # The underlying socket object: its send() never yields (the fd is
        # non-blocking), for submit()'s direct sends.
        self._raw = getattr(ours, "_sock", ours)
        self.alive = True
        self._greenlets = [gevent.spawn(self._send_loop), gevent.spawn(self._read_loop)]

    # ---------------------------------------------------------- requests
    def submit(self, request: disk_pb2.DiskRequest) -> Pending:
        """Queue a request (its id is set here); returns at once. Raises
        OSError(EAGAIN) if the worker is not running."""
        if not self.alive or self._closing:
            raise OSError(errno.EAGAIN, "disk worker not running")
        request.id = next(self._ids)
        pending = self._pending[request.id] = Pending(request.id, request.WhichOneof("op") or "", _monotonic())
        frame = encode_frame(request)
        if not self._outbox and not self._sending:
            # Straight out, without waiting for the sender greenlet's turn
            # on a busy hub (measured: most of a put's round trip was that
            # wait and the reader's). A frame the socket buffer cannot take
            # whole goes to the sender, which keeps the byte order.
            try:
                n = self._raw.send(frame)
            except BlockingIOError:
                n = 0
            except OSError:
                n = 0  # the reader sees the dead socket and fails everything
            if n == len(frame):
                self.requests += 1
                self.sends += 1
                return pending
            frame = frame[n:]  # the sender counts it
        self._outbox.append(frame)
        self._wake.set()
        return pending

    def call(self, request: disk_pb2.DiskRequest) -> disk_pb2.DiskReply:
        """submit() and wait() in one: blocks this greenlet until done."""
        return self.submit(request).wait()

    def ping(self, timeout: float) -> bool:
        """True if the worker answers a Ping within `timeout` seconds."""
        try:
            pending = self.submit(disk_pb2.DiskRequest(ping=disk_pb2.Ping()))
        except OSError:
            return False
        with gevent.Timeout(timeout, False):
            try:
                pending.wait()
            except OSError:
                return False
            return True
        return False

    # ---------------------------------------------------------- greenlets
    def _send_loop(self) -> None:
        sock = self._sock
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    self._sending = True
                    frames, self._outbox = self._outbox, []
                    self.requests += len(frames)
                    small: list[bytes] = []
                    size = 0
                    for frame in frames:
                        if len(frame) > _JOIN_LIMIT:
                            if small:
                                _send_all(sock, b"".join(small))
                                self.sends += 1
                                small, size = [], 0
                            sock.sendall(frame)
                            self.sends += 1
                        else:
                            small.append(frame)
                            size += len(frame)
                    if small:
                        _send_all(sock, b"".join(small) if len(small) > 1 else small[0])
                        self.sends += 1
                self._sending = False
                if self._closing:
                    sock.shutdown(socket.SHUT_WR)  # the worker finishes, then exits
                    return
        except OSError as e:  # the worker is gone; the reader reports it
            log.debug("disk worker send failed: %s", e)

    def _read_loop(self) -> None:
        sock = self._sock
        observe = metrics.observe_disk
        buf = bytearray()
        reason = "end of file"
        try:
            while True:
                chunk = sock.recv(1 << 18)
                if not chunk:
                    break
                buf += chunk
                for reply in split_frames(buf, disk_pb2.DiskReply.FromString):
                    pending = self._pending.pop(reply.id, None)
                    if pending is not None:
                        observe(pending.op, _monotonic() - pending.sent)
                        pending._result.set(reply)  # noqa: SLF001
        except OSError as e:
            reason = str(e)
        except Exception as e:  # a corrupt frame: treat the worker as dead
            reason = f"{type(e).__name__}: {e}"
        self._dead(reason)

    def _dead(self, reason: str) -> None:
        self.alive = False
        status = self._reap(timeout=2.0)
        if status is not None:
            reason = f"{reason}, exit status {status}"
        failed, self._pending = self._pending, {}
        for pending in failed.values():
            pending._result.set(  # noqa: SLF001
                disk_pb2.DiskReply(
                    id=pending.id,
                    error_type="OSError",
                    errno=errno.EIO,
                    error=f"disk worker exited ({reason}): outcome unknown",
                )
            )
        if self._sock is not None:
            self._sock.close()
        if not self._closing and self._on_exit is not None:
            self._on_exit(reason)

    def _reap(self, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    # ----------------------------------------------------------- shutdown
    def close(self, timeout: float = 10.0) -> None:
        """Let the worker finish what was sent, then wait up to `timeout`
        seconds for it to exit (killed after that). Requests submitted
        afterwards raise OSError(EAGAIN)."""
        if self._proc is None or self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("disk worker pid=%d did not exit in %.0fs: killed", self._proc.pid, timeout)
                self.kill()
        gevent.joinall(self._greenlets, timeout=2.0)
        for g in self._greenlets:
            g.kill(block=False)
        if self._sock is not None:
            self._sock.close()

    def kill(self) -> None:
        """SIGKILL the worker (requests in flight fail, see the module docstring)."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.kill()
            except OSError:
                pass


def _send_all(sock: socket.socket, data: bytes) -> None:
    """sock.sendall(data), but one plain send() first: it nearly always
    takes everything, and gevent's sendall() asks the kernel for SO_SNDBUF
    on every call."""
    n = sock.send(data)
    if n < len(data):
        sock.sendall(memoryview(data)[n:])


class DiskChannel:
    """The disk worker currently running, for the QueueStore and the
    couriers (set by the DiskWriter actor; None while none runs)."""

    def __init__(self) -> None:
        self.client: DiskClient | None = None

    def submit(self, request: disk_pb2.DiskRequest) -> Pending:
        """Send a request to the running worker; raises OSError(EAGAIN)
        if there is none (starting or restarting)."""
        client = self.client
        if client is None:
            raise OSError(errno.EAGAIN, "disk worker not running")
        return client.submit(request)

    def call(self, request: disk_pb2.DiskRequest) -> disk_pb2.DiskReply:
        """submit() and wait for the reply (see Pending.wait)."""
        return self.submit(request).wait()
