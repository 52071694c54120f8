"""SmtpCourier actor: delivers a queued message over SMTP (to a domain's MX
hosts, or a smarthost) or LMTP, one transaction for all the recipients of
one Deliver.

Where to connect:
- route SMTP by MX: actors/couriers/mx.py plans the hosts (RFC 5321 §5.1:
  MX by preference, implicit MX, null MX 556 5.1.10, NXDOMAIN 5.1.2,
  SERVFAIL 4.4.3) at Config.remote_smtp_port;
- route SMTP through a smarthost transport: its "host:port", the host's
  A/AAAA (not its MX), STARTTLS required if the transport says so, AUTH
  with its credentials;
- route LMTP: the transport's "host:port" or Unix socket (RFC 2033).

Every address of every host is tried in order (actors/couriers/
smtp_client_io.py `deliver`, one attempt per address) until one reaches
a verdict for the recipients; a connection failure, a refused greeting or
a lost connection moves on to the next (AttemptResult.try_next). The
replies decide per recipient: 2xx delivered, 5xx failed, 4xx retried
later; recipients left undecided after the last address fail temporarily
with the last error (451 4.4.1 when no host answered at all).

At least once: just before the final dot the courier notes the
transaction in the in-flight journal (store/inflight.py); if the
connection then breaks before the reply (AttemptResult.unknown_after_dot),
the recipients stay pending and a retry may deliver them twice, which is
logged ("possible duplicate") — as is a retry after this process was
killed between the dot and the recording of its outcome.

Tracing: a `courier.smtp` (or `courier.lmtp`) span under the attempt, with
the destination and the plan; the DNS lookups (`dns.mx`, `dns.a`, ...) and
each connection (`smtp.connect` with its commands and replies,
`smtp.starttls`) are its children.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors.couriers import mx, router
from estafeta.actors.couriers.smtp_attempt import AttemptResult, ClientOptions, Timeouts, Transaction, peer_name
from estafeta.actors.couriers.smtp_cache import ConnectionCache
from estafeta.actors.couriers.smtp_client_io import deliver
from estafeta.actors.dns import DnsView
from estafeta.actors.smtp.client import Credentials, TlsPolicy
from estafeta.actors.smtp.replies import Reply
from estafeta.actors.smtp.transaction import Envelope
from estafeta.actors.smtp.transaction import Recipient as TxRecipient
from estafeta.proto import common_pb2, config_pb2, messages_pb2
from estafeta.store.inflight import InFlightJournal
from estafeta.store.queue import QueueStore
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import parse_listen_address
from estafeta.supervisor.log import kv
from estafeta.tracing.propagation import extract

log = logging.getLogger("estafeta.courier")

DELIVERED = messages_pb2.OUTCOME_DELIVERED
TEMPORARY = messages_pb2.OUTCOME_TEMPORARY_FAILURE
PERMANENT = messages_pb2.OUTCOME_PERMANENT_FAILURE
NO_ANSWER = Reply(451, "4.4.1", "No answer from any host of the destination")


@dataclass
class SmtpEnv:
    """What the SMTP and LMTP couriers of a serving process share.

    dns: the DnsResolver's view; routes: the transports; mx_options: the
    client options for MX delivery (our EHLO name, timeouts, opportunistic
    TLS, trust anchors); remote_port: Config.remote_smtp_port; our_names:
    this server's host names (MX loop detection); store: for the body
    file's path; journal: the in-flight journal; transport_options: the
    client options of each smarthost/LMTP transport, by name;
    connections: open connections kept between deliveries (smtp_cache.py)."""

    dns: DnsView
    routes: router.RouteTable
    mx_options: ClientOptions
    remote_port: int
    our_names: tuple[str, ...]
    store: QueueStore
    journal: InFlightJournal | None
    tracer: trace.Tracer
    transport_options: dict[str, ClientOptions] = field(default_factory=dict)
    connections: ConnectionCache = field(default_factory=ConnectionCache)
    #: transport name -> its targets when they need no DNS (an IP address,
    #: a Unix socket), found once.
    fixed_targets: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)


def client_timeouts(t: config_pb2.ClientTimeouts) -> Timeouts:
    """Config.outbound.timeouts as the client driver's Timeouts (seconds;
    EHLO's stands for STARTTLS and AUTH too)."""
    return Timeouts(
        connect=t.connect_seconds,
        greeting=t.greeting_seconds,
        ehlo=t.ehlo_seconds,
        starttls=t.ehlo_seconds,
        auth=t.ehlo_seconds,
        mail=t.mail_seconds,
        rcpt=t.rcpt_seconds,
        data=t.data_seconds,
        data_block=t.data_block_seconds,
        final_dot=t.data_done_seconds,
    )


