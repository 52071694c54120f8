"""The daemon side of issue 9's building blocks, end to end: SIGHUP
reloads instead of killing, a user added with `estafeta user add` is
picked up without a restart, `config check` refuses bad names, and the
daemon started as root runs as Config.user after binding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from e2e_harness import Daemon, estafeta_cli, make_message
from peers.ports import free_port, privileged_free_port

pytestmark = pytest.mark.slow


def test_sighup_reloads_and_the_daemon_keeps_serving(daemon_factory):
    d = daemon_factory(directory_poll_seconds=60.0)
    d.signal(signal.SIGHUP)
    d.wait_log(r"INFO reloaded directory users,aliases")
    d.wait_log(r"INFO reloaded config changed=-")
    assert d.alive()
    msg = make_message("after-hup")
    d.send("a@client.test", ["anyone@localhost"], msg)
    d.wait_delivered("localhost", "anyone", 1)
    # A broken file: the error names file, line and field; the old config stays.
    good = d.config_path.read_text()
    d.config_path.write_text(good + "max_recipients: -3\n")
    d.signal(signal.SIGHUP)
    m = d.wait_log(r"ERROR reload config failed: (.*)")
    assert f"{d.config_path}:" in m.group(1) and "max_recipients" in m.group(1) and "kept" in m.group(1)
    d.config_path.write_text(good + "max_recipients: 7\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"INFO reloaded config changed=max_recipients")
    for _ in range(3):  # quick repeats coalesce; none kills
        d.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert d.alive()
    assert d.stop() == 0


def test_sighup_reaches_every_serving_process(daemon_factory):
    d = daemon_factory(processes=2)
    d.wait_log(r"started hostname=\S+ .* process=1/2")  # ready (a SIGHUP while it starts is ignored)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while len(d.events("reloaded")) < 4 and time.monotonic() < deadline:  # directory + certificates, twice
        time.sleep(0.1)
    assert len([e for e in d.events("reloaded") if "directory" in e]) == 2
    assert d.alive()


def test_sighup_applies_live_fields_in_every_serving_process(daemon_factory):
    # relay_network and max_recipients are live fields (supervisor/reload.py):
    # after the SIGHUP both serving processes apply them to new sessions.
    d = daemon_factory(processes=2)
    d.wait_log(r"started hostname=\S+ .* process=1/2")

    def relay_replies() -> set[int]:
        codes = set()
        for _ in range(8):  # SO_REUSEPORT spreads the connections over both processes
            with d.smtp() as s:
                s.ehlo()
                s.mail("a@client.test")
                codes.add(s.rcpt("someone@remote.example")[0])
        return codes

    assert relay_replies() == {554}  # no relay_network: never an open relay
    d.config_path.write_text(d.config_path.read_text() + 'relay_network: "127.0.0.0/8"\nmax_recipients: 1\n')
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    applied = "applied=max_recipients,relay_network"
    while len([e for e in d.events("reloaded") if applied in e]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len([e for e in d.events("reloaded") if applied in e]) == 2, d.log_tail()
    assert relay_replies() == {250}
    with d.smtp() as s:
        s.ehlo()
        s.mail("a@client.test")
        assert s.rcpt("a@localhost")[0] == 250
        assert s.rcpt("b@localhost")[0] == 452  # RFC 5321 §4.5.3.1.8: too many recipients
    assert d.stop() == 0


def test_user_added_while_running_is_picked_up(daemon_factory):
    d = daemon_factory(directory_poll_seconds=0.2)
    r = estafeta_cli("user", "add", "Carol@Users.test", "--config", str(d.config_path), input=b"pw\n")
    assert r.returncode == 0, r.stderr
    d.wait_log(r"users reloaded domain=users.test users=1")
    (d.data_dir / "domains" / "users.test" / "aliases").write_text("c: carol\n")
    d.wait_log(r"aliases reloaded domain=users.test aliases=1")
    (d.data_dir / "domains" / "users.test" / "aliases").write_text("c carol\n")
    d.wait_log(r"aliases not reloaded domain=users.test error=.*aliases:1: missing ':'")
    assert d.alive()


@pytest.mark.parametrize(
    "line, message",
    [
        ('hostname: "not a host name"', "hostname"),
        ('local_domain { name: "exa mple" }', "name"),
        ('data_dir: ""', "data_dir"),
        ('listener { address: "127.0.0.1:x" }', "address"),
        ("limits { connections_at_once: 1 }", "connections_at_once"),
        ('auth { mechanism: "CRAM-MD5" }', "mechanism"),
        ('user: "no-such-user-here"', "user"),
    ],
)
def test_config_check_refuses(tmp_path, line, message):
    conf = tmp_path / "estafeta.conf"
    conf.write_text(line + "\n")
    r = estafeta_cli("config", "check", str(conf))
    assert r.returncode == 2 and f"{conf}:1: {message}:" in r.stderr, r.stderr


def test_version():
    r = estafeta_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("estafeta 0.")


def _user_can_run_python(user: str) -> bool:
    try:
        r = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "import estafeta.actors"],
                           capture_output=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_daemon_runs_as_user_after_binding_a_privileged_port(tmp_path):
    """`user: "nobody"`: the daemon binds port <1024 as root, then every
    process of it runs as nobody and delivers as nobody. Needs an
    interpreter `nobody` may execute (not one under a 0700 /root)."""
    if not _user_can_run_python("nobody"):
        pytest.skip(f"user nobody cannot execute {sys.executable} (tests/unit/test_privileges.py covers the drop)")
    base = tempfile.mkdtemp(prefix="estafeta-priv-")
    os.chmod(base, 0o755)
    d = Daemon(
        tmp_path / "d", port=privileged_free_port(), data_dir=os.path.join(base, "data"), user="nobody", processes=2
    )
    try:
        d.start()
        d.wait_log(r"running as user=nobody uid=65534")
        d.wait_log(r"process started number=1/2")
        uids = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    status = open(f"/proc/{pid}/status").read()
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    continue
                if str(d.config_path).encode() in cmd or f"/{d.pid}".encode() in cmd:
                    uids[pid] = status.split("Uid:")[1].split()[:3]
        assert uids and all(u == ["65534"] * 3 for u in uids.values()), uids
        d.send("a@client.test", ["anyone@localhost"], make_message("as-nobody"))
        (f,) = d.wait_delivered("localhost", "anyone", 1)
        assert os.stat(f).st_uid == 65534
        assert d.stop() == 0
    finally:
        d.close()
    assert free_port()
