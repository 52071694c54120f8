"""`estafeta user` and `estafeta alias`: the user databases and aliases.

    estafeta user add ADDRESS [--receive-only]   a user (password asked, or one line on stdin)
    estafeta user passwd ADDRESS                 a new password
    estafeta user remove ADDRESS
    estafeta user list [DOMAIN ...]
    estafeta alias resolve ADDRESS               what RCPT TO:<ADDRESS> becomes

Passwords never come from the command line (where `ps` and shell history
show them): from a prompt on a terminal (asked twice), else the first line
of stdin. The files are written atomically, under the domain's lock
(store/userdb.py); a running daemon picks the change up within
Config.directory_poll_seconds (or at once on SIGHUP).

Exit status: 0 done, 1 refused (no such user, already exists, bad
password), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from estafeta.actors.addresses import AddressError, normalize_address, split_address
from estafeta.actors.auth.passwords import PasswordError, prepare, set_password
from estafeta.actors.directory import DirectoryTables, address_rules, domains_dir
from estafeta.proto import config_pb2, users_pb2
from estafeta.store import userdb
from estafeta.supervisor.config import normalize_domain

#: Characters refused in a new user's name (beyond what PRECIS refuses):
#: address syntax that other systems read as routing (RFC 5321 §4.1.2 quoting,
#: the percent hack, UUCP bang paths) or as a path.
FORBIDDEN = set('@%!/\\",:;<>[]()')


class UserCliError(Exception):
    """A refusal for the user; str() is the message."""


def add_parsers(sub, common) -> None:
    """Add the `user` and `alias` subcommands to the `estafeta` parser."""
    p = sub.add_parser("user", help="manage the users of the local domains")
    usub = p.add_subparsers(dest="action", required=True)
    a = usub.add_parser("add", help="add a user (password from a prompt or stdin)")
    a.add_argument("address", metavar="ADDRESS")
    a.add_argument("--receive-only", action="store_true", help="no password: receives mail, cannot log in")
    common(a)
    a = usub.add_parser("passwd", help="set a user's password (from a prompt or stdin)")
    a.add_argument("address", metavar="ADDRESS")
    common(a)
    a = usub.add_parser("remove", help="remove a user (its Maildir stays)")
    a.add_argument("address", metavar="ADDRESS")
    common(a)
    a = usub.add_parser("list", help="list users")
    a.add_argument("domains", nargs="*", metavar="DOMAIN")
    common(a)
    p = sub.add_parser("alias", help="aliases of the local domains")
    asub = p.add_subparsers(dest="action", required=True)
    a = asub.add_parser("resolve", help="print what an address becomes")
    a.add_argument("address", metavar="ADDRESS")
    common(a)


def read_password(prompt: str = "Password: ", stdin=None) -> str:
    """A password from the terminal (asked twice) or the first line of a
    non-terminal stdin. Raises UserCliError."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            raise UserCliError("the passwords differ")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    try:
        prepare(password)
    except PasswordError as e:
        raise UserCliError(str(e)) from None
    return password


def _split(address: str) -> tuple[str, str]:
    try:
        norm = normalize_address(address)
    except AddressError as e:
        raise UserCliError(f"{address}: {e}") from None
    local, domain = split_address(norm)
    return local, domain


def _warn_not_local(cfg: config_pb2.Config, domain: str) -> None:
    local = {normalize_domain(d.name) for d in cfg.local_domain}
    if domain not in local:
        hint = f'local_domain {{ name: "{domain}" }}'
        print(f"estafeta: warning: {domain} is not a local_domain of the configuration: add {hint}", file=sys.stderr)


def cmd_add(cfg: config_pb2.Config, address: str, receive_only: bool, stdin=None) -> str:
    """Add a user; returns the normalised address. Raises UserCliError."""
    name, domain = _split(address)
    bad = sorted(set(name) & FORBIDDEN)
    if bad or name.startswith("."):
        raise UserCliError(f"{address}: a user name cannot start with '.' or hold {''.join(bad) or '.'}")
    password = None if receive_only else read_password(stdin=stdin)
    rules = address_rules(cfg)

    def change(db: users_pb2.UserDb) -> None:
        if any(u.name == name for u in db.user):
            raise UserCliError(f"{name}@{domain} exists already")
        twin = [u.name for u in db.user if rules.base(u.name) == rules.base(name)]
        if twin:
            print(f"estafeta: warning: {name} and {twin[0]} are the same without drop characters", file=sys.stderr)
        user = db.user.add(name=name)
        if password is not None:
            set_password(user, password)

    userdb.modify(domains_dir(cfg, "users_dir"), domain, change)
    _warn_not_local(cfg, domain)
    return f"{name}@{domain}"