def mx_options(cfg: config_pb2.Config) -> ClientOptions:
    """The client options of delivery to MX hosts: our host name in EHLO,
    Config.outbound's timeouts and trust anchors, opportunistic STARTTLS."""
    o = cfg.outbound
    return ClientOptions(
        helo_name=cfg.hostname,
        timeouts=client_timeouts(o.timeouts),
        tls=TlsPolicy.OPPORTUNISTIC,
        ca_file=o.ca_file or None,
    )


def transport_options(cfg: config_pb2.Config, base: ClientOptions) -> dict[str, ClientOptions]:
    """ClientOptions per smarthost and LMTP transport of `cfg`. A smarthost
    with auth_username reads its password file now (ValueError naming the
    file if it cannot: the configuration is wrong)."""
    out: dict[str, ClientOptions] = {}
    for t in cfg.transport:
        kind = t.WhichOneof("kind")
        if kind == "smarthost":
            s = t.smarthost
            creds = None
            if s.auth_username:
                try:
                    with open(s.auth_password_file, encoding="utf-8") as f:
                        password = f.readline().rstrip("\r\n")
                except OSError as e:
                    raise ValueError(f"transport {t.name}: cannot read {s.auth_password_file}: {e.strerror}") from None
                creds = Credentials(s.auth_username, password)
            tls = TlsPolicy.REQUIRED if s.require_tls or creds else TlsPolicy.OPPORTUNISTIC
            out[t.name] = ClientOptions(
                helo_name=base.helo_name, timeouts=base.timeouts, tls=tls, credentials=creds, ca_file=base.ca_file
            )
        elif kind == "lmtp":
            out[t.name] = ClientOptions(
                helo_name=base.helo_name, timeouts=base.timeouts, tls=TlsPolicy.NONE, lmtp=True, ca_file=base.ca_file
            )
    return out


def _to_proto(reply: Reply) -> common_pb2.Reply:
    return common_pb2.Reply(code=reply.code, enhanced=reply.enhanced, text=reply.text)


