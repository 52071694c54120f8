"""Graceful shutdown: SIGTERM/SIGINT stop accepting, let open sessions
finish (bounded by shutdown_timeout_seconds), exit 0; a second signal
exits at once; accepted mail survives either way."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from e2e_harness import RawSmtp, assert_delivered_copy, make_message

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 5.0


def _mid_data(port: int, rcpt: bytes) -> RawSmtp:
    c = RawSmtp(port)
    assert c.cmd(b"EHLO client.e2e.test")[0] == 250
    assert c.cmd(b"MAIL FROM:<sd@client.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<" + rcpt + b">")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    return c


def _refuses_new_connections(port: int, timeout: float = 5.0) -> bool:
    """True once a new connection is refused or greeted with 421."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(512).startswith(b"421"):
                    return True
        except ConnectionRefusedError:
            return True
        except OSError:
            pass  # reset or timed out: not a clear answer yet
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_data_lets_the_session_finish(daemon_factory, signum):
    d = daemon_factory(shutdown_timeout_seconds=SHUTDOWN_TIMEOUT)
    msg = make_message(body=b"first half\r\n" * 200 + b"second half\r\n" * 200)
    half = len(msg) // 2
    c = _mid_data(d.port, b"mid@localhost")
    c.send(msg[:half])
    time.sleep(0.2)
    started = time.monotonic()
    d.signal(signum)
    d.wait_log(r"^\S+ \w+ stopping\b", timeout=5)
    assert _refuses_new_connections(d.port), d.log_tail()
    assert d.alive(), "exited before the open session finished"
    c.send(msg[half:] + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    # The session is done: QUIT gets 221, or 421 (RFC 5321 §3.8: the
    # server is shutting down and closes the channel).
    code, _ = c.cmd(b"QUIT")
    assert code in (221, 421), code
    c.close()
    assert d.wait_exit(SHUTDOWN_TIMEOUT + 15) == 0
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT + 15
    assert "Traceback" not in d.log_text()
    # Delivered before exit, or after a restart on the same data_dir.
    if not d.delivered("localhost", "mid"):
        d.start()
    (path,) = d.wait_delivered("localhost", "mid", 1)
    assert_delivered_copy(path.read_bytes(), msg, recipient="mid@localhost")


def test_a_stuck_session_does_not_hold_shutdown_past_the_timeout(daemon_factory):
    d = daemon_factory(shutdown_timeout_seconds=SHUTDOWN_TIMEOUT)
    assert d.send("sd@client.test", ["before@localhost"], make_message()) == {}
    c = _mid_data(d.port, b"stuck@localhost")
    c.send(b"Subject: never finished\r\n\r\nhalf a body")
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(SHUTDOWN_TIMEOUT + 15) == 0
    elapsed = time.monotonic() - started
    assert SHUTDOWN_TIMEOUT - 1 <= elapsed < SHUTDOWN_TIMEOUT + 15, elapsed
    c.close()
    d.start()
    d.wait_delivered("localhost", "before", 1)
    assert d.delivered("localhost", "stuck") == []  # never got its 250


def test_second_signal_exits_at_once_and_loses_nothing(daemon_factory):
    """The first SIGTERM starts the drain (held up by a session mid-DATA);
    the second exits at once. A message accepted before, still queued
    because its mailbox cannot be written yet, is delivered after restart."""
    d = daemon_factory(start=False, shutdown_timeout_seconds=30.0, retry="{ initial_seconds: 0.3 max_seconds: 0.5 }")
    blocker = d.block_mailbox("localhost", "later")
    d.start()
    msg = make_message()
    assert d.send("sd@client.test", ["later@localhost"], msg) == {}
    d.wait_log(r"^\S+ \w+ deferred .*<later@localhost>")
    c = _mid_data(d.port, b"mid@localhost")
    c.send(b"Subject: cut\r\n\r\nstill typing")
    d.signal(signal.SIGTERM)
    d.wait_log(r"^\S+ \w+ stopping\b", timeout=5)
    time.sleep(0.5)
    assert d.alive(), "the drain should wait for the open session (30 s)"
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    code = d.wait_exit(5)
    assert time.monotonic() - started < 3
    # daemon.py documents 128 + signal number for the immediate exit.
    assert code in (0, 128 + signal.SIGTERM), code
    c.close()
    assert d.delivered("localhost", "later") == []
    blocker.unlink()
    d.start()
    (path,) = d.wait_delivered("localhost", "later", 1, timeout=30)
    assert_delivered_copy(path.read_bytes(), msg, recipient="later@localhost")
    assert d.delivered("localhost", "mid") == []
