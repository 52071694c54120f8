"""store/disk_worker.py (the child process), store/disk_client.py (the
hub side) and actors/disk.py (the DiskWriter actor owning the worker):
framing, every operation end to end with real worker processes, errors
mapped back, sends that keep the stream's order, the worker's death, shutdown, signals, and
the actor's restart under a supervisor. Runs under gevent monkey patching
(tests/conftest.py)."""

from __future__ import annotations

import errno
import itertools
import os
import signal
import socket
import subprocess
import sys

import gevent
import pykka
import pytest
from waiting import wait_for  # tests/unit is on sys.path

from estafeta.actors.disk import DiskWriter
from estafeta.proto import disk_pb2, messages_pb2, queue_pb2
from estafeta.proto import supervision_pb2 as pb
from estafeta.store import disk_worker, queuefile
from estafeta.store.disk_client import DiskChannel, DiskClient, Pending
from estafeta.store.disk_worker import FRAME, encode_frame, split_frames
from estafeta.store.queue import MaildirTarget as QueueTarget
from estafeta.store.queue import QueueStore
from estafeta.supervisor.actor import Link
from estafeta.supervisor.tree import ChildSpec, Supervisor, SupervisorSpec

TIMEOUT = 5.0


# ---------------------------------------------------------------- helpers


def queue_write(directory: str, writes=(), unlinks=()) -> disk_pb2.DiskRequest:
    return disk_pb2.DiskRequest(
        queue_write=disk_pb2.QueueWrite(
            writes=[disk_pb2.FileWrite(path=p, data=d, exclusive=x) for p, d, x in writes],
            unlinks=list(unlinks),
            directory=directory,
        )
    )


def delivery(
    root: str,
    mailbox: str,
    name: str,
    prefix: bytes = b"",
    body: bytes = b"",
    body_path: str = "",
    check_existing: bool = False,
) -> disk_pb2.DiskRequest:
    return disk_pb2.DiskRequest(
        maildir=disk_pb2.MaildirDelivery(
            root=root,
            mailbox=mailbox,
            name=name,
            header_prefix=prefix,
            body=body,
            body_path=body_path,
            check_existing=check_existing,
        )
    )


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def outcome(pending: Pending):
    """The reply, or the exception wait() raises."""
    try:
        return pending.wait()
    except Exception as e:  # noqa: BLE001
        return e


