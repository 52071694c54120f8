"""Atomic, durable file writes and text-format protobuf files.

The write discipline (DESIGN.md, "Durable state is a state machine on
disk"): write a dot-prefixed temp file in the same directory, fsync it,
rename it over the target, fsync the directory. rename(2) replaces the
directory entry atomically, so a reader — or the daemon after a crash — sees
the old file or the new one, never a torn one; the only debris a crash can
leave is a dot-prefixed temp file, which `remove_temp_files` clears at
start-up. The directory fsync makes the rename itself durable: until it
returns, a power cut may bring the old entry back.

Data files are flushed with fdatasync(2) where the OS has it: it covers the
data and the metadata needed to read it back (size, blocks) and skips the
timestamps, which nothing here needs; about 20 % cheaper than fsync here.

Group commit: `DirSync` lets writers in separate threads share directory
fsyncs; `sync_all` fdatasyncs a batch's files; the queue's batches
are store/batchwriter.py. Everything here is blocking; callers on the
gevent hub run it via `estafeta.store.blocking.run_blocking` (or in the
disk worker process, store/disk_worker.py).
"""

from __future__ import annotations

import errno
import itertools
import os
import random
from collections.abc import Sequence
from typing import TypeVar

from gevent.monkey import get_original
from google.protobuf import text_format
from google.protobuf.internal import api_implementation
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

#: Temp files are ".<name>.tmp.<pid>.<n>": unique in the process, and the
#: random start keeps a restarted process with the same pid (containers)
#: clear of a predecessor's leftovers.
_TMP_MARK = ".tmp."
_tmp_counter = itertools.count(random.getrandbits(32))

#: An OS-level lock even under gevent.monkey.patch_all(): DirSync waits run
#: in native threadpool threads, where gevent's patched locks do not belong.
_allocate_lock = get_original("_thread", "allocate_lock")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | _O_NOFOLLOW
_EXCL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC


class CorruptFileError(text_format.ParseError):
    """A text-format protobuf file that does not parse; the message starts
    with the file's path. A ParseError, so callers catching that see it."""


def temp_path(path: str) -> str:
    """A fresh temp file name for `path`: same directory, dot-prefixed."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{_TMP_MARK}{os.getpid():x}.{next(_tmp_counter):x}")


def is_temp_name(name: str) -> bool:
    """True for a file name made by `temp_path` (a crash's leftover)."""
    return name.startswith(".") and _TMP_MARK in name


def sync_data(fd: int) -> None:
    """fdatasync(2) where available (Linux), else fsync(2)."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte of data is written (a regular file may
    take a short write, e.g. on a signal)."""
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(view):
            n += os.write(fd, view[n:])


def _renameat2():
    """libc's renameat2(2) (Linux 3.15+, glibc 2.28+), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn, ctypes.get_errno


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(src: str, dst: str) -> None:
    """Rename `src` to `dst` unless `dst` exists (FileExistsError then, as
    O_EXCL would): renameat2(RENAME_NOREPLACE), one syscall; where the OS or
    file system lacks it, link(2) then unlink(2). Raises OSError."""
    if _RENAMEAT2 is not None:
        fn, get_errno = _RENAMEAT2
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = get_errno()
        if err == errno.EEXIST:  # name the file that is in the way
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the file system has no RENAME_NOREPLACE
            raise OSError(err, os.strerror(err), src, None, dst)
    try:
        os.link(src, dst)
    except FileExistsError as e:
        raise FileExistsError(e.errno, e.strerror, dst) from None
    os.unlink(src)


def fsync_directory(path: str) -> None:
    """fsync(2) a directory, making the entries created or renamed in it
    durable. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, fsync_dir: bool = True, mode: int = 0o600) -> None:
    """Replace `path` with `data` (bytes) atomically and durably.

    Steps: open `.<name>.tmp.<pid>.<n>` next to it (mode `mode`), write,
    fdatasync, close, rename over `path`, fsync the directory (skipped with
    fsync_dir=False: the caller then owes a directory fsync, e.g. through a
    `DirSync` shared with other writers). A crash between any two steps
    leaves the old file or the new one, and at most a temp file.

    Raises OSError; on an error before the rename the temp file is removed
    and `path` is untouched.
    """
    tmp = temp_path(path)
    fd = os.open(tmp, _TMP_FLAGS, mode)
    try:
        try:
            write_all(fd, data)
            sync_data(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync_dir:
        fsync_directory(os.path.dirname(path) or ".")


if api_implementation.Type() == "upb":

    def to_text(msg: Message) -> bytes:
        """The message in protobuf text format, UTF-8 (bytes).

        With the upb backend, str(msg) is upb's C text encoder: about 4 µs
        for a queue item against 30 µs for text_format.MessageToBytes (pure
        Python), and it runs on the hub thread for every put. The output is
        the same text format (strings as UTF-8, same escapes, same field
        order); only doubles beyond 1e16 or subnormal may be spelled
        differently (e.g. "-62504883540675976" against "-6.25e+16"), and
        text_format.Parse reads both back to the identical message (a
        property test in tests/unit/test_queuefile.py checks the round trip).
        """
        return str(msg).encode("utf-8")

else:  # pragma: no cover - the pure-Python backend's str() is text_format itself

    def to_text(msg: Message) -> bytes:
        """The message in protobuf text format, UTF-8 (bytes)."""
        return text_format.MessageToBytes(msg, as_utf8=True)


def write_message(path: str, msg: Message, *, fsync_dir: bool = True) -> None:
    """Write a protobuf message as UTF-8 text format (to_text), atomically
    (see atomic_write). Raises OSError."""
    atomic_write(path, to_text(msg), fsync_dir=fsync_dir)


def parse_message(path: str, data: bytes, cls: type[M]) -> M:
    """Parse text-format `data` read from `path` into a new `cls`.

    Raises CorruptFileError (a text_format.ParseError) naming the file.
    Costs about 140-280 µs for a queue item: for loading, not hot paths.
    """
    msg = cls()
    try:
        text_format.Parse(data, msg)
    except text_format.ParseError as e:
        raise CorruptFileError(f"{path}: {e}") from e
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path}: not UTF-8: {e}") from e
    return msg


