"""Listener actor: accepts TCP connections and starts an SmtpSession for each.

One Listener per listening address (supervisor/config.py listener_specs:
every smtp_address, an SMTP-mode listener, and every `listener` entry with
its mode), a permanent child of that address's listener supervisor, next
to the simple_one_for_one supervisor of its sessions (registered as
"sessions.<name>"). The accept loop runs in its own greenlet so the
actor's inbox stays free (stop, ...).

Refusals at accept, before any session (RFC 5321 §3.8 allows 421 at the
greeting), each logged ("connection refused from=... reason=...") and
counted (metrics.count_connection_refused):

- past Config.max_connections open sessions: "421 4.3.2 Too many
  connections" (reason max_connections);
- the limits against abuse (actors/limits.py connection_opened, shared by
  the serving processes): 421 4.7.0, reasons rate_limited (connections per
  minute), connections_at_once, auth_failures (a submission listener, for
  a network that failed AUTH too often).

On a SUBMISSIONS listener (TLS from the first byte, RFC 8314) a refused
connection is closed without a reply: a plaintext 421 is not what a TLS
client can read, and a handshake per refusal is what a flood would want.
"""

from __future__ import annotations

import logging
import socket

import gevent
from gevent import monkey

from estafeta.actors import limits as abuse
from estafeta.actors.session import ConnectionSlots
from estafeta.actors.smtp import Mode, Reply
from estafeta.proto import messages_pb2
from estafeta.supervisor import metrics, registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import ListenAddress
from estafeta.supervisor.log import kv
from estafeta.supervisor.tree import start_child

log = logging.getLogger("estafeta.listener")

#: listen(2) backlog: deep enough for bursts of thousands of connects.
BACKLOG = 4096

# The stdlib's socket class, not gevent's: the listening socket is
# non-blocking and waited on with one hub watcher (Listener._accept_loop),
# and its accept gives a bare file descriptor — the connection goes to its
# session as a number (StartSession.fd), so no socket object is built for
# it here only to be taken apart again (a gevent socket made and detached
# per connection cost ~2 % of a serving process's CPU).
_StdSocket = monkey.get_original("socket", "socket")


class ListenError(Exception):
    """The address cannot be bound (in use, not local, no permission)."""


#: Sockets bound before the daemon dropped its privileges
#: (supervisor/privileges.py), by (host, port): open_listening_socket hands
#: out a duplicate of one, so a restarted Listener finds it again.
PREBOUND: dict[tuple[str, int], socket.socket] = {}


def adopt_socket(fd: int) -> socket.socket:
    """A listening socket inherited as file descriptor `fd` (a serving
    process's, bound by the daemon), as a non-blocking stdlib socket."""
    sock = _StdSocket(fileno=fd)
    sock.setblocking(False)
    return sock


