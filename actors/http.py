"""HttpServer actor: the monitoring web page, /metrics and the health
probes, on gevent's WSGI server (the DESIGN's `http` child; serving
process 0 only, supervisor/app.py).

It serves the Flask application of tracing/viewer/web/app.py: requests
run in greenlets of this process's hub, and everything blocking they do
(sqlite, queue files, the control channel) goes to the threadpool. What
it reads: the span store (read-only connections), the queue directory,
the metrics directory (supervisor/metrics.py), the QueueGauge, and every
serving process's tree through the control sockets (supervisor/control.py).

The token for actions is read from Config.http_token_file, made (0600,
random) if missing; its path is logged at start.

Probes:
- /healthz (liveness): the root supervisor answers WhichChildren within
  PROBE_TIMEOUT seconds;
- /readyz (readiness): every serving process answers its control socket
  with a tree whose SMTP acceptors run, and this process's disk worker
  answers a Ping.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field

import gevent
import pykka
from gevent.pywsgi import WSGIServer

from estafeta.proto import control_pb2, supervision_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.disk_client import DiskChannel
from estafeta.supervisor import control, metrics, registry
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import ListenAddress
from estafeta.tracing.viewer.web.app import WebContext, create_app

log = logging.getLogger("estafeta.http")

#: Seconds a probe waits for the root supervisor, a control socket, the disk worker.
PROBE_TIMEOUT = 2.0


@dataclass
class HttpEnv:
    """What the HTTP actor needs (read-only).

    address: where to listen. data_dir, queue_dir, traces_db: paths.
    token_path: the token file (absolute). processes: serving processes.
    gauge: the QueueGauge (queue metrics), or None. disk: this process's
    disk channel (readiness), or None."""

    address: ListenAddress
    data_dir: str
    queue_dir: str
    traces_db: str
    token_path: str
    processes: int
    gauge: object | None = None
    disk: DiskChannel | None = None
    extra_collectors: tuple = field(default_factory=tuple)


def ensure_token(path: str) -> str:
    """The token in `path`, made first if the file is missing (mode 0600,
    32 random bytes as URL-safe base64). Raises OSError, or ValueError for
    an empty token file."""
    try:
        with open(path, encoding="ascii") as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
        return token
    if not token:
        raise ValueError(f"the HTTP token file {path} is empty")
    return token


def health() -> tuple[bool, dict]:
    """Liveness: the root supervisor answers."""
    try:
        root = registry.whereis("root")
        root.ask(supervision_pb2.WhichChildren(limit=1), timeout=PROBE_TIMEOUT)
    except (registry.NotRegistered, pykka.Timeout, pykka.ActorDeadError) as e:
        return False, {"root": f"not answering: {type(e).__name__}: {e}"}
    return True, {"root": "ok"}


def _acceptors(node: control_pb2.SupervisorNode) -> list[tuple[str, str]]:
    """(listener supervisor name, acceptor state) of every listener in a tree."""
    out = []
    for sub in node.supervisors:
        if sub.name.startswith("listener."):
            states = [c.state for c in sub.children if c.child_id == "acceptor"]
            out.append((sub.name, states[0] if states else "missing"))
        out.extend(_acceptors(sub))
    return out


class HttpServer(Actor):
    """Serves the web page on env.address until stopped."""

    def __init__(self, link: Link | None, env: HttpEnv):
        super().__init__(link)
        self._env = env
        self._server: WSGIServer | None = None

    def on_start(self) -> None:
        env = self._env
        token = ensure_token(env.token_path)
        ctx = WebContext(
            data_dir=env.data_dir,
            queue_dir=env.queue_dir,
            traces_db=env.traces_db,
            token=token,
            processes=env.processes,
            health=health,
            ready=self.ready,
            metrics=self.metrics,
            control=lambda req, process: control.call(env.data_dir, req, process, timeout=PROBE_TIMEOUT * 5),
            blocking=run_blocking,
        )
        host = env.address.host
        server = WSGIServer((host, env.address.port), create_app(ctx), log=None, error_log=_ErrorLog())
        server.start()  # binds now: an address in use crashes this actor, logged
        self._server = server
        log.info("http listening on %s token_file=%s", env.address, env.token_path)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *exc_info) -> None:
        self._close()

    def on_receive(self, message):
        raise TypeError(f"HttpServer cannot handle {type(message).__name__}")

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=2.0)

    def metrics(self) -> tuple[bytes, str]:
        extra = tuple(self._env.extra_collectors)
        if self._env.gauge is not None:
            extra += (metrics.QueueCollector(self._env.gauge),)
        return metrics.exposition(extra)

    def ready(self) -> tuple[bool, dict]:
        """Readiness: every serving process's acceptors run (asked over the
        control channel, at once), and the disk worker answers."""
        env = self._env
        checks: dict[str, str] = {}
        request = control_pb2.ControlRequest(tree=control_pb2.TreeQuery())
        jobs = [gevent.spawn(control.call_one, env.data_dir, request, p, PROBE_TIMEOUT) for p in range(env.processes)]
        gevent.joinall(jobs, timeout=PROBE_TIMEOUT * 2)
        for p, job in enumerate(jobs):
            reply = job.value if job.successful() else None
            if reply is None or reply.error:
                checks[f"process {p}"] = reply.error if reply is not None else "no answer"
                continue
            acceptors = _acceptors(reply.tree)
            bad = [f"{name} {state}" for name, state in acceptors if state != "running"]
            checks[f"process {p}"] = "not accepting: " + ", ".join(bad) if bad or not acceptors else "accepting"
        client = env.disk.client if env.disk is not None else None
        if env.disk is not None:
            checks["disk worker"] = (
                "answering" if client is not None and client.ping(PROBE_TIMEOUT) else "not answering"
            )
        ok = all(v in ("accepting", "answering") for v in checks.values())
        return ok, checks


class _ErrorLog:
    """gevent's WSGI error log, into ours (one line per failure)."""

    def write(self, data: str) -> None:
        data = data.strip()
        if data:
            log.warning("http error=%s", data.splitlines()[-1][:300])

    def flush(self) -> None:
        pass
