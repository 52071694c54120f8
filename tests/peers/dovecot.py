"""A private Dovecot for LMTP (RFC 2033) tests, and as Postfix's SASL
authenticator: its own configuration file (no system config), base_dir,
state and logs in its own directory, run in the foreground as our child.

    dc = Dovecot(users={"alice@example.test": "secret", "bob@example.test": "pw"})
    dc.start()
    dc.address, dc.port        # the LMTP TCP listener (127.0.0.1, a free port)
    dc.lmtp_socket             # the LMTP unix socket (a path)
    dc.auth_socket             # the auth socket, for Postfix's smtpd_sasl_path
    dc.wait_for("alice@example.test", 1)   # [message bytes] from alice's Maildir
    dc.stop()                  # and its directory is removed

or the fixture `dovecot_factory(**options)` -> a started Dovecot, stopped
at teardown.

Users are a passwd-file (address -> plain password): LMTP accepts exactly
them (an unknown one gets Dovecot's 550 5.1.1 at RCPT); the userdb is
static (uid nobody, home <dir>/mail/<domain>/<local part>), the mail goes
to ~/Maildir. The directory is under /tmp (0755), not pytest's tmp_path:
Dovecot's processes (dovecot, dovenull, nobody) must reach it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from peers.ports import free_port
from peers.smtp_sink import wait_listening

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONFIG = """\
# Private test instance: nothing from /etc/dovecot is read.
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = lmtp
listen = {address}
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={dir}/mail/%d/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = {address}
    port = {port}
  }}
  unix_listener {dir}/lmtp {{
    mode = 0666
  }}
}}
service auth {{
  unix_listener {dir}/auth {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    """One private Dovecot; see the module docstring."""

    def __init__(self, *, users: dict[str, str], address: str = "127.0.0.1", port: int | None = None):
        self.directory = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        os.chmod(self.directory, 0o755)
        self.users = dict(users)
        self.address = address
        self.port = port or free_port(address)
        self.config = self.directory / "dovecot.conf"
        self.lmtp_socket = str(self.directory / "lmtp")
        self.auth_socket = str(self.directory / "auth")
        self.log_path = self.directory / "dovecot.log"
        self._proc: subprocess.Popen | None = None

    def _configure(self) -> None:
        for d in ("run", "state", "mail"):
            (self.directory / d).mkdir(exist_ok=True)
        os.chown(self.directory / "mail", 65534, 65534)
        (self.directory / "users").write_text("".join(f"{u}:{{PLAIN}}{pw}::::::\n" for u, pw in self.users.items()))
        self.config.write_text(
            _CONFIG.format(instance=self.directory.name, dir=self.directory, address=self.address, port=self.port)
        )

    def start(self, timeout: float = 20.0) -> Dovecot:
        self._configure()
        log = open(self.directory / "stderr.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        try:
            wait_listening(self.address, self.port, timeout, self._proc)
            while not (os.path.exists(self.lmtp_socket) and os.path.exists(self.auth_socket)):
                if time.monotonic() > deadline:
                    raise RuntimeError("no LMTP or auth socket")
                time.sleep(0.05)
        except RuntimeError as e:
            text = self.log()
            self.stop()
            raise RuntimeError(f"dovecot did not start: {e}\n{text}") from None
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the master (our child), SIGKILL it past `timeout`, and
        remove the directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        out = []
        for name in ("stderr.log", "dovecot.log"):
            try:
                out.append((self.directory / name).read_text(errors="replace"))
            except OSError:
                pass
        return "".join(out)

    def maildir(self, address: str) -> Path:
        local, _, domain = address.rpartition("@")
        return self.directory / "mail" / domain / local / "Maildir"

    def messages(self, address: str) -> list[bytes]:
        """The messages in `address`'s INBOX (Maildir new/ and cur/)."""
        found = []
        for sub in ("new", "cur"):
            d = self.maildir(address) / sub
            if d.is_dir():
                found += [(p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()]
        return [data for _, data in sorted(found)]

    def wait_for(self, address: str, count: int, timeout: float = 10.0) -> list[bytes]:
        """The messages of `address` once there are `count`; AssertionError
        after `timeout` seconds, with the log."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{address} has {len(found)} messages, not {count}\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return found


@pytest.fixture
def dovecot_factory():
    """factory(**Dovecot options) -> a started Dovecot; all are stopped
    (and their directories removed) at teardown."""
    started: list[Dovecot] = []

    def factory(**options) -> Dovecot:
        dc = Dovecot(**options)
        started.append(dc)
        return dc.start()

    yield factory
    for dc in started:
        dc.stop()
