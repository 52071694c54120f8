"""`estafeta serve`: set up, run the supervision tree, shut down in order.

Signals: the first SIGTERM or SIGINT stops accepting, lets open sessions
finish (Config.shutdown_timeout_seconds), lets queue items finish their
current attempt, flushes spans and exits 0. A second signal exits at once
(status 128 + signal number). Neither loses accepted mail: every message
was fsync'd before its 250, and deliveries are idempotent.

Exit status: 0 after a requested stop; 1 if the root supervisor gave up
(a child exceeded its restart intensity) or start-up failed (the reason is
the last log line).
"""
from __future__ import annotations

import logging
import os
import signal

import gevent
import gevent.event

from estafeta.actors.listener import ListenError, open_listening_socket
from estafeta.proto import config_pb2, supervision_pb2
from estafeta.store.blocking import configure_threadpool
from estafeta.store.disk_client import DiskChannel
from estafeta.store.queue import QueueStore
from estafeta.supervisor import chaos, registry
from estafeta.supervisor.app import Paths, build_tree
from estafeta.supervisor.config import parse_listen_address
from estafeta.supervisor.log import setup_logging
from estafeta.supervisor.tree import Supervisor
from estafeta.tracing.setup import setup_tracing

log = logging.getLogger("estafeta.daemon")

#: Hub threadpool size: fsyncs of concurrent sessions and couriers overlap.
THREADPOOL_SIZE = 16



def paths_for(cfg: config_pb2.Config) -> Paths:
    """Absolute paths of the data directory's parts."""
    data_dir = os.path.abspath(cfg.data_dir)
    return Paths(
        data_dir=data_dir,
        queue_dir=os.path.join(data_dir, "queue"),
        mail_dir=os.path.join(data_dir, "mail"),
        traces_db=os.path.join(data_dir, "traces.db"),
    )


class StartupError(Exception):
    """The daemon cannot start; the message is the one line logged."""


def _preflight(cfg: config_pb2.Config, paths: Paths, store: QueueStore) -> None:
    """Fail early, with one clear line, on what would make the tree
    crash-loop; then clean the queue directory of what a crash left (temp
    and spare files, orphan bodies: QueueStore.recover), which is only safe
    before anything writes there. Raises StartupError."""
    for d in (paths.data_dir, paths.queue_dir, paths.mail_dir):
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StartupError(f"cannot create {d}: {e.strerror}") from None
    for addr in cfg.smtp_address:
        try:
            open_listening_socket(parse_listen_address(addr)).close()
        except ListenError as e:
            raise StartupError(str(e)) from None
    try:
        store.recover()
    except OSError as e:
        raise StartupError(f"cannot recover the queue in {store.queue_dir}: {e}") from None


def serve(cfg: config_pb2.Config) -> int:
    """Run the daemon until signalled; returns the exit status."""
    setup_logging(cfg.log_level)
    paths = paths_for(cfg)
    disk = DiskChannel()
    store = QueueStore(paths.queue_dir, disk=disk)
    try:
        _preflight(cfg, paths, store)
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 1
    configure_threadpool(THREADPOOL_SIZE)
    chaos.configure(cfg.chaos if cfg.chaos.crash else None)
    tracing = setup_tracing(cfg.tracing, paths.traces_db, hostname=cfg.hostname)
    stop = gevent.event.Event()
    status = {"code": 0}
    signals_seen = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            log.warning("second signal %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("stopping on %s: no new connections, draining sessions", signal.Signals(signum).name)
        stop.set()

    def on_escalate(reason: str) -> None:
        log.error("root supervisor gave up: %s", reason)
        status["code"] = 1
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, on_signal, sig)
    root = Supervisor.start(None, build_tree(cfg, paths, store, tracing.tracer, disk), on_escalate=on_escalate)
    root.ask(supervision_pb2.WhichChildren())  # answered once every child has started
    log.info("started hostname=%s data_dir=%s pid=%d", cfg.hostname, paths.data_dir, os.getpid())
    stop.wait()
    try:
        if root.is_alive():
            root.stop(timeout=cfg.shutdown_timeout_seconds + 30)
    except Exception as e:  # a child that would not stop: report, still exit
        log.error("shutdown incomplete: %s", e)
        status["code"] = status["code"] or 1
    tracing.shutdown(timeout=10)
    registry.clear()
    log.info("stopped")
    return status["code"]
