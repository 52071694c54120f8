"""store/maildir.py: Maildir delivery per cr.yp.to/proto/maildir.html,
exactly once through deterministic names, and no escape from the root."""

from __future__ import annotations

import errno
import os
import stat

import gevent
import pytest

from estafeta.store import maildir, queuefile
from estafeta.store.blocking import Request, configure_threadpool, run_blocking

PREFIX = b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.com\r\n"
BODY = b"Received: from x\r\nSubject: hello\r\n\r\nline one\r\n.line two\r\n\r\n"


def _name(i: int = 0) -> str:
    return maildir.unique_name("00062f1a2b3c4d5e0a1b2c", i, 1735000000.9, "mx.example.org")


def test_unique_name_is_deterministic_and_escaped():
    assert _name(1) == "1735000000.Q00062f1a2b3c4d5e0a1b2cR1.mx.example.org"
    assert _name(1) == _name(1) != _name(2)
    assert maildir.unique_name("q", 0, 1.0, "a/b:c") == "1.Qq" + "R0.a\\057b\\072c"


def test_deliver_bytes(tmp_path):
    root = str(tmp_path)
    path, existed = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, False)
    box = tmp_path / "example.com" / "bob"
    assert (path, existed) == (str(box / "new" / _name()), False)
    assert open(path, "rb").read() == PREFIX + BODY  # byte for byte: CRLF kept
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for d in (tmp_path / "example.com", box, box / "tmp", box / "new", box / "cur"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "cur") == []


def test_deliver_streams_a_large_body_file(tmp_path):
    body = (b"x" * 998 + b"\r\n") * 100  # 100 KB
    src = tmp_path / "q.body"
    src.write_bytes(body)
    path, _ = maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(), PREFIX, None, str(src), False)
    assert open(path, "rb").read() == PREFIX + body


def test_check_existing_finds_new_and_cur(tmp_path):
    root = str(tmp_path)
    first, _ = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, False)
    assert maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True) == (first, True)
    box = tmp_path / "example.com" / "bob"
    # a mail reader moved it to cur/ and flagged it seen
    seen = str(box / "cur" / (_name() + ":2,S"))
    os.rename(first, seen)
    assert maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True) == (seen, True)
    os.rename(seen, str(box / "cur" / _name()))
    assert maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True) == (
        str(box / "cur" / _name()),
        True,
    )
    assert os.listdir(box / "new") == []
    # another recipient's name (R1 vs R10 prefix clash) is not taken for ours
    os.rename(str(box / "cur" / _name()), str(box / "cur" / (_name(10) + ":2,")))
    path, existed = maildir.deliver(root, "example.com/bob", _name(1), PREFIX, BODY, None, True)
    assert not existed and path == str(box / "new" / _name(1))


def test_leftover_tmp_from_a_crash_is_replaced(tmp_path):
    root = str(tmp_path)
    maildir.deliver(root, "example.com/bob", _name(5), PREFIX, BODY, None, False)
    tmp = tmp_path / "example.com" / "bob" / "tmp" / _name()
    tmp.write_bytes(b"torn half of an earl" * 100)
    path, existed = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True)
    assert not existed and open(path, "rb").read() == PREFIX + BODY and not tmp.exists()


@pytest.mark.parametrize(
    "mailbox",
    [
        "../etc",
        "example.com/../../x",
        "..",
        "../x/y",
        "example.com/..",
        "./bob",
        "example.com/.bob",
        ".example.com/bob",
        "example.com",
        "example.com/",
        "/bob",
        "/etc/passwd",
        "a/b/c",
        "a\0/b",
        "a/b\0",
        "",
    ],
)
def test_mailbox_escapes_are_rejected(tmp_path, mailbox):
    root = tmp_path / "mail"
    root.mkdir()
    with pytest.raises(ValueError, match="invalid mailbox"):
        maildir.deliver(str(root), mailbox, _name(), PREFIX, BODY, None, False)
    assert os.listdir(tmp_path) == ["mail"] and os.listdir(root) == []


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "x:2,S", ""])
def test_bad_file_names_are_rejected(tmp_path, name):
    with pytest.raises(ValueError):
        maildir.deliver(str(tmp_path), "example.com/bob", name, PREFIX, BODY, None, False)


def test_disk_full_leaves_no_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(queuefile.os, "fdatasync", full)
    with pytest.raises(OSError) as e:
        maildir.deliver(str(tmp_path), "example.com/bob", _name(), PREFIX, BODY, None, False)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    box = tmp_path / "example.com" / "bob"
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "new") == []


def test_concurrent_deliveries_share_directory_fsyncs(tmp_path):
    configure_threadpool(16)
    root = str(tmp_path)
    jobs = [
        gevent.spawn(run_blocking, maildir.deliver, root, "example.com/bob", _name(i), PREFIX, BODY, None, False)
        for i in range(40)
    ]
    gevent.joinall(jobs, raise_error=True, timeout=20)
    new = tmp_path / "example.com" / "bob" / "new"
    assert sorted(os.listdir(new)) == sorted(_name(i) for i in range(40))
    assert all((new / n).read_bytes() == PREFIX + BODY for n in os.listdir(new))
    assert maildir._dirsync(str(new)).fsyncs < 40  # noqa: SLF001


