"""A private Postfix instance as a remote MX on loopback: stock Debian
binaries, its own config_directory, queue_directory and data_directory,
never the system's (the same set-up as ../shared/bench/servers/postfix.sh).

    mx = PostfixMx(address="127.0.0.2", domains=["example.test"],
                   tls_cert=ca.issue(["mx.example.test"]),            # STARTTLS (optional)
                   recipient_access={"bad@example.test": "550 5.1.1 no such user",
                                     "later@example.test": "450 4.2.1 try later"})
    mx.start()                                   # listens on mx.address:mx.port
    mx.wait_for("bob@example.test", 1)           # [message bytes] from bob's Maildir
    mx.stop()                                    # and its directory is removed

or the fixture `postfix_mx_factory(**options)` -> a started PostfixMx,
stopped at teardown.

It accepts mail for `domains` and delivers it with virtual(8) into
Maildirs under <dir>/mail (uid nobody): <domain>/<local part>/ for each of
`users` when given (others get Postfix's own 550 5.1.1 "User unknown in
virtual mailbox table"), else every local part exists and lands in
<domain>/catch-all/. Nothing leaves the instance (default_transport =
error), bounces included. `recipient_access` is
a check_recipient_access table: address (or domain) -> the reply to give
at RCPT ("550 5.1.1 ...", "450 4.2.1 ..."). `tls_cert` (tests/peers/certs.py
IssuedCert) turns on STARTTLS (smtpd_tls_security_level = may);
`tls_protocols` restricts its TLS versions (smtpd_tls_protocols, e.g.
"<=TLSv1" for a handshake a modern client refuses); `sasl_path` (a Dovecot
auth socket, tests/peers/dovecot.py) turns on AUTH over TLS only. `smtputf8` and `message_size_limit` set what it offers.

Postfix's processes run as the postfix user and virtual(8) as nobody, so
the instance lives in its own directory under /tmp (mode 0755), not in
pytest's tmp_path (0700): pass `directory` only if the postfix user can
reach it.
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

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"


class PostfixMx:
    """One private Postfix instance; see the module docstring."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        hostname: str = "mx.example.test",
        domains: list[str] | tuple[str, ...] = ("example.test",),
        users: list[str] | tuple[str, ...] | None = None,
        recipient_access: dict[str, str] | None = None,
        tls_cert=None,
        sasl_path: str | None = None,
        smtputf8: bool = True,
        message_size_limit: int | None = None,
        tls_protocols: str | None = None,
    ):
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="postfix-mx-", dir="/tmp"))
        os.chmod(self.directory, 0o755)
        self.address = address
        self.port = port or free_port(address)
        self.hostname = hostname
        self.domains = list(domains)
        self.users = users
        self.recipient_access = recipient_access or {}
        self.tls_cert = tls_cert
        self.sasl_path = sasl_path
        self.smtputf8 = smtputf8
        self.message_size_limit = message_size_limit
        self.tls_protocols = tls_protocols
        self.etc = self.directory / "etc"
        self.queue = self.directory / "queue"
        self.mail = self.directory / "mail"
        self.maillog = self.directory / "maillog"
        self._pid: int | None = None

    # ------------------------------------------------------------ set-up
    def _postconf(self, *args: str) -> None:
        subprocess.run([POSTCONF, "-c", str(self.etc), *args], check=True, capture_output=True, timeout=30)

    def _configure(self) -> None:
        for d in (self.etc, self.queue, self.directory / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory / "data", "postfix", "postfix")
        os.chown(self.mail, 65534, 65534)  # virtual(8) delivers as nobody
        shutil.copy("/etc/postfix/master.cf", self.etc / "master.cf")
        (self.etc / "main.cf").write_text("")
        # virtual(8) allows no regexp substitution in mailbox paths: users
        # get <domain>/<local part>/, and without `users` each domain a
        # catch-all Maildir <domain>/catch-all/ (messages() tells the
        # recipients apart by the Delivered-To field virtual(8) adds).
        if self.users is None:
            entries = [f"@{d} {d}/catch-all/" for d in self.domains]
        else:
            entries = [f"{u} {u.partition('@')[2]}/{u.partition('@')[0]}/" for u in self.users]
        mailbox = self.etc / "virtual_mailbox"
        mailbox.write_text("".join(e + "\n" for e in entries))
        access = self.etc / "recipient_access"
        access.write_text("".join(f"{k} {v}\n" for k, v in self.recipient_access.items()))
        settings = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.directory / 'data'}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"myhostname = {self.hostname}",
            "mydomain = example.invalid",
            "mydestination =",
            # Our smtpd binds its own address (master.cf below); 127.0.0.2
            # and the like are no interface's address, so not listed here.
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv6" if ":" in self.address else "inet_protocols = ipv4",
            "mynetworks =",
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            f"smtpd_recipient_restrictions = check_recipient_access texthash:{access}, permit",
            f"virtual_mailbox_domains = {' '.join(self.domains)}",
            f"virtual_mailbox_base = {self.mail}",
            f"virtual_mailbox_maps = texthash:{mailbox}",
            # Nothing ever leaves this instance (bounces included).
            "default_transport = error:5.7.1 outbound mail disabled in this test MX",
            "relay_transport = error:5.7.1 outbound mail disabled in this test MX",
            "virtual_uid_maps = static:65534",
            "virtual_gid_maps = static:65534",
            "virtual_minimum_uid = 100",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {self.directory}",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            "smtp_dns_support_level = disabled",
            "smtpd_peername_lookup = no",
            # Leave the client's header alone (no Message-Id/Date/From added).
            "local_header_rewrite_clients =",
            f"smtputf8_enable = {'yes' if self.smtputf8 else 'no'}",
            f"message_size_limit = {self.message_size_limit or 10240000}",
        ]
        if self.tls_cert is not None:
            settings += [
                "smtpd_tls_security_level = may",
                f"smtpd_tls_chain_files = {self.tls_cert.key_path}, {self.tls_cert.fullchain_path}",
                "smtpd_tls_loglevel = 1",
            ]
            if self.tls_protocols is not None:
                settings.append(f"smtpd_tls_protocols = {self.tls_protocols}")
        if self.sasl_path:
            settings += [
                "smtpd_sasl_auth_enable = yes",
                "smtpd_sasl_type = dovecot",
                f"smtpd_sasl_path = {self.sasl_path}",
                "smtpd_tls_auth_only = yes",
            ]
        self._postconf("-e", *settings)
        # Our address and port instead of :25, and no chroot (it would need
        # /etc files copied in, which the Debian init script does).
        self._postconf("-M#", "smtp/inet")
        self._postconf("-M", f"{self.address}:{self.port}/inet = {self.address}:{self.port} inet n - n - - smtpd")
        self._postconf("-F", "*/*/chroot = n")

    # ------------------------------------------------------------ life
    def start(self, timeout: float = 30.0) -> PostfixMx:
        self._configure()
        # script(1) gives postfix a tty, so its fatal start-up errors reach
        # stdout (without one they go to a syslog there is none of here).
        command = [POSTFIX, "-c", str(self.etc), "start"]
        if shutil.which("script"):
            command = ["script", "-qec", " ".join(command), "/dev/null"]
        r = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if r.returncode != 0 or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postfix did not start ({r.returncode}): {r.stdout}{r.stderr}\n{self.log()}")
            time.sleep(0.05)
        self._pid = int(pid_file.read_text().strip())
        try:
            wait_listening(self.address, self.port, max(1.0, deadline - time.monotonic()))
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"postfix is not listening: {e}\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """`postfix stop`, wait for the master (our own pid file) to exit,
        SIGKILL it past `timeout`; remove the directory if we made it."""
        if self.etc.joinpath("main.cf").exists():
            subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, timeout=timeout, check=False)
        pid, self._pid = self._pid, None
        if pid:
            deadline = time.monotonic() + timeout
            while _alive(pid):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ mail
    def maildir(self, address: str) -> Path:
        """The Maildir of `address` (a listed user), or of its domain's
        catch-all."""
        local, _, domain = address.rpartition("@")
        if self.users is None:
            return self.mail / domain / "catch-all"
        return self.mail / domain / local

    def messages(self, address: str) -> list[bytes]:
        """The messages delivered to `address` (from its Maildir's new/;
        in a catch-all, those whose Delivered-To is `address`), oldest
        first."""
        new = self.maildir(address) / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        found = [p.read_bytes() for p in files]
        if self.users is None:
            mark = f"\nDelivered-To: {address}\n".lower().encode()
            found = [m for m in found if mark in b"\n" + m[: m.find(b"\n\n")].lower() + b"\n"]
        return found

    def wait_for(self, address: str, count: int, timeout: float = 20.0) -> list[bytes]:
        """The messages of `address` once there are `count` (delivery is
        asynchronous: queue manager, then virtual(8)); AssertionError after
        `timeout` seconds, with the mail log."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{address} has {len(found)} messages, not {count}\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def postfix_mx_factory():
    """factory(**PostfixMx options) -> a started PostfixMx; all are stopped
    (and their directories removed) at teardown."""
    started: list[PostfixMx] = []

    def factory(**options) -> PostfixMx:
        mx = PostfixMx(**options)
        started.append(mx)
        return mx.start()

    yield factory
    for mx in started:
        mx.stop()
