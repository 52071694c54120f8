"""The three ways in for a person, against a real daemon's files: the
queue dump tool, the trace viewer, and configuration errors."""

from __future__ import annotations

import re
import time

import pytest
from e2e_harness import estafeta_cli, make_message

pytestmark = pytest.mark.slow


def _queue_id_of_deferred(d, rcpt: str) -> str:
    m = d.wait_log(rf"^\S+ \w+ deferred .*\bid=(\w+).*<{re.escape(rcpt)}>")
    return m.group(1)


def test_queue_list_dump_show_on_a_held_item(held):
    msg = make_message(subject="held for inspection")
    assert held.send("sender@client.test", ["held@localhost", "fine@localhost"], msg) == {}
    queue_id = _queue_id_of_deferred(held, "held@localhost")
    held.wait_delivered("localhost", "fine", 1)
    assert held.queued_ids() == [queue_id]
    item_file = held.queue_dir / f"{queue_id}.item"
    body_file = held.queue_dir / f"{queue_id}.body"
    body = body_file.read_bytes()
    assert body.startswith(b"Received: ") and body.endswith(msg), body[:200]

    r = held.cli("queue", "list")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert queue_id in out and "<sender@client.test>" in out, out
    assert re.search(r"<held@localhost>\s+pending", out), out
    assert re.search(r"<fine@localhost>\s+delivered", out), out
    assert "1 item" in out, out

    # dump: the text-protobuf file exactly as it is on disk.
    for args in (("queue", "dump"), ("queue", "dump", queue_id)):
        r = held.cli(*args)
        assert r.returncode == 0, r.stderr
        assert item_file.read_text() in r.stdout
        assert f'id: "{queue_id}"' in r.stdout and "state: QUEUED" in r.stdout
        assert 'reverse_path: "sender@client.test"' in r.stdout

    r = held.cli("queue", "show", queue_id)
    assert r.returncode == 0, r.stderr
    assert queue_id in r.stdout and "Subject: held for inspection" in r.stdout, r.stdout

    # --data-dir alone works too (no config file).
    r = estafeta_cli("queue", "list", "--data-dir", str(held.data_dir))
    assert r.returncode == 0 and queue_id in r.stdout, (r.stdout, r.stderr)


def test_the_body_file_is_the_message_as_accepted(held):
    """The queue's body file is our Received header and then the message
    exactly as received (CRLF, dot-unstuffed): nothing of local delivery
    in it; `queue show` shows the message's own header."""
    msg = make_message(subject="one recipient")
    assert held.send("sender@client.test", ["held@localhost"], msg) == {}
    queue_id = _queue_id_of_deferred(held, "held@localhost")
    body = (held.queue_dir / f"{queue_id}.body").read_bytes()
    assert body.startswith(b"Received: from ") and body.endswith(msg), body[:200]
    assert body.count(b"\r\n") == body.count(b"\n")  # CRLF throughout, as received
    r = held.cli("queue", "dump", queue_id)
    assert r.returncode == 0 and f"body_size: {len(body)}" in r.stdout, r.stdout
    assert "delivery_headers_size" not in r.stdout
    r = held.cli("queue", "show", queue_id)
    assert r.returncode == 0, r.stderr
    shown = r.stdout.split("# header of", 1)[1].split("\n", 1)[1]
    assert shown.startswith("Received: ") and "Subject: one recipient" in shown, r.stdout


def test_queue_commands_on_an_unknown_id(held):
    for args in (
        ("queue", "show", "0123456789abcdef000000"),
        ("queue", "dump", "nosuchid"),
        ("queue", "show", "nosuchid"),
    ):
        r = held.cli(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert args[-1] in r.stderr, r.stderr
        assert "Traceback" not in r.stderr + r.stdout
    r = held.cli("queue", "list")
    assert r.returncode == 0 and "0 item" in r.stdout, r.stdout


def _wait_trace(d, key: str, needles: list[str], timeout: float = 20.0) -> str:
    """`traces show KEY` until its output holds every regex in `needles`
    (spans reach the store at the next flush)."""
    deadline = time.monotonic() + timeout
    while True:
        r = d.cli("traces", "show", key)
        if r.returncode == 0 and all(re.search(n, r.stdout, re.I | re.M) for n in needles):
            return r.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"traces show {key}: exit {r.returncode}\n{r.stdout}\n{r.stderr}\n{d.log_tail()}")
        time.sleep(0.3)


def test_traces_show_the_whole_path(daemon):
    msg = make_message()
    marker = msg.split(b"X-E2E-Marker: ")[1].split(b"\r\n")[0].decode()
    assert daemon.send("sender@client.test", ["traced@localhost"], msg) == {}
    daemon.wait_delivered("localhost", "traced", 1)
    queue_id = daemon.wait_log(r"^\S+ INFO delivered .*\bid=(\w+)").group(1)
    needles = [r"session", r"transaction", r"enqueue", r"delivery", r"courier|maildir"]
    out = _wait_trace(daemon, queue_id, needles)
    assert queue_id in out
    # The waterfall is indented: children deeper than their parents.
    indents = {len(line) - len(line.lstrip()) for line in out.splitlines() if line.strip()}
    assert len(indents) >= 3, out
    # The same trace by Message-ID (with or without angle brackets).
    by_mid = _wait_trace(daemon, f"{marker}@client.test", needles)
    assert queue_id in by_mid
    r = daemon.cli("traces", "list", "--limit", "50")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = daemon.cli("traces", "list", "--errors")
    assert r.returncode == 0, r.stderr
    r = daemon.cli("traces", "show", "nosuchkey0000")
    assert r.returncode != 0 and "Traceback" not in r.stderr, (r.stdout, r.stderr)


