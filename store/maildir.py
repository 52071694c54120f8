"""Maildir delivery (https://cr.yp.to/proto/maildir.html), exactly once.

A mailbox "<domain>/<localpart>" lives at `<root>/<domain>/<localpart>/` with
the three Maildir directories tmp/, new/ and cur/ (created on demand, mode
0700). Delivery follows the spec: write tmp/<name>, fsync it, rename it to
new/<name>; we also fsync new/ so that the rename is durable before the
queue item marks the recipient DELIVERED. (A single-recipient message is
delivered by a hard link instead, below.)

Exactly once: the file name is deterministic per (queue item, recipient)
— `unique_name()` — instead of the spec's time/pid/counter name. A delivery
repeated after a crash (the item was not yet rewritten as DELIVERED, or its
removal was undone) is made with check_existing=True and finds the earlier
file, in new/ or already moved to cur/ by a mail reader (possibly with
":2,<flags>" appended), and does not deliver a second copy.

Delivery by hard link: a message with one recipient is queued with that
recipient's delivery headers already in front of it
(QueueItem.delivery_headers_size), so its body file is the whole Maildir
file, written and fdatasync'd before the 250. Its delivery is then
link(<queue>/<id>.body, new/<name>) and the shared fsync of new/: no second
copy of the message and no second fdatasync (docs/PERFORMANCE.md: +15-28 %
msg/s at 1 KiB, c=10). The file appears in new/ complete, as the spec
requires of the tmp/ -> new/ rename, and the queue never writes a body
twice. The queue later unlinks its name (store/batchwriter.py never
recycles an inode with another link). A link, unlike a rename,
leaves the queue's copy in place until the recipient is recorded as
delivered, so no crash can leave the message in neither directory. Where
no link can be made (the mail root on another file system: EXDEV; EPERM,
EOPNOTSUPP) the file is copied as below. On a file system without a
journal, as for every rename here, a power loss is repaired by e2fsck
(link counts included) before the daemon runs again.

Line endings: the file holds `header_prefix + body` byte for byte, with the
body's CRLF line endings as received. Byte-identical delivery keeps DKIM
signatures verifiable by a later reader and needs no per-line rewriting
(hot path); Dovecot and most MUAs read CRLF maildirs as they are (Dovecot
writes them too with `mail_save_crlf`).

`deliver()` blocks (fsync): callers on the hub run it with
`estafeta.store.blocking.run_blocking(deliver, ...)`; the daemon's disk
worker (store/disk_worker.py) runs `deliver_batch()` on the deliveries
that arrive together, sharing the fsync of each new/ directory.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence

from estafeta.store import queuefile
from estafeta.store.blocking import Request

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_SUBDIRS = ("tmp", "new", "cur")
#: link(2) errors after which the body is copied instead (no hard links here).
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})

#: One group-commit state per new/ directory, so concurrent deliveries into
#: the same mailbox share the directory fsync. Bounded: cleared when it
#: grows past this (a second DirSync for a directory is merely less shared).
_dirsyncs: dict[str, queuefile.DirSync] = {}
_DIRSYNCS_MAX = 4096


def delivery_headers(reverse_path: str, recipient: str) -> bytes:
    """The header fields local delivery prepends, CRLF-terminated, UTF-8
    for SMTPUTF8 addresses (RFC 6532): Return-Path (RFC 5321 §4.4, added
    at final delivery) and Delivered-To (RFC 9228, as Postfix's local and
    virtual add it). `reverse_path` "" is the null reverse-path <>."""
    return f"Return-Path: <{reverse_path}>\r\nDelivered-To: {recipient}\r\n".encode()


def unique_name(queue_id: str, recipient_index: int, created_at: float, hostname: str) -> str:
    """The Maildir file name of one recipient's copy of a queue item:
    "<created_at seconds>.Q<queue_id>R<recipient_index>.<host>", e.g.
    "1735000000.Q00062f1a2b3c4d5e0a1b2cR0.mx.example.org".

    Deterministic, so a redelivery finds the earlier file (exactly once).
    As the spec requires, "/" and ":" in the host name become \\057 and
    \\072 ("/" would make a path, ":" starts the info part).
    """
    host = hostname.replace("/", "\\057").replace(":", "\\072")
    return f"{int(created_at)}.Q{queue_id}R{recipient_index}.{host}"


def check_mailbox(mailbox: str) -> tuple[str, str]:
    """Split and validate "<domain>/<localpart>"; returns (domain, localpart).

    Raises ValueError if it could name anything outside the mail root: not
    exactly two non-empty parts, a NUL, or a part starting with "." (which
    also covers "." and "..").
    """
    domain, sep, localpart = mailbox.partition("/")
    for part in (domain, localpart):
        if not part or "/" in part or "\0" in part or part[0] == ".":
            raise ValueError(
                f"invalid mailbox {mailbox!r}: expected <domain>/<localpart>, "
                "each non-empty, without '/', NUL or a leading '.'"
            )
    return domain, localpart


def maildir_path(root: str, mailbox: str) -> str:
    """`<root>/<domain>/<localpart>` for a validated mailbox (ValueError)."""
    domain, localpart = check_mailbox(mailbox)
    return os.path.join(root, domain, localpart)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name[0] == "." or ":" in name:
        raise ValueError(f"invalid maildir file name {name!r}")


def find_existing(maildir: str, name: str) -> str | None:
    """Path of an earlier delivery of `name` in the maildir: new/<name>,
    cur/<name>, or cur/<name>:<info> (e.g. ":2,S" once read); else None."""
    for sub in ("new", "cur"):
        path = os.path.join(maildir, sub, name)
        if os.path.lexists(path):
            return path
    prefix = name + ":"
    try:
        with os.scandir(os.path.join(maildir, "cur")) as it:
            for entry in it:
                if entry.name.startswith(prefix):
                    return entry.path
    except FileNotFoundError:
        pass
    return None


def _make_maildir(root: str, maildir: str) -> None:
    """Create <domain>/, <localpart>/ and its tmp/, new/, cur/ (mode 0700),
    and fsync every directory we added entries to, so that a delivery
    reported done cannot lose its maildir in a crash. Rare: the first
    delivery to a mailbox."""
    if not os.path.isdir(root):
        os.makedirs(root, 0o700, exist_ok=True)
    created: list[str] = []
    for path in (os.path.dirname(maildir), maildir, *(os.path.join(maildir, s) for s in _SUBDIRS)):
        _mkdir(path, created)
    for parent in {os.path.dirname(p) for p in created}:
        queuefile.fsync_directory(parent)


def _mkdir(path: str, created: list[str]) -> None:
    try:
        os.mkdir(path, 0o700)
        created.append(path)
    except FileExistsError:
        pass


def _copy_body(fd: int, body_path: str) -> None:
    """Append the file at body_path to fd in the kernel (copy_file_range or
    sendfile; no Python-level buffers), falling back to copyfileobj."""
    with open(body_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        sent = 0
        try:
            while sent < size:
                n = os.sendfile(fd, src.fileno(), sent, size - sent)
                if n == 0:
                    break  # the body shrank under us: copy what is there
                sent += n
            return
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV) or sent:
                raise
        src.seek(0)
        with os.fdopen(os.dup(fd), "wb", closefd=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def deliver(
    root: str,
    mailbox: str,
    name: str,
    header_prefix: bytes,
    body: bytes | None,
    body_path: str | None,
    check_existing: bool,
    link: bool = False,
) -> tuple[str, bool]:
    """Deliver one message into the Maildir of `mailbox` under `root`.

    Writes tmp/<name> = header_prefix + message (from `body` bytes, or
    streamed in the kernel from the file `body_path` when body is None),
    fsyncs it, renames it to new/<name> and fsyncs new/ (group-committed
    with concurrent deliveries to the same mailbox). With link=True the
    durable file `body_path` is the whole Maildir file (header_prefix
    empty): it is hard-linked as new/<name> instead, then new/ fsync'd; a
    copy as above where no link can be made. Returns (path,
    already_there): with check_existing=True an earlier delivery of `name`
    (new/, cur/, or cur/ with ":2,<flags>") is returned as (its path, True)
    and nothing is written; so is a new/<name> a link finds in place.

    Maildir spec (cr.yp.to/proto/maildir.html): tmp -> new by rename; a
    leftover tmp/<name> from a crashed attempt is overwritten.

    Blocking: run it with run_blocking (or, batched, deliver_batch).
    Raises ValueError for a mailbox or name that could escape `root`
    (permanent: 5xx), OSError for I/O errors (ENOSPC/EDQUOT: mailbox full;
    FileNotFoundError naming body_path: the queued body is gone).
    """
    req = Request((root, mailbox, name, header_prefix, body, body_path, check_existing, link))
    deliver_batch([req])
    if req.error is not None:
        raise req.error
    return req.result


def deliver_batch(requests: Sequence[Request]) -> None:
    """Deliver a batch (blocking): each request's args are deliver()'s;
    its result is (path, already_there) or its error is set."""
    advise = len(requests) > 1
    staged: dict[str, list] = {}  # tmp path -> [fd, final path, [requests]]
    by_dir: dict[str, list] = {}  # new/ directory -> [(final path, [requests], already there)] to fsync
    # 1. link the whole files; write every tmp/ file and start its writeback
    for req in requests:
        root, mailbox, name, header_prefix, body, body_path, check_existing, link = req.args
        fd = tmp = None
        try:
            maildir = maildir_path(root, mailbox)
            _check_name(name)
            if body is None and body_path is None:
                raise ValueError("deliver() needs body or body_path")
            if check_existing:
                found = find_existing(maildir, name)
                if found is not None:
                    req.result = (found, True)
                    continue
            if link and body_path and _link(root, maildir, name, body_path, req, by_dir):
                continue
            tmp = os.path.join(maildir, "tmp", name)
            if tmp in staged:  # the same copy twice in one batch: one file
                staged[tmp][2].append(req)
                continue
            try:
                fd = os.open(tmp, _TMP_FLAGS, 0o600)
            except FileNotFoundError:
                _make_maildir(root, maildir)
                fd = os.open(tmp, _TMP_FLAGS, 0o600)
            if body is not None:
                # One syscall, no concatenated copy of a large body.
                n = os.writev(fd, (header_prefix, body))
                if n < len(header_prefix) + len(body):
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.ftruncate(fd, 0)
                    queuefile.write_all(fd, header_prefix + body)
            else:
                queuefile.write_all(fd, header_prefix)
                _copy_body(fd, body_path)
            if advise:
                queuefile.start_writeback(fd)
            staged[tmp] = [fd, os.path.join(maildir, "new", name), [req]]
        except Exception as e:
            req.error = e
            _discard(fd, tmp)
    # 2. fdatasync each file; 3. rename it into new/
    errors = queuefile.sync_all([entry[0] for entry in staged.values()])
    for error, (tmp, (fd, final, reqs)) in zip(errors, staged.items(), strict=True):
        try:
            try:
                if error is not None:
                    raise error
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except Exception as e:
            _discard(None, tmp)
            for req in reqs:
                req.error = e
            continue
        by_dir.setdefault(os.path.dirname(final), []).append((final, reqs, False))
    # 4. one fsync per new/ directory makes its renames durable
    for new_dir, done in by_dir.items():
        try:
            _dirsync(new_dir).sync()
        except Exception as e:
            for _, reqs, _ in done:
                for req in reqs:
                    req.error = e
            continue
        for final, reqs, already in done:
            for req in reqs:
                req.result = (final, already)


def _link(root: str, maildir: str, name: str, body_path: str, req: Request, by_dir: dict[str, list]) -> bool:
    """Hard-link the whole file body_path as new/<name> (see the module
    docstring). True if linked or already there (an earlier attempt's
    link: the name is unique per queue item and recipient, and that
    attempt's reply was lost); either way req waits in by_dir for the fsync
    of new/. False if this file system makes no links (copy instead).
    Raises OSError, FileNotFoundError for a missing body."""
    new_dir = os.path.join(maildir, "new")
    final = os.path.join(new_dir, name)
    try:
        try:
            os.link(body_path, final, follow_symlinks=False)
        except FileNotFoundError:
            if os.path.isdir(new_dir):
                raise  # the body is gone
            _make_maildir(root, maildir)  # the first delivery to this mailbox
            os.link(body_path, final, follow_symlinks=False)
        already = False
    except FileExistsError:
        already = True
    except OSError as e:
        if e.errno in _NO_LINK:
            return False
        raise
    by_dir.setdefault(new_dir, []).append((final, [req], already))
    return True


def _discard(fd: int | None, tmp: str | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _dirsync(path: str) -> queuefile.DirSync:
    ds = _dirsyncs.get(path)
    if ds is None:
        if len(_dirsyncs) >= _DIRSYNCS_MAX:
            _dirsyncs.clear()
        ds = _dirsyncs.setdefault(path, queuefile.DirSync(path))
    return ds
