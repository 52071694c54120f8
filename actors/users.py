"""The users of the local domains, as the daemon reads them.

`UserTable` is one immutable snapshot of every local domain's UserDb
(store/userdb.py files) plus the users named in the config
(`local_domain { user: ... }`, receive-only): the Directory actor builds a
new one when a file changes and publishes it (actors/directory.py); sessions
read it. `UserCredentials` is the credential-lookup port of the SASL
mechanisms (actors/auth/mechanisms.py) over the current table.

Names: a user's name is its local part normalised with PRECIS
UsernameCaseMapped (actors/addresses.py); a login name is the whole address
"<name>@<domain>", normalised the same way. For delivery, a local part is
also looked up without drop characters and suffix (AddressRules.keys):
user "john.doe" receives "johndoe@" and "john.doe+news@".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from estafeta.actors.addresses import AddressError, AddressRules, normalize_address, normalize_local, split_address
from estafeta.actors.auth.passwords import VerifyCache, hash_password, verify_password
from estafeta.proto import users_pb2
from estafeta.store import userdb
from estafeta.store.watch import Stamps

log = logging.getLogger("estafeta.directory")


@dataclass(frozen=True)
class DomainUsers:
    """One domain's users: by name, and by lookup key (the name without
    drop characters, AddressRules.base) for delivery. `listed`: the domain
    has a user list (a users file with users, or config users): then only
    its users (and aliases) receive mail; otherwise every local part does."""

    domain: str
    users: dict[str, users_pb2.User]
    by_key: dict[str, str]
    listed: bool


def build_domain(domain: str, db: users_pb2.UserDb, config_users: Iterable[str], rules: AddressRules) -> DomainUsers:
    """DomainUsers from a loaded UserDb and the config's user names (a config
    name that is not in the file becomes a receive-only user). Names that
    PRECIS refuses are skipped with a warning."""
    users: dict[str, users_pb2.User] = {u.name: u for u in db.user}
    for raw in config_users:
        try:
            name = normalize_local(raw)
        except AddressError as e:
            log.warning("local_domain %s: user %s skipped: %s", domain, raw, e)
            continue
        users.setdefault(name, users_pb2.User(name=name))
    by_key: dict[str, str] = {}
    for name in users:
        by_key.setdefault(rules.base(name), name)
    for name in users:  # an exact name wins over another's cleaned one
        by_key[name] = name
    return DomainUsers(domain, users, by_key, listed=bool(users))


@dataclass(frozen=True)
class UserTable:
    """Every local domain's users (a snapshot: never changed in place)."""

    domains: dict[str, DomainUsers] = field(default_factory=dict)

    def login(self, username: str) -> users_pb2.User | None:
        """The user logging in as `username` ("alice@example.org", any case
        PRECIS maps to it), if it has a password; else None."""
        try:
            address = normalize_address(username)
        except AddressError:
            return None
        local, domain = split_address(address)
        d = self.domains.get(domain)
        user = d.users.get(local) if d is not None else None
        return user if user is not None and user.password_hash else None

    def recipient(self, domain: str, local: str, rules: AddressRules) -> str | None:
        """The user name that receives mail for the normalised `local` of
        the (local, normalised) `domain`: exact name, then its lookup keys
        (drops removed, then the suffix too). None if no user matches."""
        d = self.domains.get(domain)
        if d is None:
            return None
        if local in d.users:
            return local
        for key in rules.keys(local):
            name = d.by_key.get(key)
            if name is not None:
                return name
        return None

    def listed(self, domain: str) -> bool:
        """True if `domain` has a user list (see DomainUsers.listed)."""
        d = self.domains.get(domain)
        return d is not None and d.listed

    def user(self, domain: str, name: str) -> users_pb2.User | None:
        d = self.domains.get(domain)
        return d.users.get(name) if d is not None else None


class UserFiles:
    """Loads the user files of the local domains and notices changes.

    `domains`: local domain (A-label) -> the config's user names for it.
    load() reads every file; refresh() only when a file's stamp changed
    (store/watch.py) and returns the new table, or None if nothing changed.
    A file that fails to load keeps its domain's previous users (the error
    is logged and kept in `errors`) — a bad edit never locks everyone out.
    Blocking (stat and read): call off the hub.
    """

    def __init__(self, users_dir: str, domains: dict[str, list[str]], rules: AddressRules):
        self.users_dir = users_dir
        self.domains = domains
        self.rules = rules
        self.table = UserTable()
        self.errors: dict[str, str] = {}
        self._stamps = Stamps()

    def paths(self) -> dict[str, str]:
        return {d: userdb.users_path(self.users_dir, d) for d in self.domains}

    def refresh(self, force: bool = False) -> UserTable | None:
        """Reload the changed files (all with `force`); the new table, or
        None when nothing changed."""
        paths = self.paths()
        if force:
            self._stamps.forget()
        changed = set(self._stamps.changed(paths.values()))
        if not changed and self.table.domains:
            return None
        new = dict(self.table.domains)
        for domain, path in paths.items():
            if path not in changed and domain in new:
                continue
            try:
                db = userdb.load(self.users_dir, domain)
            except userdb.UserDbError as e:
                self.errors[domain] = str(e)
                log.error("users not reloaded domain=%s error=%s", domain, e)
                if domain not in new:
                    new[domain] = build_domain(
                        domain, users_pb2.UserDb(domain=domain), self.domains[domain], self.rules
                    )
                continue
            self.errors.pop(domain, None)
            new[domain] = build_domain(domain, db, self.domains[domain], self.rules)
            if self.table.domains:
                log.info("users reloaded domain=%s users=%d", domain, len(db.user))
        for gone in set(new) - set(paths):
            del new[gone]
        self.table = UserTable(new)
        return self.table


class UserCredentials:
    """The credential-lookup port of the SASL mechanisms
    (actors/auth/mechanisms.py `Credentials`) over the table `current()`
    returns (the Directory's published one). check_password blocks for a
    hash unless the VerifyCache knows the pair: call the mechanism's step
    off the hub (store.blocking.run_blocking)."""

    def __init__(self, current: Callable[[], UserTable], cache: VerifyCache | None = None):
        self._current = current
        self._cache = cache or VerifyCache()
        self._dummy = ""  # a hash nobody's password matches, made on first use

    def check_password(self, username: str, password: str) -> str | None:
        """The normalised login name if `password` is `username`'s, else
        None. An unknown user costs a hash too, so the time taken does not
        tell who exists."""
        user = self._current().login(username)
        if user is None:
            if not self._dummy:
                self._dummy = hash_password(os.urandom(16).hex())
            verify_password(self._dummy, password)
            return None
        identity = normalize_address(username)
        return identity if self._cache.verify(identity, user.password_hash, password) else None

    def scram(self, username: str) -> tuple[str, users_pb2.ScramCredential | None] | None:
        """(normalised login name, its SCRAM-SHA-256 credential or None when
        only a password hash is stored), or None for no such user."""
        user = self._current().login(username)
        if user is None:
            return None
        cred = user.scram_sha256 if user.HasField("scram_sha256") else None
        return normalize_address(username), cred
