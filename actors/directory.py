"""Directory actor: which recipients are local, their users and aliases.

It owns the recipient tables built from the configured `local_domain`s,
the user databases (actors/users.py, store/userdb.py) and the alias files
(actors/aliases.py) of those domains: it publishes them in a DirectoryView,
which sessions read at RCPT TO (`resolve`: the final recipients of an
address, actors/aliases.py Resolver) and at AUTH (`credentials`, the
mechanisms' credential port). Every Config.directory_poll_seconds it looks
at the files' stamps and publishes new tables when one changed (no
restart); a `Reload` (SIGHUP) reads them all at once. A file that fails to
load keeps its domain's previous tables, and the error is logged.

`check_recipient` is the config-only decision of the first version (one
mailbox per address, no users or aliases), kept for its callers.

Replies (RFC 5321 §4.2.2, enhanced codes RFC 3463):
- non-local domain, address literal: 554 5.7.1 relay access denied (this
  server is never an open relay);
- a domain with a user list, local part not in it: 550 5.1.1;
- a local part that cannot be a Maildir folder name: 553 5.1.3;
- `postmaster`, bare or @ any local domain, is always accepted (§4.5.1).
"""

from __future__ import annotations

import logging
import os

import gevent

from estafeta.actors.addresses import AddressRules
from estafeta.actors.aliases import AliasFiles, Resolution, Resolver
from estafeta.actors.users import UserCredentials, UserFiles, UserTable
from estafeta.proto import common_pb2, config_pb2, messages_pb2, reload_pb2
from estafeta.store.blocking import run_blocking
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import normalize_domain

log = logging.getLogger("estafeta.directory")

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


def domains_dir(cfg: config_pb2.Config, field: str) -> str:
    """Config.users_dir or aliases_dir, absolute; "" means <data_dir>/domains."""
    value = getattr(cfg, field)
    return os.path.abspath(value or os.path.join(cfg.data_dir, "domains"))


def address_rules(cfg: config_pb2.Config) -> AddressRules:
    """The drop characters and suffix separators of a configuration."""
    return AddressRules(suffix_separators=cfg.suffix_separators, drop_characters=cfg.drop_characters)


class DirectoryTables:
    """Loads a configuration's users and aliases (blocking) and builds the
    Resolver over them. Used by the Directory actor and by the `estafeta
    alias` and `user` commands (which read the same files)."""

    def __init__(self, cfg: config_pb2.Config):
        self.local = LocalDomains(cfg)
        self.rules = address_rules(cfg)
        config_users = {normalize_domain(d.name): list(d.user) for d in cfg.local_domain}
        self.users = UserFiles(domains_dir(cfg, "users_dir"), config_users, self.rules)
        self.aliases = AliasFiles(domains_dir(cfg, "aliases_dir"), list(self.local.domains), self.rules)
        self.resolver: Resolver | None = None

    def refresh(self, force: bool = False) -> list[str]:
        """Reload what changed (everything with `force`); returns what was
        reloaded ("users", "aliases"), [] if nothing changed. Blocking."""
        done = []
        if self.users.refresh(force) is not None:
            done.append("users")
        if self.aliases.refresh(force) is not None:
            done.append("aliases")
        if done or self.resolver is None:
            table = self.users.table
            self.resolver = Resolver(
                domains={d: table.listed(d) for d in self.local.domains},
                users=table,
                aliases=self.aliases.table,
                rules=self.rules,
                primary=self.local.primary,
            )
        return done

    def errors(self) -> list[str]:
        return list(self.users.errors.values()) + list(self.aliases.errors.values())


class DirectoryView:
    """The Directory's current tables, published for sessions to read at
    RCPT TO and AUTH (like an ETS table with one writer: the Directory actor
    replaces `domains` and `resolver` with new objects, never changing one
    in place, so a reader always sees one whole version).

    check(address): check_recipient on the config's domains (first
    version); resolve(address): the final recipients with users and
    aliases (actors/aliases.py); credentials: the SASL mechanisms'
    credential port over the current users; users: the current UserTable.
    """

    __slots__ = ("domains", "resolver", "credentials")

    def __init__(self, domains: LocalDomains | None = None):
        self.domains = domains
        self.resolver: Resolver | None = None
        self.credentials = UserCredentials(self._users)

    def _users(self) -> UserTable:
        return self.resolver.users if self.resolver is not None else UserTable()

    @property
    def users(self) -> UserTable:
        return self._users()

    def check(self, address: str, relay: bool = False) -> messages_pb2.RecipientVerdict:
        """Decide RCPT TO:<address> (see check_recipient). Raises
        RuntimeError before the Directory has published its tables."""
        if self.domains is None:
            raise RuntimeError("directory not started")
        return check_recipient(self.domains, address, relay)

    def resolve(self, address: str) -> Resolution:
        """The final recipients of RCPT TO:<address> (Resolver.resolve):
        remote addresses resolve to themselves — whether they may be
        relayed is actors/policy.py's question. Raises RuntimeError before
        the Directory has published its tables."""
        if self.resolver is None:
            raise RuntimeError("directory not started")
        return self.resolver.resolve(address)


class Directory(Actor):
    """Owns the recipient tables, publishes them in its DirectoryView on
    start and whenever a user or alias file changes (polled every
    Config.directory_poll_seconds). Takes `Reload` (answered with a
    ReloadResult). Registered as "directory"."""

    def __init__(self, link: Link | None, cfg: config_pb2.Config, view: DirectoryView | None = None):
        super().__init__(link)
        self._domains = LocalDomains(cfg)
        self._view = view
        self._tables = DirectoryTables(cfg)
        self._poll_seconds = cfg.directory_poll_seconds or 5.0
        self._poller: gevent.Greenlet | None = None

    def on_start(self) -> None:
        run_blocking(self._tables.refresh, True)
        for error in self._tables.errors():
            log.error("directory: %s", error)
        self._publish()
        self._poller = gevent.spawn(self._poll)

    def on_stop(self) -> None:
        self._stop_poller()

    def on_failure(self, *exc_info) -> None:
        self._stop_poller()

    def _stop_poller(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
            self._poller = None

    def _publish(self) -> None:
        if self._view is not None:
            self._view.domains = self._domains
            self._view.resolver = self._tables.resolver

    def _poll(self) -> None:
        while True:
            gevent.sleep(self._poll_seconds)
            try:
                if run_blocking(self._tables.refresh):
                    self._publish()
            except Exception as e:  # noqa: BLE001 - a bad poll must not stop polling
                log.error("directory poll failed: %s", e)

    def on_receive(self, message):
        if isinstance(message, reload_pb2.Reload):
            done = run_blocking(self._tables.refresh, True)
            self._publish()
            errors = self._tables.errors()
            for error in errors:
                log.error("directory reload: %s", error)
            return reload_pb2.ReloadResult(reloaded=done, error=errors, trace=message.trace)
        raise TypeError(f"Directory cannot handle {type(message).__name__}")