def test_deliver_batch_delivers_each_and_isolates_failures(tmp_path):
    """One batch (what the disk worker runs): every request gets its own
    result or error; a failing one does not fail its neighbours."""
    root = str(tmp_path / "mail")
    good = tmp_path / "q.body"
    good.write_bytes(BODY)
    maildir.deliver(root, "example.com/u0", _name(99), PREFIX, BODY, None, False)  # already there
    calls = [
        ("example.com/u%d" % (i % 3), _name(i), BODY if i % 2 else None, None if i % 2 else str(good), False)
        for i in range(30)
    ]
    calls.append(("example.com/u1", _name(50), None, str(tmp_path / "missing.body"), False))
    calls.append(("example.com/u0", _name(99), BODY, None, True))
    calls.append(("example.com/u1", _name(7), BODY, None, False))  # the same copy twice in a batch
    calls.append(("../etc", _name(), BODY, None, False))  # unsafe: refused, the others go on
    reqs = [
        Request((root, mailbox, name, PREFIX, body, body_path, check, False))
        for mailbox, name, body, body_path, check in calls
    ]
    maildir.deliver_batch(reqs)
    for k in range(30):
        path, existed = reqs[k].result
        assert reqs[k].error is None and not existed
        assert path.endswith("/new/" + _name(k)) and open(path, "rb").read() == PREFIX + BODY
    assert isinstance(reqs[30].error, FileNotFoundError)
    assert reqs[31].result == (str(tmp_path / "mail/example.com/u0/new" / _name(99)), True)
    assert reqs[32].result == reqs[7].result
    assert isinstance(reqs[33].error, ValueError)
    for b in range(3):
        assert os.listdir(tmp_path / "mail" / "example.com" / f"u{b}" / "tmp") == []


# ------------------------------------------------ delivery by hard link
def _queued(tmp_path, body: bytes = BODY) -> str:
    """A queue body file that is a whole Maildir file (headers in front)."""
    q = tmp_path / "queue"
    q.mkdir(exist_ok=True)
    src = q / "0001.body"
    src.write_bytes(PREFIX + body)
    return str(src)


def test_link_delivers_the_queued_file_itself(tmp_path):
    src = _queued(tmp_path)
    root = str(tmp_path / "mail")
    path, existed = maildir.deliver(root, "example.com/bob", _name(), b"", None, src, False, True)
    assert (path, existed) == (os.path.join(root, "example.com", "bob", "new", _name()), False)
    assert open(path, "rb").read() == PREFIX + BODY
    assert os.stat(path).st_ino == os.stat(src).st_ino and os.stat(src).st_nlink == 2
    assert os.listdir(os.path.join(root, "example.com", "bob", "tmp")) == []  # no copy was made


def test_link_again_is_already_there(tmp_path):
    src = _queued(tmp_path)
    root = str(tmp_path / "mail")
    first, _ = maildir.deliver(root, "example.com/bob", _name(), b"", None, src, False, True)
    # A retry whose first reply was lost, with or without the look-up first.
    assert maildir.deliver(root, "example.com/bob", _name(), b"", None, src, False, True) == (first, True)
    assert maildir.deliver(root, "example.com/bob", _name(), b"", None, src, True, True) == (first, True)
    seen = first.replace("/new/", "/cur/") + ":2,S"  # read by a mail reader meanwhile
    os.rename(first, seen)
    assert maildir.deliver(root, "example.com/bob", _name(), b"", None, src, True, True) == (seen, True)


def test_link_with_the_body_gone_raises_file_not_found(tmp_path):
    root = str(tmp_path / "mail")
    maildir.deliver(root, "example.com/bob", _name(1), PREFIX, BODY, None, False)  # the maildir exists
    with pytest.raises(FileNotFoundError):
        maildir.deliver(root, "example.com/bob", _name(), b"", None, str(tmp_path / "gone.body"), False, True)
    with pytest.raises(FileNotFoundError):  # and where the maildir is not made yet
        maildir.deliver(root, "example.com/new", _name(), b"", None, str(tmp_path / "gone.body"), False, True)


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP])
def test_link_falls_back_to_a_copy_where_no_link_can_be_made(tmp_path, monkeypatch, code):
    src = _queued(tmp_path)

    def no_link(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(maildir.os, "link", no_link)
    path, existed = maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(), b"", None, src, False, True)
    assert not existed and open(path, "rb").read() == PREFIX + BODY
    assert os.stat(path).st_ino != os.stat(src).st_ino


def test_link_other_errors_are_reported(tmp_path, monkeypatch):
    src = _queued(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(maildir.os, "link", full)
    with pytest.raises(OSError) as e:
        maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(), b"", None, src, False, True)
    assert e.value.errno == errno.ENOSPC


def test_links_and_copies_in_one_batch_share_the_fsync_of_new(tmp_path, monkeypatch):
    root = str(tmp_path / "mail")
    src = _queued(tmp_path)
    synced = []
    real = queuefile.fsync_directory
    monkeypatch.setattr(queuefile, "fsync_directory", lambda p: (synced.append(p), real(p))[1])
    reqs = [
        Request((root, "example.com/bob", _name(0), b"", None, src, False, True)),
        Request((root, "example.com/bob", _name(1), PREFIX, BODY, None, False, False)),
    ]
    maildir.deliver_batch(reqs)
    assert [r.error for r in reqs] == [None, None]
    new = os.path.join(root, "example.com", "bob", "new")
    assert sorted(os.listdir(new)) == sorted([_name(0), _name(1)])
    assert synced.count(new) == 1
