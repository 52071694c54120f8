"""The benchmark harness's own tools against real peers (no speed is
asserted: numbers belong in docs/PERFORMANCE.md): smtp-sink's counter
(benchlib.SmtpSink) fed by smtp-source, the STARTTLS + AUTH load client
and its TLS sink (tests/bench/smtpload.py), the idle-after-STARTTLS
holder (tests/bench/idle_tls.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

benchlib = pytest.importorskip("benchlib", reason="needs ../shared/bench (bench.py) beside the checkout")


@pytest.fixture
def tls_sink(tmp_path):
    from peers.certs import TestCA

    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["mx.bench.test"], ips=["127.0.0.1"])
    port = benchlib.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "smtpload.py"), "sink", "--port", str(port), "--procs", "1"]
        + ["--cert", str(cert.fullchain_path), "--key", str(cert.key_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        benchlib.wait_port(port, 15, proc, "smtpload sink")
        yield port, ca.cert_path
    finally:
        benchlib.stop_pid(proc.pid, proc, 10)


def send(port: int, tmp_path: Path, n: int, cafile=None) -> tuple[int, dict]:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    cmd = [sys.executable, str(BENCH / "smtpload.py"), "send", "--port", str(port), "-n", str(n), "-c", "4"]
    cmd += ["--user", "u@bench.test", "--password-file", str(pw), "--limit", "30", "--max-errors", "3"]
    cmd += ["--cafile", str(cafile)] if cafile else []
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def test_smtp_sink_counts_messages_and_sessions(tmp_path):
    os.chmod(tmp_path, 0o755)
    sink = benchlib.SmtpSink(tmp_path / "sink").start()
    try:
        sessions0 = sink.sessions()  # 1: start() probes the port
        run = benchlib.smtp_source(
            sink.port, size=512, conc=3, count=30, limit_s=30, sender="a@client.test", recipient="b@remote.test"
        )
        assert run.rc == 0, run.err
        assert benchlib.wait_count(sink.count, 30, 10) is not None
        assert sink.count() == 30
        assert sink.sessions() - sessions0 == 30  # smtp-source: one connection per message
    finally:
        sink.stop()


def test_load_client_sends_every_message_over_starttls_and_auth(tmp_path, tls_sink):
    port, ca = tls_sink
    rc, res = send(port, tmp_path, 20, cafile=ca)
    assert rc == 0 and res["sent"] == 20 and res["errors"] == {}


def test_load_client_reports_a_server_without_starttls(tmp_path):
    os.chmod(tmp_path, 0o755)
    sink = benchlib.SmtpSink(tmp_path / "sink").start()  # smtp-sink offers no STARTTLS
    try:
        rc, res = send(sink.port, tmp_path, 5)
    finally:
        sink.stop()
    assert rc == 1 and res["sent"] == 0
    assert any(k.startswith("starttls:") for k in res["errors"]), res


def test_idle_tls_holds_sessions_after_starttls(tls_sink):
    port, _ca = tls_sink
    p = subprocess.Popen(
        [sys.executable, str(BENCH / "idle_tls.py"), "--port", str(port), "-n", "5", "--hold", "10"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = json.loads(p.stdout.readline())
        p.stdin.write("\n")
        p.stdin.flush()
        closed = json.loads(p.stdout.readline())
    finally:
        p.wait(20)
    assert held["ok"] == 5 and held["tls_fail"] == 0
    assert closed["still_open"] == 5
