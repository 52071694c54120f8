"""Real SMTP clients against the daemon: swaks, Postfix's smtp-source under
load, and a batch of distinct messages from concurrent smtplib clients —
each message delivered exactly once, byte for byte."""

from __future__ import annotations

import concurrent.futures
import re
import subprocess
import time

import pytest
from e2e_harness import assert_delivered_copy, count_markers, have, make_message, marker_of

pytestmark = pytest.mark.slow

SWAKS = have("swaks")
SMTP_SOURCE = have("smtp-source")


def _swaks(d, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [
            SWAKS,
            "--server",
            "127.0.0.1",
            "--port",
            str(d.port),
            "--helo",
            "swaks.client.test",
            "--from",
            "swaks@client.test",
            "--timeout",
            "30",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return r


@pytest.mark.skipif(not SWAKS, reason="swaks not installed (bash tests/install-deps.sh)")
def test_swaks(daemon, tmp_path):
    # A plain message, with a header of ours to find it by.
    r = _swaks(daemon, "--to", "sw1@localhost", "--header", "X-E2E-Marker: swaks-plain")
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = daemon.wait_delivered("localhost", "sw1", 1)
    assert marker_of(path.read_bytes()) == "swaks-plain"

    # PIPELINING (RFC 2920) with several recipients in two domains.
    r = _swaks(
        daemon,
        "--pipeline",
        "--to",
        "sw2@localhost,sw3@localhost,alice@users.test",
        "--header",
        "X-E2E-Marker: swaks-pipelined",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PIPELINING" in r.stdout
    for domain, user in (("localhost", "sw2"), ("localhost", "sw3"), ("users.test", "alice")):
        (path,) = daemon.wait_delivered(domain, user, 1)
        assert marker_of(path.read_bytes()) == "swaks-pipelined"

    # The whole DATA from a file: CRLF lines, a leading dot (dot-stuffed by
    # swaks, unstuffed by us), 8-bit text, a long line.
    msg = make_message(
        marker="swaks-file",
        body=b".a line starting with a dot\r\n\xc3\xa9t\xc3\xa9\r\n" + b"y" * 900 + b"\r\nlast\r\n",
    )
    f = tmp_path / "message.eml"
    f.write_bytes(msg[:-2])  # swaks ends DATA with CRLF "." CRLF itself
    r = _swaks(daemon, "--pipeline", "--to", "sw4@localhost", "--data", f"@{f}")
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = daemon.wait_delivered("localhost", "sw4", 1)
    assert_delivered_copy(path.read_bytes(), msg, recipient="sw4@localhost", reverse_path="swaks@client.test")

    # A body from a file (swaks builds the header).
    body = tmp_path / "body.txt"
    body.write_text("first line\nsecond line\n")
    r = _swaks(daemon, "--to", "sw5@localhost", "--body", f"@{body}", "--header", "X-E2E-Marker: swaks-body")
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = daemon.wait_delivered("localhost", "sw5", 1)
    data = path.read_bytes()
    assert marker_of(data) == "swaks-body" and b"\n\nfirst line\nsecond line\n" in data

    # Relay attempt: swaks sees the 554 and fails (its exit code 24: RCPT).
    r = _swaks(daemon, "--to", "victim@remote.example")
    assert r.returncode != 0 and "554" in r.stdout, r.stdout


def _wait_count(d, domain: str, user: str, want: int, timeout: float) -> int:
    d.wait_delivered(domain, user, want, timeout=timeout)
    d.wait_queue_empty(timeout=timeout)
    time.sleep(0.5)  # anything extra (a double delivery) would show now
    return len(d.delivered(domain, user))


@pytest.mark.skipif(not SMTP_SOURCE, reason="smtp-source not installed (bash tests/install-deps.sh)")
def test_smtp_source_1000_messages_at_concurrency_10(daemon_factory):
    # Queue sweeps all the time: a sweep that lists the directory between a
    # put and its Enqueued must not start a second actor for the item.
    daemon = daemon_factory(queue_sweep_seconds=0.05)
    started = time.monotonic()
    r = subprocess.run(
        [
            SMTP_SOURCE,
            "-s",
            "10",
            "-m",
            "1000",
            "-l",
            "1024",
            "-f",
            "a@client.test",
            "-t",
            "user@localhost",
            f"127.0.0.1:{daemon.port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in r.stderr.lower() and "fatal" not in r.stderr.lower(), r.stderr
    assert _wait_count(daemon, "localhost", "user", 1000, timeout=120) == 1000
    # Same again over persistent connections (-d: many transactions each).
    r = subprocess.run(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            "10",
            "-m",
            "500",
            "-l",
            "4096",
            "-f",
            "a@client.test",
            "-t",
            "user2@localhost",
            f"127.0.0.1:{daemon.port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _wait_count(daemon, "localhost", "user2", 500, timeout=120) == 500
    daemon.wait_queue_empty(timeout=60)
    print(f"smtp-source: 1000 messages in {elapsed:.1f}s")
    log = daemon.log_text()
    assert "Traceback" not in log
    # One actor per item: each message attempted and delivered once, never
    # "deferred" because a second actor found its files already gone.
    delivered = re.findall(r" delivered id=(\w+) ", log)
    assert len(delivered) == 1500 and len(set(delivered)) == 1500, (len(delivered), len(set(delivered)))
    assert not daemon.events("deferred"), daemon.events("deferred")[:3]


def _send_batch(d, messages: list[tuple[str, bytes]], per_connection: int) -> list[str]:
    """Send `messages` over connections of `per_connection` transactions;
    returns the markers that got 250."""
    ok = []
    for i in range(0, len(messages), per_connection):
        with d.smtp() as s:
            for marker, msg in messages[i : i + per_connection]:
                if s.sendmail("batch@client.test", ["batch@localhost"], msg) == {}:
                    ok.append(marker)
    return ok


def test_200_distinct_messages_from_10_concurrent_clients(daemon):
    messages = []
    for n in range(200):
        marker = f"batch-{n:04d}"
        # Sizes from 100 B to ~60 KiB, each body distinct.
        body = b"".join(f"{marker} line {i:05d} ".encode() + b"z" * (n % 50) + b"\r\n" for i in range(1 + n * 7))
        messages.append((marker, make_message(marker=marker, body=body)))
    chunks = [messages[i::10] for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(_send_batch, daemon, chunk, 1 if i % 2 else 5) for i, chunk in enumerate(chunks)]
        acked = [m for f in futures for m in f.result(timeout=180)]
    assert sorted(acked) == sorted(m for m, _ in messages)
    assert _wait_count(daemon, "localhost", "batch", 200, timeout=120) == 200
    files = daemon.delivered("localhost", "batch")
    counts = count_markers(files)
    assert counts == {m: 1 for m, _ in messages}
    sent = dict(messages)
    for f in files:
        data = f.read_bytes()
        assert_delivered_copy(data, sent[marker_of(data)], recipient="batch@localhost")