def test_traces_of_a_deferred_message_show_the_error(held):
    assert held.send("sender@client.test", ["held@localhost"], make_message()) == {}
    queue_id = _queue_id_of_deferred(held, "held@localhost")
    _wait_trace(held, queue_id, [r"delivery", r"error|4\.3\.0|451"])
    deadline = time.monotonic() + 20
    while True:
        r = held.cli("traces", "list", "--errors")
        if r.returncode == 0 and r.stdout.strip():
            break
        assert time.monotonic() < deadline, (r.stdout, r.stderr)
        time.sleep(0.3)


# ---------------------------------------------------------------- config

BAD_CONFIGS = [
    # (text, line, field)
    ('hostname: "mx.test"\ndata_dir: "/tmp/x"\nbogus_field: 1\n', 3, "bogus_field"),
    ('hostname: "mx.test"\nmax_recipients: "lots"\n', 2, "max_recipients"),
    ('hostname: "mx.test"\n\nmax_recipients: -5\n', 3, "max_recipients"),
    ('smtp_address: "127.0.0.1:2525"\nsmtp_address: "nonsense"\n', 2, "smtp_address"),
    ("retry {\n  initial_seconds: 0\n}\n", 2, "initial_seconds"),
    ('chaos {\n  crash { actor: "QueueItem" probability: 0.5 }\n  crash { actor: "NoSuchActor" }\n}\n', 3, "actor"),
    ('chaos {\n  crash { actor: "QueueItem" probability: 1.5 }\n}\n', 2, "probability"),
    ('local_domain { name: "a.test" }\nlocal_domain {\n  nmae: "b.test"\n}\n', 3, "nmae"),
]


@pytest.mark.parametrize("text,line,field", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_bad_config_names_file_line_and_field(tmp_path, text, line, field):
    path = tmp_path / "bad.conf"
    path.write_text(text)
    for args in (
        ("config", "check", str(path)),
        ("serve", "--config", str(path), "--data-dir", str(tmp_path / "data")),
    ):
        r = estafeta_cli(*args, timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode != 0, (args, out)
        assert "Traceback" not in out, out
        assert re.search(rf"{re.escape(str(path))}:{line}\b", out), (line, out)
        assert field in out, out
    assert not (tmp_path / "data" / "queue").exists()  # failed before touching data


def test_unreadable_config_file(tmp_path):
    r = estafeta_cli("config", "check", str(tmp_path / "missing.conf"))
    assert r.returncode != 0 and "missing.conf" in r.stderr and "Traceback" not in r.stderr


def test_config_defaults_parse_back(tmp_path):
    r = estafeta_cli("config", "defaults")
    assert r.returncode == 0, r.stderr
    for field in (
        "hostname",
        "data_dir",
        "smtp_address",
        "max_data_size_bytes",
        "max_recipients",
        "local_domain",
        "max_queue_items",
        "max_queue_bytes",
        "retry",
        "quarantine_after_crashes",
        "tracing",
    ):
        assert re.search(rf"^{field}\b", r.stdout, re.M), (field, r.stdout)
    path = tmp_path / "defaults.conf"
    path.write_text(r.stdout)
    c = estafeta_cli("config", "check", str(path))
    assert c.returncode == 0, c.stderr
    assert 'smtp_address: "127.0.0.1:2525"' in r.stdout
    assert re.search(r'local_domain \{\s+name: "localhost"\s+\}', r.stdout), r.stdout


def test_release_puts_a_quarantined_item_back_in_a_running_daemon(daemon_factory):
    """`estafeta queue release ID` while the daemon runs: the queue's next
    sweep (queue_sweep_seconds) starts the item again, and it is delivered."""
    d = daemon_factory(start=False, queue_sweep_seconds=0.5, retry="{ initial_seconds: 0.2 max_seconds: 0.5 }")
    blocker = d.block_mailbox("localhost", "later")
    d.start()
    assert d.send("sender@client.test", ["later@localhost"], make_message(marker="released-1")) == {}
    queue_id = _queue_id_of_deferred(d, "later@localhost")
    assert d.stop() == 0
    body = d.queue_dir / f"{queue_id}.body"
    saved = body.read_bytes()
    body.unlink()  # a body gone missing: the item is quarantined at start
    d.start()
    d.wait_log(rf"quarantined id={queue_id} reason=\"body file missing\"")
    time.sleep(1.5)  # several sweeps: a held item stays held
    assert d.queued_ids() == [queue_id] and d.delivered("localhost", "later") == []
    body.write_bytes(saved)
    blocker.unlink()
    r = d.cli("queue", "release", queue_id)
    assert r.returncode == 0 and f"released {queue_id}" in r.stdout, (r.stdout, r.stderr)
    (path,) = d.wait_delivered("localhost", "later", 1, timeout=20)
    assert b"released-1" in path.read_bytes()
    d.wait_queue_empty(timeout=20)
