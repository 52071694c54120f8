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

RCPT decisions (who is local, which mailbox, relay or not) are
actors/policy.py's RelayPolicy over the published Resolver; refusals are
the resolver's: 550 5.1.1 unknown user, 553 5.1.3 a local part that
cannot be a mailbox, 550 5.4.6 an alias loop; `postmaster`, bare or @ any
local domain, is always accepted (RFC 5321 §4.5.1).
"""

from __future__ import annotations

import logging
import os

import gevent

from estafeta.actors.addresses import AddressRules
from estafeta.actors.aliases import AliasFiles, Resolution, Resolver
from estafeta.actors.users import UserCredentials, UserFiles, UserTable
from estafeta.proto import config_pb2, reload_pb2
from estafeta.store.blocking import run_blocking
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.config import normalize_domain

log = logging.getLogger("estafeta.directory")


class LocalDomains:
    """The local domains of a Config, normalised (A-label, lower case), in
    file order; `primary`: the first, the domain of a bare "postmaster"."""

    def __init__(self, cfg: config_pb2.Config):
        self.domains: list[str] = list(dict.fromkeys(normalize_domain(d.name) for d in cfg.local_domain))
        self.primary = next(iter(self.domains), "localhost")


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
    replaces `resolver` with a new object, never changing one
    in place, so a reader always sees one whole version).

    resolver: the current Resolver (None before the Directory started);
    resolve(address): the final recipients with users and aliases
    (actors/aliases.py); credentials: the SASL mechanisms' credential port
    over the current users; users: the current UserTable.
    """

    __slots__ = ("resolver", "credentials")

    def __init__(self, resolver: Resolver | None = None):
        self.resolver = resolver
        self.credentials = UserCredentials(self._users)

    def _users(self) -> UserTable:
        return self.resolver.users if self.resolver is not None else UserTable()

    @property
    def users(self) -> UserTable:
        return self._users()

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
