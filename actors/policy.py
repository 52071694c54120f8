"""Who may send what through this server: the relay and sender policy the
session asks at MAIL and RCPT. Never an open relay.

- RCPT (`check_recipient`): an address of a local domain is resolved
  (users, aliases: actors/aliases.py) and accepted if it names someone —
  its alias targets may be remote, as the domain's owner decided. Any
  other address is relayed only for an authenticated client or one whose
  IP address is in relay_network (Config; as Postfix's
  permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination);
  otherwise 554 5.7.1 "Relay access denied". Address literals are never
  local. What the parser made of the address (source routes dropped,
  RFC 5321 §4.1.1.3) is what is judged: "user%remote@local" and
  "remote!user@local" are local parts of a local domain, looked up as such.
- RCPT of an SRS address of ours (Config.srs: a bounce of mail an alias
  forwarded, actors/checks/srs.py): the address is decoded and the
  original sender resolved as if it had been given — local or remote,
  for any client (the hash authenticates the address; it is not a relay
  for anyone else's mail); one that does not decode (forged, expired) is
  refused 550 5.7.1.
- MAIL (`check_sender`): an authenticated user may use as reverse-path
  only an address that is its own — its address (with any suffix or drop
  characters: it resolves to its mailbox), an alias that leads to it (not
  the catch-all), or any address of a domain it administers
  (User.admin_of) — or the null reverse-path; otherwise 550 5.7.1, like
  Postfix's reject_sender_login_mismatch and mox.
- `auth_parameter`: what the AUTH= MAIL parameter (RFC 4954 §5) becomes
  in the queue: the authenticated user's claim when the mailbox is its own,
  else "<>" (not trusted).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from estafeta.actors.addresses import split_address
from estafeta.actors.aliases import Resolution, Resolver
from estafeta.actors.smtp.replies import Reply
from estafeta.supervisor.config import normalize_domain

#: RFC 5321 §3.6.2 / RFC 3463 X.7.1: delivery not authorised.
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
#: An SRS address of ours that does not decode (a bad hash, expired).
BAD_SRS = Reply(550, "5.7.1", "Invalid or expired SRS address")


def sender_mismatch(identity: str) -> Reply:
    """550 5.7.1 for a reverse-path that is not `identity`'s (Postfix:
    "Sender address rejected: not owned by user")."""
    return Reply(550, "5.7.1", f"Sender address rejected: not owned by user {identity}")


@functools.lru_cache(maxsize=4096)
def _ip(address: str):
    # Cached: ipaddress parsing costs ~10 µs, and a session asks once per
    # connection (most connections come from few addresses).
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


@dataclass(frozen=True)
class Client:
    """The SMTP client as the policy sees it: its IP address (as the
    session has it, "::ffff:" forms included) and the identity it
    authenticated as ("" for none)."""

    address: str
    identity: str = ""


class RelayPolicy:
    """The policy over one set of relay networks (Config relay_network:
    "192.0.2.0/24", "2001:db8::/32", "127.0.0.1"). Raises ValueError for a
    network that does not parse.

    `srs`: the SRS decoder of bounces (Outbound.srs_recipient: an address
    -> None if it is not an SRS address of ours, "" if it is one that does
    not decode, else the original sender); None: SRS is off."""

    def __init__(self, relay_networks: Iterable[str] = (), srs: Callable[[str], str | None] | None = None):
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in relay_networks if n.strip()]
        self.srs = srs

    def in_relay_network(self, address: str) -> bool:
        if not self.networks:
            return False
        ip = _ip(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    def may_relay(self, client: Client) -> bool:
        """True if `client` may send to non-local domains."""
        return bool(client.identity) or self.in_relay_network(client.address)

    def check_recipient(self, resolver: Resolver, client: Client, forward_path: str) -> Resolution:
        """RCPT TO:<forward_path>: the Resolution (final recipients, or a
        refusal: 550 5.1.1 unknown user, 554 5.7.1 relay denied, ...)."""
        if self.srs is not None:
            original = self.srs(forward_path)
            if original is not None:
                return self._srs_bounce(resolver, forward_path, original)
        res = resolver.resolve(forward_path)
        if res.accepted and not res.local and not self.may_relay(client):
            return Resolution(reply=RELAY_DENIED)
        return res

    @staticmethod
    def _srs_bounce(resolver: Resolver, forward_path: str, original: str) -> Resolution:
        """RCPT TO an SRS address of ours that decodes to `original` ("":
        it does not): `original`'s final recipients, each keeping the SRS
        address as the one given (ORCPT)."""
        if not original:
            return Resolution(reply=BAD_SRS)
        res = resolver.resolve(original)
        if not res.accepted:
            return res
        return Resolution(tuple(replace(r, original=forward_path) for r in res.recipients), local=True)

    def check_sender(self, resolver: Resolver, client: Client, reverse_path: str) -> Reply | None:
        """MAIL FROM:<reverse_path>: None if allowed, else 550 5.7.1. Only
        an authenticated client's reverse-path is checked (unauthenticated
        mail on the MX is SPF/DMARC's business)."""
        if not client.identity or owns(resolver, client.identity, reverse_path):
            return None
        return sender_mismatch(client.identity)

    def auth_parameter(self, resolver: Resolver, client: Client, claimed: str | None, reverse_path: str) -> str:
        """The AUTH= value to keep for the message (RFC 4954 §5): "" for
        "<>" (not trusted, or none given by an unauthenticated client);
        the claimed mailbox when it is the authenticated user's; the
        user's own identity when it gave none."""
        if not client.identity:
            return ""
        if claimed is None:
            return client.identity
        return claimed if claimed and owns(resolver, client.identity, claimed) else ""


def owns(resolver: Resolver, identity: str, address: str) -> bool:
    """True if the authenticated `identity` ("alice@example.org",
    normalised) may use `address` as its reverse-path (see the module
    docstring). The null reverse-path "" is allowed."""
    if address == "":
        return True
    user_local, user_domain = split_address(identity)
    local, domain = split_address(address)
    if not domain or domain.startswith("["):
        return False
    try:
        dom = normalize_domain(domain)
    except ValueError:
        return False
    user = resolver.users.user(user_domain, user_local)
    if user is not None and dom in {d.lower().rstrip(".") for d in user.admin_of}:
        return True
    if dom not in resolver.domains:
        return False
    res = resolver.resolve(address, catch_all=False)
    mailbox = f"{user_domain}/{user_local}"
    return res.accepted and any(r.kind == "mailbox" and r.mailbox == mailbox for r in res.recipients)
