"""The maildrop: <data_dir>/maildrop/, where `estafeta sendmail` leaves
messages for the daemon (Postfix's maildrop), so local mail can be
submitted while the daemon is down.

A message is two files named by one drop id:

    <id>.msg    the message, CRLF line ends
    <id>.drop   its envelope, a text-format MaildropEnvelope (proto/maildrop.proto)

written with store/queuefile.py's discipline, .msg first (temp file,
fdatasync, rename), then .drop (the same, then an fsync of the directory
that makes both renames durable): a .drop always has its .msg, and a
message is in the maildrop once sendmail has exited 0. The daemon's Pickup
actor (actors/pickup.py) lists the .drop files, hands each message to the
queue, then removes .drop and .msg.

The directory is mode 1733 (as Postfix's world-writable maildrop was):
anyone who can reach it may drop a message, nobody but its owner and the
daemon can list it; the sticky bit keeps one user from removing another's
files. The submitter is the .drop file's owner (st_uid), which the pickup
trusts rather than anything written in the file.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass

from estafeta.proto import maildrop_pb2
from estafeta.store.queuefile import (
    CorruptFileError,
    atomic_write,
    fsync_directory,
    is_temp_name,
    parse_message,
    to_text,
)

MAILDROP = "maildrop"
CORRUPT = "corrupt"
DIR_MODE = 0o1733
_counter = itertools.count(random.getrandbits(16))


def maildrop_dir(data_dir: str) -> str:
    return os.path.join(data_dir, MAILDROP)


def ensure(data_dir: str) -> str:
    """Create <data_dir>/maildrop (mode 1733), and <data_dir> (0700) if the
    daemon never ran, if needed; returns its path. Raises OSError."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    d = maildrop_dir(data_dir)
    try:
        os.mkdir(d)
    except FileExistsError:
        return d
    os.chmod(d, DIR_MODE)  # mkdir's mode is cut by the umask
    return d


def new_id() -> str:
    """A drop id: 16 hex digits of microseconds, the pid, a counter and
    random bits (unique among concurrent sendmail commands; sorts by time)."""
    return f"{time.time_ns() // 1000:016x}.{os.getpid():x}.{next(_counter) & 0xFFFF:04x}{random.getrandbits(32):08x}"


def write(data_dir: str, envelope: maildrop_pb2.MaildropEnvelope, message: bytes) -> str:
    """Write a message into the maildrop durably; returns its drop id.
    Raises OSError (nothing is left behind but, at worst, a temp file)."""
    d = maildrop_dir(data_dir)
    drop_id = new_id()
    msg = os.path.join(d, drop_id + ".msg")
    atomic_write(msg, message, fsync_dir=False, mode=0o644)
    try:
        atomic_write(os.path.join(d, drop_id + ".drop"), to_text(envelope), fsync_dir=True, mode=0o644)
    except OSError:
        try:
            os.unlink(msg)
        except OSError:
            pass
        raise
    return drop_id


@dataclass(frozen=True)
class Dropped:
    """A message taken from the maildrop: its drop id, envelope, message
    bytes, and the uid that owns its .drop file (who submitted it)."""

    drop_id: str
    envelope: maildrop_pb2.MaildropEnvelope
    message: bytes
    uid: int


def pending(data_dir: str) -> list[str]:
    """The drop ids with a .drop file, oldest first. Raises OSError."""
    ids = []
    with os.scandir(maildrop_dir(data_dir)) as it:
        for entry in it:
            name = entry.name
            if name.endswith(".drop") and not is_temp_name(name):
                ids.append(name[:-5])
    return sorted(ids)


def read(data_dir: str, drop_id: str) -> Dropped:
    """Read one dropped message. Raises OSError, or CorruptFileError for a
    .drop that does not parse or a .msg whose size is not the one recorded."""
    d = maildrop_dir(data_dir)
    path = os.path.join(d, drop_id + ".drop")
    with open(path, "rb") as f:
        uid = os.fstat(f.fileno()).st_uid
        envelope = parse_message(path, f.read(), maildrop_pb2.MaildropEnvelope)
    with open(os.path.join(d, drop_id + ".msg"), "rb") as f:
        message = f.read()
    if envelope.size and envelope.size != len(message):
        raise CorruptFileError(f"{path}: the message has {len(message)} bytes, the envelope says {envelope.size}")
    return Dropped(drop_id, envelope, message, uid)


def remove(data_dir: str, drop_id: str) -> None:
    """Remove a picked-up message (.drop first: a crash in between leaves
    an orphan .msg, which `clean` removes, never a .drop without .msg)."""
    d = maildrop_dir(data_dir)
    for suffix in (".drop", ".msg"):
        try:
            os.unlink(os.path.join(d, drop_id + suffix))
        except FileNotFoundError:
            pass
    fsync_directory(d)


def set_aside(data_dir: str, drop_id: str) -> str:
    """Move an unusable message's files to maildrop/corrupt/ (kept for the
    operator, out of the pickup's way); returns that directory."""
    d = maildrop_dir(data_dir)
    target = os.path.join(d, CORRUPT)
    os.makedirs(target, mode=0o700, exist_ok=True)
    for suffix in (".drop", ".msg"):
        try:
            os.rename(os.path.join(d, drop_id + suffix), os.path.join(target, drop_id + suffix))
        except FileNotFoundError:
            pass
    fsync_directory(d)
    return target


def clean(data_dir: str, older_than: float = 3600.0) -> int:
    """Remove what crashed sendmail commands or pickups left, once older than
    `older_than` seconds (a running sendmail may be writing the newest):
    temp files, and .msg files without .drop. Returns how many."""
    d = maildrop_dir(data_dir)
    now = time.time()
    removed = 0
    with os.scandir(d) as it:
        entries = [(e.name, e.path) for e in it if e.is_file(follow_symlinks=False)]
    names = {name for name, _ in entries}
    for name, path in entries:
        orphan = name.endswith(".msg") and name[:-4] + ".drop" not in names
        if not (is_temp_name(name) or orphan):
            continue
        try:
            if now - os.lstat(path).st_mtime >= older_than:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed
