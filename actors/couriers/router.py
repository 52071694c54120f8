"""The router: which route each recipient's delivery takes.

`route(recipient, table)` is a pure function of the queued recipient and
the configured routes (Config.route, Config.transport), asked at every
attempt, so a changed route applies to mail already queued (as Postfix's
trivial-rewrite does):

1. a rule for the recipient's domain (exact, after IDNA normalisation);
2. for a domain without a rule of its own, the "*" rule, if any —
   except local domains, which a "*" rule does not take away from their
   Maildirs;
3. otherwise local mailboxes (Recipient.mailbox, set at RCPT TO) go to
   their Maildirs and everything else to its domain's MX hosts.

Before any rule: a pipe alias's recipient (Recipient.pipe_command, set
when an alias "name: | command" was resolved) goes to the MDA courier,
which runs its command (route MDA, destination "pipe", no transport).

A rule names a transport: "local" (Maildir; only for recipients with a
mailbox), "mx" (the domain's MX hosts, RFC 5321 §5.1) or a configured
Config.transport (smarthost: SMTP to a fixed host; lmtp; mda).

`group(recipients, table)` puts the pending recipients of an item into
deliveries: one per route and destination (for SMTP at most
`max_recipients` each), as QueueItem sends them to the couriers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from estafeta.proto import config_pb2, messages_pb2, queue_pb2
from estafeta.supervisor.config import normalize_domain

MAILDIR = messages_pb2.Route.MAILDIR
LMTP = messages_pb2.Route.LMTP
MDA = messages_pb2.Route.MDA
SMTP = messages_pb2.Route.SMTP

#: Rule targets that are not Config.transport names.
LOCAL, MX = "local", "mx"


@dataclass(frozen=True, slots=True)
class RouteKey:
    """What the recipients of one delivery share (hashable):
    kind (Route.Kind), destination, transport name."""

    kind: int
    destination: str
    transport: str

    def to_proto(self) -> messages_pb2.Route:
        """The Route message of a Deliver request."""
        return messages_pb2.Route(kind=self.kind, destination=self.destination, transport=self.transport)  # type: ignore[arg-type]


class RouteTable:
    """The routing configuration, indexed: rules by normalised domain and
    transports by name. Built once per configuration (the QueueItems share
    it); raises ValueError for a rule naming an unknown transport (config
    checking refuses such a file first)."""

    def __init__(self, cfg: config_pb2.Config):
        self.transports: dict[str, config_pb2.Transport] = {t.name: t for t in cfg.transport}
        self.rules: dict[str, str] = {}
        self.default: str | None = None
        for rule in cfg.route:
            target = rule.transport or MX
            if target not in (LOCAL, MX) and target not in self.transports:
                raise ValueError(f"route for {rule.domain!r}: no transport named {target!r}")
            if rule.domain == "*":
                self.default = target
            else:
                self.rules[normalize_domain(rule.domain)] = target
        self.max_recipients = max(1, cfg.outbound.max_recipients_per_transaction)

    def transport(self, name: str) -> config_pb2.Transport:
        """The configured transport `name` (KeyError if none)."""
        return self.transports[name]


def recipient_domain(address: str) -> str:
    """The normalised domain of a forward-path ("" for a bare postmaster or
    an address literal's brackets kept as is)."""
    _, at, domain = address.rpartition("@")
    if not at:
        return ""
    if domain.startswith("["):
        return domain.lower()
    try:
        return normalize_domain(domain)
    except ValueError:
        return domain.lower()


#: The route of a pipe alias's recipients.
PIPE = RouteKey(MDA, "pipe", "")


def route(rcpt: queue_pb2.Recipient, table: RouteTable) -> RouteKey:
    """The route of one recipient (see the module docstring)."""
    if rcpt.pipe_command:
        return PIPE
    domain = recipient_domain(rcpt.address)
    target = table.rules.get(domain)
    if target is None:
        if rcpt.mailbox:
            return RouteKey(MAILDIR, "", "")
        target = table.default or MX
    if target == LOCAL:
        # A local route only makes sense for a recipient the Directory gave a
        # mailbox; anything else has nowhere local to go: its MX.
        return RouteKey(MAILDIR, "", "") if rcpt.mailbox else RouteKey(SMTP, domain, "")
    if target == MX:
        return RouteKey(SMTP, domain, "")
    kind = table.transport(target).WhichOneof("kind")
    if kind == "lmtp":
        return RouteKey(LMTP, target, target)
    if kind == "mda":
        return RouteKey(MDA, target, target)
    return RouteKey(SMTP, target, target)  # smarthost


def group(recipients: Iterable[tuple[int, queue_pb2.Recipient]], table: RouteTable) -> list[tuple[RouteKey, list[int]]]:
    """Deliveries for the given (index, recipient) pairs: one per route and
    destination — and reverse-path: a recipient an alias forwards off-site
    has its own (SRS, Recipient.reverse_path) —, recipients in index order;
    an SMTP delivery holds at most table.max_recipients (RFC 5321
    §4.5.3.1.8: a server may take as few as 100; Postfix sends 50), more
    make further deliveries."""
    by_key: dict[tuple[RouteKey, str], list[int]] = {}
    for index, rcpt in recipients:
        by_key.setdefault((route(rcpt, table), rcpt.reverse_path), []).append(index)
    out: list[tuple[RouteKey, list[int]]] = []
    for (key, _), indices in by_key.items():
        step = table.max_recipients if key.kind in (SMTP, LMTP) else len(indices)
        for k in range(0, len(indices), step):
            out.append((key, indices[k : k + step]))
    return out
