"""The control channel of a running daemon (proto/control.proto): one Unix
socket per serving process, ``<data_dir>/control/<process>.sock``.

`ControlServer` (a permanent actor of every serving process's tree,
supervisor/app.py) listens there and answers one `ControlRequest` per
connection:

- ``TreeQuery``: this process's live supervision tree, walked from the
  supervisor registered as "root" with `WhichChildren` (each supervisor
  answers for itself, at most MAX_CHILDREN children each, the restarted
  and stopped ones first), as a `SupervisorNode`;
- ``QueueAction``: handed to the `queue_handler` given at construction
  (flush / hold / release / delete of the items this process owns;
  actors/queuecontrol.py), whose `QueueActionResult`s (or ControlReply)
  are the reply.

Framing as the disk worker's (store/disk_worker.py): a 4-byte big-endian
length, then the binary message; one request and one reply per
connection. Bounded: a request over MAX_REQUEST bytes or not read within
IO_TIMEOUT seconds gets an error reply (or the connection is closed);
replies over MAX_REPLY bytes are refused by the client. Only the owner of
the data directory can connect: the socket is mode 0600 in a 0700
directory.

`call(data_dir, request, process=None, timeout=...)` is the client (the
web page's actions, `estafeta` commands): one reply per serving process
asked, never an exception for a process that does not answer (its reply
carries the error).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import gevent
import gevent.pool
import pykka
from google.protobuf.message import DecodeError
from pykka import ActorDeadError, ActorRegistry

from estafeta.proto import control_pb2, supervision_pb2
from estafeta.supervisor import registry
from estafeta.supervisor.actor import Actor, Link

log = logging.getLogger("estafeta.control")

FRAME = struct.Struct(">I")
#: Largest request accepted, bytes (a QueueAction of thousands of ids fits).
MAX_REQUEST = 1 << 20
#: Largest reply a client accepts, bytes.
MAX_REPLY = 64 << 20
#: Seconds a connection may take to send its request, or to take its reply.
IO_TIMEOUT = 5.0
#: Seconds a supervisor gets to answer WhichChildren during a tree walk.
ASK_TIMEOUT = 2.0
#: Most children listed per supervisor (simple_one_for_one ones have thousands).
MAX_CHILDREN = 200
#: Connections served at once; more wait in the listen backlog.
MAX_CONNECTIONS = 16

#: What the server does with a QueueAction: the results per queue id, or
#: the whole ControlReply (actors/queuecontrol.py QueueControl.handle).
QueueHandler = Callable[[control_pb2.QueueAction], Sequence[control_pb2.QueueActionResult] | control_pb2.ControlReply]


class ControlError(Exception):
    """The control channel cannot be used at all (no daemon runs here)."""


def control_dir(data_dir: str) -> str:
    """``<data_dir>/control``: the sockets' directory."""
    return os.path.join(os.path.abspath(data_dir), "control")


def socket_path(data_dir: str, process: int) -> str:
    """The control socket of serving process `process`."""
    return os.path.join(control_dir(data_dir), f"{process}.sock")