def open_listening_socket(addr: ListenAddress, reuse_port: bool = False) -> socket.socket:
    """Bind and listen on `addr`: a non-blocking stdlib socket (never block
    on it from the hub: wait for it to be readable first). Raises
    ListenError with the reason.

    `reuse_port`: SO_REUSEPORT, so that the daemon's serving processes
    (Config.processes) each listen on the address and the kernel spreads
    the connections over them. Only then: otherwise a second daemon on the
    same port would start without noticing.

    An address in PREBOUND gets a duplicate of that socket instead (bound
    while the daemon was root, supervisor/privileges.py)."""
    prebound = PREBOUND.get((addr.host, addr.port))
    if prebound is not None:
        dup = prebound.dup()
        dup.setblocking(False)
        return dup
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, family, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {addr}: {e.strerror}") from None
    sock = _StdSocket(infos[0][0], socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Accepted sockets inherit TCP_NODELAY (Linux). A reply is one send()
        # (pipelined replies too, RFC 2920 §3.2), so Nagle only ever delayed
        # one: after a TLS 1.3 handshake the server's session tickets are an
        # unacknowledged segment when the client's next command arrives,
        # and Nagle then held the reply until the client's delayed ACK
        # (~40 ms): submission over STARTTLS at c=10 went 200 -> 456 msg/s.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(infos[0][4])
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {addr}: {e.strerror}") from None
    return sock


#: Connection refusals by the limits, and their reasons (metrics, log).
_LIMIT_REASONS = {
    id(abuse.TOO_FAST): "rate_limited",
    id(abuse.TOO_MANY): "connections_at_once",
    id(abuse.AUTH_BLOCKED_CONNECT): "auth_failures",
}
_TOO_MANY_CONNECTIONS = Reply(421, "4.3.2", "Too many connections, try again later")


class Listener(Actor):
    """Accepts on one address; starts sessions under "sessions.<name>".
    `mode`: the listener's (smtp.Mode); `limits`: the limits against abuse
    (None: none, tests)."""

    def __init__(
        self,
        link: Link | None,
        name: str,
        addr: ListenAddress,
        slots: ConnectionSlots,
        reuse_port: bool = False,
        mode: Mode = Mode.SMTP,
        limits: abuse.Limits | None = None,
    ):
        super().__init__(link)
        self._name = name
        self._addr = addr
        self._slots = slots
        self._reuse_port = reuse_port
        self._mode = mode
        self._limits = limits
        self._sock: socket.socket | None = None
        self._loop: gevent.Greenlet | None = None

    def on_start(self) -> None:
        self._sock = open_listening_socket(self._addr, self._reuse_port)
        self._loop = gevent.spawn(self._accept_loop)
        log.info("listening %s on %s mode=%s", self._name, self._addr, self._mode.name)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *exc_info) -> None:
        self._close()

    def _close(self) -> None:
        if self._loop is not None:
            # Waited for: the loop closes its watcher of the socket, which
            # must not outlive the file descriptor.
            self._loop.kill(block=True, timeout=1.0)
            self._loop = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _accept_loop(self) -> None:
        sock = self._sock
        sessions = f"sessions.{self._name}"
        # Bound to one address, every connection's local end is that one: no
        # getsockname(2) per connection. A wildcard address needs it.
        bound = sock.getsockname()
        fixed_local = None if bound[0] in ("0.0.0.0", "::") else bound
        hub = gevent.get_hub()
        readable = hub.loop.io(sock.fileno(), 1)  # one watcher for the socket's life
        accept = sock._accept  # type: ignore[union-attr] # accept4(2) with SOCK_CLOEXEC: (fd, peer address)
        try:
            while True:
                try:
                    fd, peer = accept()
                except BlockingIOError:
                    hub.wait(readable)
                    continue
                except OSError as e:
                    if self._sock is None:
                        return
                    log.warning("accept on %s failed: %s", self._addr, e)
                    gevent.sleep(0.1)
                    continue
                self._start_session(fd, peer, fixed_local, sessions)
        finally:
            readable.close()

    def _start_session(self, fd: int, peer: tuple, fixed_local: tuple | None, sessions: str) -> None:
        """Hand the accepted connection `fd` to a new session, or refuse it
        (see the module docstring; closed when no session can start)."""
        if not self._slots.try_acquire():
            self._refuse(fd, peer, _TOO_MANY_CONNECTIONS, "max_connections")
            return
        limits = self._limits
        if limits is not None:
            refusal = limits.connection_opened(peer[0], submission=self._mode is not Mode.SMTP)
            if refusal is not None:
                self._slots.release()
                self._refuse(fd, peer, refusal, _LIMIT_REASONS.get(id(refusal), "limits"))
                return
        metrics.count_connection(self._name)
        if fixed_local is None:
            probe = _StdSocket(self._sock.family, socket.SOCK_STREAM, 0, fileno=fd)
            local = probe.getsockname()
            probe.detach()
        else:
            local = fixed_local
        start = messages_pb2.StartSession(
            fd=fd,
            peer_address=peer[0],
            peer_port=peer[1],
            local_address=local[0],
            local_port=local[1],
            listener=self._name,
        )
        try:
            reply = start_child(registry.whereis(sessions), start)
            ok = reply.ok
        except Exception as e:  # sessions supervisor restarting
            ok, reply = False, None
            log.warning("cannot start session: %s", e)
        if not ok:
            self._slots.release()
            if limits is not None:
                limits.connection_closed(peer[0])
            socket.close(start.fd)

    def _refuse(self, fd: int, peer: tuple, reply: Reply, reason: str) -> None:
        """Answer `reply` (not on a SUBMISSIONS listener) and close."""
        log.warning("connection refused from=%s:%s listener=%s reason=%s reply=%s",
                    peer[0], peer[1], self._name, reason, kv(str(reply)))  # fmt: skip
        metrics.count_connection_refused(reason)
        conn = socket.socket(self._sock.family, socket.SOCK_STREAM, 0, fileno=fd)
        try:
            if self._mode is not Mode.SUBMISSIONS:
                conn.sendall(reply.wire)
        except OSError:
            pass  # gone already
        finally:
            conn.close()
