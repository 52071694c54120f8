"""The application's supervision tree: who supervises whom.

    root (one_for_one, 3 restarts / 30 s; past it the daemon exits 1)
    ├── processes (one_for_one, 5 / 30 s)   in process 0, with processes > 1
    │   └── process.I        ServingProcess: serving process I, this
    │                        same tree in a child OS process  permanent
    ├── disk                 DiskWriter: the disk worker process  permanent
    ├── dns                  DnsResolver: the caching resolver    permanent
    ├── reports              DmarcReports: DMARC evaluations -> dmarc.db  with checks  permanent
    ├── directory            Directory: users, aliases (reloaded)  permanent
    ├── certificates         CertificateWatcher: TLS certificates (polled)  with TLS  permanent
    ├── couriers (one_for_one, 1000 / 10 s)
    │   ├── courier.maildir.N  LocalCourier x local_delivery_concurrency  permanent
    │   ├── courier.smtp.N   SmtpCourier x outbound.max_connections / processes
    │   ├── courier.lmtp.N   SmtpCourier (LMTP) x outbound.lmtp_concurrency
    │   └── courier.mda.N    MdaCourier x outbound.mda_concurrency (pipe aliases, mda transports)
    ├── queue (rest_for_one, 5 / 30 s)
    │   ├── manager          QueueManager                   permanent
    │   └── items (simple_one_for_one, 10000 / 10 s)
    │       └── QueueItem x N  one per message              transient
    ├── pickup               Pickup: `estafeta sendmail`'s maildrop  process 0 only  permanent
    ├── listeners (one_for_one, 5 / 30 s)
    │   └── listener.<name> (rest_for_one, 5 / 30 s), one per listener
    │       ├── sessions (simple_one_for_one)      (supervisor/listeners.py;
    │       │   └── SmtpSession x N  one per connection      temporary   its mode's params)
    │       └── acceptor         Listener                   permanent
    ├── control              ControlServer: <data_dir>/control/<process>.sock  permanent
    └── http                 HttpServer: the web page, /metrics  process 0 only  permanent

Start order is top to bottom, shutdown the reverse: the web page and
the control socket go first, then listeners stop accepting and drain
their sessions, the pickup stops, then queue items finish their current
attempt, then couriers, then the certificates and the directory, and
last the disk worker, once nothing writes any more.

Why these intensities: a root child that fails 3 times in 30 s means the
process is unhealthy and should exit non-zero for its init system to act.
The items supervisor restarts items that fail independently of each other
(a poison item is quarantined by QueueItem itself after
quarantine_after_crashes), so its intensity only guards against a
systematic failure: every item crashing, thousands per second. The same
holds for couriers: a courier crash fails one delivery (retried by its
item), and a crash per message must not take the tree down; restart
backoff keeps a courier that fails at once on every start from spinning.

Tracing and logging are set up before the tree (every actor needs them
from its first message) and flushed after it stops.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from estafeta.actors import smtp
from estafeta.actors.auth.exchange import AuthEnv
from estafeta.actors.bounces import Bouncer
from estafeta.actors.couriers import courier_name, mda, router
from estafeta.actors.couriers import smtp as smtp_courier
from estafeta.actors.couriers.local import LocalCourier
from estafeta.actors.couriers.pool import CourierPool
from estafeta.actors.directory import Directory, DirectoryView
from estafeta.actors.disk import DiskWriter
from estafeta.actors.dns import DnsResolver, DnsView
from estafeta.actors.enqueue import Enqueuer
from estafeta.actors.http import HttpEnv, HttpServer
from estafeta.actors.item import ItemEnv, QueueItem
from estafeta.actors.limits import CounterTable, Limits
from estafeta.actors.pickup import MaildropSubmission, Pickup
from estafeta.actors.policy import RelayPolicy
from estafeta.actors.queue import QueueGauge, QueueManager
from estafeta.actors.queuecontrol import QueueControl
from estafeta.actors.session import ConnectionSlots, SessionEnv
from estafeta.actors.timeouts import IdleWatch
from estafeta.actors.tls import CertificateWatcher, CertStore
from estafeta.proto import config_pb2, messages_pb2
from estafeta.store import inflight
from estafeta.store.disk_client import DiskChannel
from estafeta.store.inflight import InFlightJournal
from estafeta.store.queue import QueueStore
from estafeta.supervisor.config import parse_listen_address
from estafeta.supervisor.control import ControlServer, QueueHandler
from estafeta.supervisor.listeners import listener_supervisors, server_params
from estafeta.supervisor.mailauth import MailAuthParts, mail_auth
from estafeta.supervisor.processes import ServingProcess
from estafeta.supervisor.specs import registered, supervisor_child
from estafeta.supervisor.tree import ChildSpec, SupervisorSpec


@dataclass
class Paths:
    """Where things live under data_dir."""

    data_dir: str
    queue_dir: str
    mail_dir: str
    traces_db: str


#: Seconds an item waits for a local courier's answer before deferring.
COURIER_TIMEOUT = 120.0
#: Seconds an item waits for an SMTP, LMTP or MDA courier (each step of
#: theirs has its own timeout, RFC 5321 §4.5.3.2; this bounds a stuck one).
REMOTE_COURIER_TIMEOUT = 3600.0


def postmaster_address(cfg: config_pb2.Config) -> str:
    """Who gets double bounces: Config.dsn.postmaster, else postmaster at
    the first local domain (RFC 5321 §4.5.1)."""
    if cfg.dsn.postmaster:
        return cfg.dsn.postmaster
    return f"postmaster@{cfg.local_domain[0].name}" if cfg.local_domain else "postmaster"


def _courier_specs(kind: int, count: int, start) -> list[ChildSpec]:
    """`count` couriers of route kind `kind`, registered by courier_name;
    `start(link)` starts one."""
    return [
        ChildSpec(
            id=courier_name(kind, i),
            start=registered(courier_name(kind, i), lambda link, _a: start(link)),
            restart="permanent",
            shutdown=10.0,
        )
        for i in range(count)
    ]


def _couriers(
    cfg: config_pb2.Config,
    paths: Paths,
    store: QueueStore,
    tracer: trace.Tracer,
    dns_view: DnsView,
    routes: router.RouteTable,
    journal: InFlightJournal,
    processes: int,
) -> tuple[SupervisorSpec, CourierPool]:
    """The couriers supervisor and the pool that hands its couriers to
    deliveries: local (Config.local_delivery_concurrency), SMTP (the
    process's share of Config.outbound.max_connections), and LMTP and MDA
    when a transport of theirs is configured, MDA (pipe aliases, mda
    transports)."""
    o = cfg.outbound
    kinds = {t.WhichOneof("kind") for t in cfg.transport}
    sizes: dict[int, int] = {
        router.MAILDIR: max(1, cfg.local_delivery_concurrency),
        router.SMTP: max(1, o.max_connections // processes),
    }
    if "lmtp" in kinds:
        sizes[router.LMTP] = max(1, o.lmtp_concurrency)
    # MDA couriers always: pipe aliases (actors/aliases.py) need them too,
    # and alias files change while the daemon runs.
    sizes[router.MDA] = max(1, o.mda_concurrency)
    base = smtp_courier.mx_options(cfg)
    smtp_env = smtp_courier.SmtpEnv(
        dns=dns_view,
        routes=routes,
        mx_options=base,
        remote_port=cfg.remote_smtp_port,
        our_names=(cfg.hostname,),
        store=store,
        journal=journal,
        tracer=tracer,
        transport_options=smtp_courier.transport_options(cfg, base),
    )
    commands = mda.commands_of(cfg)
    starts: dict[int, Callable] = {
        router.MAILDIR: lambda link: LocalCourier.start(link, paths.mail_dir, cfg.hostname, tracer, store),
        router.SMTP: lambda link: smtp_courier.SmtpCourier.start(link, smtp_env, "smtp"),
        router.LMTP: lambda link: smtp_courier.SmtpCourier.start(link, smtp_env, "lmtp"),
        router.MDA: lambda link: mda.MdaCourier.start(link, commands, store, tracer),
    }
    spec = SupervisorSpec(
        name="couriers",
        strategy="one_for_one",
        intensity=1000,
        period=10.0,
        # Courier crashes are per delivery, not a sign the courier cannot
        # start: keep restarts quick so items do not find every courier
        # backing off at once.
        backoff_max=1.0,
        children=[spec for kind, count in sizes.items() for spec in _courier_specs(kind, count, starts[kind])],
    )
    pool = CourierPool(
        sizes=sizes,
        per_destination=max(1, o.max_connections_per_destination // processes),
        timeouts={kind: COURIER_TIMEOUT if kind == router.MAILDIR else REMOTE_COURIER_TIMEOUT for kind in sizes},
    )
    return spec, pool


def build_tree(
    cfg: config_pb2.Config,
    paths: Paths,
    store: QueueStore,
    tracer: trace.Tracer,
    disk: DiskChannel | None = None,
    process: int = 0,
    processes: int = 1,
    gauge_fd: int | None = None,
    queue_handler: QueueHandler | None = None,
    limits_fd: int | None = None,
    certs: CertStore | None = None,
    on_config: Callable[[Callable[[config_pb2.Config], None]], None] | None = None,
) -> SupervisorSpec:
    """The root SupervisorSpec for this configuration. With `disk`, the
    tree starts a DiskWriter (and its worker process) first, and the
    couriers write through it; `store` should then use the same channel.

    `process` of `processes` (Config.processes): every serving process runs
    this tree, with an even share of the connection limit, its listeners
    on SO_REUSEPORT sockets, and its slot in the queue gauge shared through
    the memfd `gauge_fd`, and its region of the limits' counters shared
    through the memfd `limits_fd` (cleared here: counts of a previous life
    of this process are void); process 0, the daemon's own, also starts the
    others first (supervisor/processes.py), serves the web page and picks
    up the maildrop (`estafeta sendmail`). `certs`: the TLS certificates
    (actors/tls.py cert_store_for; None: no TLS), reloaded by a
    CertificateWatcher. `queue_handler`: what the control channel does with
    a QueueAction (supervisor/control.py); default: actors/queuecontrol.py's
    QueueControl. `on_config`: registers a hook for the running Config after
    a SIGHUP reload changed a live field (supervisor/reload.py LIVE_FIELDS):
    the limits and every listener's session parameters take them."""
    n = max(1, processes)
    dns_view = DnsView()
    journal = InFlightJournal(inflight.journal_path(paths.data_dir, process))
    routes = router.RouteTable(cfg)
    couriers, pool = _couriers(cfg, paths, store, tracer, dns_view, routes, journal, n)
    gauge = QueueGauge(cfg.max_queue_items, cfg.max_queue_bytes, slot=process, memfd=gauge_fd)
    directory = DirectoryView()
    auth = mail_auth(cfg, paths.data_dir, dns_view, tracer, process)
    enqueuer = Enqueuer(store, tracer, auth.outbound)
    item_env = ItemEnv(
        store=store,
        tracer=tracer,
        retry=cfg.retry,
        quarantine_after=cfg.quarantine_after_crashes,
        couriers=pool,
        routes=routes,
        bouncer=Bouncer(enqueuer, directory, cfg.hostname, cfg.dsn, postmaster_address(cfg)),
        journal=journal,
    )
    if queue_handler is None:  # the postmaster's flush/hold/release/delete, through the control channel
        queue_handler = QueueControl(store, item_env.bouncer, tracer, process, n).handle
    limits = _limits(cfg, process, n, limits_fd, on_config)
    session_env = _session_env(cfg, certs, enqueuer, tracer, gauge, directory, auth, limits, n)
    listeners = listener_supervisors(cfg, session_env, certs, reuse_port=n > 1, on_config=on_config)
    return SupervisorSpec(
        name="root",
        strategy="one_for_one",
        intensity=3,
        period=30.0,
        children=[
            *([supervisor_child(serving_processes(cfg, n, gauge_fd, limits_fd))] if process == 0 and n > 1 else []),
            *_disk(disk),
            ChildSpec(
                id="dns",
                start=registered("dns", lambda link, _a: DnsResolver.start(link, cfg, dns_view, tracer)),
                restart="permanent",
                shutdown=5.0,
            ),
            *auth.children,
            ChildSpec(
                id="directory",
                start=registered("directory", lambda link, _a: Directory.start(link, cfg, directory)),
                restart="permanent",
                shutdown=5.0,
            ),
            *_certificates(cfg, certs),
            supervisor_child(couriers),
            supervisor_child(_queue(cfg, store, gauge, item_env, n)),
            *(_pickup(cfg, paths, directory, enqueuer, gauge, tracer) if process == 0 else []),
            supervisor_child(
                SupervisorSpec(name="listeners", strategy="one_for_one", intensity=5, period=30.0, children=listeners)
            ),
            *monitoring(cfg, paths, process, n, gauge, disk, queue_handler),
        ],
    )


def _session_env(
    cfg: config_pb2.Config,
    certs: CertStore | None,
    enqueuer: Enqueuer,
    tracer: trace.Tracer,
    gauge: QueueGauge,
    directory: DirectoryView,
    auth: MailAuthParts,
    limits: Limits,
    n: int,
) -> SessionEnv:
    """What every SMTP session of this process shares: its share of
    Config.max_connections (of `n` serving processes), the relay policy,
    the limits, AUTH and the checks; each listener replaces the SMTP
    parameters with its mode's (supervisor/listeners.py)."""
    return SessionEnv(
        hostname=cfg.hostname,
        params=server_params(cfg, smtp.Mode.SMTP, certs),  # each listener has its mode's
        idle_timeout=cfg.idle_timeout_seconds,
        data_timeout=cfg.data_timeout_seconds,
        enqueuer=enqueuer,
        tracer=tracer,
        slots=ConnectionSlots(max(1, cfg.max_connections // n)),
        # Ticks of at most a quarter of the shorter timeout (1 s at most).
        watch=IdleWatch(tick=max(0.01, min(1.0, cfg.idle_timeout_seconds / 4, cfg.data_timeout_seconds / 4))),
        gauge=gauge,
        directory=directory,
        policy=RelayPolicy(cfg.relay_network, srs=auth.outbound.srs_recipient if auth.outbound.srs else None),
        limits=limits,
        certs=certs,
        auth=AuthEnv(directory.credentials, limits),
        checks=auth.checks,
    )


def _queue(cfg: config_pb2.Config, store: QueueStore, gauge: QueueGauge, item_env: ItemEnv, n: int) -> SupervisorSpec:
    """The queue supervisor: its manager, then the items' supervisor (a
    QueueItem per message, started with QueueItemArgs)."""
    return SupervisorSpec(
        name="queue",
        strategy="rest_for_one",
        intensity=5,
        period=30.0,
        children=[
            ChildSpec(
                id="manager",
                start=registered(
                    "queue",
                    lambda link, _a: QueueManager.start(link, store, gauge, n, cfg.queue_sweep_seconds),
                ),
                restart="permanent",
                shutdown=10.0,
            ),
            supervisor_child(
                SupervisorSpec(
                    name="items",
                    strategy="simple_one_for_one",
                    intensity=10000,
                    period=10.0,
                    args_type=messages_pb2.QueueItemArgs,
                    children=[
                        ChildSpec(
                            id="item",
                            start=lambda link, args: QueueItem.start(link, item_env, args),
                            restart="transient",
                            shutdown=10.0,
                        )
                    ],
                ),
                register_as="queue.items",
            ),
        ],
    )


def _limits(
    cfg: config_pb2.Config,
    process: int,
    n: int,
    limits_fd: int | None,
    on_config: Callable[[Callable[[config_pb2.Config], None]], None] | None,
) -> Limits:
    """This process's Limits over its region of the shared counters
    (cleared: counts of a previous life of this process are void), which
    take a SIGHUP reload's new Config.limits."""
    table = CounterTable(regions=n, region=process, memfd=limits_fd)
    table.clear_region()
    limits = Limits(cfg.limits, table)
    if on_config is not None:  # a SIGHUP reload's new limits (supervisor/reload.py)
        on_config(lambda new: limits.configure(new.limits))
    return limits


def _disk(disk: DiskChannel | None) -> list[ChildSpec]:
    """The DiskWriter "disk" (its worker process), when durable writes go
    through one."""
    if disk is None:
        return []
    return [
        ChildSpec(
            id="disk",
            start=registered("disk", lambda link, _a: DiskWriter.start(link, disk)),
            restart="permanent",
            shutdown=30.0,
        )
    ]


def _certificates(cfg: config_pb2.Config, certs: CertStore | None) -> list[ChildSpec]:
    """The CertificateWatcher "certificates" (before the listeners, which
    serve what it loads), when there is TLS at all."""
    if certs is None:
        return []
    return [
        ChildSpec(
            id="certificates",
            start=registered(
                "certificates", lambda link, _a: CertificateWatcher.start(link, certs, cfg.tls.reload_poll_seconds)
            ),
            restart="permanent",
            shutdown=5.0,
        )
    ]


def _pickup(
    cfg: config_pb2.Config,
    paths: Paths,
    directory: DirectoryView,
    enqueuer: Enqueuer,
    gauge: QueueGauge,
    tracer: trace.Tracer,
) -> list[ChildSpec]:
    """The Pickup of `estafeta sendmail`'s maildrop (serving process 0
    only: two would race for the files), after the queue it feeds."""
    submission = MaildropSubmission(directory, enqueuer, gauge, tracer, cfg.hostname)
    return [
        ChildSpec(
            id="pickup",
            start=registered(
                "pickup",
                lambda link, _a: Pickup.start(link, paths.data_dir, submission.enqueue, cfg.maildrop_poll_seconds),
            ),
            restart="permanent",
            shutdown=5.0,
        )
    ]


def monitoring(
    cfg: config_pb2.Config,
    paths: Paths,
    process: int,
    n: int,
    gauge: QueueGauge,
    disk: DiskChannel | None,
    queue_handler: QueueHandler | None,
) -> list[ChildSpec]:
    """The root's last children: the control socket (every serving
    process) and the web page (process 0, when http_address is set).
    Last: they read what the others publish, and stop first."""
    children = [
        ChildSpec(
            id="control",
            start=registered(
                "control", lambda link, _a: ControlServer.start(link, paths.data_dir, process, queue_handler)
            ),
            restart="permanent",
            shutdown=5.0,
        )
    ]
    if process == 0 and cfg.http_address:
        env = HttpEnv(
            address=parse_listen_address(cfg.http_address),
            data_dir=paths.data_dir,
            queue_dir=paths.queue_dir,
            traces_db=paths.traces_db,
            token_path=token_path(cfg, paths.data_dir),
            processes=n,
            gauge=gauge,
            disk=disk,
        )
        children.append(
            ChildSpec(
                id="http",
                start=registered("http", lambda link, _a: HttpServer.start(link, env)),
                restart="permanent",
                shutdown=5.0,
            )
        )
    return children


def token_path(cfg: config_pb2.Config, data_dir: str) -> str:
    """Config.http_token_file, relative to data_dir unless absolute."""
    return os.path.join(data_dir, cfg.http_token_file or "http.token")


def serving_processes(
    cfg: config_pb2.Config, n: int, gauge_fd: int | None, limits_fd: int | None = None
) -> SupervisorSpec:
    """The supervisor of serving processes 1..n-1 (one_for_one: each
    restarts alone, with backoff; 5 restarts in 30 s fail it to root).
    Each child gets shutdown_timeout_seconds to drain, plus a margin."""
    stop = cfg.shutdown_timeout_seconds + 15.0
    return SupervisorSpec(
        name="processes",
        strategy="one_for_one",
        intensity=5,
        period=30.0,
        children=[
            ChildSpec(
                id=f"process.{i}",
                start=lambda link, _a, i=i: ServingProcess.start(link, cfg, i, n, stop, gauge_fd, limits_fd),
                restart="permanent",
                shutdown=stop + 5.0,
            )
            for i in range(1, n)
        ],
    )