@pytest.fixture
def client():
    exits: list[str] = []
    c = DiskClient(on_exit=exits.append)
    c.start()
    c.exits = exits  # type: ignore[attr-defined]
    yield c
    c.close(timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    for ref in reversed(pykka.ActorRegistry.get_by_class(Supervisor)):
        ref.stop(block=False)
    pykka.ActorRegistry.stop_all(timeout=TIMEOUT)


# ---------------------------------------------------------------- framing
def test_frames_round_trip_and_partial_frames_stay():
    msgs = [
        disk_pb2.DiskReply(id=1),
        disk_pb2.DiskReply(),  # encodes to nothing: a frame of length 0
        disk_pb2.DiskReply(id=2**63, error_type="OSError", errno=28, error="No space", path="/q/x"),
        disk_pb2.DiskReply(id=3, path="p" * 70000, already_there=True),
    ]
    frames = [encode_frame(m) for m in msgs]
    assert frames[1] == FRAME.pack(0) and FRAME.unpack(frames[3][:4])[0] == len(frames[3]) - 4
    stream = b"".join(frames)
    # Whole stream at once.
    buf = bytearray(stream)
    assert split_frames(buf, disk_pb2.DiskReply.FromString) == msgs and buf == bytearray()
    # In pieces (byte by byte, then 4 KiB at a time): each message comes out
    # once, when its last byte arrives; the rest of a frame waits in buf.
    ends = list(itertools.accumulate(len(f) for f in frames))
    buf, got, pos = bytearray(), [], 0
    while pos < len(stream):
        step = 1 if pos < ends[2] + 10 else 4096
        buf += stream[pos : pos + step]
        pos = min(pos + step, len(stream))
        got += split_frames(buf, disk_pb2.DiskReply.FromString)
        assert got == [m for m, e in zip(msgs, ends) if e <= pos]
        assert bytes(buf) == stream[max([0] + [e for e in ends if e <= pos]) : pos]
    assert got == msgs and buf == bytearray()
    # The request side too.
    req = queue_write("/q", [("/q/a.body", b"\0\xff" * 10, True)], ["/q/b.item"])
    req.id = 7
    buf = bytearray(encode_frame(req) + encode_frame(req)[:5])
    assert split_frames(buf, disk_pb2.DiskRequest.FromString) == [req] and len(buf) == 5


# -------------------------------------------------------------- operations
def test_queue_write_put_update_remove(client, tmp_path):
    """QueueStore on a DiskChannel: put (body exclusive + item replace),
    update and remove, done by the worker with recycling writers."""
    channel = DiskChannel()
    channel.client = client
    store = QueueStore(str(tmp_path / "queue"), disk=channel)
    store.recover()
    item = queue_pb2.QueueItem(
        id="00a1",
        state=queue_pb2.QUEUED,
        reverse_path="a@b.example",
        recipients=[queue_pb2.Recipient(address="r@c.example", status=queue_pb2.PENDING)],
    )
    body = b"Subject: x\r\n\r\n" + os.urandom(3000)
    store.put(item, body)
    assert read(store.body_path("00a1")) == body and read(store.item_path("00a1")) == queuefile.to_text(item)
    assert store.load("00a1") == item and oct(os.stat(store.body_path("00a1")).st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        store.put(item, b"again")
    assert read(store.body_path("00a1")) == body
    item.attempts, item.last_error = 1, "451 later"
    store.update(item)
    assert store.load("00a1") == item
    store.remove("00a1")
    store.remove("00a1")  # idempotent
    assert store.list_ids() == [] and not [n for n in os.listdir(store.queue_dir) if not n.startswith(".")]
    # The removed files became the worker's spares: a new put reuses them.
    spares = [n for n in os.listdir(store.queue_dir) if n.startswith(".spare.tmp.")]
    assert spares
    for i in range(3):
        qid = f"00b{i}"
        store.put(queue_pb2.QueueItem(id=qid), b"body %d" % i)
        store.remove(qid)
    assert store.recover() == [] and os.listdir(store.queue_dir) == []
    # A raw QueueWrite: two writes and an unlink in one request.
    d = str(tmp_path / "raw")
    os.mkdir(d)
    open(os.path.join(d, "old"), "wb").close()
    reply = client.call(queue_write(d, [(f"{d}/a", b"A", True), (f"{d}/b", b"B", False)], [f"{d}/old"]))
    assert reply.error_type == "" and reply.id > 0
    assert sorted(n for n in os.listdir(d) if n[0] != ".") == ["a", "b"]  # "old" became a spare
    assert read(f"{d}/a") == b"A" and read(f"{d}/b") == b"B"


def test_maildir_delivery(client, tmp_path):
    root = str(tmp_path / "mail")
    body = b"Subject: hi\r\n\r\n" + b"line\r\n" * 2000
    lf = body.replace(b"\r\n", b"\n")  # Maildir files have LF line ends
    r = client.call(delivery(root, "example.org/alice", "1.Q1R0.host", b"Return-Path: <a@b>\n", body=body))
    assert r.path == f"{root}/example.org/alice/new/1.Q1R0.host" and not r.already_there
    assert read(r.path) == b"Return-Path: <a@b>\n" + lf
    assert os.listdir(f"{root}/example.org/alice/tmp") == []
    # From the queue's body file.
    src = tmp_path / "00c1.body"
    src.write_bytes(body * 3)
    r2 = client.call(delivery(root, "example.org/bob", "1.Q2R0.host", b"X: 1\n", body_path=str(src)))
    assert read(r2.path) == b"X: 1\n" + lf * 3 and not r2.already_there
    # check_existing finds an earlier delivery, also once moved to cur/ with flags.
    again = client.call(delivery(root, "example.org/alice", "1.Q1R0.host", b"other", body=b"x", check_existing=True))
    assert again.path == r.path and again.already_there and read(r.path) == b"Return-Path: <a@b>\n" + lf
    cur = f"{root}/example.org/bob/cur/1.Q2R0.host:2,S"
    os.rename(r2.path, cur)
    again = client.call(delivery(root, "example.org/bob", "1.Q2R0.host", body=b"x", check_existing=True))
    assert again.path == cur and again.already_there
    assert os.listdir(f"{root}/example.org/bob/new") == []


def removal(store: QueueStore, queue_id: str) -> disk_pb2.QueueWrite:
    """The QueueWrite that removes an item (what QueueStore puts in
    MaildirDelivery.remove_after)."""
    return disk_pb2.QueueWrite(
        unlinks=[store.item_path(queue_id), store.body_path(queue_id)], directory=store.queue_dir
    )


def test_delivery_with_remove_after_removes_the_item_once_delivered(client, tmp_path):
    """MaildirDelivery.remove_after: the item's files go in the same request,
    after the Maildir file is durable — and only if the delivery worked."""
    root, qdir = str(tmp_path / "mail"), tmp_path / "queue"
    qdir.mkdir()
    store = QueueStore(str(qdir))
    item = queue_pb2.QueueItem(
        id="00c1",
        state=queue_pb2.QUEUED,
        reverse_path="a@b",
        recipients=[queue_pb2.Recipient(address="u@example.org", mailbox="example.org/u")],
    )
    client.call(
        queue_write(
            str(qdir),
            [
                (store.body_path("00c1"), b"Return-Path: <a@b>\r\n\r\nhi\r\n", True),
                (store.item_path("00c1"), queuefile.to_text(item), False),
            ],
        )
    )
    req = delivery(root, "example.org/u", "1.Q00c1R0.host", body_path=store.body_path("00c1"))
    req.maildir.remove_after.CopyFrom(removal(store, "00c1"))
    r = client.call(req)
    assert r.removed and read(r.path) == b"Return-Path: <a@b>\n\nhi\n"
    assert not os.path.exists(store.item_path("00c1")) and not os.path.exists(store.body_path("00c1"))
    # A delivery that fails leaves the item alone (it is retried later).
    client.call(
        queue_write(
            str(qdir),
            [(store.body_path("00c2"), b"x", True), (store.item_path("00c2"), queuefile.to_text(item), False)],
        )
    )
    bad = delivery(root, "../escape", "1.Q00c2R0.host", body_path=store.body_path("00c2"))
    bad.maildir.remove_after.CopyFrom(removal(store, "00c2"))
    with pytest.raises(ValueError):
        client.call(bad)
    assert os.path.exists(store.item_path("00c2")) and os.path.exists(store.body_path("00c2"))


def test_errors_map_back(client, tmp_path):
    d = str(tmp_path)
    client.call(queue_write(d, [(f"{d}/x.body", b"first", True)]))
    with pytest.raises(FileExistsError) as e:
        client.call(queue_write(d, [(f"{d}/x.body", b"second", True), (f"{d}/x.item", b"i", False)]))
    assert e.value.errno == errno.EEXIST and e.value.filename == f"{d}/x.body"
    assert read(f"{d}/x.body") == b"first" and sorted(os.listdir(d)) == ["x.body"]
    with pytest.raises(ValueError, match="invalid mailbox"):
        client.call(delivery(d, "../x", "1.Q1R0.h", body=b"b"))
    with pytest.raises(ValueError, match="invalid maildir file name"):
        client.call(delivery(d, "example.org/a", "../../x.body", body=b"b"))
    with pytest.raises(FileNotFoundError) as e:
        client.call(delivery(d, "example.org/a", "1.Q1R0.h", body_path=f"{d}/missing.body"))
    assert e.value.errno == errno.ENOENT and e.value.filename == f"{d}/missing.body"
    with pytest.raises(OSError) as e:
        client.call(queue_write(f"{d}/nodir", [(f"{d}/nodir/y.item", b"y", False)]))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:  # a request with no operation: a bug, reported as EIO
        client.call(disk_pb2.DiskRequest())
    assert e.value.errno == errno.EIO and "unknown request" in str(e.value)
    assert client.alive and client.exits == []  # errors are replies, not deaths
    assert client.call(queue_write(d, [(f"{d}/z", b"z", False)])).error_type == ""


def test_file_exists_on_a_recycled_create_names_the_existing_file(client, tmp_path):
    d = str(tmp_path)
    client.call(queue_write(d, [(f"{d}/a.body", b"a", True), (f"{d}/a.item", b"a", False)]))
    client.call(queue_write(d, [], [f"{d}/a.item", f"{d}/a.body"]))  # two spares (pending)
    client.call(queue_write(d, [(f"{d}/b.body", b"b", True)]))  # its fsync makes them ready
    with pytest.raises(FileExistsError) as e:
        client.call(queue_write(d, [(f"{d}/b.body", b"again", True)]))
    assert e.value.filename == f"{d}/b.body"


def test_concurrent_requests_are_matched(client, tmp_path):
    root, qdir = str(tmp_path / "mail"), str(tmp_path / "q")
    os.mkdir(qdir)
    client.call(queue_write(qdir, [(f"{qdir}/taken.body", b"t", True)]))
    before = (client.requests, client.sends)
    results: dict[int, object] = {}

    def one(i: int):
        if i % 10 == 3:  # some fail: their errors must reach them, not a neighbour
            req = queue_write(qdir, [(f"{qdir}/taken.body", b"%d" % i, True)])
        elif i % 2:
            req = queue_write(
                qdir, [(f"{qdir}/{i}.body", b"q%d" % i * i, True), (f"{qdir}/{i}.item", b"%d" % i, False)]
            )
        else:
            req = delivery(root, f"example.org/u{i % 4}", f"1.Q{i}R0.h", b"To: %d\r\n" % i, body=b"m%d" % i * (i + 1))
        results[i] = outcome(client.submit(req))

    gevent.joinall([gevent.spawn(one, i) for i in range(100)], raise_error=True, timeout=TIMEOUT)
    assert len(results) == 100
    for i, r in results.items():
        if i % 10 == 3:
            assert isinstance(r, FileExistsError), (i, r)
        elif i % 2:
            assert r.error_type == "" and r.path == "", (i, r)
            assert read(f"{qdir}/{i}.body") == b"q%d" % i * i and read(f"{qdir}/{i}.item") == b"%d" % i
        else:
            path = f"{root}/example.org/u{i % 4}/new/1.Q{i}R0.h"
            assert r.error_type == "" and r.path == path, (i, r)
            assert read(path) == b"To: %d\r\n" % i + b"m%d" % i * (i + 1)
    requests, sends = client.requests - before[0], client.sends - before[1]
    assert requests == 100 and 1 <= sends <= 100, (requests, sends)  # sent at once, or joined behind a full buffer
    assert read(f"{qdir}/taken.body") == b"t"


def test_frames_behind_a_partly_sent_one_keep_their_order(client, tmp_path):
    """A frame bigger than the socket buffer is sent in part by submit()
    and finished by the sender greenlet; the frames submitted after it
    wait behind it, so the stream stays whole."""
    d = str(tmp_path)
    big = os.urandom(3 * 1024 * 1024)
    pendings = [client.submit(queue_write(d, [(f"{d}/s{i}", b"s%d" % i, False)])) for i in range(3)]
    assert client.sends >= 3  # sent at once, no sender round trip
    pendings.append(client.submit(queue_write(d, [(f"{d}/big", big, True)])))
    assert client._outbox  # noqa: SLF001 - the rest of the big frame waits for the sender
    pendings += [client.submit(queue_write(d, [(f"{d}/t{i}", b"t%d" % i, False)])) for i in range(3)]
    for p in pendings:
        assert p.wait().error_type == ""
    assert read(f"{d}/big") == big and read(f"{d}/t2") == b"t2" and read(f"{d}/s0") == b"s0"


# ------------------------------------------------------- the worker's death
@pytest.mark.parametrize("how", ["client.kill", "SIGKILL"])
def test_killed_worker_fails_pending_requests_with_eio(client, tmp_path, how):
    root = str(tmp_path / "mail")
    fifo = str(tmp_path / "stuck.body")
    os.mkfifo(fifo)  # opening it blocks the worker's Maildir lane: a request in flight
    client.call(delivery(root, "example.org/a", "1.Q0R0.h", body=b"warm"))  # the worker is up
    stuck = client.submit(delivery(root, "example.org/a", "1.Q1R0.h", body_path=fifo))
    gevent.sleep(0.1)
    assert not stuck.ready()
    later = [client.submit(delivery(root, "example.org/a", f"1.Q{i}R0.h", body_path=fifo)) for i in range(2, 6)]
    pid = client.pid
    if how == "client.kill":
        client.kill()
    else:
        os.kill(pid, signal.SIGKILL)
    for p in [stuck, *later]:
        with gevent.Timeout(TIMEOUT):
            e = outcome(p)
        assert isinstance(e, OSError) and e.errno == errno.EIO, e
        assert "disk worker exited" in str(e) and "outcome unknown" in str(e)
    wait_for(lambda: client.exits)
    [reason] = client.exits
    # "end of file", or ECONNRESET when it died with our requests unread
    assert reason.endswith(", exit status -9") and ("end of file" in reason or "reset" in reason), reason
    assert not client.alive
    with pytest.raises(OSError) as e:  # a request after the death
        client.submit(delivery(root, "example.org/a", "1.Q9R0.h", body=b"x"))
    assert e.value.errno == errno.EAGAIN
    with pytest.raises(OSError) as e:
        client.call(queue_write(str(tmp_path), [(f"{tmp_path}/x", b"x", False)]))
    assert e.value.errno == errno.EAGAIN
    assert not os.path.exists(f"{root}/example.org/a/new/1.Q1R0.h")


def test_channel_without_a_client_raises_eagain():
    channel = DiskChannel()
    for call in (channel.submit, channel.call):
        with pytest.raises(OSError) as e:
            call(disk_pb2.DiskRequest())
        assert e.value.errno == errno.EAGAIN


def test_close_lets_queued_work_finish(tmp_path):
    exits = []
    c = DiskClient(on_exit=exits.append)
    c.start()
    d, root = str(tmp_path / "q"), str(tmp_path / "mail")
    os.mkdir(d)
    pendings = [
        c.submit(queue_write(d, [(f"{d}/{i}.body", b"b%d" % i, True), (f"{d}/{i}.item", b"i", False)]))
        for i in range(10)
    ]
    pendings += [c.submit(delivery(root, "example.org/z", f"1.Q{i}R0.h", body=b"m%d" % i)) for i in range(10)]
    pendings += [c.submit(queue_write(d, [], [f"{d}/{i}.item", f"{d}/{i}.body"])) for i in range(5)]
    c.close(timeout=TIMEOUT)  # nothing was even sent yet
    assert all(p.ready() for p in pendings)
    for p in pendings:
        assert p.wait().error_type == ""
    assert c._proc.returncode == 0 and not c.alive and exits == []  # noqa: SLF001
    assert sorted(n for n in os.listdir(d) if not n.startswith(".")) == sorted(
        f"{i}.{s}" for i in range(5, 10) for s in ("body", "item")
    )
    assert len(os.listdir(f"{root}/example.org/z/new")) == 10
    with pytest.raises(OSError) as e:
        c.submit(disk_pb2.DiskRequest())
    assert e.value.errno == errno.EAGAIN
    c.close()  # twice: nothing happens


# ------------------------------------------------------- the worker process
def _raw_worker() -> tuple[subprocess.Popen, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "estafeta.store.disk_worker", str(theirs.fileno()), str(os.getpid())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    theirs.close()
    return proc, ours


def _round_trip(sock: socket.socket, req: disk_pb2.DiskRequest) -> disk_pb2.DiskReply:
    sock.sendall(encode_frame(req))
    buf = bytearray()
    with gevent.Timeout(TIMEOUT):
        while True:
            buf += sock.recv(65536)
            replies = split_frames(buf, disk_pb2.DiskReply.FromString)
            if replies:
                return replies[0]


def test_worker_ignores_sigterm_sigint_and_exits_at_end_of_file(tmp_path):
    proc, sock = _raw_worker()
    try:
        d = str(tmp_path)
        req = queue_write(d, [(f"{d}/a", b"a", False)])
        req.id = 41
        assert _round_trip(sock, req) == disk_pb2.DiskReply(id=41)  # up, handlers installed
        for sig in (signal.SIGTERM, signal.SIGINT):
            proc.send_signal(sig)
        gevent.sleep(0.1)
        assert proc.poll() is None  # ignored while its socket is open
        req.id = 42
        assert _round_trip(sock, req) == disk_pb2.DiskReply(id=42)  # still serving
    finally:
        sock.close()  # end of file for the worker
    assert proc.wait(timeout=TIMEOUT) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_worker_exits_2_on_a_corrupt_stream():
    proc, sock = _raw_worker()
    with sock:
        sock.sendall(FRAME.pack(3) + b"\xff\xff\xff")
        assert proc.wait(timeout=TIMEOUT) == 2
    assert b"disk worker" in proc.stderr.read()
    proc.stderr.close()
    assert disk_worker.main([]) == 2  # usage


# ------------------------------------------------------------- the actor
def test_disk_writer_publishes_its_client_and_clears_it_on_stop(tmp_path):
    channel = DiskChannel()
    ref = DiskWriter.start(None, channel)
    client = wait_for(lambda: channel.client)
    assert client.alive and client.pid
    d = str(tmp_path)
    assert channel.call(queue_write(d, [(f"{d}/a", b"a", False)])).error_type == ""
    ref.tell(messages_pb2.DiskWorkerExited(pid=client.pid + 100000, reason="a previous worker"))
    gevent.sleep(0.05)
    assert ref.is_alive() and channel.client is client  # a late notice is ignored
    ref.stop(timeout=TIMEOUT)
    assert channel.client is None and client._proc.returncode == 0  # noqa: SLF001
    # An unknown message crashes it (OTP: a bad call crashes the server): the worker goes too.
    ref = DiskWriter.start(None, channel)
    client = wait_for(lambda: channel.client)
    with pytest.raises(TypeError):
        ref.ask("what", timeout=TIMEOUT)
    wait_for(lambda: client._proc.poll() is not None)  # noqa: SLF001  (on_failure killed it)
    assert not ref.is_alive() and channel.client is None


def test_disk_writer_restarted_with_a_new_worker_when_the_worker_dies(tmp_path):
    channel = DiskChannel()
    spec = SupervisorSpec(
        "sup",
        "one_for_one",
        intensity=5,
        period=10.0,
        backoff_initial=0.0,
        children=[
            ChildSpec("disk", lambda link, _a: DiskWriter.start(link, channel), shutdown=TIMEOUT),
        ],
    )
    sup = Supervisor.start(Link(None, "sup"), spec)
    first = wait_for(lambda: channel.client)
    pid = first.pid
    d = str(tmp_path)
    assert channel.call(queue_write(d, [(f"{d}/a", b"a", False)])).error_type == ""
    os.kill(pid, signal.SIGKILL)
    second = wait_for(lambda: channel.client is not None and channel.client is not first and channel.client)
    assert second.alive and second.pid != pid and not first.alive
    assert first._proc.returncode == -signal.SIGKILL  # noqa: SLF001
    children = {c.child_id: c for c in sup.ask(pb.WhichChildren(), timeout=TIMEOUT).children}
    assert children["disk"].restarts == 1 and children["disk"].alive
    assert channel.call(queue_write(d, [(f"{d}/b", b"b", False)])).error_type == ""
    assert read(f"{d}/b") == b"b"
    assert sup.stop(timeout=TIMEOUT)
    assert channel.client is None
    assert second._proc.returncode == 0  # noqa: SLF001  (closed: finished, then exited)


def test_ping_is_answered_at_once(client):
    """The readiness probe's round trip (DiskRequest.ping)."""
    assert client.ping(TIMEOUT)
    client.kill()
    assert not client.ping(TIMEOUT)


@pytest.mark.parametrize("with_worker", [True, False])
def test_queue_store_delivers_maildirs_and_removes_the_item(client, tmp_path, with_worker):
    """QueueStore.deliver_maildirs: each target gets its own copy (LF line
    ends, its own headers); remove_item removes the item once every copy is
    durable (one target: in the same request to the worker) and never when
    one failed."""
    channel = DiskChannel()
    channel.client = client
    qdir, root = tmp_path / "queue", str(tmp_path / "mail")
    qdir.mkdir()
    store = QueueStore(str(qdir), disk=channel if with_worker else None)
    item = queue_pb2.QueueItem(id="00d1", state=queue_pb2.QUEUED, recipients=[queue_pb2.Recipient(address="u@x")])
    store.put(item, b"Subject: s\r\n\r\nbody\r\n")
    one = [QueueTarget("x.test/u", "1.Q00d1R0.h", b"Delivered-To: u@x.test\n")]
    results, removed = store.deliver_maildirs("00d1", root, one, False, remove_item=True)
    assert removed and read(results[0][0]) == b"Delivered-To: u@x.test\nSubject: s\n\nbody\n"
    assert not os.path.exists(store.item_path("00d1")) and not os.path.exists(store.body_path("00d1"))
    item.id = "00d2"
    store.put(item, b"Subject: t\r\n\r\nbody\r\n")
    several = [QueueTarget(f"x.test/v{i}", f"1.Q00d2R{i}.h", b"Delivered-To: v%d@x.test\n" % i) for i in range(3)]
    bad = [*several, QueueTarget("../escape", "1.Q00d2R9.h", b"")]
    results, removed = store.deliver_maildirs("00d2", root, bad, False, remove_item=True)
    assert not removed and os.path.exists(store.item_path("00d2"))
    assert isinstance(results[3], ValueError)
    for i in range(3):
        assert read(results[i][0]) == b"Delivered-To: v%d@x.test\nSubject: t\n\nbody\n" % i
    results, removed = store.deliver_maildirs("00d2", root, several, True, remove_item=True)
    assert removed and all(already for _, already in results)
    assert not os.path.exists(store.item_path("00d2"))
    item.id = "00d3"  # a quarantined copy: into the mailbox's Maildir++ folder
    store.put(item, b"Subject: j\r\n\r\nbody\r\n")
    junk = [QueueTarget("x.test/u", "1.Q00d3R0.h", b"", folder="Junk")]
    results, removed = store.deliver_maildirs("00d3", root, junk, False, remove_item=True)
    assert removed and results[0][0] == os.path.join(root, "x.test", "u", ".Junk", "new", "1.Q00d3R0.h")
    assert read(results[0][0]) == b"Subject: j\n\nbody\n"
