"""`estafeta serve`: set up, run the supervision tree, shut down in order.

Signals: the first SIGTERM or SIGINT stops accepting, lets open sessions
finish (Config.shutdown_timeout_seconds), lets queue items finish their
current attempt, flushes spans and exits 0. A second signal exits at once
(status 128 + signal number). Neither loses accepted mail: every message
was fsync'd before its 250, and deliveries are idempotent. SIGHUP reloads
what can be reloaded (supervisor/reload.py: users, aliases, certificates,
the config file) in every serving process, and never stops the daemon.

Privileges: started as root with Config.user, the daemon binds its
listening sockets, hands the data directory to the user and drops to it
before anything else starts (supervisor/privileges.py).

Exit status: 0 after a requested stop; 1 if the root supervisor gave up
(a child exceeded its restart intensity) or start-up failed (the reason is
the last log line).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys

import gevent
import gevent.event
import pykka
from google.protobuf.message import DecodeError

from estafeta.actors.limits import CounterTable
from estafeta.actors.listener import ListenError, open_listening_socket
from estafeta.actors.queue import QueueGauge
from estafeta.actors.tls import CertStore, cert_store_for
from estafeta.proto import config_pb2, supervision_pb2
from estafeta.store.blocking import configure_threadpool
from estafeta.store.disk_client import DiskChannel
from estafeta.store.queue import QueueStore
from estafeta.supervisor import chaos, metrics, privileges, registry
from estafeta.supervisor import processes as serving_processes
from estafeta.supervisor.app import Paths, build_tree
from estafeta.supervisor.config import listener_specs, parse_listen_address, process_count
from estafeta.supervisor.listeners import how_to_try
from estafeta.supervisor.log import setup_logging
from estafeta.supervisor.osproc import die_with_parent
from estafeta.supervisor.processes import signal_all
from estafeta.supervisor.reload import ConfigReload, Reloader, ask_reload
from estafeta.supervisor.tree import Supervisor
from estafeta.tracing.setup import setup_tracing

log = logging.getLogger("estafeta.daemon")

#: Hub threadpool size: the span store's writes, file reads at start-up and
#: on restarts (item loads); durable writes go to the disk worker process.
THREADPOOL_SIZE = 4


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
    for spec in listener_specs(cfg):
        try:
            open_listening_socket(spec.address).close()
        except ListenError as e:
            raise StartupError(str(e)) from None
    if cfg.http_address:
        try:
            open_listening_socket(parse_listen_address(cfg.http_address)).close()
        except ListenError as e:
            raise StartupError(f"http_address: {e}") from None
    try:
        store.recover()
    except OSError as e:
        raise StartupError(f"cannot recover the queue in {store.queue_dir}: {e}") from None


#: Python's cyclic garbage collector, for a serving process: a collection
#: of the youngest generation every GC_THRESHOLD[0] container allocations
#: (CPython's default: 700), of the older ones every GC_THRESHOLD[1] and
#: [2] younger collections (default 10 and 10).
GC_THRESHOLD = (10_000, 20, 20)


def tune_gc() -> None:
    """Make the cyclic GC cheaper for a serving process: what exists at
    start-up (modules, protobuf descriptors, the OTel SDK, the config) is
    moved out of the collector's view (`gc.freeze()`: it lives as long as
    the process, and every full collection would walk it again), and the
    young generation is collected every 10,000 container allocations
    instead of 700. A message's many short-lived containers (protobuf
    messages, spans, dicts, frames) are freed by reference counting at
    once; the collector only has to find cycles, which are rare here.
    Measured (tmpfs, `quick.sh` 3000 x 1 KiB c=10, 7 pairs alternating
    with and without): CPU per message over all processes lower with it
    in 6 pairs (by 0.02-0.21 ms of 1.7-2.0), higher in one noisy pair.
    Memory: at most GC_THRESHOLD[0] containers of cyclic garbage wait for
    a collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _become_user(cfg: config_pb2.Config, paths: Paths, processes_n: int) -> None:
    """Config.user: as root, bind the listeners, hand the data directory
    over and drop privileges (supervisor/privileges.py); not root: only a
    warning unless already that user. Raises StartupError."""
    try:
        who = privileges.identity(cfg)
    except privileges.PrivilegeError as e:
        raise StartupError(str(e)) from None
    if who is None:
        return
    if os.geteuid() != 0:
        if os.geteuid() != who.uid:
            log.warning("not root: running as uid=%d, not as user=%s", os.geteuid(), who.name)
        return
    try:
        serving_processes.CHILD_SOCKETS = privileges.prebind(cfg, processes_n)
        changed = privileges.hand_over(paths.data_dir, who)
        privileges.drop(who)
    except (ListenError, privileges.PrivilegeError) as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        raise StartupError(f"cannot hand {paths.data_dir} to {who.name}: {e}") from None
    if changed:
        log.info("data directory handed to user=%s entries=%d", who.name, changed)


