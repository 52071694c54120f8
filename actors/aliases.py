"""Aliases in chasquid's file format, and the resolution of a recipient
address to its final recipients.

File: <aliases_dir>/<domain>/aliases, one per local domain (chasquid's
docs/aliases.md describes the format; this reads it the same way):

    # comment
    pepe: jose                        mail to pepe@ goes to jose@ (same domain)
    flowers: rose@backgarden, lilly   lists; local or remote targets
    null: | /usr/bin/handler --work   a pipe: the message on the command's stdin
    *: pepe, rose@backgarden          catch-all: any unknown local part
    copy: *@otherdomain               "*" on the right: the original local part

The left side has no "@"; it is normalised like a user name (PRECIS,
actors/addresses.py) with the drop characters removed (a suffix is kept,
so "juana.perez+fruta" can have an alias of its own). A later line for the
same name replaces an earlier one. chasquid's "via" forwards are not
supported (a clear error).

Resolution (`resolve`), for an address of a local domain, in chasquid's
order: an alias for the local part without drop characters (suffix kept),
then without the suffix; a user (actors/users.py); the catch-all; a
domain without user list takes every local part as a mailbox; postmaster
is always accepted (RFC 5321 §4.5.1); else 550 5.1.1. Alias targets are
resolved again (at most MAX_DEPTH levels); an alias met again on its own
path is a loop (550 5.4.6) — unless it is also a user: then, as in
Postfix, "alice: alice, bob" delivers to alice's mailbox and to bob.
Remote addresses (and address literals) resolve to themselves. Every final
recipient keeps the address the client gave (`original`, for ORCPT and
DSNs, RFC 3461 §4.2), and appears once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from estafeta.actors.addresses import AddressError, AddressRules, normalize_local, split_address, unquote_local_part
from estafeta.actors.smtp.replies import Reply
from estafeta.actors.users import UserTable
from estafeta.store.watch import Stamps
from estafeta.supervisor.config import normalize_domain

log = logging.getLogger("estafeta.directory")

ALIASES_FILE = "aliases"
#: Alias levels followed before giving up (chasquid's recursion limit).
MAX_DEPTH = 10
#: Resolutions a Resolver remembers (see Resolver._resolved).
RESOLVED_CACHE = 4096

UNKNOWN_USER = Reply(550, "5.1.1", "No such user here")
ALIAS_LOOP = Reply(550, "5.4.6", "Alias loop detected")  # RFC 3463 X.4.6 routing loop
BAD_MAILBOX = Reply(553, "5.1.3", "Local part cannot be a mailbox name")
BAD_DOMAIN = Reply(553, "5.1.2", "Bad destination domain")


class AliasFileError(Exception):
    """An aliases file with a bad line; str() is "<path>:<line>: <why>"."""


@dataclass(frozen=True, slots=True)
class Target:
    """One right-side entry: kind "address" (value: "local@domain" as
    written, the file's domain added when it had none) or "pipe" (value:
    the command line, split on spaces when run; no shell)."""

    kind: str
    value: str


def parse_aliases(text: str, domain: str, rules: AddressRules, path: str = "aliases") -> dict[str, tuple[Target, ...]]:
    """Parse an aliases file of `domain` (A-label). Returns normalised
    left side ("*" for the catch-all) -> targets. Raises AliasFileError."""
    out: dict[str, tuple[Target, ...]] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(why: str, no=no) -> AliasFileError:
            return AliasFileError(f"{path}:{no}: {why}")

        name, colon, rhs = line.partition(":")
        name, rhs = name.strip(), rhs.strip()
        if not colon:
            raise fail("missing ':' (expected 'name: target, target' or 'name: | command')")
        if not name or not rhs:
            raise fail("missing name or target")
        if "@" in name or " " in name or "," in name:
            raise fail(f"the name {name!r} cannot hold '@', spaces or commas (the domain is the directory's)")
        if name != "*":
            try:
                name = rules.without_drops(normalize_local(name))
            except AddressError as e:
                raise fail(str(e)) from None
        if rhs.startswith("|"):
            command = rhs[1:].strip()
            if not command:
                raise fail("the pipe has no command")
            out[name] = (Target("pipe", command),)
            continue
        targets = []
        for item in rhs.split(","):
            item = item.strip()
            if not item:
                continue  # "a: b," is allowed
            if " via " in item:
                raise fail("'via' forwards are not supported")
            if " " in item or item.count("@") > 1:
                raise fail(f"{item!r} is not an address")
            local, at, dom = item.partition("@")
            if not local or (at and not dom):
                raise fail(f"{item!r} is not an address")
            if at:
                try:
                    normalize_domain(dom)
                except ValueError as e:
                    raise fail(str(e)) from None
            targets.append(Target("address", item if at else f"{item}@{domain}"))
        if not targets:
            raise fail("no target")
        out[name] = tuple(targets)
    return out


def aliases_path(aliases_dir: str, domain: str) -> str:
    """<aliases_dir>/<domain>/aliases."""
    return os.path.join(aliases_dir, domain, ALIASES_FILE)


@dataclass(frozen=True)
class AliasTable:
    """Every local domain's aliases (a snapshot): domain -> name -> targets."""

    domains: dict[str, dict[str, tuple[Target, ...]]] = field(default_factory=dict)

    def lookup(self, domain: str, name: str) -> tuple[Target, ...] | None:
        d = self.domains.get(domain)
        return d.get(name) if d is not None else None


class AliasFiles:
    """Loads the aliases files of `domains` and notices changes (as
    actors/users.py UserFiles: refresh() returns a new table or None; a
    file that fails to parse keeps its domain's previous aliases, and the
    error is logged and kept in `errors`). Blocking: call off the hub."""

    def __init__(self, aliases_dir: str, domains: Iterable[str], rules: AddressRules):
        self.aliases_dir = aliases_dir
        self.domains = list(domains)
        self.rules = rules
        self.table = AliasTable()
        self.errors: dict[str, str] = {}
        self._stamps = Stamps()
        self._loaded = False

    def refresh(self, force: bool = False) -> AliasTable | None:
        paths = {d: aliases_path(self.aliases_dir, d) for d in self.domains}
        if force:
            self._stamps.forget()
        changed = set(self._stamps.changed(paths.values()))
        if not changed and self._loaded:
            return None
        new = dict(self.table.domains)
        for domain, path in paths.items():
            if path not in changed and self._loaded:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                new[domain] = parse_aliases(text, domain, self.rules, path)
            except FileNotFoundError:
                new.pop(domain, None)
                self.errors.pop(domain, None)
                continue
            except (OSError, UnicodeDecodeError, AliasFileError) as e:
                self.errors[domain] = str(e)
                log.error("aliases not reloaded domain=%s error=%s", domain, e)
                continue
            self.errors.pop(domain, None)
            if self._loaded:
                log.info("aliases reloaded domain=%s aliases=%d", domain, len(new[domain]))
        self._loaded = True
        self.table = AliasTable(new)
        return self.table


