"""store/batchwriter.py with recycle=True (spare inodes) and
queuefile.rename_noreplace: steady state allocates and frees no inode, a
spare is reused only after a directory fsync that followed its rename,
exclusive creates keep their EEXIST, the pool limit, and a crash at every
step of a put, an update and a remove leaves the old state or the new one."""

from __future__ import annotations

import errno
import itertools
import os
import stat

import gevent
import pytest
from test_queuefile import Crash, CrashingOS  # tests/unit is on sys.path (pytest prepend mode)

from estafeta.proto import queue_pb2
from estafeta.store import batchwriter, queuefile
from estafeta.store.batchwriter import SPARE_LIMIT, BatchWriter, SparePool
from estafeta.store.blocking import Request, configure_threadpool
from estafeta.store.queue import QueueStore


# ---------------------------------------------------------------- helpers
class SpyOS:
    """Stands in for `os` in batchwriter and queuefile: records the calls
    that allocate, free or rename inodes (and directory fsyncs)."""

    WATCH = ("open", "link", "unlink", "rename", "fsync")

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.WATCH:
            return real

        def spy(*args, **kwargs):
            # Naming an O_TMPFILE file (a link from /proc/self/fd) is a
            # create, not a kept inode: recorded as "link_fd".
            fd_link = name == "link" and str(args[0]).startswith("/proc/self/fd/")
            self.calls.append(("link_fd" if fd_link else name, *args))
            return real(*args, **kwargs)

        return spy

    def creates(self) -> list[str]:
        """Paths opened with O_CREAT (a new inode unless it existed), and
        those of new inodes made unnamed (O_TMPFILE) and then linked."""
        return [c[1] for c in self.calls if c[0] == "open" and c[2] & os.O_CREAT] + [
            c[2] for c in self.calls if c[0] == "link_fd"
        ]

    def named(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


class CrashingOSWithLink(CrashingOS):
    """CrashingOS that also counts (and can die at) link(2) and
    ftruncate(2): recycling keeps an updated item's old inode with os.link
    (rename_noreplace's fallback is link + unlink too), and cuts a reused
    spare to its new length after writing over it."""

    STEPS = CrashingOS.STEPS + ("link", "ftruncate")


@pytest.fixture
def spy(monkeypatch):
    fake = SpyOS()
    monkeypatch.setattr(batchwriter, "os", fake)
    monkeypatch.setattr(queuefile, "os", fake)
    return fake


@pytest.fixture
def hub():
    configure_threadpool(16)
    return gevent.get_hub()


@pytest.fixture(params=["renameat2", "link+unlink"])
def noreplace(request, monkeypatch):
    """Run the test with renameat2(RENAME_NOREPLACE) and with the
    link/unlink fallback of rename_noreplace."""
    if request.param == "renameat2":
        assert queuefile._RENAMEAT2 is not None, "this libc has renameat2"  # noqa: SLF001
    else:
        monkeypatch.setattr(queuefile, "_RENAMEAT2", None)
    return request.param


def _paths(d: str, qid: str) -> tuple[str, str]:
    return os.path.join(d, qid + ".body"), os.path.join(d, qid + ".item")


def put_op(d: str, qid: str, body: bytes, item: bytes | None = None) -> Request:
    b, i = _paths(d, qid)
    return Request((((b, body, True), (i, item if item is not None else b"item " + qid.encode(), False)), ()))


def update_op(d: str, qid: str, item: bytes) -> Request:
    return Request((((_paths(d, qid)[1], item, False),), ()))


def remove_op(d: str, qid: str) -> Request:
    b, i = _paths(d, qid)
    return Request(((), (i, b)))


def run(w: BatchWriter, *ops: Request) -> None:
    """One batch; raise the first request's error, if any."""
    w.execute(list(ops))
    for op in ops:
        if op.error is not None:
            raise op.error


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def ino(path: str) -> int:
    return os.stat(path).st_ino


def live(d: str) -> dict[str, bytes]:
    """The non-dot files of d and their bytes."""
    return {n: read(os.path.join(d, n)) for n in sorted(os.listdir(d)) if not n.startswith(".")}


def check_pool(w: BatchWriter) -> None:
    """Nothing lost or aliased: the dot files on disk are exactly the pool's
    spares (all spare names), each pooled once, each a separate inode (one
    link) that no live file shares."""
    d, pool = w.directory, w.spares
    pooled = pool.ready + pool.pending
    assert len(set(pooled)) == len(pooled), pooled
    dot = sorted(n for n in os.listdir(d) if n.startswith("."))
    assert dot == sorted(os.path.basename(p) for p in pooled)
    assert all(n.startswith(".spare.tmp.") and queuefile.is_temp_name(n) for n in dot)
    live_inos = {ino(os.path.join(d, n)) for n in live(d)}
    spare_stats = [os.stat(p) for p in pooled]
    assert all(st.st_nlink == 1 for st in spare_stats)
    assert not live_inos & {st.st_ino for st in spare_stats}
    assert len(pooled) <= pool.limit


# ------------------------------------------------------------ steady state
def test_steady_state_put_remove_allocates_and_frees_no_inode(tmp_path, spy):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    inodes: set[int] = set()
    for cycle in range(12):
        qid = f"{cycle:04x}"
        spy.calls.clear()
        reused_before = w.spares.reused
        # Bodies shrink: a reused inode must not keep the tail of its old data.
        body = b"B%d" % cycle * (1000 - 50 * cycle)
        run(w, put_op(d, qid, body))
        b, i = _paths(d, qid)
        assert read(b) == body and read(i) == b"item " + qid.encode()
        new = {ino(b), ino(i)}
        if cycle >= 2:  # warmed up: both files are earlier inodes, through spares
            assert new <= inodes, (cycle, new, inodes)
            assert spy.creates() == [] and w.spares.reused == reused_before + 2
        inodes |= new
        recycled_before = w.spares.recycled
        spy.calls.clear()
        run(w, remove_op(d, qid))
        assert live(d) == {}
        assert spy.named("unlink") == [] and w.spares.recycled == recycled_before + 2
        check_pool(w)
    assert len(inodes) == 4  # two in use, two waiting for the next fsync
    assert w.spares.reused == 2 * 10 and w.spares.recycled == 2 * 12


def test_steady_state_through_queue_store(tmp_path, hub, spy):
    """QueueStore with a recycling writer (the hub threadpool path): put,
    update, remove cycles reach a steady state with no inode created or
    freed, and every read gives back the bytes just written."""
    store = QueueStore(str(tmp_path / "queue"))
    store.recover()
    store.writer = BatchWriter(store.queue_dir, recycle=True)
    d = store.queue_dir
    inodes: set[int] = set()
    for cycle in range(10):
        qid = f"00{cycle:04x}"
        item = queue_pb2.QueueItem(
            id=qid, state=queue_pb2.QUEUED, reverse_path="a@b.example", last_error="x" * (400 - 30 * cycle)
        )
        body = b"body %d\r\n" % cycle * (200 - 15 * cycle)
        spy.calls.clear()
        store.put(item, body)
        item.attempts, item.last_error = 1, "short"
        store.update(item)
        assert store.load(qid) == item and store.read_body(qid) == body
        new = {ino(store.item_path(qid)), ino(store.body_path(qid))}
        if cycle >= 3:
            assert new <= inodes and spy.creates() == [], (cycle, spy.calls)
        inodes |= new
        store.remove(qid)
        assert store.list_ids() == []
        if cycle >= 3:
            assert spy.named("unlink") == [], spy.calls
        check_pool(store.writer)
    spares = store.writer.spares
    assert spares.reused >= 3 * 7 and spares.recycled == 3 * 10  # put 2 + update 1 reuse; update 1 + remove 2 recycle
    assert store.recover() == [] and os.listdir(d) == []  # start-up removes every spare


# ------------------------------------------------------- pending vs ready
def test_spare_reused_only_after_a_directory_fsync_that_followed_its_rename(tmp_path, spy):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"aaa"))
    a_inodes = {ino(p) for p in _paths(d, "a")}
    # One batch: a's removal and b's put. b's creates come before a's renames
    # and the batch's fsync is not yet over: a's inodes are not for b.
    run(w, put_op(d, "b", b"bbb"), remove_op(d, "a"))
    assert not {ino(p) for p in _paths(d, "b")} & a_inodes
    assert len(w.spares.ready) == 2 and w.spares.pending == []  # the batch's fsync covered the renames
    # A batch of removes only: no directory fsync, its spares stay pending.
    run(w, remove_op(d, "b"))
    assert len(w.spares.pending) == 2 and {ino(p) for p in w.spares.ready} == a_inodes
    pending_inodes = {ino(p) for p in w.spares.pending}
    check_pool(w)
    spy.calls.clear()
    run(w, put_op(d, "c", b"ccc"))  # takes a's (ready), never b's (pending)
    assert {ino(p) for p in _paths(d, "c")} == a_inodes and spy.creates() == []
    assert w.spares.pending == [] and {ino(p) for p in w.spares.ready} == pending_inodes
    check_pool(w)
    assert live(d) == {"c.body": b"ccc", "c.item": b"item c"}