@contextlib.contextmanager
def _sun_path(path: str) -> Iterator[str]:
    """A name for `path` that fits sockaddr_un (108 bytes): the path itself,
    or /proc/self/fd/<dir fd>/<name> for a long one (Linux)."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket, limit: int) -> bytes:
    (n,) = FRAME.unpack(_recv_exact(sock, FRAME.size))
    if n > limit:
        raise ValueError(f"frame of {n} bytes is over the limit of {limit}")
    return _recv_exact(sock, n)


def _frame(msg) -> bytes:
    data = msg.SerializeToString()
    return FRAME.pack(len(data)) + data


# ------------------------------------------------------------------ the tree
def describe_tree(root: pykka.ActorRef, timeout: float = ASK_TIMEOUT) -> control_pb2.SupervisorNode:
    """The supervision tree under `root`, live: each supervisor asked
    WhichChildren(limit=MAX_CHILDREN) in turn (from the root down, never
    the other way: no ask cycle). A child supervisor that does not answer
    within `timeout` seconds (busy restarting or stopping) is listed as a
    child, without its subtree. Raises pykka.Timeout / ActorDeadError if
    the root itself does not answer."""
    by_urn = {ref.actor_urn: ref for ref in ActorRegistry.get_all()}
    return _node(root, by_urn, timeout)


def _node(ref: pykka.ActorRef, by_urn: dict, timeout: float) -> control_pb2.SupervisorNode:
    info = cast(supervision_pb2.Children, ref.ask(supervision_pb2.WhichChildren(limit=MAX_CHILDREN), timeout=timeout))
    node = control_pb2.SupervisorNode(
        name=info.name,
        strategy=info.strategy,
        intensity=info.intensity,
        period_seconds=info.period_seconds,
        restarts_in_window=info.restarts_in_window,
        total_children=info.total,
        last_crash=info.last_crash,
        crashes=info.crashes,
    )
    node.children.extend(info.children)
    for child in info.children:
        if child.supervisor and child.actor_urn:
            sub = by_urn.get(child.actor_urn)
            if sub is None:
                continue
            try:
                node.supervisors.append(_node(sub, by_urn, timeout))
            except (pykka.Timeout, ActorDeadError) as e:
                log.info("tree: supervisor %s did not answer: %s", child.child_id, type(e).__name__)
    return node


# ------------------------------------------------------------------ server
class ControlServer(Actor):
    """Serves the control socket of serving process `process` (see the
    module docstring). `queue_handler(action) -> [QueueActionResult]` runs
    in the connection's greenlet; None: queue actions get an error reply.
    `root_name`: the registered name of the tree's root supervisor."""

    def __init__(
        self,
        link: Link | None,
        data_dir: str,
        process: int,
        queue_handler: QueueHandler | None = None,
        root_name: str = "root",
    ):
        super().__init__(link)
        self._path = socket_path(data_dir, process)
        self._process = process
        self._handler = queue_handler
        self._root_name = root_name
        self._sock: socket.socket | None = None
        self._loop: gevent.Greenlet | None = None
        self._conns = gevent.pool.Pool(MAX_CONNECTIONS)

    def on_start(self) -> None:
        directory = os.path.dirname(self._path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)  # left by an earlier run of this process
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _sun_path(self._path) as name:
                sock.bind(name)
            os.chmod(self._path, 0o600)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = gevent.spawn(self._accept_loop)
        log.info("control listening path=%s", self._path)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *exc_info) -> None:
        self._close()

    def on_receive(self, message):
        raise TypeError(f"ControlServer cannot handle {type(message).__name__}")

    def _close(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=True, timeout=1.0)
            self._loop = None
        self._conns.kill(block=True, timeout=IO_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def _accept_loop(self) -> None:
        sock = self._sock
        while True:
            try:
                conn, _ = sock.accept()
            except OSError as e:
                if self._sock is None:
                    return
                log.warning("control accept failed: %s", e)
                gevent.sleep(0.1)
                continue
            self._conns.spawn(self._serve, conn)  # blocks while MAX_CONNECTIONS are busy

    def _serve(self, conn: socket.socket) -> None:
        try:
            with gevent.Timeout(IO_TIMEOUT, TimeoutError("request not received in time")):
                data = _read_frame(conn, MAX_REQUEST)
            try:
                request = control_pb2.ControlRequest.FromString(data)
            except DecodeError as e:
                reply = control_pb2.ControlReply(error=f"bad request: {e}")
            else:
                reply = self.handle(request)
            reply.process = self._process
            with gevent.Timeout(IO_TIMEOUT, TimeoutError("reply not taken in time")):
                conn.sendall(_frame(reply))
        except (OSError, ValueError) as e:  # TimeoutError is an OSError
            log.info("control connection dropped: %s", e)
            with contextlib.suppress(OSError):
                conn.sendall(_frame(control_pb2.ControlReply(error=str(e), process=self._process)))
        finally:
            conn.close()

    def handle(self, request: control_pb2.ControlRequest) -> control_pb2.ControlReply:
        """The reply to one request (errors in the reply, never raised)."""
        op = request.WhichOneof("op")
        if op == "tree":
            try:
                root = registry.whereis(self._root_name)
                return control_pb2.ControlReply(tree=describe_tree(root))
            except (registry.NotRegistered, pykka.Timeout, ActorDeadError) as e:
                return control_pb2.ControlReply(error=f"tree: the root supervisor does not answer: {e}")
        if op == "queue":
            if self._handler is None:
                return control_pb2.ControlReply(error="queue actions are not available in this process")
            try:
                results = self._handler(request.queue)
            except Exception as e:  # noqa: BLE001 - the reply says why; the server goes on
                log.warning("control queue action failed: %s: %s", type(e).__name__, e)
                return control_pb2.ControlReply(error=f"{type(e).__name__}: {e}")
            if isinstance(results, control_pb2.ControlReply):
                return results
            return control_pb2.ControlReply(results=results)
        return control_pb2.ControlReply(error="empty request")


# ------------------------------------------------------------------ client
_SOCK_NAME = re.compile(r"(\d+)\.sock")


def processes(data_dir: str) -> list[int]:
    """The serving processes with a control socket, in order."""
    try:
        names = os.listdir(control_dir(data_dir))
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_SOCK_NAME.fullmatch, names) if m)


def call_one(
    data_dir: str, request: control_pb2.ControlRequest, process: int, timeout: float
) -> control_pb2.ControlReply:
    """Send `request` to serving process `process`; its reply, or a reply
    whose `error` says why there is none (not running, timed out, ...)."""
    path = socket_path(data_dir, process)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _sun_path(path) as name:
            sock.connect(name)
        sock.sendall(_frame(request))
        reply = control_pb2.ControlReply.FromString(_read_frame(sock, MAX_REPLY))
    except FileNotFoundError:
        return control_pb2.ControlReply(error=f"process {process} is not running (no {path})", process=process)
    except ConnectionRefusedError:
        return control_pb2.ControlReply(
            error=f"process {process} is not running (nobody listens on {path})", process=process
        )
    except (OSError, ValueError, DecodeError) as e:
        what = "no answer in time" if isinstance(e, (TimeoutError, socket.timeout)) else f"{type(e).__name__}: {e}"
        return control_pb2.ControlReply(error=f"process {process}: {what}", process=process)
    finally:
        sock.close()
    reply.process = process
    return reply


def call(
    data_dir: str, request: control_pb2.ControlRequest, process: int | None = None, timeout: float = 10.0
) -> list[control_pb2.ControlReply]:
    """Send `request` to serving process `process` (None: every one with a
    socket, in order) and return their replies, one each. `timeout`
    bounds each process's exchange, seconds. Raises ControlError if no
    serving process has a socket (no daemon runs on this data_dir)."""
    targets = [process] if process is not None else processes(data_dir)
    if not targets:
        raise ControlError(f"no running estafeta daemon for {os.path.abspath(data_dir)} (no control socket)")
    if process is not None and not os.path.exists(socket_path(data_dir, process)) and not processes(data_dir):
        raise ControlError(f"no running estafeta daemon for {os.path.abspath(data_dir)} (no control socket)")
    return [call_one(data_dir, request, p, timeout) for p in targets]


__all__ = [
    "ControlError",
    "ControlServer",
    "QueueHandler",
    "call",
    "call_one",
    "control_dir",
    "describe_tree",
    "processes",
    "socket_path",
]