# ------------------------------------------------------------------ resolution
@dataclass(frozen=True, slots=True)
class FinalRecipient:
    """One recipient a message is delivered to.

    kind: "mailbox" (a local Maildir: `mailbox` is "<domain>/<name>"),
    "remote" (`address` is to be relayed), "pipe" (`command` gets the
    message; `address` is the alias), or "unknown" (an alias target in a
    local domain that names nobody: `reply` is its failure, to be reported
    to the sender, not delivered). address: the final address
    ("alice@example.org" for a mailbox); original: the address the client
    gave at RCPT (RFC 3461 ORCPT)."""

    kind: str
    address: str
    original: str
    mailbox: str = ""
    command: str = ""
    reply: Reply | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What makes two final recipients one delivery."""
        if self.kind == "mailbox":
            return ("mailbox", self.mailbox)
        if self.kind == "pipe":
            return ("pipe", f"{self.address}|{self.command}")
        return (self.kind, self.address.lower() if self.kind == "unknown" else self.address)


@dataclass(frozen=True)
class Resolution:
    """What RCPT TO:<address> becomes: accepted (reply None) with its final
    recipients (at least one, without repeats), or refused with `reply`.
    local: the address is in a local domain."""

    recipients: tuple[FinalRecipient, ...] = ()
    reply: Reply | None = None
    local: bool = False

    @property
    def accepted(self) -> bool:
        return self.reply is None


def mailbox_name(local: str) -> str | None:
    """A Maildir folder name for the local part of a domain without user
    list, or None if it cannot be one: PRECIS-normalised when it can be,
    else lower-cased; refused: empty, over 64 octets (RFC 5321 §4.5.3.1.1),
    a leading ".", "/" or control characters — nothing may escape
    <data_dir>/mail/<domain>/."""
    try:
        name = normalize_local(local)
    except AddressError:
        name = unquote_local_part(local).lower()
    if not name or name[0] == "." or len(name.encode("utf-8")) > 64:
        return None
    if "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    return name


class _Loop(Exception):
    pass


@dataclass
class Resolver:
    """resolve() over one version of the tables (a snapshot: build a new
    Resolver when a table changes, as the Directory does).

    domains: local domain (A-label) -> True if it has a user list
    (only its users, aliases and postmaster receive mail) or False (every
    local part gets a mailbox); primary: the domain of a bare
    "postmaster"."""

    domains: dict[str, bool]
    users: UserTable
    aliases: AliasTable
    rules: AddressRules
    primary: str = "localhost"
    #: Resolutions already made, by (address, catch_all): the tables are a
    #: snapshot, so an address resolves the same until a new Resolver is
    #: published, and a server's recipients repeat (a resolution costs
    #: ~6 us, a lookup here ~0.1 us). Bounded: emptied at RESOLVED_CACHE.
    _resolved: dict = field(default_factory=dict, repr=False, compare=False)

    def is_local(self, domain: str) -> bool:
        """True if `domain` (any spelling) is a local domain."""
        try:
            return normalize_domain(domain) in self.domains
        except ValueError:
            return False

    def resolve(self, address: str, catch_all: bool = True) -> Resolution:
        """Resolve a forward-path (without brackets) to its final
        recipients (see the module docstring). `catch_all=False` ignores
        catch-all aliases (for "is this address the user's?" questions)."""
        key = (address, catch_all)
        res = self._resolved.get(key)
        if res is None:
            if len(self._resolved) >= RESOLVED_CACHE:
                self._resolved.clear()
            res = self._resolved[key] = self._resolve(address, catch_all)
        return res

    def _resolve(self, address: str, catch_all: bool) -> Resolution:
        local, domain = split_address(address)
        if not domain:
            if local.lower() != "postmaster":
                return Resolution(reply=BAD_MAILBOX)
            local, domain = "postmaster", self.primary
        if domain.startswith("["):
            return Resolution((FinalRecipient("remote", address, address),))
        try:
            dom = normalize_domain(domain)
        except ValueError:
            return Resolution(reply=BAD_DOMAIN)
        if dom not in self.domains:
            return Resolution((FinalRecipient("remote", address, address),))
        out: dict[tuple[str, str], FinalRecipient] = {}
        try:
            reply = self._local(local, dom, address, out, (), 0, catch_all)
        except _Loop:
            return Resolution(reply=ALIAS_LOOP, local=True)
        if reply is not None:
            return Resolution(reply=reply, local=True)
        return Resolution(tuple(out.values()), local=True)

    def _local(
        self,
        local: str,
        dom: str,
        original: str,
        out: dict,
        chain: tuple[str, ...],
        depth: int,
        catch_all: bool,
        top: bool = True,
    ) -> Reply | None:
        """Resolve local@dom (dom local and normalised) into `out`; a refusal
        of the top address is returned, one of a target is recorded as an
        "unknown" recipient."""
        if depth > MAX_DEPTH:
            raise _Loop()
        try:
            name = normalize_local(local)
        except AddressError:
            name = None
        if name is not None:
            for key in self.rules.keys(name):
                targets = self.aliases.lookup(dom, key)
                if targets is not None:
                    here = f"{key}@{dom}"
                    if here in chain:  # met again on its own path
                        user = self.users.recipient(dom, key, self.rules)
                        if user is None:
                            raise _Loop()
                        self._add(out, FinalRecipient("mailbox", f"{user}@{dom}", original, f"{dom}/{user}"))
                        return None
                    self._expand(targets, name, here, original, out, chain + (here,), depth, catch_all)
                    return None
            user = self.users.recipient(dom, name, self.rules)
            if user is not None:
                self._add(out, FinalRecipient("mailbox", f"{user}@{dom}", original, f"{dom}/{user}"))
                return None
        targets = self.aliases.lookup(dom, "*") if catch_all else None
        if targets is not None:
            here = f"*@{dom}"
            if here in chain:
                raise _Loop()
            self._expand(targets, local, here, original, out, chain + (here,), depth, catch_all)
            return None
        if not self.domains[dom] or (name or local.lower()) == "postmaster":
            box = mailbox_name(local)
            if box is None:
                return self._refuse(BAD_MAILBOX, local, dom, original, out, top)
            self._add(out, FinalRecipient("mailbox", f"{box}@{dom}", original, f"{dom}/{box}"))
            return None
        return self._refuse(UNKNOWN_USER, local, dom, original, out, top)

    def _refuse(self, reply: Reply, local: str, dom: str, original: str, out: dict, top: bool) -> Reply | None:
        if top:
            return reply
        self._add(out, FinalRecipient("unknown", f"{local}@{dom}", original, reply=reply))
        return None

    def _expand(self, targets, local: str, here: str, original: str, out: dict, chain, depth: int, catch_all: bool):
        for t in targets:
            if t.kind == "pipe":
                self._add(out, FinalRecipient("pipe", here, original, command=t.value))
                continue
            tlocal, tdomain = split_address(t.value)
            if tlocal == "*":  # chasquid: the original local part, as is
                tlocal = local
            try:
                tdom = normalize_domain(tdomain)
            except ValueError:
                tdom = ""
            if tdom in self.domains:
                self._local(tlocal, tdom, original, out, chain, depth + 1, catch_all, top=False)
            else:
                self._add(out, FinalRecipient("remote", f"{tlocal}@{tdomain}", original))

    @staticmethod
    def _add(out: dict, r: FinalRecipient) -> None:
        out.setdefault(r.key, r)


class RecipientSet:
    """The final recipients of one transaction, without repeats across
    RCPTs (alice@ and a.lice+x@ and an alias to alice: one delivery)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], FinalRecipient] = {}

    def add(self, resolution: Resolution) -> list[FinalRecipient]:
        """Add an accepted resolution's recipients; returns those not
        already in the set (in order)."""
        new = []
        for r in resolution.recipients:
            if r.key not in self._seen:
                self._seen[r.key] = r
                new.append(r)
        return new

    def __iter__(self):
        return iter(self._seen.values())

    def __len__(self) -> int:
        return len(self._seen)