def test_failed_directory_fsync_keeps_spares_pending(tmp_path, monkeypatch):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"a" * 100), put_op(d, "x", b"x" * 100))
    run(w, remove_op(d, "a"))
    run(w, put_op(d, "b", b"b" * 100))  # its fsync makes a's two spares ready
    assert len(w.spares.ready) == 2
    real = batchwriter.fsync_directory
    failures = []

    def failing(path):
        failures.append(path)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(batchwriter, "fsync_directory", failing)
    upd, rm = update_op(d, "x", b"x v2"), remove_op(d, "b")
    w.execute([upd, rm])
    assert failures == [d]
    assert isinstance(upd.error, OSError) and upd.error.errno == errno.EIO  # durability unknown
    assert rm.error is None  # wrote nothing of its own
    assert read(_paths(d, "x")[1]) == b"x v2"  # in place nonetheless
    # x's old inode (kept) and b's two are pending; one ready spare was used for x's temp
    assert len(w.spares.pending) == 3 and len(w.spares.ready) == 1
    pending = {ino(p) for p in w.spares.pending}
    check_pool(w)
    # The next batch must not reuse a pending spare, and its fsync fails too.
    c = put_op(d, "c", b"c" * 10)
    w.execute([c])
    assert isinstance(c.error, OSError)
    assert not {ino(p) for p in _paths(d, "c")} & pending
    assert len(w.spares.pending) == 3 and w.spares.ready == []
    monkeypatch.setattr(batchwriter, "fsync_directory", real)
    run(w, put_op(d, "e", b"e" * 10))  # allocates (nothing ready); its fsync succeeds
    assert not {ino(p) for p in _paths(d, "e")} & pending
    assert w.spares.pending == [] and {ino(p) for p in w.spares.ready} == pending
    run(w, put_op(d, "f", b"f"))
    assert {ino(p) for p in _paths(d, "f")} <= pending  # now they may be reused
    check_pool(w)


# ------------------------------------------------------ update and put
def test_update_keeps_the_old_inode_and_a_put_does_not_try(tmp_path, spy):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"body", b"item v1"))
    assert spy.named("link") == [] and w.spares.recycled == 0  # a new item replaces nothing
    body, item = _paths(d, "a")
    old = ino(item)
    spy.calls.clear()
    run(w, update_op(d, "a", b"item v2"))
    [link] = spy.named("link")
    assert link[1] == item and os.path.basename(link[2]).startswith(".spare.tmp.")
    assert w.spares.recycled == 1 and [ino(p) for p in w.spares.ready] == [old]
    assert read(item) == b"item v2" and ino(item) != old and read(w.spares.ready[0]) == b"item v1"
    check_pool(w)
    spy.calls.clear()
    run(w, update_op(d, "a", b"item v3"))  # takes the kept inode for its temp
    assert ino(item) == old and read(item) == b"item v3" and w.spares.reused == 1
    assert spy.creates() == []
    # An update of an item that does not exist (yet) keeps nothing.
    run(w, update_op(d, "new", b"fresh"))
    assert read(_paths(d, "new")[1]) == b"fresh"
    check_pool(w)
    assert w.spares.recycled == 2


def test_exclusive_create_on_a_spare_still_raises_file_exists(tmp_path, spy, noreplace):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"first body", b"first item"))
    run(w, put_op(d, "s", b"spare"))
    run(w, remove_op(d, "s"))
    run(w, put_op(d, "t", b"t"))  # t takes nothing (s's spares pending), then makes them ready
    run(w, remove_op(d, "t"))
    ready = {ino(p) for p in w.spares.ready}
    assert len(ready) == 2
    before = live(d)
    dup, other = put_op(d, "a", b"second body", b"second item"), put_op(d, "b", b"bee")
    w.execute([dup, other])
    assert isinstance(dup.error, FileExistsError)
    assert other.error is None and read(_paths(d, "b")[0]) == b"bee"
    assert live(d) == {**before, "b.body": b"bee", "b.item": b"item b"}  # a untouched
    check_pool(w)  # the spare dup took went back; b used the two ready spares
    assert w.spares.reused == 2
    assert {ino(p) for p in _paths(d, "b")} == ready
    if noreplace == "renameat2":
        assert spy.named("link") == []  # one renameat2 syscall, not os.link
    # Alone, with ready spares: still EEXIST, nothing lost.
    run(w, remove_op(d, "b"))
    run(w, put_op(d, "c", b"c"))
    pooled = sorted(w.spares.ready + w.spares.pending)
    with pytest.raises(FileExistsError):
        run(w, put_op(d, "a", b"third"))
    assert sorted(w.spares.ready + w.spares.pending) == pooled
    assert read(_paths(d, "a")[0]) == b"first body" and read(_paths(d, "a")[1]) == b"first item"
    check_pool(w)


