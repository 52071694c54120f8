"""BatchWriter: group commit of atomic writes in one directory, with
recycled inodes.

A batch of requests — each `(writes, unlinks)` — runs in four phases:
create and write every file (starting its writeback), fdatasync them all,
rename the temps into place and do the
unlinks in call order, fsync the directory once. So every caller returns
only after a directory fsync that began after its own renames (classic
group commit), and requests on one path land in call order.

Recycled inodes (`recycle=True`, the disk worker's writers): on this
project's machines the file system is ext4 without a journal, where the
inode allocator skips every inode freed in the last 60-360 s
(`recently_deleted()` in fs/ext4/ialloc.c) by reading its inode table
block: under a mail load, where each message's queue files are created and
deleted within seconds, creating an empty file was measured at 700 µs of
kernel CPU instead of 20 µs. So a removed queue file is not unlinked but
renamed to a spare name (".spare.tmp.<pid>.<n>", a temp-file name: removed
at start-up like any temp file), and a later create takes a spare instead
of a new inode: a body is `rename_noreplace(spare, path)` (EEXIST like
O_EXCL); a temp file is `rename(spare, tmp)`. A reused spare is then
overwritten in place and cut to the new length (ftruncate), not opened
with O_TRUNC: that would free its blocks only for the write to allocate
them again, and with the `discard` mount option (this machine's) each
free is a discard request to the device; measured in the disk worker,
O_TRUNC opens of spares took 157 µs p50, the overwrite and ftruncate
~15 µs. An item replaced by rename keeps its old inode as a spare too
(`link(path, spare)` before the rename). So in steady state the queue
neither allocates nor frees inodes: a message's body and item take spares
left by earlier messages, and give them back when removed.

Why this is crash-safe: a spare is reused only after a directory fsync
that *followed* its rename has completed, so the name change is on disk
before the inode's content is overwritten; a crash can never bring back an
old item name over another message's bytes. Until then it waits in
`pending`. Spares are never read; start-up removes them all (a crash may
have left one sharing its inode with a live item).

If that directory fsync fails, every writing request of the batch gets its
error although its files are in place: durability is unknown, so the
caller must not report success (a put's client gets a 4xx and may send
again: at least once, never lost).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any

from gevent.monkey import get_original

from estafeta.store.blocking import Batcher, Request
from estafeta.store.queuefile import (
    _EXCL_FLAGS,
    _O_CLOEXEC,
    _O_NOFOLLOW,
    _TMP_FLAGS,
    fsync_directory,
    rename_noreplace,
    start_writeback,
    sync_all,
    temp_path,
    write_all,
)

#: Most spare files a BatchWriter keeps; past it, removals unlink.
SPARE_LIMIT = 1024
#: A new file made unnamed in its directory (Linux O_TMPFILE), named by a
#: link once written and flushed: see BatchWriter._create.
_TMPFILE_FLAGS = (os.O_WRONLY | os.O_TMPFILE | _O_CLOEXEC) if hasattr(os, "O_TMPFILE") else None
#: errnos of a file system (or kernel) without O_TMPFILE.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
#: A reused spare is overwritten, then cut to size (the module docstring).
_REUSE_FLAGS = os.O_WRONLY | _O_CLOEXEC | _O_NOFOLLOW
#: An OS lock even under gevent's monkey patching: batches run in native
#: threads (the disk worker's, the hub threadpool's).
_allocate_lock = get_original("_thread", "allocate_lock")


class SparePool:
    """The spare inodes of one directory (see the module docstring). Safe
    for several threads running batches at once (an OS lock).

    `ready`: spares whose rename a finished directory fsync covers (may be
    reused); `pending`: renamed, but no directory fsync that began after
    the rename has finished yet. A batch collects the spares it makes and
    hands them to `end()`: after its own directory fsync they are ready;
    without one (a batch of removals only, or a failed fsync) they wait for
    the next batch's fsync, which `begin()` gives them to.
    """

    def __init__(self, directory: str, limit: int = SPARE_LIMIT):
        self.directory = directory
        self.limit = limit
        self.ready: list[str] = []
        self.pending: list[str] = []
        self._unsynced: list[str] = []  # pending, and no batch has taken them
        self._lock = _allocate_lock()
        self.reused = 0
        self.recycled = 0

    def full(self) -> bool:
        return len(self.ready) + len(self.pending) >= self.limit

    def new_name(self) -> str:
        """A fresh spare path (a temp-file name, so start-up removes it)."""
        return temp_path(os.path.join(self.directory, "spare"))

    def take(self) -> str | None:
        """A reusable spare path, or None. The caller reports `used()` or
        `give_back()`s it; if the file turned out to be gone, neither."""
        with self._lock:
            return self.ready.pop() if self.ready else None

    def used(self) -> None:
        """A spare from take() now holds a new file (counted in `reused`)."""
        with self._lock:
            self.reused += 1

    def give_back(self, path: str) -> None:
        """Return a spare from take() that was not used."""
        with self._lock:
            self.ready.append(path)

    def renamed(self, path: str, mine: list[str]) -> None:
        """A file was just renamed to the spare `path` by the batch whose
        list is `mine`."""
        with self._lock:
            self.pending.append(path)
            self.recycled += 1
        mine.append(path)

    def begin(self) -> list[str]:
        """A batch starts: its list of spares, holding those renamed before
        now that no fsync covers yet (this batch's fsync will)."""
        with self._lock:
            mine, self._unsynced = self._unsynced, []
        return mine

    def end(self, mine: list[str], synced: bool) -> None:
        """The batch is over; `synced`: its directory fsync succeeded."""
        if not mine:
            return
        with self._lock:
            if synced:
                done = set(mine)
                self.pending = [p for p in self.pending if p not in done]
                self.ready.extend(mine)
            else:
                self._unsynced.extend(mine)

    def synced(self) -> None:
        """A directory fsync began after every pending rename and finished
        (single-threaded use and tests)."""
        with self._lock:
            self.ready.extend(self.pending)
            self.pending.clear()
            self._unsynced.clear()


class BatchWriter(Batcher):
    """Group commit of atomic writes in one directory (a Batcher).

    Each request is `(writes, unlinks)`: `writes` are (path, data,
    exclusive) triples — exclusive=True creates the file (FileExistsError
    if it exists) and writes it in place, False replaces it atomically
    through a temp file; `unlinks` are paths removed (missing is fine)
    after the writes. One request's writes all become durable, or on error
    none is left behind. See the module docstring for the phases and for
    `recycle`.
    """

    def __init__(self, directory: str, max_batch: int = 64, recycle: bool = False):
        super().__init__(max_batch)
        self.directory = directory
        #: The recycled inodes, or None without recycling.
        self.spares = SparePool(directory) if recycle else None
        #: New exclusive files are made with O_TMPFILE (off once it fails).
        self._tmpfile = _TMPFILE_FLAGS is not None and os.path.isdir("/proc/self/fd")

    def write(self, writes: tuple[tuple[str, bytes, bool], ...], unlinks: tuple[str, ...] = ()) -> None:
        """Submit one request and wait until it is durable; raises its error
        (OSError, FileExistsError). Blocks only the calling greenlet."""
        self.call(writes, unlinks)

    # -------------------------------------------- in the pool thread
    def execute(self, ops: Sequence[Request]) -> None:
        """Run a batch (blocking). Per-request errors go to its `error`;
        only an error of the shared directory fsync fails every writer.
        Thread-safe for batches on different paths; requests on one path
        must not be in two batches at once (every caller waits for its
        write)."""
        spares = self.spares
        mine = spares.begin() if spares is not None else None  # spares this batch's fsync will cover
        synced = False
        try:
            synced = self._execute(ops, mine)
        finally:
            if spares is not None:
                spares.end(mine, synced)

    def _execute(self, ops: Sequence[Request], mine: list[str] | None) -> bool:
        """execute()'s work; True if its directory fsync succeeded. A
        request that fails at any step gets its `error` and its files
        removed; the others go on."""
        staged = self._stage(ops)
        _sync(ops, staged)
        wrote = self._place(ops, staged, mine)
        # 4. one directory fsync makes every create and rename durable
        if not wrote:  # (a batch of removals only leaves its spares to the next fsync)
            return False
        try:
            fsync_directory(self.directory)
        except Exception as e:
            for op in wrote:
                op.error = e
            return False
        return True

    def _stage(self, ops: Sequence[Request]) -> list[list[list[Any]] | None]:
        """1. Create and write every file and start its writeback; per
        request its files, each [fd, temp path or None, path, exclusive,
        unnamed (O_TMPFILE)], or None when it failed."""
        advise = sum(len(op.args[0]) for op in ops) > 1
        staged: list[list[list[Any]] | None] = []
        for op in ops:
            files: list[list[Any]] | None = []
            try:
                for path, data, exclusive in op.args[0]:
                    if exclusive:
                        fd, reused, unnamed = self._create(path)
                        files.append([fd, None, path, True, unnamed])
                    else:
                        tmp = temp_path(path)
                        fd, reused = self._create_temp(tmp)
                        files.append([fd, tmp, path, False, False])
                    write_all(fd, data)
                    if reused:  # a spare's old bytes past the new end go
                        os.ftruncate(fd, len(data))
                    if advise:
                        start_writeback(fd)
            except Exception as e:
                op.error = e
                _abort(files)
                files = None
            staged.append(files)
        return staged

    def _place(
        self, ops: Sequence[Request], staged: list[list[list[Any]] | None], mine: list[str] | None
    ) -> list[Request]:
        """3. Put the files in place and do the unlinks, in call order;
        returns the requests that wrote a file (their names need the
        directory fsync)."""
        wrote = []
        for op, files in zip(ops, staged, strict=True):
            if files is None:
                continue
            try:
                # A request that creates a file is a new item's put: its
                # item file replaces nothing whose inode could be kept.
                new = any(f[3] for f in files)
                for f in files:
                    if f[4]:  # name it: EEXIST if the path exists, as O_EXCL would
                        _link_fd(f[0], f[2])
                        f[4] = False
                        os.close(f[0])
                        f[0] = None
                for f in files:
                    if f[1] is not None:
                        self._replace(f[1], f[2], new, mine)
                        f[1] = None
                for path in op.args[1]:
                    self._remove(path, mine)
            except Exception as e:
                op.error = e
                _abort(files)
                continue
            if files:
                wrote.append(op)
        return wrote

    # Each of these uses a spare where there is one (recycle=True), else
    # allocates or frees an inode as plain files do.
    def _create(self, path: str) -> tuple[int, bool, bool]:
        """Open `path` new (O_EXCL semantics): (fd, reused, unnamed).
        reused: a spare that still holds its old bytes, renamed to `path`.
        Else a new empty file; unnamed: made with O_TMPFILE in the
        directory, to be linked as `path` once flushed (EEXIST then).

        Why O_TMPFILE: on ext4 without a journal, allocating an inode scans
        past every recently freed one (the module docstring), and a create
        does it holding the directory's lock — which the other serving
        process's disk worker, renaming in the same queue directory, then
        spins on (perf: rwsem_spin_on_owner, ~2 % of all CPU in a run after
        many deletions). An unnamed file is allocated without that lock;
        the link that names it takes it only briefly. A crash before the
        link leaves no name (the inode is freed with the fd, or by fsck)."""
        fd = self._from_spare(path, rename_noreplace)  # EEXIST, as O_EXCL would
        if fd is not None:
            return fd, True, False
        if self._tmpfile:
            try:
                return os.open(self.directory, _TMPFILE_FLAGS, 0o600), False, True
            except OSError as e:
                if e.errno not in _NO_TMPFILE:
                    raise
                self._tmpfile = False  # this file system cannot: named creates from now on
        return os.open(path, _EXCL_FLAGS, 0o600), False, False

    def _create_temp(self, tmp: str) -> tuple[int, bool]:
        """Open the temp file `tmp`: (fd, reused) as _create."""
        fd = self._from_spare(tmp, os.rename)
        if fd is not None:
            return fd, True
        return os.open(tmp, _TMP_FLAGS, 0o600), False

    def _from_spare(self, dest: str, rename) -> int | None:
        """Take a ready spare, `rename(spare, dest)` and open it for writing
        over its old bytes; None if there is no spare, or it is gone
        (removed by hand?): the caller allocates. If the rename fails
        otherwise (EEXIST) the spare goes back and the error is raised; if
        the open fails, the file (another message's old bytes) must not
        stay: it is removed, and the spare is lost (an inode freed, as
        plain files do)."""
        spares = self.spares
        spare = spares.take() if spares is not None else None
        if spare is None:
            return None
        try:
            rename(spare, dest)
        except FileNotFoundError:
            return None
        except BaseException:
            spares.give_back(spare)
            raise
        try:
            fd = os.open(dest, _REUSE_FLAGS)
        except BaseException:
            _unlink_quietly(dest)
            raise
        spares.used()
        return fd

    def _replace(self, tmp: str, path: str, new: bool, mine: list[str] | None) -> None:
        spares = self.spares
        keep = None
        if spares is not None and not new and not spares.full():
            keep = spares.new_name()
            try:
                os.link(path, keep)  # the inode rename() would free
            except FileNotFoundError:
                keep = None  # a new item: nothing is replaced
        try:
            os.rename(tmp, path)
        except BaseException:
            if keep is not None:
                _unlink_quietly(keep)  # it must not alias the live file
            raise
        if keep is not None:
            spares.renamed(keep, mine)

    def _remove(self, path: str, mine: list[str] | None) -> None:
        spares = self.spares
        if spares is not None and not spares.full():
            keep = spares.new_name()
            try:
                os.rename(path, keep)
            except FileNotFoundError:
                return
            spares.renamed(keep, mine)
            return
        _unlink_quietly(path)


def _link_fd(fd: int, path: str) -> None:
    """Give the unnamed (O_TMPFILE) file `fd` the absolute name `path`:
    linkat(2) of its /proc/self/fd entry with AT_SYMLINK_FOLLOW (what
    linkat(AT_EMPTY_PATH) does without needing CAP_DAC_READ_SEARCH).
    os.link makes that call only when given a dir_fd — otherwise plain
    link(2), which would link the proc symlink itself (EXDEV); with an
    absolute `path` the kernel ignores the dir_fd. Raises FileExistsError
    if `path` exists."""
    if not os.path.isabs(path):
        raise ValueError(f"not an absolute path: {path!r}")
    try:
        os.link(f"/proc/self/fd/{fd}", path, dst_dir_fd=fd, follow_symlinks=True)
    except OSError as e:  # named after the file, as the O_EXCL create's error was
        raise type(e)(e.errno, e.strerror, path) from None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sync(ops: Sequence[Request], staged: list[list[list[Any]] | None]) -> None:
    """2. Make each staged file's data durable (one sync_all over all of
    them); a request with a failed sync gets its error, its files removed
    and its entry in `staged` set to None. Files made with O_TMPFILE stay
    open until they are linked (_place)."""
    errors = iter(sync_all([f[0] for files in staged if files for f in files]))
    for i, (op, files) in enumerate(zip(ops, staged, strict=True)):
        if files is None:
            continue
        error = None
        for _ in files:
            error = next(errors) or error
        try:
            if error is not None:
                raise error
            for f in files:
                if not f[4]:  # an unnamed (O_TMPFILE) file stays open until _place links it
                    os.close(f[0])
                    f[0] = None
        except Exception as e:
            op.error = e
            _abort(files)
            staged[i] = None


def _abort(files: list[list[Any]]) -> None:
    """Undo one op's files: close them (an unnamed one is then gone), remove
    its temps and its exclusive creations (ours: made by O_EXCL, a spare's
    rename or a link, each failing on an existing file). A replace already
    renamed stays."""
    for fd, tmp, path, exclusive, unnamed in files:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        for victim in (tmp, path if exclusive and not unnamed else None):  # an unnamed file made no path
            if victim is not None:
                try:
                    os.unlink(victim)
                except OSError:
                    pass
