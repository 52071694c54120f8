"""User database files: <users_dir>/<domain>/users, one text-format UserDb
(proto/users.proto) per local domain.

Written with store/queuefile.py's discipline (temp file, fdatasync,
rename, fsync of the directory), so the daemon — which only reads them,
again whenever a file's modification time or size changes — sees the old
file or the new one, never a torn one. Read-modify-write by `estafeta
user` holds an flock(2) on <users_dir>/<domain>/.users.lock, so two
commands at once do not lose each other's change.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator

from estafeta.proto import users_pb2
from estafeta.store.queuefile import CorruptFileError, read_message, write_message

#: File name of a domain's user database inside its directory.
USERS_FILE = "users"
_LOCK_FILE = ".users.lock"


class UserDbError(Exception):
    """A user database that cannot be used (unreadable, bad syntax, wrong
    domain, a user twice); str() names the file."""


def users_path(users_dir: str, domain: str) -> str:
    """<users_dir>/<domain>/users; `domain` an A-label in lower case."""
    if not domain or "/" in domain or domain.startswith("."):
        raise ValueError(f"{domain!r} cannot be a directory name")
    return os.path.join(users_dir, domain, USERS_FILE)


def check(db: users_pb2.UserDb, path: str, domain: str) -> None:
    """Raise UserDbError if `db` is not `domain`'s or names a user twice."""
    if db.domain and db.domain != domain:
        raise UserDbError(f'{path}: domain is "{db.domain}", expected "{domain}"')
    seen = set()
    for user in db.user:
        if not user.name:
            raise UserDbError(f"{path}: a user has no name")
        if user.name in seen:
            raise UserDbError(f'{path}: user "{user.name}" is listed twice')
        seen.add(user.name)


def load(users_dir: str, domain: str) -> users_pb2.UserDb:
    """The domain's UserDb; an empty one (with its domain set) when the file
    does not exist. Raises UserDbError."""
    path = users_path(users_dir, domain)
    try:
        db = read_message(path, users_pb2.UserDb)
    except FileNotFoundError:
        return users_pb2.UserDb(domain=domain)
    except CorruptFileError as e:
        raise UserDbError(str(e)) from None
    except OSError as e:
        raise UserDbError(f"{path}: cannot read: {e.strerror}") from None
    check(db, path, domain)
    db.domain = domain
    return db


def save(users_dir: str, db: users_pb2.UserDb) -> None:
    """Write the UserDb atomically and durably (mode 0600: it holds password
    hashes). Raises OSError."""
    path = users_path(users_dir, db.domain)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_message(path, db)


@contextlib.contextmanager
def locked(users_dir: str, domain: str) -> Iterator[None]:
    """Hold the domain's lock file (flock, exclusive) for a read-modify-write."""
    directory = os.path.dirname(users_path(users_dir, domain))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def modify(users_dir: str, domain: str, change: Callable[[users_pb2.UserDb], None]) -> users_pb2.UserDb:
    """Load the domain's UserDb under its lock, apply `change` (which may
    raise to abort: nothing is written), save it; returns it. Raises
    UserDbError, OSError, or what `change` raises."""
    with locked(users_dir, domain):
        db = load(users_dir, domain)
        change(db)
        save(users_dir, db)
        return db