def test_spare_gone_missing_falls_back_to_a_new_inode(tmp_path):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"a"))
    run(w, remove_op(d, "a"))
    run(w, put_op(d, "b", b"b"))
    for p in w.spares.ready:
        os.unlink(p)  # removed by hand
    run(w, put_op(d, "c", b"cc"))
    assert read(_paths(d, "c")[0]) == b"cc" and w.spares.ready == []
    assert w.spares.reused == 0  # two new inodes: `reused` counts only spares actually reused
    assert live(d) == {"b.body": b"b", "b.item": b"item b", "c.body": b"cc", "c.item": b"item c"}
    assert [n for n in os.listdir(d) if n.startswith(".")] == []


def test_failed_open_of_a_taken_spare_leaves_nothing_behind(tmp_path, monkeypatch):
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"A's body", b"A's item"))
    run(w, remove_op(d, "a"))
    run(w, put_op(d, "b", b"b"))
    assert len(w.spares.ready) == 2

    class NoFds(SpyOS):
        def __getattr__(self, name):
            if name == "open":

                def open_(path, flags, *mode):
                    if not flags & os.O_CREAT and not os.path.isdir(path):
                        raise OSError(errno.EMFILE, "Too many open files", path)
                    return os.open(path, flags, *mode)

                return open_
            return super().__getattr__(name)

    monkeypatch.setattr(batchwriter, "os", NoFds())
    with pytest.raises(OSError) as e:
        run(w, put_op(d, "x", b"X's body"))
    assert e.value.errno == errno.EMFILE
    monkeypatch.undo()
    assert live(d) == {"b.body": b"b", "b.item": b"item b"}  # x.body must not hold A's body
    check_pool(w)


def test_spare_pool_limit(tmp_path, spy):
    assert SparePool(str(tmp_path)).limit == SPARE_LIMIT == 1024
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    w.spares.limit = 3
    run(w, *(put_op(d, f"{i}", b"%d" % i) for i in range(4)))
    spy.calls.clear()
    run(w, remove_op(d, "0"), remove_op(d, "1"))  # 4 files: 3 kept, 1 unlinked
    assert w.spares.recycled == 3 and len(spy.named("unlink")) == 1
    assert w.spares.full() and len(os.listdir(d)) == 4 + 3
    spy.calls.clear()
    run(w, update_op(d, "2", b"v2"))  # full: keeps nothing (no link) and frees the old inode
    assert spy.named("link") == [] and w.spares.recycled == 3
    run(w, remove_op(d, "3"))
    assert w.spares.recycled == 3 and live(d) == {"2.body": b"2", "2.item": b"v2"}
    check_pool(w)
    run(w, put_op(d, "4", b"4"))  # takes 2 of the 3: room for 2 more
    run(w, remove_op(d, "4"), remove_op(d, "2"))
    assert w.spares.recycled == 5 and len(w.spares.ready + w.spares.pending) == 3
    check_pool(w)


def test_without_recycle_nothing_is_kept(tmp_path, spy):
    d = str(tmp_path)
    w = BatchWriter(d)
    assert w.spares is None
    run(w, put_op(d, "a", b"a"))
    run(w, update_op(d, "a", b"v2"))
    run(w, remove_op(d, "a"))
    assert os.listdir(d) == [] and spy.named("link") == [] and len(spy.named("unlink")) == 2