def read_message(path: str, cls: type[M]) -> M:
    """Read a text-format protobuf file into a new `cls`.

    Raises FileNotFoundError / OSError, or CorruptFileError naming the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_message(path, data, cls)


def remove_temp_files(directory: str) -> int:
    """Remove the temp files a crash left in `directory` (names made by
    temp_path); returns how many. Only safe when nobody is writing there,
    i.e. at start-up. Raises OSError if the directory cannot be listed."""
    removed = 0
    with os.scandir(directory) as it:
        for entry in it:
            if is_temp_name(entry.name):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class DirSync:
    """Group commit of one directory's fsync.

    `sync()` returns once a directory fsync that *started after sync() was
    called* has completed: that fsync covers every rename and create the
    caller made before calling. Concurrent callers share fsyncs: one thread
    at a time fsyncs, and one fsync covers everybody who arrived before it
    started; those who arrived while it ran are covered by the next one.

    Tickets come from an itertools.count (atomic under the GIL): a ticket
    drawn before the fsync's own marker ticket belongs to a caller whose
    renames were done before the fsync started.

    Blocking (waits on an OS lock): call in a threadpool worker, or inline
    where nothing else could hold the lock (a single-threaded CLI).
    """

    __slots__ = ("path", "_lock", "_tickets", "_synced", "fsyncs")

    def __init__(self, path: str):
        self.path = path
        self._lock = _allocate_lock()
        self._tickets = itertools.count(1)
        self._synced = 0  # every ticket <= this is covered by a finished fsync
        self.fsyncs = 0  # directory fsyncs done (for metrics and tests)

    def sync(self) -> None:
        """Block until the directory is durable as of this call. Raises
        OSError from the fsync (nobody is then marked covered)."""
        ticket = next(self._tickets)
        with self._lock:
            if self._synced >= ticket:
                return  # an fsync that started after our ticket has finished
            marker = next(self._tickets)
            fsync_directory(self.path)
            self._synced = marker
            self.fsyncs += 1


def sync_all(fds: Sequence[int]) -> list[BaseException | None]:
    """fdatasync (sync_data) every fd, one after the other; returns each
    one's error or None, in order, so one file's failure fails only its own
    request. (Running them in parallel threads was measured slower here:
    more, smaller I/Os on a disk whose cache flushes do not overlap;
    docs/PERFORMANCE.md.) Blocking."""
    out: list[BaseException | None] = []
    for fd in fds:
        try:
            sync_data(fd)
        except Exception as e:  # noqa: BLE001 - reported per file
            out.append(e)
        else:
            out.append(None)
    return out


# --------------------------------------------------------------- batching
def start_writeback(fd: int) -> None:
    """Start writing fd's dirty pages to disk now, without waiting.

    posix_fadvise(POSIX_FADV_DONTNEED) is the way to do that from Python
    (PostgreSQL's pg_flush_data falls back on it where there is no
    sync_file_range). Used on every file of a batch before their serial
    fdatasyncs: the writes then go to the device together, and the later
    fdatasyncs find their data already written or in flight (~50 µs each
    instead of ~300 µs, measured here: a batch of 10 puts costs half the
    time and CPU). Durability still comes from each file's own fdatasync.
    Pages under writeback stay cached. Errors are ignored (a hint).
    """
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass
