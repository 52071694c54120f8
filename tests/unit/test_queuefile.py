"""store/queuefile.py: atomic durable writes survive a crash at any step;
text-format files round-trip; a real SIGKILL leaves only parseable items."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from estafeta.proto import queue_pb2
from estafeta.store import queuefile
from estafeta.store.queue import QueueStore


class Crash(BaseException):
    """The simulated process death: a BaseException, so no `except
    Exception` clean-up runs, as none would after a real crash."""


class CrashingOS:
    """Stands in for the `os` module of the modules under test: counts the
    calls that change or flush disk state and "dies" at call number
    `crash_at` (the call does not happen; a write in "partial" mode writes
    half its data first). After the crash every such call raises Crash;
    close() still really closes (it changes nothing on disk) so no fd leaks.
    """

    STEPS = ("open", "write", "writev", "fsync", "fdatasync", "rename", "replace", "unlink", "mkdir", "close")

    def __init__(self, crash_at: int, partial: bool = False):
        self.crash_at, self.partial = crash_at, partial
        self.calls: list[str] = []
        self.dead = False

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.STEPS:
            return real

        def step(*args, **kwargs):
            if name == "close" and self.dead:
                return real(*args, **kwargs)
            if self.dead:
                raise Crash(f"dead at {name}")
            k = len(self.calls)
            self.calls.append(name)
            if k == self.crash_at:
                self.dead = True
                if name == "write" and self.partial:
                    fd, data = args
                    os.write(fd, data[: len(data) // 2])
                if name == "close":
                    real(*args, **kwargs)
                raise Crash(f"crash at step {k} ({name})")
            return real(*args, **kwargs)

        return step


def _others(directory: str, keep: set[str]) -> list[str]:
    return sorted(set(os.listdir(directory)) - keep)


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("had_old", [True, False])
def test_crash_at_every_step_leaves_old_or_new(tmp_path, monkeypatch, partial, had_old):
    old, new = b"old contents\n" * 10, b"new contents\n" * 100
    k = 0
    while True:
        d = tmp_path / f"k{k}"
        d.mkdir()
        path = str(d / "x.item")
        if had_old:
            queuefile.atomic_write(path, old)
        fake = CrashingOS(k, partial)
        monkeypatch.setattr(queuefile, "os", fake)
        try:
            queuefile.atomic_write(path, new)
            finished = True
        except Crash:
            finished = False
        finally:
            monkeypatch.setattr(queuefile, "os", os)
        renamed = "rename" in fake.calls[:k] or finished
        if os.path.exists(path):
            with open(path, "rb") as f:
                got = f.read()
            assert got == (new if renamed else old), (k, fake.calls)
        else:
            assert not had_old and not renamed, (k, fake.calls)
        leftovers = _others(str(d), {"x.item"})
        assert all(queuefile.is_temp_name(n) for n in leftovers), leftovers
        assert queuefile.remove_temp_files(str(d)) == len(leftovers)
        assert _others(str(d), {"x.item"}) == []
        if finished:
            break
        k += 1
        assert k < 20, "atomic_write never finished"
    # open, write, fdatasync, close, rename, open dir, fsync dir, close dir
    assert fake.calls == ["open", "write", "fdatasync", "close", "rename", "open", "fsync", "close"]
    assert k == len(fake.calls)


def test_error_before_rename_removes_temp_and_keeps_old(tmp_path, monkeypatch):
    path = str(tmp_path / "a.item")
    queuefile.atomic_write(path, b"old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(queuefile.os, "fdatasync", full)
    with pytest.raises(OSError, match="No space"):
        queuefile.atomic_write(path, b"new")
    monkeypatch.undo()
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["a.item"]


def test_atomic_write_mode_and_temp_names(tmp_path):
    path = str(tmp_path / "f")
    queuefile.atomic_write(path, b"data", fsync_dir=False)
    assert os.stat(path).st_mode & 0o777 == 0o600
    t1, t2 = queuefile.temp_path(path), queuefile.temp_path(path)
    assert t1 != t2 and os.path.dirname(t1) == str(tmp_path)
    assert os.path.basename(t1).startswith(".f.tmp.") and queuefile.is_temp_name(os.path.basename(t1))
    assert not queuefile.is_temp_name("f") and not queuefile.is_temp_name("00ab.item")


def test_large_write_is_complete(tmp_path):
    data = os.urandom(3 << 20)
    path = str(tmp_path / "big")
    queuefile.atomic_write(path, data)
    assert open(path, "rb").read() == data


def test_message_round_trip_is_text(tmp_path):
    item = queue_pb2.QueueItem(
        id="abc",
        state=queue_pb2.QUEUED,
        reverse_path="ålice@example.org",
        recipients=[queue_pb2.Recipient(address="bob@example.com", status=queue_pb2.PENDING)],
        created_at=1735000000.25,
    )
    path = str(tmp_path / "abc.item")
    queuefile.write_message(path, item)
    text = open(path, encoding="utf-8").read()
    assert 'reverse_path: "ålice@example.org"' in text and "state: QUEUED" in text
    assert queuefile.read_message(path, queue_pb2.QueueItem) == item


_text = st.text(max_size=20)
_double = st.floats(allow_nan=False)
_u32 = st.integers(0, 2**32 - 1)
_recipient = st.builds(
    queue_pb2.Recipient,
    address=_text,
    mailbox=_text,
    status=st.sampled_from([0, 1, 2, 3]),
    attempts=_u32,
    last_error=_text,
    done_at=_double,
    original_recipient=_text,
)
_item = st.builds(
    queue_pb2.QueueItem,
    id=_text,
    state=st.sampled_from([0, 1, 2, 3]),
    reverse_path=_text,
    recipients=st.lists(_recipient, max_size=3),
    created_at=_double,
    body_size=st.integers(0, 2**64 - 1),
    message_id=_text,
    helo=_text,
    smtputf8=st.booleans(),
    attempts=_u32,
    next_attempt_at=_double,
    last_error=_text,
    crashes=_u32,
    quarantine_reason=_text,
)


@settings(max_examples=150, deadline=None)
@given(_item)
def test_to_text_round_trips_through_text_format_parse(item):
    """to_text (upb's C encoder) must read back, with text_format.Parse,
    as the identical message: any string, any double, any integer."""
    text = queuefile.to_text(item)
    back = queue_pb2.QueueItem()
    text_format.Parse(text, back)
    assert back == item
    if item.reverse_path:
        assert b"reverse_path: " in text  # text format, field by name


def test_parse_error_names_the_file(tmp_path):
    path = str(tmp_path / "bad.item")
    with open(path, "wb") as f:
        f.write(b'id: "x"\nstate: NOT_A_STATE\n')
    with pytest.raises(text_format.ParseError) as e:
        queuefile.read_message(path, queue_pb2.QueueItem)
    assert isinstance(e.value, queuefile.CorruptFileError) and path in str(e.value)
    with open(path, "wb") as f:
        f.write(b'id: "\xff\xfe"\n')
    with pytest.raises(queuefile.CorruptFileError, match="bad.item"):
        queuefile.read_message(path, queue_pb2.QueueItem)


def test_remove_temp_files_only_removes_temps(tmp_path):
    for name in ("a.item", "a.body", ".a.item.tmp.1f.2", ".b.item.tmp.3.4", "README"):
        (tmp_path / name).write_bytes(b"x")
    assert queuefile.remove_temp_files(str(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == ["README", "a.body", "a.item"]


_CHILD = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import sys, gevent
    from estafeta.proto import queue_pb2
    from estafeta.store.blocking import configure_threadpool
    from estafeta.store.queue import QueueStore
    configure_threadpool(8)
    store = QueueStore(sys.argv[1])
    store.recover()
    out = sys.stdout

    def worker(n):
        for i in range(n):
            qid = store.new_id()
            item = queue_pb2.QueueItem(id=qid, state=queue_pb2.QUEUED, reverse_path="a@b.example",
                recipients=[queue_pb2.Recipient(address=f"r{i}@c.example", status=queue_pb2.PENDING)],
                body_size=1000 + i)
            store.put(item, qid.encode() * ((1000 + i) // 22) + b"!" * ((1000 + i) % 22))
            out.write(qid + "\\n"); out.flush()
            item.attempts = 1
            item.last_error = "451 4.3.0 try again " * 20
            store.update(item)

    gevent.joinall([gevent.spawn(worker, 50) for _ in range(8)])
    out.write("END\\n"); out.flush()
    """
)


def test_sigkill_mid_writes_leaves_parseable_items(tmp_path):
    """A real process killed with SIGKILL while 8 greenlets put and update
    (at most 400 puts): every item file parses, every acknowledged put is
    there with its exact body, and recover() leaves no debris."""
    qdir = str(tmp_path / "queue")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, qdir], stdout=subprocess.PIPE, text=True)
    acked: list[str] = []
    deadline = time.monotonic() + 30
    try:
        for line in proc.stdout:
            line = line.strip()
            if line == "END":
                break
            acked.append(line)
            if len(acked) >= 120:
                break
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert len(acked) >= 120
    store = QueueStore(qdir)
    on_disk = [n for n in os.listdir(qdir) if n.endswith(".item") and not n.startswith(".")]
    for name in on_disk:  # before recover(): what a reader sees right after the crash
        store.load(name[: -len(".item")])
    ids = store.recover()
    assert set(acked) <= set(ids)
    for qid in ids:
        item = store.load(qid)
        body = store.read_body(qid)
        assert len(body) == item.body_size
        assert body.startswith(qid.encode())
    names = os.listdir(qdir)
    assert not [n for n in names if n.startswith(".")]
    assert {n.rsplit(".", 1)[0] for n in names} == set(ids)  # no orphan bodies