# ------------------------------------------------ concurrent batches
def test_concurrent_batches_reuse_only_spares_a_later_fsync_covers(tmp_path, monkeypatch):
    """Two native threads run batches on one recycling writer at once (as
    the hub threadpool may): every reuse of a spare comes after a
    directory fsync that began after the spare's rename and had finished;
    nothing is aliased (each thread reads back its own bytes)."""
    from test_queue_store import NativeThread

    monkeypatch.setattr(queuefile, "_RENAMEAT2", None)  # reuse by os.link: visible below
    seq = itertools.count()
    made: dict[str, int] = {}  # spare -> seq once its rename (or link) was done
    reuses: list[tuple[str, int]] = []  # (spare, seq before it was taken over)
    syncs: list[tuple[int, int]] = []

    def spare(path) -> bool:
        return os.path.basename(path).startswith(".spare.tmp.")

    def traced(real):
        """rename or link, recording when a spare is taken over and made."""

        def call(src, dst, **kwargs):
            if spare(src):
                reuses.append((src, next(seq)))
            real(src, dst, **kwargs)
            if spare(dst):
                made[dst] = next(seq)

        return staticmethod(call)

    class Trace:
        def __getattr__(self, name):
            return getattr(os, name)

        rename = traced(os.rename)
        link = traced(os.link)

        @staticmethod
        def fsync(fd):
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                return os.fsync(fd)
            start = next(seq)
            os.fsync(fd)
            syncs.append((start, next(seq)))

    monkeypatch.setattr(batchwriter, "os", Trace())
    monkeypatch.setattr(queuefile, "os", batchwriter.os)
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    errors: list[BaseException] = []

    def worker(t: int):
        try:
            for i in range(40):
                qid = f"t{t}-{i}"
                body = b"%d:%d " % (t, i) * (50 + 7 * (i % 5))
                run(w, put_op(d, qid, body))
                run(w, update_op(d, qid, b"v2 %d:%d" % (t, i)))
                assert read(_paths(d, qid)[0]) == body and read(_paths(d, qid)[1]) == b"v2 %d:%d" % (t, i)
                run(w, remove_op(d, qid))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [NativeThread(lambda t=t: worker(t)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    assert errors == []
    assert len(reuses) > 40 and w.spares.recycled > 40
    for name, taken in reuses:
        r = made[name]
        assert any(r < s and e < taken for s, e in syncs), (name, r, taken)
    assert live(d) == {}
    check_pool(w)


# ----------------------------------------------------- rename_noreplace
def test_rename_noreplace(tmp_path, monkeypatch, noreplace):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    with open(src, "wb") as f:
        f.write(b"S")
    inode = ino(src)
    spy = SpyOS()
    monkeypatch.setattr(queuefile, "os", spy)
    queuefile.rename_noreplace(src, dst)
    assert not os.path.lexists(src) and read(dst) == b"S" and ino(dst) == inode
    assert os.stat(dst).st_nlink == 1
    assert bool(spy.named("link")) == (noreplace == "link+unlink")
    with open(src, "wb") as f:
        f.write(b"T")
    with pytest.raises(FileExistsError) as e:
        queuefile.rename_noreplace(src, dst)
    assert e.value.errno == errno.EEXIST
    assert read(src) == b"T" and read(dst) == b"S" and os.stat(src).st_nlink == 1
    with pytest.raises(FileNotFoundError):
        queuefile.rename_noreplace(str(tmp_path / "missing"), str(tmp_path / "other"))
    assert sorted(os.listdir(tmp_path)) == ["dst", "src"]


def test_rename_noreplace_falls_back_where_the_file_system_lacks_it(tmp_path, monkeypatch):
    calls = []

    def renameat2(*args):
        calls.append(args)
        return -1

    monkeypatch.setattr(queuefile, "_RENAMEAT2", (renameat2, lambda: errno.EINVAL))
    src, dst = str(tmp_path / "a"), str(tmp_path / "b")
    open(src, "wb").close()
    queuefile.rename_noreplace(src, dst)
    assert len(calls) == 1 and os.listdir(tmp_path) == ["b"]
    monkeypatch.setattr(queuefile, "_RENAMEAT2", (renameat2, lambda: errno.EACCES))
    with pytest.raises(PermissionError):  # any other error is the answer
        queuefile.rename_noreplace(dst, src)
    assert os.listdir(tmp_path) == ["b"]


# ---------------------------------------------------- crash at every step
def _setup_with_spares(d: str) -> BatchWriter:
    """A queue directory with two live items (b, c), two ready spares and
    two pending ones, every file's bytes distinct."""
    os.makedirs(d)
    w = BatchWriter(d, recycle=True)
    run(
        w,
        put_op(d, "a", b"A-body " * 300, b"A-item " * 50),
        put_op(d, "b", b"B-body " * 30, b"B-item " * 5),
        put_op(d, "z", b"Z-body " * 100, b"Z-item " * 10),
    )
    run(w, remove_op(d, "a"))
    run(w, put_op(d, "c", b"C-body " * 200, b"C-item " * 20))  # its fsync makes a's spares ready
    run(w, remove_op(d, "z"))  # z's stay pending
    assert len(w.spares.ready) == 2 and len(w.spares.pending) == 2
    return w


_OPS = {
    "put": lambda d: put_op(d, "x", b"X-body " * 120, b"X-item " * 12),
    "update": lambda d: update_op(d, "b", b"B-item v2 " * 40),
    "remove": lambda d: remove_op(d, "c"),
}


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("op", sorted(_OPS))
def test_crash_at_every_step_with_recycling(tmp_path, monkeypatch, op, partial):
    """A crash at any step of a recycling put / update / remove, after some
    spares exist: recover() leaves the old state or the new one (never a
    torn item, never a file holding another message's bytes) and no spare."""
    monkeypatch.setattr(queuefile, "_RENAMEAT2", None)  # every step through os
    k = 0
    while True:
        d = str(tmp_path / f"k{k}")
        w = _setup_with_spares(d)
        old = live(d)
        req = _OPS[op](d)
        fake = CrashingOSWithLink(k, partial)
        monkeypatch.setattr(queuefile, "os", fake)
        monkeypatch.setattr(batchwriter, "os", fake)
        try:
            w.execute([req])
            finished = True
        except Crash:
            finished = False
        finally:
            monkeypatch.setattr(queuefile, "os", os)
            monkeypatch.setattr(batchwriter, "os", os)
        if finished:
            assert req.error is None
            new = live(d)
        store = QueueStore(d)
        ids = store.recover()
        after = live(d)
        assert not [n for n in os.listdir(d) if n.startswith(".")], os.listdir(d)  # no spare, no temp
        if finished:
            assert after == new
        else:
            states = {
                "put": (old, {**old, "x.body": b"X-body " * 120, "x.item": b"X-item " * 12}),
                "update": (old, {**old, "b.item": b"B-item v2 " * 40}),
                "remove": (old, {k_: v for k_, v in old.items() if not k_.startswith("c.")}),
            }[op]
            assert after in states, (k, fake.calls, after)
            for qid in ids:  # every item still has its body
                assert f"{qid}.body" in after
        if finished:
            break
        k += 1
        assert k < 40, "never finished"
    assert sorted(old) == ["b.body", "b.item", "c.body", "c.item"]
    # The finished run went through the spares.
    assert w.spares.reused == {"put": 2, "update": 1, "remove": 0}[op]
    assert ("link" in fake.calls) == (op in ("put", "update"))  # rename_noreplace's fallback; the kept inode
    assert k == len(fake.calls)


def test_a_new_body_is_made_unnamed_and_linked_into_place(tmp_path, spy, monkeypatch):
    """A new exclusive file is an O_TMPFILE inode, named by a link once it is
    written and flushed (the create's long inode search happens without the
    directory's lock); an existing name still fails with FileExistsError
    naming the path, leaving the existing file and no other behind; a file
    system without O_TMPFILE gets named O_EXCL creates from then on."""
    d = str(tmp_path)
    w = BatchWriter(d, recycle=True)
    run(w, put_op(d, "a", b"body a"))
    body, item = _paths(d, "a")
    assert [c[1] for c in spy.named("open") if c[2] & os.O_TMPFILE == os.O_TMPFILE] == [d]
    assert [c[2] for c in spy.named("link_fd")] == [body] and read(body) == b"body a"
    assert os.stat(body).st_nlink == 1
    with pytest.raises(FileExistsError) as e:
        run(w, put_op(d, "a", b"other", b"other item"))
    assert e.value.filename == body
    assert live(d) == {"a.body": b"body a", "a.item": b"item a"}
    assert [n for n in os.listdir(d) if n.startswith(".")] == []

    # No O_TMPFILE here (EOPNOTSUPP): a named create, and no more tries.
    real_open = os.open
    tries = []

    def no_tmpfile(path, flags, *args):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            tries.append(path)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args)

    monkeypatch.setattr(spy, "open", no_tmpfile, raising=False)
    w2 = BatchWriter(d)
    run(w2, put_op(d, "b", b"body b"), put_op(d, "c", b"body c"))
    assert tries == [d] and read(_paths(d, "b")[0]) == b"body b" and read(_paths(d, "c")[0]) == b"body c"
