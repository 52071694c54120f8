"""Maildir delivery (https://cr.yp.to/proto/maildir.html), exactly once.

A mailbox "<domain>/<localpart>" lives at `<root>/<domain>/<localpart>/` with
the three Maildir directories tmp/, new/ and cur/ (created on demand, mode
0700). A delivered file is the delivery headers (Return-Path,
Delivered-To) followed by the queued message, written in tmp/, fdatasync'd,
and given its name in new/ only once complete; new/ is then fsync'd so the
file is durable before the queue item marks the recipient DELIVERED.

The file is made unnamed in tmp/ (Linux O_TMPFILE) and linked into new/
when flushed: a reader never sees it partial (the spec's tmp -> new
rename, in one link), no tmp/ name is left behind by a crash, and the
inode is allocated without holding a directory lock (on ext4 without a
journal a named create scans recently freed inodes under the directory's
lock; store/batchwriter.py has the measurements). Where O_TMPFILE is
missing, a named tmp/<name> is written and renamed, as the spec says.

Folders (Maildir++, as Courier and Dovecot lay them out): a mailbox's
folder "Junk" is the Maildir `<root>/<domain>/<localpart>/.Junk/` (its
own tmp/, new/, cur/ and an empty `maildirfolder` file), where a message
DMARC quarantined is delivered (RFC 7489 §6.3; actors/checks/session.py).

Line endings: Maildir files have LF line endings, as Postfix's local(8)
and Dovecot's deliver write them (and mail readers expect). The queue
keeps the message as received (CRLF, or whatever the client sent):
CRLF becomes LF here, a bare LF stays, so a message sent with bare LFs is
not stored with mixed endings.

Exactly once: the file name is deterministic per (queue item, recipient)
— `unique_name()` — instead of the spec's time/pid/counter name. A delivery
repeated after a crash (the item was not yet rewritten as DELIVERED, or its
removal was undone) is made with check_existing=True and finds the earlier
file, in new/ or already moved to cur/ by a mail reader (possibly with
":2,<flags>" appended), and does not deliver a second copy. The link into
new/ fails on an existing name too (reported as already there).

`deliver()` blocks (fsync): callers on the hub run it with
`estafeta.store.blocking.run_blocking(deliver, ...)`; the daemon's disk
worker (store/disk_worker.py) runs `deliver_batch()` on the deliveries
that arrive together, sharing the fsync of each new/ directory and starting
every file's writeback before the first fdatasync.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from estafeta.store import queuefile
from estafeta.store.blocking import Request

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
#: An unnamed file in tmp/, linked into new/ once written and flushed.
_TMPFILE_FLAGS = (os.O_WRONLY | os.O_TMPFILE | _O_CLOEXEC) if hasattr(os, "O_TMPFILE") else None
#: errnos of a file system (or kernel) without O_TMPFILE.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
_SUBDIRS = ("tmp", "new", "cur")
#: Bodies are converted to LF endings in chunks of this many bytes.
_CHUNK = 1 << 20

#: One group-commit state per new/ directory, so concurrent deliveries into
#: the same mailbox share the directory fsync. Bounded: cleared when it
#: grows past this (a second DirSync for a directory is merely less shared).
_dirsyncs: dict[str, queuefile.DirSync] = {}
_DIRSYNCS_MAX = 4096
#: False once this process found the file system without O_TMPFILE.
_tmpfile_ok = _TMPFILE_FLAGS is not None


def delivery_headers(reverse_path: str, recipient: str) -> bytes:
    """The header fields local delivery prepends, LF-terminated (a Maildir
    file's line ends), UTF-8 for SMTPUTF8 addresses (RFC 6532):
    Return-Path (RFC 5321 §4.4, added at final delivery) and Delivered-To
    (RFC 9228, as Postfix's local and virtual add it). `reverse_path` ""
    is the null reverse-path <>."""
    return f"Return-Path: <{reverse_path}>\nDelivered-To: {recipient}\n".encode()


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


def check_folder(folder: str) -> str:
    """The directory name of a Maildir++ folder: "Junk" -> ".Junk",
    "Archive.2026" -> ".Archive.2026" (Maildir++: "." separates levels).
    Raises ValueError for a name that could escape its mailbox: empty, a
    "/" or NUL, a leading or trailing "." or an empty level ("..")."""
    if not folder or "/" in folder or "\0" in folder or folder[0] == "." or folder[-1] == "." or ".." in folder:
        raise ValueError(f"invalid maildir folder {folder!r}: Maildir++ names like 'Junk' or 'Archive.2026'")
    return "." + folder


def maildir_path(root: str, mailbox: str, folder: str = "") -> str:
    """`<root>/<domain>/<localpart>`, or its Maildir++ folder
    `<root>/<domain>/<localpart>/.<folder>`, for a validated mailbox and
    folder (ValueError)."""
    domain, localpart = check_mailbox(mailbox)
    if folder:
        return os.path.join(root, domain, localpart, check_folder(folder))
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


#: The file that marks a Maildir++ folder (Courier's maildirmake -f).
FOLDER_MARK = "maildirfolder"


def _make_maildir(root: str, maildir: str) -> None:
    """Create <domain>/, <localpart>/ and its tmp/, new/, cur/ (mode 0700)
    — for a Maildir++ folder (`maildir` is <localpart>/.<folder>) the
    mailbox's too, then the folder's with its `maildirfolder` file — and
    fsync every directory we added entries to, so that a delivery reported
    done cannot lose its maildir in a crash. Rare: the first delivery to a
    mailbox or folder."""
    if not os.path.isdir(root):
        os.makedirs(root, 0o700, exist_ok=True)
    created: list[str] = []
    folder = os.path.basename(maildir).startswith(".")
    mailbox = os.path.dirname(maildir) if folder else maildir
    for path in (os.path.dirname(mailbox), mailbox, *(os.path.join(mailbox, s) for s in _SUBDIRS)):
        _mkdir(path, created)
    if folder:
        for path in (maildir, *(os.path.join(maildir, s) for s in _SUBDIRS)):
            _mkdir(path, created)
        mark = os.path.join(maildir, FOLDER_MARK)
        if not os.path.exists(mark):
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | _O_CLOEXEC, 0o600))
            created.append(mark)
    for parent in {os.path.dirname(p) for p in created}:
        queuefile.fsync_directory(parent)


def _mkdir(path: str, created: list[str]) -> None:
    try:
        os.mkdir(path, 0o700)
        created.append(path)
    except FileExistsError:
        pass


def to_lf(data: bytes) -> bytes:
    """CRLF line ends as LF (a bare LF or CR stays as it is)."""
    return data.replace(b"\r\n", b"\n")


def _write_lf(fd: int, header_prefix: bytes, body: bytes | None, body_path: str | None) -> None:
    """Write header_prefix, then the message (`body`, or the file at
    body_path) with CRLF turned into LF; a file is read in _CHUNK pieces,
    a CR at a piece's end held back for the next one."""
    if body is not None:
        queuefile.write_all(fd, header_prefix + to_lf(body))
        return
    assert body_path is not None
    with open(body_path, "rb") as src:
        data = src.read(_CHUNK)
        if len(data) < _CHUNK:  # the usual case: one read, one write
            queuefile.write_all(fd, header_prefix + to_lf(data))
            return
        queuefile.write_all(fd, header_prefix)
        carry = b""
        while data:
            data = carry + data
            carry = b"\r" if data.endswith(b"\r") else b""
            queuefile.write_all(fd, to_lf(data[:-1] if carry else data))
            data = src.read(_CHUNK)
        if carry:
            queuefile.write_all(fd, carry)


def _open_staged(root: str, maildir: str, name: str) -> tuple[int, str | None]:
    """A new file to write one delivery into: (fd, tmp path), the path None
    for an unnamed (O_TMPFILE) file in tmp/. Makes the maildir on first
    use."""
    global _tmpfile_ok
    tmp_dir = os.path.join(maildir, "tmp")
    for attempt in (0, 1):
        try:
            if _tmpfile_ok:
                try:
                    return os.open(tmp_dir, _TMPFILE_FLAGS, 0o600), None
                except OSError as e:
                    if e.errno not in _NO_TMPFILE:
                        raise
                    _tmpfile_ok = False  # this file system cannot: named tmp files from now on
            tmp = os.path.join(tmp_dir, name)
            return os.open(tmp, _TMP_FLAGS, 0o600), tmp
        except FileNotFoundError:
            if attempt:
                raise
            _make_maildir(root, maildir)
    raise AssertionError("unreachable")


def _name_file(root: str, fd: int, tmp: str | None, final: str) -> bool:
    """Give the flushed file its name in new/: link the unnamed file, or
    rename tmp/<name>. False if `final` was there already (an earlier
    attempt's delivery whose reply was lost): that copy stands."""
    if tmp is None:
        # linkat(2) of the /proc/self/fd entry with AT_SYMLINK_FOLLOW (what
        # linkat(AT_EMPTY_PATH) does without CAP_DAC_READ_SEARCH); os.link
        # makes that call only when given a dir_fd, ignored for an absolute
        # path (store/batchwriter.py _link_fd).
        for attempt in (0, 1):
            try:
                os.link(f"/proc/self/fd/{fd}", final, dst_dir_fd=fd, follow_symlinks=True)
            except FileExistsError:
                return False
            except FileNotFoundError:
                if attempt:
                    raise
                # A first delivery to this mailbox made concurrently by
                # another thread has tmp/ but not new/ yet.
                _make_maildir(root, os.path.dirname(os.path.dirname(final)))
                continue
            return True
    if os.path.lexists(final):
        os.unlink(tmp)
        return False
    os.rename(tmp, final)
    return True


def deliver(
    root: str,
    mailbox: str,
    name: str,
    header_prefix: bytes,
    body: bytes | None,
    body_path: str | None,
    check_existing: bool,
    folder: str = "",
) -> tuple[str, bool]:
    """Deliver one message into the Maildir of `mailbox` under `root`, or
    into its Maildir++ `folder` ("Junk": <mailbox>/.Junk/; "" the inbox).

    Writes header_prefix + the message (from `body` bytes, or read from the
    file `body_path` when body is None) with LF line ends, fdatasyncs it,
    names it new/<name> and fsyncs new/ (group-committed with concurrent
    deliveries to the same mailbox). Returns (path, already_there): with
    check_existing=True an earlier delivery of `name` (new/, cur/, or cur/
    with ":2,<flags>") is returned as (its path, True) and nothing is
    written; so is a new/<name> found in place when naming the file.

    Blocking: run it with run_blocking (or, batched, deliver_batch).
    Raises ValueError for a mailbox or name that could escape `root`
    (permanent: 5xx), OSError for I/O errors (ENOSPC/EDQUOT: mailbox full;
    FileNotFoundError naming body_path: the queued body is gone).
    """
    req = Request((root, mailbox, name, header_prefix, body, body_path, check_existing, folder))
    deliver_batch([req])
    if req.error is not None:
        raise req.error
    return req.result


def deliver_batch(requests: Sequence[Request]) -> None:
    """Deliver a batch (blocking): each request's args are deliver()'s
    (all eight, folder "" for the inbox); its result is (path, already_there) or its error is set."""
    advise = len(requests) > 1
    staged: list[list] = []  # [fd, tmp path or None, final path, request]
    by_dir: dict[str, list] = {}  # new/ directory -> [(final path, request, already there)] to fsync
    # 1. write every file and start its writeback
    for req in requests:
        root, mailbox, name, header_prefix, body, body_path, check_existing, folder = req.args
        fd = tmp = None
        try:
            maildir = maildir_path(root, mailbox, folder)
            _check_name(name)
            if body is None and body_path is None:
                raise ValueError("deliver() needs body or body_path")
            if check_existing:
                found = find_existing(maildir, name)
                if found is not None:
                    req.result = (found, True)
                    continue
            fd, tmp = _open_staged(root, maildir, name)
            _write_lf(fd, header_prefix, body, body_path)
            if advise:
                queuefile.start_writeback(fd)
            staged.append([fd, tmp, os.path.join(maildir, "new", name), req])
        except Exception as e:
            req.error = e
            _discard(fd, tmp)
    # 2. fdatasync each file; 3. name it in new/
    errors = queuefile.sync_all([entry[0] for entry in staged])
    for error, (fd, tmp, final, req) in zip(errors, staged, strict=True):
        try:
            if error is not None:
                raise error
            already = not _name_file(req.args[0], fd, tmp, final)
        except Exception as e:
            req.error = e
            _discard(fd, tmp)
            continue
        os.close(fd)
        by_dir.setdefault(os.path.dirname(final), []).append((final, req, already))
    # 4. one fsync per new/ directory makes its names durable
    for new_dir, done in by_dir.items():
        try:
            _dirsync(new_dir).sync()
        except Exception as e:
            for _, req, _ in done:
                req.error = e
            continue
        for final, req, already in done:
            req.result = (final, already)


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
