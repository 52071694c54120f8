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

PREFIX = b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.com\n"
BODY = b"Received: from x\r\nSubject: hello\r\n\r\nline one\r\n.line two\r\n\r\n"
#: What a Maildir file holds: the delivery headers, then BODY with LF ends.
STORED = PREFIX + b"Received: from x\nSubject: hello\n\nline one\n.line two\n\n"


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
    assert open(path, "rb").read() == STORED  # LF line ends, as Postfix's local(8) writes
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for d in (tmp_path / "example.com", box, box / "tmp", box / "new", box / "cur"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "cur") == []


def test_deliver_streams_a_large_body_file(tmp_path):
    body = (b"x" * 998 + b"\r\n") * 100  # 100 KB
    src = tmp_path / "q.body"
    src.write_bytes(body)
    path, _ = maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(), PREFIX, None, str(src), False)
    assert open(path, "rb").read() == PREFIX + body.replace(b"\r\n", b"\n")


def test_line_ends_become_lf_even_across_read_chunks(tmp_path):
    """CRLF becomes LF, a bare LF stays (no mixed ends from a client that
    sent bare LFs); a CRLF cut by a read chunk's end is still one line end;
    a lone CR is kept."""
    chunk = maildir._CHUNK  # noqa: SLF001
    body = b"a" * (chunk - 1) + b"\r\n" + b"mixed\nends\r\nlone\rcr\r\n" + b"b" * (chunk + 7) + b"\r"
    src = tmp_path / "q.body"
    src.write_bytes(body)
    path, _ = maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(), PREFIX, None, str(src), False)
    assert open(path, "rb").read() == PREFIX + body.replace(b"\r\n", b"\n")
    path2, _ = maildir.deliver(str(tmp_path / "mail"), "example.com/bob", _name(1), PREFIX, body, None, False)
    assert open(path2, "rb").read() == PREFIX + body.replace(b"\r\n", b"\n")


def test_named_tmp_files_where_o_tmpfile_is_missing(tmp_path, monkeypatch):
    """Without O_TMPFILE a named tmp/<name> is written and renamed into
    new/ (the spec's way); nothing is left in tmp/."""
    monkeypatch.setattr(maildir, "_tmpfile_ok", False)
    path, existed = maildir.deliver(str(tmp_path), "example.com/bob", _name(), PREFIX, BODY, None, False)
    assert not existed and open(path, "rb").read() == STORED
    assert os.listdir(tmp_path / "example.com" / "bob" / "tmp") == []
    # an earlier delivery under the same name wins (its reply was lost)
    assert maildir.deliver(str(tmp_path), "example.com/bob", _name(), PREFIX, b"other", None, False) == (path, True)
    assert open(path, "rb").read() == STORED
    assert os.listdir(tmp_path / "example.com" / "bob" / "tmp") == []


def test_a_second_delivery_under_the_same_name_is_already_there(tmp_path):
    root = str(tmp_path)
    first, _ = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, False)
    assert maildir.deliver(root, "example.com/bob", _name(), PREFIX, b"other", None, False) == (first, True)
    assert open(first, "rb").read() == STORED


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


def test_leftover_tmp_from_a_crash_does_not_get_in_the_way(tmp_path):
    root = str(tmp_path)
    maildir.deliver(root, "example.com/bob", _name(5), PREFIX, BODY, None, False)
    tmp = tmp_path / "example.com" / "bob" / "tmp" / _name()
    tmp.write_bytes(b"torn half of an earl" * 100)  # a named tmp/ file an older run left
    path, existed = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True)
    assert not existed and open(path, "rb").read() == STORED


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
    assert all((new / n).read_bytes() == STORED for n in os.listdir(new))
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
        Request((root, mailbox, name, PREFIX, body, body_path, check, ""))
        for mailbox, name, body, body_path, check in calls
    ]
    maildir.deliver_batch(reqs)
    for k in range(30):
        path, existed = reqs[k].result
        assert reqs[k].error is None and not existed
        assert path.endswith("/new/" + _name(k)) and open(path, "rb").read() == STORED
    assert isinstance(reqs[30].error, FileNotFoundError)
    assert reqs[31].result == (str(tmp_path / "mail/example.com/u0/new" / _name(99)), True)
    assert reqs[32].result == (reqs[7].result[0], True)  # one file: the second finds the first
    assert isinstance(reqs[33].error, ValueError)
    for b in range(3):
        assert os.listdir(tmp_path / "mail" / "example.com" / f"u{b}" / "tmp") == []


def test_folder_delivery_makes_a_maildirplusplus_folder(tmp_path):
    """A quarantined copy goes to <mailbox>/.Junk/new/ (Maildir++): the
    folder has tmp/ new/ cur/ and its maildirfolder mark, the mailbox its
    own three directories (its inbox stays a Maildir), and exactly once
    holds within the folder."""
    root = str(tmp_path / "mail")
    path, existed = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, False, "Junk")
    box = tmp_path / "mail" / "example.com" / "bob"
    assert not existed and path == str(box / ".Junk" / "new" / _name())
    assert open(path, "rb").read() == STORED
    assert sorted(os.listdir(box)) == [".Junk", "cur", "new", "tmp"]
    assert sorted(os.listdir(box / ".Junk")) == ["cur", maildir.FOLDER_MARK, "new", "tmp"]
    assert os.listdir(box / "new") == []
    again = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True, "Junk")
    assert again == (path, True)
    inbox, _ = maildir.deliver(root, "example.com/bob", _name(), PREFIX, BODY, None, True)
    assert inbox == str(box / "new" / _name())  # the inbox is another Maildir


def test_folder_of_an_existing_mailbox(tmp_path):
    root = str(tmp_path)
    maildir.deliver(root, "example.com/bob", _name(1), PREFIX, BODY, None, False)
    path, _ = maildir.deliver(root, "example.com/bob", _name(2), PREFIX, BODY, None, False, "Archive.2026")
    assert path == str(tmp_path / "example.com" / "bob" / ".Archive.2026" / "new" / _name(2))


@pytest.mark.parametrize("folder", ["../x", "a/b", ".Junk", "Junk.", "a..b", "x\0"])
def test_folder_escapes_are_rejected(tmp_path, folder):
    with pytest.raises(ValueError, match="invalid maildir folder"):
        maildir.deliver(str(tmp_path), "example.com/bob", _name(), PREFIX, BODY, None, False, folder)
    assert os.listdir(tmp_path) == []
