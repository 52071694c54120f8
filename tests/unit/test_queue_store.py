"""store/queue.py and store/blocking.py: durable puts with group-committed
directory fsyncs, crash safety of put, recovery, interrupted callers."""

from __future__ import annotations

import itertools
import os
import stat

import gevent
import pytest
from gevent.monkey import get_original
from test_queuefile import Crash, CrashingOS  # tests/unit is on sys.path (pytest prepend mode)

from estafeta.proto import queue_pb2
from estafeta.store import batchwriter, queuefile
from estafeta.store import queue as queue_mod
from estafeta.store.blocking import configure_threadpool, run_blocking
from estafeta.store.queue import QueueStore

_real_sleep = get_original("time", "sleep")
_real_get_ident = get_original("_thread", "get_ident")
_allocate_lock = get_original("_thread", "allocate_lock")


class NativeThread:
    """A real OS thread even under monkey patching (threading.Thread is a
    greenlet then), with a join that blocks the whole hub (fine in a test)."""

    def __init__(self, target):
        self._target, self._done = target, _allocate_lock()
        self._done.acquire()

    def start(self) -> None:
        def run():
            try:
                self._target()
            finally:
                self._done.release()

        get_original("_thread", "start_new_thread")(run, ())

    def join(self, timeout: float) -> None:
        assert self._done.acquire(timeout=timeout), "thread did not finish"


@pytest.fixture
def hub():
    """A running hub with a 16-thread pool, as in the daemon."""
    configure_threadpool(16)
    return gevent.get_hub()


@pytest.fixture
def store(tmp_path):
    s = QueueStore(str(tmp_path / "queue"))
    assert s.recover() == []
    return s


def _item(qid: str, n: int = 1) -> queue_pb2.QueueItem:
    return queue_pb2.QueueItem(
        id=qid,
        state=queue_pb2.QUEUED,
        reverse_path="alice@example.org",
        created_at=1735000000.5,
        recipients=[queue_pb2.Recipient(address=f"r{i}@example.com", status=queue_pb2.PENDING) for i in range(n)],
    )


# ---------------------------------------------------------------- blocking
def test_run_blocking_uses_the_pool_and_keeps_the_hub_running(hub):
    hub_thread = _real_get_ident()
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.005)) for _ in range(100)])

    def job():
        _real_sleep(0.1)  # a blocking C call
        return _real_get_ident()

    assert run_blocking(job) != hub_thread
    assert len(ticks) >= 5  # the hub ran other greenlets meanwhile
    ticker.kill()
    # nested: a job calling run_blocking runs it inline, in its own thread
    outer, inner = run_blocking(lambda: (_real_get_ident(), run_blocking(_real_get_ident)))
    assert outer == inner != hub_thread
    with pytest.raises(KeyError):
        run_blocking({}.__getitem__, "missing")


def test_run_blocking_inline_without_a_hub():
    out = {}

    def in_thread():
        out["ident"] = run_blocking(_real_get_ident)
        out["mine"] = _real_get_ident()

    t = NativeThread(in_thread)
    t.start()
    t.join(5)
    assert out["ident"] == out["mine"]


# ------------------------------------------------------------------ ids
def test_new_id_shape_uniqueness_and_order(monkeypatch):
    monkeypatch.setattr(queue_mod, "_id_counter", itertools.count(0xFFFF0))
    ids = [queue_mod.new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 22 and int(i, 16) >= 0 for i in ids)
    us = int(ids[0][:16], 16)
    assert abs(us / 1e6 - __import__("time").time()) < 5
    gevent.sleep(0.001)
    later = queue_mod.new_id()
    assert later > ids[-1] and later[:16] > ids[-1][:16]


def test_ids_name_their_process():
    for p in range(16):
        qid = queue_mod.new_id(p)
        assert len(qid) == 22 and queue_mod.process_of(qid, 16) == p
        assert queue_mod.process_of(qid, 2) == p % 2  # a run with fewer processes still owns it
    assert queue_mod.process_of("short", 4) == 0 and queue_mod.process_of("0" * 16 + "z" * 6, 4) == 0
    assert QueueStore("/nonexistent", process=3).new_id()[16] == "3"