def cmd_passwd(cfg: config_pb2.Config, address: str, stdin=None) -> str:
    name, domain = _split(address)
    users_dir = domains_dir(cfg, "users_dir")
    if not any(u.name == name for u in userdb.load(users_dir, domain).user):
        raise UserCliError(f"no such user: {name}@{domain}")
    password = read_password(stdin=stdin)

    def change(db: users_pb2.UserDb) -> None:
        for user in db.user:
            if user.name == name:
                set_password(user, password)
                return
        raise UserCliError(f"no such user: {name}@{domain}")

    userdb.modify(users_dir, domain, change)
    return f"{name}@{domain}"


def cmd_remove(cfg: config_pb2.Config, address: str) -> str:
    name, domain = _split(address)

    def change(db: users_pb2.UserDb) -> None:
        keep = [u for u in db.user if u.name != name]
        if len(keep) == len(db.user):
            raise UserCliError(f"no such user: {name}@{domain}")
        del db.user[:]
        db.user.extend(keep)

    userdb.modify(domains_dir(cfg, "users_dir"), domain, change)
    return f"{name}@{domain}"


def cmd_list(cfg: config_pb2.Config, domains: list[str]) -> list[str]:
    """Lines "<address>\\t<login|receive-only>" for the domains given, or
    every domain with a users file."""
    users_dir = domains_dir(cfg, "users_dir")
    if domains:
        names = [normalize_domain(d) for d in domains]
    else:
        try:
            names = sorted(
                d for d in os.listdir(users_dir) if os.path.exists(os.path.join(users_dir, d, userdb.USERS_FILE))
            )
        except FileNotFoundError:
            names = []
    out = []
    for domain in names:
        for user in userdb.load(users_dir, domain).user:
            kind = "login" if user.password_hash else "receive-only"
            out.append(f"{user.name}@{domain}\t{kind}")
    return out


def cmd_resolve(cfg: config_pb2.Config, address: str) -> tuple[int, list[str]]:
    """(exit status, lines) for `alias resolve`."""
    tables = DirectoryTables(cfg)
    tables.refresh(force=True)
    lines = [f"estafeta: warning: {e}" for e in tables.errors()]
    res = tables.resolver.resolve(address)
    if not res.accepted:
        return 1, lines + [f"{address}: refused: {res.reply}"]
    for r in res.recipients:
        if r.kind == "mailbox":
            lines.append(f"{r.address}\tmailbox {r.mailbox}")
        elif r.kind == "remote":
            lines.append(f"{r.address}\tremote (relayed for authenticated users and relay_network only)")
        elif r.kind == "pipe":
            lines.append(f"| {r.command}\tpipe (alias {r.address})")
        else:
            lines.append(f"{r.address}\tunknown: {r.reply} (the sender is told)")
    return 0, lines


def run(args: argparse.Namespace, cfg: config_pb2.Config) -> int:
    """Dispatch `estafeta user ...` / `estafeta alias ...`; returns the exit status."""
    try:
        if args.command == "alias":
            status, lines = cmd_resolve(cfg, args.address)
            for line in lines:
                print(line, file=sys.stderr if line.startswith("estafeta:") else sys.stdout)
            return status
        if args.action == "add":
            print(f"added {cmd_add(cfg, args.address, args.receive_only)}")
        elif args.action == "passwd":
            print(f"password set for {cmd_passwd(cfg, args.address)}")
        elif args.action == "remove":
            print(f"removed {cmd_remove(cfg, args.address)}")
        else:
            for line in cmd_list(cfg, args.domains):
                print(line)
        return 0
    except (UserCliError, userdb.UserDbError, ValueError) as e:
        print(f"estafeta: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"estafeta: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 1