def _certificates(cfg: config_pb2.Config, paths: Paths) -> CertStore | None:
    """The TLS certificates (Config.tls): cert_dir's, else a self-signed
    one made under <data_dir>/tls/selfsigned/ (process 0 makes it before
    the others start; they find it). None when there is no TLS at all.
    Raises StartupError when a SUBMISSIONS listener would have none."""
    tls = cfg.tls
    if not tls.cert_dir and not tls.self_signed:
        certs = None
    else:
        try:
            certs = cert_store_for(tls.cert_dir, tls.self_signed, paths.data_dir, cfg.hostname)
        except OSError as e:
            raise StartupError(f"cannot make a self-signed certificate in {paths.data_dir}/tls: {e}") from None
    for spec in listener_specs(cfg):
        if spec.mode == config_pb2.Listener.SUBMISSIONS and (certs is None or certs.context is None):
            raise StartupError(
                f"listener {spec.text} (SUBMISSIONS, TLS from the first byte) needs a certificate: "
                "tls { cert_dir } with <name>/fullchain.pem and privkey.pem, or tls { self_signed: true }"
            )
    return certs


def _reloader(cfg: config_pb2.Config, config_path: str | None) -> Reloader:
    """The SIGHUP steps of this serving process (supervisor/reload.py)."""
    reloader = Reloader()
    reloader.register("directory", ask_reload("directory"))
    reloader.register("certificates", ask_reload("certificates"))
    if config_path:  # every process reads the file itself (process 0 passes its path on)
        step = ConfigReload(os.path.abspath(config_path), cfg)
        step.on_config(lambda new: setup_logging(new.log_level, _log_format(new)))
        reloader.register("config", step)
    return reloader


def _log_format(cfg: config_pb2.Config) -> str:
    return "json" if cfg.log_format == config_pb2.JSON else "text"


#: This process's SIGHUP steps, for the application to add its own
#: (RELOADER.register(name, step)); set by serve().
RELOADER: Reloader | None = None


def serve(
    cfg: config_pb2.Config,
    process: int = 0,
    gauge_fd: int | None = None,
    config_path: str | None = None,
    limits_fd: int | None = None,
) -> int:
    """Run the daemon until signalled; returns the exit status.

    `process`: which serving process this is (Config.processes). 0 is the
    daemon itself: it checks the data directory and cleans the queue
    before anything starts, binds and drops privileges (Config.user),
    makes the shared memory of the queue gauge and of the limits
    (`gauge_fd`, `limits_fd` in the others), and its tree starts processes
    1..N-1 (supervisor/processes.py), which run this with their number.
    `config_path`: the file to read again on SIGHUP (every process: process
    0 passes it to the others).
    """
    global RELOADER
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reload handler is in place
    setup_logging(cfg.log_level, _log_format(cfg))
    tune_gc()
    processes = process_count(cfg)
    paths = paths_for(cfg)
    cfg.data_dir = paths.data_dir  # absolute, for the other serving processes too
    disk = DiskChannel()
    store = QueueStore(paths.queue_dir, disk=disk, process=process)
    try:
        if process == 0:
            gauge_fd, limits_fd = _start_daemon(cfg, paths, store, processes)
        certs = _certificates(cfg, paths)
        _setup_metrics(paths, process)
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 1
    configure_threadpool(THREADPOOL_SIZE)
    chaos.configure(cfg.chaos if cfg.chaos.crash else None)
    tracing = setup_tracing(cfg.tracing, paths.traces_db, hostname=cfg.hostname)
    flusher = metrics.start_flusher()
    stop = gevent.event.Event()
    status = {"code": 0}
    reloader = RELOADER = _reloader(cfg, config_path)
    config_step = reloader.step("config")
    if process == 0 and config_path:
        serving_processes.CONFIG_PATH = os.path.abspath(config_path)
    _handle_signals(process, stop, reloader)

    def on_escalate(reason: str) -> None:
        log.error("root supervisor gave up: %s", reason)
        status["code"] = 1
        stop.set()

    tree = build_tree(
        cfg,
        paths,
        store,
        tracing.tracer,
        disk,
        process=process,
        processes=processes,
        gauge_fd=gauge_fd,
        limits_fd=limits_fd,
        certs=certs,
        on_config=config_step.on_config if isinstance(config_step, ConfigReload) else None,
    )
    root = registry.register("root", Supervisor.start(None, tree, on_escalate=on_escalate))
    root.ask(supervision_pb2.WhichChildren())  # answered once every child has started
    log.info(
        "started hostname=%s data_dir=%s pid=%d process=%d/%d",
        cfg.hostname,
        paths.data_dir,
        os.getpid(),
        process,
        processes,
    )
    if process == 0:
        for line in how_to_try(cfg):
            log.info("%s", line)
    stop.wait()
    if not _stop_tree(root, cfg.shutdown_timeout_seconds + 30):
        status["code"] = status["code"] or 1
    tracing.shutdown(timeout=10)
    flusher.kill(block=False)
    metrics.flush()
    registry.clear()
    log.info("stopped process=%d/%d", process, processes)
    return status["code"]


