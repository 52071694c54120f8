"""`estafeta sendmail` end to end: a message dropped while the daemon is
down is picked up when it starts and delivered exactly once, with a
Received field naming the submitting user; recipients are resolved like
any others (users, aliases), and mail dropped while it runs goes out too."""

from __future__ import annotations

import os
import pwd

import pytest
from e2e_harness import count_markers, estafeta_cli, make_message, marker_of, split_delivered

pytestmark = pytest.mark.slow


def _sendmail(host, *args: str, message: bytes) -> None:
    r = estafeta_cli("sendmail", "--config", str(host.daemon.config_path), *args, input=message)
    assert r.returncode == 0, r.stderr


def _maildrop(host) -> list[str]:
    d = host.daemon.data_dir / "maildrop"
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def test_sendmail_while_the_daemon_is_down_is_delivered_once_when_it_starts(host_factory):
    host = host_factory(start=False, aliases={"example.test": "team: alice, bob\n"})
    first = make_message(subject="dropped while down")
    _sendmail(host, "-f", "alice@example.test", "Bob@example.test", message=first)
    # -t: the recipients from the header (the Bcc one too, whose field goes).
    second = make_message(subject="with -t", extra=b"Cc: team@example.test\r\nBcc: carol@example.test\r\n")
    _sendmail(host, "-t", "-i", message=second)
    assert [n for n in _maildrop(host) if n.endswith(".drop")], _maildrop(host)
    host.daemon.start()
    d = host.daemon
    d.wait_log(r"INFO started hostname=\S+ .* process=0/")
    d.wait_delivered("example.test", "bob", 2)
    d.wait_delivered("example.test", "alice", 1)
    d.wait_delivered("example.test", "carol", 1)
    d.wait_queue_empty(30)
    assert count_markers(d.delivered("example.test", "bob")) == {marker_of(first): 1, marker_of(second): 1}
    assert count_markers(d.delivered("example.test", "carol")) == {marker_of(second): 1}
    assert not [n for n in _maildrop(host) if n.endswith((".drop", ".msg"))]
    (path,) = [p for p in d.delivered("example.test", "bob") if marker_of(p.read_bytes()) == marker_of(first)]
    fields, _ = split_delivered(path.read_bytes())
    login = pwd.getpwuid(os.getuid()).pw_name
    assert fields[0] == ("Return-Path", "<alice@example.test>")
    assert fields[2][1].startswith(f"by mx.e2e.test (estafeta, from userid {os.getuid()} ({login})) with local id "), (
        fields
    )
    assert b"Bcc:" not in path.read_bytes()
    d.wait_log(r"picked up id=\S+ uid=\d+ user=\S+ from=<alice@example.test> to=<Bob@example.test>")
    # While it runs: picked up within maildrop_poll_seconds.
    third = make_message(subject="while running")
    _sendmail(host, "-f", "alice@example.test", "bob@example.test", message=third)
    d.wait_delivered("example.test", "bob", 3)
    # A restart hands nothing over again.
    assert d.stop() == 0
    d.start()
    d.wait_log(r"INFO started hostname=\S+ .* process=0/")
    d.wait_queue_empty(30)
    assert count_markers(d.delivered("example.test", "bob")) == {marker_of(m): 1 for m in (first, second, third)}


def test_sendmail_to_an_unknown_local_user_bounces_to_the_sender(host_factory):
    host = host_factory()
    _sendmail(host, "-f", "alice@example.test", "nobody@example.test", message=make_message())
    (dsn,) = host.daemon.wait_delivered("example.test", "alice", 1)
    text = dsn.read_text()
    assert "Final-Recipient: rfc822; nobody@example.test" in text and "Status: 5.1.1" in text
    host.daemon.wait_queue_empty(30)
