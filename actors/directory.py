"""Directory actor: which recipients are local, and their mailboxes.

It owns the recipient tables built from the configured `local_domain`s:
it publishes them in a DirectoryView, which sessions read at RCPT TO for
a `RecipientVerdict` (proto/messages.proto). The decision itself is the
pure function `check_recipient`, unit-tested on its own.

Replies (RFC 5321 §4.2.2, enhanced codes RFC 3463):
- non-local domain, address literal: 554 5.7.1 relay access denied (this
  server is never an open relay);
- a domain with a user list, local part not in it: 550 5.1.1;
- a local part that cannot be a Maildir folder name: 553 5.1.3;
- `postmaster`, bare or @ any local domain, is always accepted (§4.5.1).
"""

from __future__ import annotations

from estafeta.proto import common_pb2, config_pb2, messages_pb2
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import normalize_domain

RELAY_DENIED = common_pb2.Reply(code=554, enhanced="5.7.1", text="Relay access denied")
UNKNOWN_USER = common_pb2.Reply(code=550, enhanced="5.1.1", text="No such user here")
BAD_MAILBOX = common_pb2.Reply(code=553, enhanced="5.1.3", text="Local part cannot be a mailbox name")


def _unquote_local_part(local: str) -> str:
    """`"john doe"` -> `john doe` (RFC 5321 §4.1.2 Quoted-string)."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        inner = local[1:-1]
        out, i = [], 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return "".join(out)
    return local


def mailbox_local_part(local: str) -> str | None:
    """The Maildir folder name for a local part, or None if it cannot be one.

    Lower-cased (local parts are compared case-insensitively here, as most
    MTAs do for their own domains); refused: empty, over 64 octets
    (RFC 5321 §4.5.3.1.1), leading ".", "/" or control characters — nothing
    may escape <data_dir>/mail/<domain>/.
    """
    name = _unquote_local_part(local).lower()
    if not name or name[0] == "." or len(name.encode("utf-8")) > 64:
        return None
    if "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    return name


class LocalDomains:
    """The local domains of a Config: name -> allowed users (None = all)."""

    def __init__(self, cfg: config_pb2.Config):
        self.domains: dict[str, frozenset[str] | None] = {}
        for d in cfg.local_domain:
            users = frozenset(u.lower() for u in d.user) or None
            self.domains[normalize_domain(d.name)] = users
        self.primary = next(iter(self.domains), "localhost")


def check_recipient(domains: LocalDomains, address: str, relay: bool = False) -> messages_pb2.RecipientVerdict:
    """Decide RCPT TO:<address> (forward-path without brackets). `relay`:
    the client may send to other domains (Config.relay_network): a
    recipient in a non-local domain is then accepted with no mailbox (the
    router sends it to its MX). Address literals are never relayed to."""
    local, at, domain = address.rpartition("@")
    if not at:
        # RFC 5321 §4.5.1: bare "postmaster" must be accepted.
        if address.lower() == "postmaster":
            return messages_pb2.RecipientVerdict(accepted=True, mailbox=f"{domains.primary}/postmaster")
        return messages_pb2.RecipientVerdict(accepted=False, reply=BAD_MAILBOX)
    if domain.startswith("["):
        return messages_pb2.RecipientVerdict(accepted=False, reply=RELAY_DENIED)
    try:
        dom = normalize_domain(domain)
    except ValueError:
        return messages_pb2.RecipientVerdict(
            accepted=False, reply=common_pb2.Reply(code=553, enhanced="5.1.2", text="Bad destination domain")
        )
    if dom not in domains.domains:
        if relay and local:
            return messages_pb2.RecipientVerdict(accepted=True)
        return messages_pb2.RecipientVerdict(accepted=False, reply=RELAY_DENIED)
    name = mailbox_local_part(local)
    if name is None:
        return messages_pb2.RecipientVerdict(accepted=False, reply=BAD_MAILBOX)
    users = domains.domains[dom]
    if users is not None and name not in users and name != "postmaster":
        return messages_pb2.RecipientVerdict(accepted=False, reply=UNKNOWN_USER)
    return messages_pb2.RecipientVerdict(accepted=True, mailbox=f"{dom}/{name}")


class DirectoryView:
    """The Directory's current tables, published for sessions to read at
    RCPT TO (like an ETS table with one writer: the Directory actor sets
    `domains`, a LocalDomains it never changes in place, so a reader always
    sees one whole version). `check(address)` is check_recipient on it,
    with no actor round trip per recipient.
    """

    __slots__ = ("domains",)

    def __init__(self, domains: LocalDomains | None = None):
        self.domains = domains

    def check(self, address: str, relay: bool = False) -> messages_pb2.RecipientVerdict:
        """Decide RCPT TO:<address> (see check_recipient). Raises
        RuntimeError before the Directory has published its tables."""
        if self.domains is None:
            raise RuntimeError("directory not started")
        return check_recipient(self.domains, address, relay)


class Directory(Actor):
    """Owns the recipient tables and publishes them in its DirectoryView on
    start; it takes no messages.
    Registered as "directory"."""

    def __init__(self, link: Link | None, cfg: config_pb2.Config, view: DirectoryView | None = None):
        super().__init__(link)
        self._domains = LocalDomains(cfg)
        self._view = view

    def on_start(self) -> None:
        if self._view is not None:
            self._view.domains = self._domains

    def on_receive(self, message):
        raise TypeError(f"Directory cannot handle {type(message).__name__}")