def _stop_tree(root: pykka.ActorRef, timeout: float) -> bool:
    """Stop the root supervisor (children in reverse start order), within
    `timeout` seconds; False (logged) when a child would not stop."""
    try:
        if root.is_alive():
            root.stop(timeout=timeout)
    except Exception as e:  # a child that would not stop: report, still exit
        log.error("shutdown incomplete: %s", e)
        return False
    return True


def _start_daemon(
    cfg: config_pb2.Config, paths: Paths, store: QueueStore, processes: int
) -> tuple[int | None, int | None]:
    """Process 0's start: the data directory checked and the queue cleaned
    (_preflight), privileges dropped (_become_user), and with several
    serving processes the shared memory of the queue gauge and of the
    limits made; returns their memfds (None: each process counts alone).
    Raises StartupError."""
    _preflight(cfg, paths, store)
    _become_user(cfg, paths, processes)
    if processes <= 1:
        return None, None
    try:
        return QueueGauge.shared_memory(), CounterTable.shared_memory()
    except (OSError, AttributeError) as e:  # no memfd_create: each process counts alone
        log.warning("queue limits and limits against abuse apply per process (no shared memory: %s)", e)
        return None, None


def _setup_metrics(paths: Paths, process: int) -> None:
    """The Prometheus multiprocess directory, before any metric exists and
    before process 0 starts the others (they inherit
    PROMETHEUS_MULTIPROC_DIR); process 0 starts it empty. Raises
    StartupError."""
    try:
        metrics.setup(os.path.join(paths.data_dir, "metrics"), clean=process == 0)
    except OSError as e:
        raise StartupError(f"metrics directory: {e}") from None


def _handle_signals(process: int, stop: gevent.event.Event, reloader: Reloader) -> None:
    """SIGTERM (and SIGINT in process 0): the first sets `stop`, after
    process 0 has passed a SIGTERM on to the other serving processes; a
    second makes process 0 exit at once (128 + signal), the others wait
    for it. SIGHUP: reload (process 0 passes it on first)."""
    signals_seen = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            if process:
                return  # the daemon decides; if it exits now, so do we (osproc)
            log.warning("second signal %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("stopping on %s: no new connections, draining sessions", signal.Signals(signum).name)
        signal_all(signal.SIGTERM)  # the other serving processes drain meanwhile
        stop.set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", ",".join(reloader.names))
        if process == 0:
            signal_all(signal.SIGHUP)  # every serving process reloads its own tables
        reloader.trigger()

    gevent.signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    gevent.signal_handler(signal.SIGHUP, on_hup)
    if process == 0:
        gevent.signal_handler(signal.SIGINT, on_signal, signal.SIGINT)


def serve_child(
    number: str,
    gauge_fd: int | None = None,
    listen_fds: str | None = None,
    limits_fd: int | None = None,
    config_path: str | None = None,
) -> int:
    """`estafeta serve --process I/N/PID`: serving process I, started by the
    daemon (supervisor/processes.py) with its Config on stdin (binary
    protobuf), and with `listen_fds` the sockets the daemon bound for it
    before dropping privileges; `config_path`: the daemon's config file, read
    again on SIGHUP. Dies with the daemon; ignores SIGINT (the daemon
    forwards a stop as SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # serve() installs the reload handler
    try:
        index, _count, parent = (int(x) for x in number.split("/"))
    except ValueError as e:
        print(f"estafeta: bad --process {number!r} ({e})", file=sys.stderr)
        return 2
    # The daemon's pid comes from the daemon: if it died while we started,
    # getppid() is already someone else's and we must not serve.
    die_with_parent(parent)
    try:
        cfg = config_pb2.Config.FromString(sys.stdin.buffer.read())
    except (ValueError, DecodeError) as e:
        print(f"estafeta: bad --process start ({e})", file=sys.stderr)
        return 2
    if listen_fds:
        privileges.adopt(listen_fds)
    return serve(cfg, process=index, gauge_fd=gauge_fd, limits_fd=limits_fd, config_path=config_path)
