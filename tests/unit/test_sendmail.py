"""`estafeta sendmail` (supervisor/sendmail.py), the maildrop
(store/maildrop.py) and the Pickup actor (actors/pickup.py) with a trivial
enqueue callback: mail written while no daemon runs is handed over once
the pickup starts, exactly once."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from waiting import wait_for  # tests/unit is on sys.path

from estafeta.actors.pickup import PermanentDropError, Pickup
from estafeta.proto import maildrop_pb2
from estafeta.store import maildrop
from estafeta.supervisor import sendmail as sm


def conf(tmp_path, extra="") -> str:
    p = tmp_path / "estafeta.conf"
    p.write_text(
        f'data_dir: "{tmp_path}/data"\nhostname: "mx.example.test"\nlocal_domain {{ name: "example.test" }}\n' + extra
    )
    return str(p)


def run(tmp_path, argv, message=b"Subject: hi\n\nhello\n", extra=""):
    err = io.StringIO()
    status = sm.main(["-C", conf(tmp_path, extra), *argv], stdin=io.BytesIO(message), stderr=err)
    return status, err.getvalue()


def drops(tmp_path):
    data = str(tmp_path / "data")
    return [maildrop.read(data, i) for i in maildrop.pending(data)]


# ------------------------------------------------------------------ the command line
def test_parse_args_like_postfix():
    o = sm.parse_args(["-t", "-oi", "-f", "a@b.test", "-FJohn Doe", "-odi", "-oem", "-v", "-N", "never", "--", "-x@y"])
    assert o.extract and not o.dot_ends and o.sender == "a@b.test" and o.full_name == "John Doe"
    assert o.recipients == ["-x@y"]
    assert sm.parse_args(["-fme@x.test", "-i", "r@x.test", "-bm"]).sender == "me@x.test"
    assert sm.parse_args(["-r", "me@x.test", "r"]).sender == "me@x.test"
    for bad in (["-bs"], ["-bp"], ["-q"], ["-Z"], ["-f"]):
        with pytest.raises(sm.Usage):
            sm.parse_args(bad)


def test_read_message_dot_and_line_ends():
    raw = b"a\nb\r\n.\nafter\n"
    assert sm.read_message(io.BytesIO(raw), dot_ends=True) == b"a\r\nb\r\n"
    assert sm.read_message(io.BytesIO(raw), dot_ends=False) == b"a\r\nb\r\n.\r\nafter\r\n"
    assert sm.read_message(io.BytesIO(b"x\ry"), dot_ends=True) == b"x\r\ny\r\n"


def test_prepare_adds_fields_extracts_and_qualifies():
    o = sm.parse_args(["-t", "-F", "Cron Daemon", "extra@remote.test"])
    msg = b"To: Alice <alice@example.test>, root\r\nCc: bob@example.test\r\nBcc: secret@remote.test\r\nSubject: s\r\n\r\nbody\r\n"
    sender, rcpts, body = sm.prepare(o, msg, "cron", "example.test", "mx.example.test")
    assert sender == "cron@example.test"
    assert rcpts == [
        "extra@remote.test",
        "alice@example.test",
        "root@example.test",
        "bob@example.test",
        "secret@remote.test",
    ]
    head = body.split(b"\r\n\r\n")[0]
    assert b"Bcc" not in head and b"secret" not in body  # RFC 5322 §3.6.3
    assert (
        b"From: Cron Daemon <cron@example.test>\r\n" in head and b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head
    )
    assert body.endswith(b"\r\n\r\nbody\r\n")
    o = sm.parse_args(["-f", "<>", "a@x.test", "A@X.TEST"])
    sender, rcpts, body = sm.prepare(
        o, b"From: me@x.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n", "u", "d.test", "h"
    )
    assert (
        sender == ""
        and rcpts == ["a@x.test"]
        and body == b"From: me@x.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n"
    )
    _, _, body = sm.prepare(sm.parse_args(["a@x.test"]), b"no header here\r\n", "u", "d.test", "h")
    assert body.endswith(b"\r\n\r\nno header here\r\n")


# ------------------------------------------------------------------ into the maildrop
def test_sendmail_writes_the_maildrop_durably_without_a_daemon(tmp_path):
    status, err = run(tmp_path, ["-t", "-f", "app@example.test"], b"To: alice@example.test\nSubject: t\n\nline\n")
    assert status == sm.EX_OK, err
    (d,) = drops(tmp_path)
    assert d.envelope.reverse_path == "app@example.test" and list(d.envelope.recipient) == ["alice@example.test"]
    assert d.uid == os.getuid() and d.envelope.size == len(d.message) and d.message.endswith(b"\r\n\r\nline\r\n")
    mode = os.stat(tmp_path / "data/maildrop").st_mode & 0o7777
    assert mode == 0o1733
    assert sorted(p.suffix for p in (tmp_path / "data/maildrop").iterdir()) == [".drop", ".msg"]


@pytest.mark.parametrize(
    "argv, message, extra, status",
    [
        ([], b"x\n", "", sm.EX_USAGE),  # no recipient
        (["-bs"], b"", "", sm.EX_USAGE),
        (["a b@x.test"], b"x\n", "", sm.EX_DATAERR),
        (["a@x.test"], b"x" * 200, "max_data_size_bytes: 100\n", sm.EX_DATAERR),
        (["a@x.test"], b"x\n", "bogus: 1\n", sm.EX_CONFIG),
    ],
)
def test_sendmail_exit_codes(tmp_path, argv, message, extra, status):
    got, err = run(tmp_path, argv, message, extra)
    assert got == status and err.startswith("estafeta sendmail: ")


def test_sendmail_cannot_create(tmp_path):
    (tmp_path / "data").write_text("a file where the data directory should be")
    status, err = run(tmp_path, ["a@x.test"])
    assert status in (sm.EX_CANTCREAT, sm.EX_NOPERM), err


def test_the_real_command_and_the_sendmail_name(tmp_path):
    """`estafeta sendmail ...`, and the same binary called `sendmail`
    (as /usr/sbin/sendmail is a link to it)."""
    cfg = conf(tmp_path)
    est = os.path.join(os.path.dirname(sys.executable), "estafeta")
    r = subprocess.run(
        [est, "sendmail", "-C", cfg, "-oi", "root"], input=b"Subject: 1\n\n.\nx\n", capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    link = tmp_path / "sendmail"
    link.symlink_to(est)
    r = subprocess.run(
        [str(link), "-C", cfg, "-t"], input=b"To: bob@example.test\n\nhi\n", capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    got = sorted((list(d.envelope.recipient), d.message.count(b"\r\n.\r\n")) for d in drops(tmp_path))
    assert got == [(["bob@example.test"], 0), (["root@example.test"], 1)]


# ------------------------------------------------------------------ the pickup
def test_pickup_hands_over_once_and_retries_failures(tmp_path):
    for n in range(3):
        assert run(tmp_path, [f"r{n}@example.test"])[0] == 0  # written while no daemon runs
    data = str(tmp_path / "data")
    got, attempts = [], []

    def enqueue(d: maildrop.Dropped) -> None:
        attempts.append(d.drop_id)
        if d.envelope.recipient[0] == "r1@example.test" and attempts.count(d.drop_id) < 3:
            raise OSError("queue full")
        got.append(d)

    ref = Pickup.start(None, data, enqueue, 0.05)
    try:
        wait_for(lambda: len(got) == 3, timeout=10)
        wait_for(lambda: maildrop.pending(data) == [], timeout=10)
        assert sorted(d.envelope.recipient[0] for d in got) == ["r0@example.test", "r1@example.test", "r2@example.test"]
        assert len({d.drop_id for d in got}) == 3  # each once
        assert [f for f in os.listdir(maildrop.maildrop_dir(data)) if not f.startswith(".")] == []
        assert run(tmp_path, ["late@example.test"])[0] == 0  # dropped while it runs
        wait_for(lambda: len(got) == 4, timeout=10)
    finally:
        ref.stop()


def test_pickup_sets_aside_what_it_cannot_use(tmp_path):
    data = str(tmp_path / "data")
    maildrop.ensure(data)
    bad = maildrop.write(data, maildrop_pb2.MaildropEnvelope(recipient=["a@x.test"]), b"x")
    with open(os.path.join(maildrop.maildrop_dir(data), bad + ".drop"), "w") as f:
        f.write("recipient: {broken")
    refused = maildrop.write(data, maildrop_pb2.MaildropEnvelope(recipient=["nobody@x.test"], size=1), b"y")

    def enqueue(d):
        raise PermanentDropError("no valid recipient")

    ref = Pickup.start(None, data, enqueue, 0.05)
    try:
        wait_for(lambda: maildrop.pending(data) == [], timeout=10)
        corrupt = sorted(os.listdir(os.path.join(maildrop.maildrop_dir(data), "corrupt")))
        assert corrupt == sorted([bad + ".drop", bad + ".msg", refused + ".drop", refused + ".msg"])
    finally:
        ref.stop()


def test_clean_removes_old_orphans_only(tmp_path):
    data = str(tmp_path / "data")
    d = maildrop.ensure(data)
    keep = maildrop.write(data, maildrop_pb2.MaildropEnvelope(recipient=["a@x.test"]), b"x")
    orphan = os.path.join(d, "0000.1.1.msg")
    open(orphan, "w").close()
    assert maildrop.clean(data) == 0  # young: a sendmail may be writing its .drop
    os.utime(orphan, (1, 1))
    assert maildrop.clean(data) == 1 and not os.path.exists(orphan)
    assert maildrop.pending(data) == [keep]