class SmtpCourier(Actor):
    """Delivers Deliver requests of route SMTP and LMTP (registered
    "courier.smtp.<n>" / "courier.lmtp.<n>"); see the module docstring."""

    def __init__(self, link: Link | None, env: SmtpEnv, kind: str = "smtp"):
        super().__init__(link)
        self._env = env
        self._kind = kind

    def on_receive(self, message):
        if isinstance(message, messages_pb2.Deliver):
            return self._deliver(message)
        raise TypeError(f"SmtpCourier cannot handle {type(message).__name__}")

    # ------------------------------------------------------------ the plan
    def _targets(self, m: messages_pb2.Deliver, span) -> tuple[list[tuple[str, str, int]], Reply | None, ClientOptions]:
        """(host name, address, port) to try in order, or the Reply that
        fails every recipient now; and the client options of the route."""
        env, route = self._env, m.route
        ctx = trace.set_span_in_context(span)
        if not route.transport:  # SMTP by MX
            plan = mx.plan(route.destination, env.dns, context=ctx, our_names=env.our_names)
            span.set_attribute("estafeta.mx.hosts", [h.name for h in plan.hosts])
            if plan.error is not None:
                return [], plan.error, env.mx_options
            return [(h.name, a, env.remote_port) for h, a in plan.attempts()], None, env.mx_options
        options = env.transport_options[route.transport]
        fixed = env.fixed_targets.get(route.transport)
        if fixed is not None:  # a Unix socket or an IP address: nothing to look up
            return fixed, None, options
        t = env.routes.transport(route.transport)
        address = t.smarthost.address if t.WhichOneof("kind") == "smarthost" else t.lmtp.address
        if address.startswith("/"):
            fixed = env.fixed_targets[route.transport] = [("localhost", address, 0)]
            return fixed, None, options
        listen = parse_listen_address(address)
        plan = mx.plan_host(listen.host, env.dns, context=ctx)
        if plan.error is not None:
            return [], plan.error, options
        targets = [(h.name, a, listen.port) for h, a in plan.attempts()]
        if _is_ip(listen.host):  # not a name: the same next time
            env.fixed_targets[route.transport] = targets
        return targets, None, options

    # ------------------------------------------------------------ delivery
    def _deliver(self, m: messages_pb2.Deliver) -> messages_pb2.DeliveryResult:
        env = self._env
        with env.tracer.start_span(
            f"courier.{self._kind}",
            context=extract(m.trace),
            kind=SpanKind.CLIENT,
            attributes={
                "estafeta.queue_id": m.queue_id,
                "estafeta.destination": m.route.destination,
                "estafeta.recipient_count": len(m.recipients),
            },
        ) as span:
            targets, failure, options = self._targets(m, span)
            if failure is not None:
                span.set_status(Status(StatusCode.ERROR, str(failure)))
                outcome = PERMANENT if failure.code >= 500 else TEMPORARY
                return self._all(m, outcome, failure, "")
            return self._try_hosts(m, targets, options, span)

    def _try_hosts(self, m, targets, options: ClientOptions, span) -> messages_pb2.DeliveryResult:
        env = self._env
        results: dict[int, messages_pb2.RecipientResult] = {}
        last: Reply = NO_ANSWER
        body_path = env.store.body_path(m.queue_id)
        for host, address, port in targets:
            undecided = [r for r in m.recipients if r.index not in results]
            transaction = Transaction(self._envelope(m, undecided), body_path)
            hook = self._dot_hook(m.queue_id, [r.index for r in undecided])
            attempt = deliver(
                address, port, host, transaction, options, span, env.tracer, before_dot=hook, cache=env.connections
            )
            last = self._collect(m, undecided, attempt, results) or last
            if attempt.unknown_after_dot:
                log.warning(
                    "possible duplicate id=%s via=%s reason=%s",
                    m.queue_id,
                    peer_name(host, address, port),
                    kv("connection lost after the final dot: the next attempt may deliver twice"),
                )
                span.add_event("smtp.unknown_after_dot", {"server.address": host, "network.peer.address": address})
            if len(results) == len(m.recipients) or not attempt.try_next:
                break
        out = messages_pb2.DeliveryResult()
        for r in m.recipients:
            out.results.append(
                results.get(r.index)
                or messages_pb2.RecipientResult(index=r.index, outcome=TEMPORARY, reply=_to_proto(last))
            )
        if any(r.outcome != DELIVERED for r in out.results):
            span.set_status(Status(StatusCode.ERROR, str(last)))
        return out

    def _dot_hook(self, queue_id: str, indices: list[int]):
        """before_dot for deliver(): the accepted recipients (positions in
        this transaction's envelope) go into the in-flight journal as the
        item's recipient indices."""
        journal = self._env.journal
        if journal is None:
            return None
        return lambda accepted: journal.dot_sent(queue_id, [indices[i] for i in accepted])

    @staticmethod
    def _envelope(m: messages_pb2.Deliver, rcpts) -> Envelope:
        return Envelope(
            reverse_path=m.reverse_path,
            recipients=tuple(TxRecipient(r.address, tuple(r.notify), r.original_recipient) for r in rcpts),
            size=m.body_size,
            body=m.body_type,
            smtputf8=m.smtputf8,
            ret=m.dsn_ret,
            envid=m.dsn_envid,
        )

    def _collect(self, m, undecided, attempt: AttemptResult, results: dict) -> Reply | None:
        """Record the recipients this attempt decided; returns the reply to
        blame for the undecided ones (None if it has none)."""
        peer = peer_name(attempt.host_name, attempt.address, attempt.port)
        dsn_offered = attempt.extensions is not None and attempt.extensions.dsn
        for r, verdict in zip(undecided, attempt.recipients, strict=True):
            if verdict is None:
                continue
            reply = verdict.reply
            if reply.code < 300:
                outcome = DELIVERED
            elif reply.code >= 500:
                outcome = PERMANENT
            else:
                outcome = TEMPORARY
            results[r.index] = messages_pb2.RecipientResult(
                index=r.index,
                outcome=outcome,
                reply=_to_proto(reply),
                detail=peer,
                relayed_without_dsn=outcome == DELIVERED and not dsn_offered and "SUCCESS" in r.notify,
            )
        error = attempt.session_error
        return error.reply if error is not None else None

    @staticmethod
    def _all(m, outcome, reply: Reply, detail: str) -> messages_pb2.DeliveryResult:
        return messages_pb2.DeliveryResult(
            results=[
                messages_pb2.RecipientResult(index=r.index, outcome=outcome, reply=_to_proto(reply), detail=detail)
                for r in m.recipients
            ]
        )


def _is_ip(host: str) -> bool:
    """True for an IP address (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