# --------------------------------------------------------- put and friends
def test_put_load_update_remove(store, hub):
    qid = store.new_id()
    body = b"Subject: hi\r\n\r\nbody\r\n" * 50
    store.put(_item(qid, 2), body)
    assert store.load(qid) == _item(qid, 2)
    assert store.read_body(qid) == body
    for path in (store.item_path(qid), store.body_path(qid)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert 'reverse_path: "alice@example.org"' in open(store.item_path(qid)).read()
    with pytest.raises(FileExistsError):
        store.put(_item(qid), b"other")
    assert store.read_body(qid) == body and store.load(qid).recipients[1].address == "r1@example.com"
    item = store.load(qid)
    item.recipients[0].status = queue_pb2.DELIVERED
    store.update(item)
    assert store.load(qid).recipients[0].status == queue_pb2.DELIVERED
    assert store.list_ids() == [qid] and store.list_items() == [item]
    store.remove(qid)
    store.remove(qid)  # idempotent
    assert os.listdir(store.queue_dir) == [] and store.list_ids() == []
    with pytest.raises(FileNotFoundError):
        store.load(qid)


def test_store_works_inline_without_hub_context(tmp_path):
    """The CLI's case: a plain thread, no gevent hub."""
    out = {}

    def cli():
        s = QueueStore(str(tmp_path / "q"))
        s.recover()
        s.put(_item("0001"), b"x")
        it = s.load("0001")
        it.state = queue_pb2.QUARANTINED
        s.update(it)
        out["state"] = s.load("0001").state
        out["ids"] = s.list_ids()

    t = NativeThread(cli)
    t.start()
    t.join(10)
    assert out == {"state": queue_pb2.QUARANTINED, "ids": ["0001"]}


def test_bad_ids_and_corrupt_files(store):
    for bad in ("", "../x", "a/b", ".hidden", "a\0b"):
        with pytest.raises(ValueError):
            store.item_path(bad)
    with open(store.item_path("0002"), "w") as f:
        f.write('id: "0002"\nstate: WHAT\n')
    with pytest.raises(queuefile.CorruptFileError, match="0002.item"):
        store.load("0002")
    with open(store.item_path("0003"), "w") as f:
        f.write("")  # parses as an empty message: wrong id
    with pytest.raises(queuefile.CorruptFileError, match="holds id ''"):
        store.load("0003")
    assert QueueStore(os.path.join(store.queue_dir, "nope")).list_ids() == []


def test_recover_cleans_temps_and_orphans(store):
    d = store.queue_dir
    store.put(_item("0010"), b"kept")
    for name, data in [
        ("0011.body", b"orphan: the client never got 250"),
        ("0012.item", b'id: "0012"\n'),  # body missing: returned, for quarantine
        (".0010.item.tmp.1.2", b"half"),
        (".0013.item.tmp.3.4", b""),
    ]:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    assert store.list_ids() == ["0010", "0012"]
    assert store.recover() == ["0010", "0012"]
    assert sorted(os.listdir(d)) == ["0010.body", "0010.item", "0012.item"]
    assert store.read_body("0010") == b"kept"


def test_crash_at_every_step_of_put(tmp_path, monkeypatch):
    """Whatever step a crash hits, recover() leaves either nothing (no 250
    was sent) or the complete item and body; never debris."""
    body = b"Subject: x\r\n\r\n" + b"y" * 5000
    k = 0
    while True:
        s = QueueStore(str(tmp_path / f"q{k}"))
        s.recover()
        fake = CrashingOS(k, partial=True)
        monkeypatch.setattr(queuefile, "os", fake)
        monkeypatch.setattr(batchwriter, "os", fake)
        monkeypatch.setattr(queue_mod, "os", fake)
        try:
            s.put(_item("00ff"), body)
            finished = True
        except Crash:
            finished = False
        finally:
            monkeypatch.setattr(queuefile, "os", os)
            monkeypatch.setattr(batchwriter, "os", os)
            monkeypatch.setattr(queue_mod, "os", os)
        ids = s.recover()
        if ids:
            assert ids == ["00ff"] and s.load("00ff") == _item("00ff") and s.read_body("00ff") == body
            assert "rename" in fake.calls[:k] or finished
        else:
            assert "rename" not in fake.calls[:k]
        assert sorted(os.listdir(s.queue_dir)) == (["00ff.body", "00ff.item"] if ids else [])
        if finished:
            break
        k += 1
        assert k < 30
    assert fake.calls.count("fdatasync") == 2 and fake.calls.count("fsync") == 1


# ----------------------------------------------------------- group commit
def test_group_commit_shares_directory_fsyncs(store, hub, monkeypatch):
    """50 greenlets put at once: far fewer directory fsyncs than puts, and
    each put returns only after a directory fsync that began after its
    item's rename completed."""
    seq = itertools.count()
    lock = get_original("_thread", "allocate_lock")()
    renamed: dict[str, int] = {}
    dir_syncs: list[tuple[int, int]] = []
    real_fsync, real_rename = os.fsync, os.rename

    class Spy:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def rename(src, dst):
            real_rename(src, dst)
            renamed[os.path.basename(dst)] = next(seq)

        @staticmethod
        def fsync(fd):
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                return real_fsync(fd)
            start = next(seq)
            _real_sleep(0.003)  # a slow disk makes the sharing visible
            real_fsync(fd)
            with lock:
                dir_syncs.append((start, next(seq)))

    monkeypatch.setattr(queuefile, "os", Spy())
    monkeypatch.setattr(batchwriter, "os", queuefile.os)
    returned: dict[str, int] = {}

    def one(i):
        qid = f"{i:04x}"
        store.put(_item(qid), b"body %d\r\n" % i)
        returned[qid] = next(seq)

    gevent.joinall([gevent.spawn(one, i) for i in range(50)], raise_error=True, timeout=20)
    assert len(returned) == 50
    assert 1 <= len(dir_syncs) <= 50 // 4, dir_syncs
    assert store.writer.batches == len(dir_syncs) and store.writer.requests == 50
    for qid, ret in returned.items():
        r = renamed[qid + ".item"]
        assert any(r < start and end < ret for start, end in dir_syncs), (qid, r, ret, dir_syncs)


def test_dirsync_covers_only_earlier_callers(tmp_path, monkeypatch):
    """Directly in threads: a caller that arrives while an fsync runs waits
    for the next one rather than taking the running one as its own."""
    ds = queuefile.DirSync(str(tmp_path))
    release = _allocate_lock()
    release.acquire()
    calls = []

    def slow_fsync(path):
        calls.append(path)
        if len(calls) == 1:
            release.acquire()

    monkeypatch.setattr(queuefile, "fsync_directory", slow_fsync)
    first = NativeThread(ds.sync)
    first.start()
    while not calls:
        _real_sleep(0.001)
    done = []
    late = [NativeThread(lambda: (ds.sync(), done.append(1))) for _ in range(5)]
    for t in late:
        t.start()
    _real_sleep(0.02)
    assert done == [] and len(calls) == 1  # the running fsync does not count for them
    release.release()
    first.join(5)
    for t in late:
        t.join(5)
    assert len(done) == 5 and len(calls) == 2  # one more fsync covered all five


# ----------------------------------------------------- interrupted callers
class Interrupt(Exception):
    pass


def test_interrupted_put_can_be_retried(store, hub, monkeypatch):
    """ShutdownRequested thrown into a session waiting in put(): the write
    finishes in its thread, and the session's retry joins it instead of
    failing on the existing body file."""
    real = os.fdatasync
    monkeypatch.setattr(queuefile.os, "fdatasync", lambda fd: (_real_sleep(0.05), real(fd)))
    item, body = _item("0abc"), b"body\r\n"
    g = gevent.spawn(store.put, item, body)
    gevent.sleep(0.01)
    g.kill(Interrupt, block=True)
    assert isinstance(g.exception, Interrupt)
    store.put(item, body)  # the retry
    assert store.load("0abc") == item and store.read_body("0abc") == body
    assert store._interrupted_puts == {}  # noqa: SLF001
    # an update after an interrupted update lands last
    g = gevent.spawn(store.update, _item("0abc", 3))
    gevent.sleep(0.01)
    g.kill(Interrupt, block=True)
    store.update(_item("0abc", 2))
    assert len(store.load("0abc").recipients) == 2


def test_batch_isolates_errors_and_keeps_call_order(store, hub):
    """One batch: a duplicate id fails alone; an update then a remove of
    the same item land in that order."""
    store.put(_item("0d00"), b"first")
    store.put(_item("0e00"), b"doomed")
    results: dict[str, object] = {}

    def attempt(key, fn, *args):
        try:
            fn(*args)
            results[key] = "ok"
        except Exception as e:  # noqa: BLE001
            results[key] = type(e).__name__

    jobs = [gevent.spawn(attempt, f"p{i}", store.put, _item(f"1{i:03x}"), b"b%d" % i) for i in range(10)]
    jobs.append(gevent.spawn(attempt, "dup", store.put, _item("0d00"), b"second"))
    jobs.append(gevent.spawn(attempt, "upd", store.update, _item("0e00", 4)))
    jobs.append(gevent.spawn(attempt, "rm", store.remove, "0e00"))
    before = store.writer.batches
    gevent.joinall(jobs, raise_error=True, timeout=10)
    assert results.pop("dup") == "FileExistsError"
    assert set(results.values()) == {"ok"} and len(results) == 12
    assert store.writer.batches - before <= 2  # they shared jobs
    assert store.read_body("0d00") == b"first"
    assert "0e00" not in store.list_ids() and not os.path.exists(store.body_path("0e00"))
    assert len(store.list_ids()) == 11 and sorted(os.listdir(store.queue_dir)) == sorted(
        [f"{i}.item" for i in store.list_ids()] + [f"{i}.body" for i in store.list_ids()]
    )


def test_killed_runner_fails_waiters_then_recovers(store, hub, monkeypatch):
    real = os.fdatasync
    monkeypatch.setattr(queuefile.os, "fdatasync", lambda fd: (_real_sleep(0.05), real(fd)))
    raised = []

    def put():
        try:
            store.put(_item("0f00"), b"x")
        except BaseException as e:  # noqa: BLE001
            raised.append(e)

    waiter = gevent.spawn(put)
    gevent.sleep(0.01)
    store.writer._runner.kill(block=True)  # noqa: SLF001
    waiter.join(2)
    assert waiter.dead and len(raised) == 1 and isinstance(raised[0], gevent.GreenletExit)
    hub.threadpool.join()  # the orphaned job still finishes in its thread
    monkeypatch.undo()
    with gevent.Timeout(5):  # a new runner takes the next request
        store.put(_item("0f01"), b"y")
    assert store.read_body("0f01") == b"y"
