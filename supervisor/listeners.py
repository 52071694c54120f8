"""The listeners part of the application tree (supervisor/app.py): one
listener supervisor per listening address (supervisor/config.py
listener_specs: every smtp_address is an SMTP-mode listener, every
`listener` entry has its mode), each with its own ServerParams.

    listeners (one_for_one, 5 / 30 s)
    └── listener.<name> (rest_for_one, 5 / 30 s)     "smtp", "submission", ...
        ├── sessions (simple_one_for_one)  "sessions.<name>"
        │   └── SmtpSession x N                       temporary
        └── acceptor  Listener                        permanent

What a mode changes (actors/smtp/params.py Mode): SMTP offers STARTTLS
when a certificate exists and no AUTH; SUBMISSION offers STARTTLS and
AUTH (over TLS, or from loopback) and needs AUTH before MAIL; SUBMISSIONS
is TLS from the first byte (RFC 8314), then as SUBMISSION. The sessions of
every listener share the process's tables, limits and queue (SessionEnv).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from estafeta.actors import smtp
from estafeta.actors.listener import Listener
from estafeta.actors.policy import RelayPolicy
from estafeta.actors.session import SessionEnv, SmtpSession
from estafeta.actors.tls import CertStore
from estafeta.proto import config_pb2, messages_pb2
from estafeta.supervisor.config import ListenerSpec, listener_specs
from estafeta.supervisor.specs import supervisor_child
from estafeta.supervisor.tree import ChildSpec, SupervisorSpec

log = logging.getLogger("estafeta.daemon")


def server_params(cfg: config_pb2.Config, mode: smtp.Mode, certs: CertStore | None) -> smtp.ServerParams:
    """The protocol parameters of a listener of `mode`: STARTTLS offered
    when a certificate is loaded, the SASL mechanisms of Config.auth on
    submission listeners."""
    return smtp.ServerParams(
        hostname=cfg.hostname,
        max_message_size=cfg.max_data_size_bytes,
        max_recipients=cfg.max_recipients,
        max_errors=cfg.max_errors,
        mode=mode,
        starttls=certs is not None and certs.context is not None,
        auth_mechanisms=tuple(m.upper() for m in cfg.auth.mechanism) if mode is not smtp.Mode.SMTP else (),
    )


def listener_supervisors(
    cfg: config_pb2.Config,
    env: SessionEnv,
    certs: CertStore | None,
    reuse_port: bool,
    on_config: Callable[[Callable[[config_pb2.Config], None]], None] | None = None,
) -> list[ChildSpec]:
    """One listener supervisor per listener_specs(cfg) entry; `env`: the
    sessions' SessionEnv, whose params each listener replaces with its
    mode's; `reuse_port`: SO_REUSEPORT (several serving processes);
    `on_config`: registers a hook called with the running Config after a
    SIGHUP reload changed a live field (supervisor/reload.py), which each
    listener uses to take the new values into its SessionEnv."""
    return [_listener(cfg, spec, env, certs, reuse_port, on_config) for spec in listener_specs(cfg)]


def apply_config(env: SessionEnv, cfg: config_pb2.Config, mode: smtp.Mode, certs: CertStore | None) -> None:
    """Take a reloaded Config's live fields (reload.LIVE_FIELDS) into a
    listener's SessionEnv: sessions started from now on, and the open ones
    at their next read of these, see the new protocol limits, timeouts and
    relay networks. Assignments on the hub's thread: no lock needed."""
    env.params = server_params(cfg, mode, certs)
    env.idle_timeout = cfg.idle_timeout_seconds
    env.data_timeout = cfg.data_timeout_seconds
    env.policy = RelayPolicy(cfg.relay_network, srs=env.policy.srs)


def _listener(
    cfg: config_pb2.Config,
    spec: ListenerSpec,
    base: SessionEnv,
    certs: CertStore | None,
    reuse_port: bool,
    on_config: Callable[[Callable[[config_pb2.Config], None]], None] | None,
) -> ChildSpec:
    mode = smtp.Mode(spec.mode)
    env = dataclasses.replace(base, params=server_params(cfg, mode, certs))
    if on_config is not None:
        on_config(lambda new: apply_config(env, new, mode, certs))
    name = spec.name

    def start_session(link, args: messages_pb2.StartSession):
        ref = SmtpSession.start(link, env, args)
        ref.tell(args)
        return ref

    return supervisor_child(
        SupervisorSpec(
            name=f"listener.{name}",
            strategy="rest_for_one",
            intensity=5,
            period=30.0,
            children=[
                supervisor_child(
                    SupervisorSpec(
                        name="sessions",
                        strategy="simple_one_for_one",
                        intensity=1000,
                        period=10.0,
                        args_type=messages_pb2.StartSession,
                        children=[
                            ChildSpec(
                                id="session",
                                start=start_session,
                                restart="temporary",
                                shutdown=cfg.shutdown_timeout_seconds,
                            )
                        ],
                    ),
                    register_as=f"sessions.{name}",
                ),
                ChildSpec(
                    id="acceptor",
                    start=lambda link, _a: Listener.start(
                        link, name, spec.address, env.slots, reuse_port, mode, env.limits
                    ),
                    restart="permanent",
                    shutdown=5.0,
                ),
            ],
        )
    )


def how_to_try(cfg: config_pb2.Config) -> list[str]:
    """Log lines telling how to send through each SUBMISSION listener on
    loopback (the zero-configuration `estafeta serve` has one on
    127.0.0.1:2587): add a user, then swaks with STARTTLS and AUTH."""
    out = []
    domain = cfg.local_domain[0].name if cfg.local_domain else "localhost"
    for spec in listener_specs(cfg):
        if spec.mode == config_pb2.Listener.SUBMISSION and spec.address.host in ("127.0.0.1", "::1", "localhost"):
            out.append(
                f"submission on {spec.text}: try  estafeta user add me@{domain}  then  "
                f"swaks --server {spec.text} --tls --auth PLAIN --auth-user me@{domain} "
                f"--from me@{domain} --to me@{domain}"
            )
    return out
