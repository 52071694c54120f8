"""Postfix's smtp-sink(1) as a scripted remote MX (or LMTP server) on
loopback: it accepts everything and dumps each message to a file, or
answers 4xx/5xx, 421, or hangs up at chosen commands.

    sink = SmtpSink(tmp_path / "sink", soft_reject=["RCPT"])   # 450 4.3.0 to every RCPT
    sink.start()                        # on 127.0.0.1 and a free port (sink.port)
    ... deliver to sink.address, sink.port ...
    sink.count()                        # messages received (one dump file each)
    sink.dumps()                        # [Dump(mail_args, rcpt_args, message), ...]
    sink.stop()

or the fixture: `smtp_sink_factory(**options)` -> a started SmtpSink, stopped
at teardown (import it into the test module).

Commands are named as smtp-sink names them: CONNECT, HELO, EHLO, LHLO, MAIL,
RCPT, DATA, "." (the end of data), RSET, NOOP, QUIT. Options (smtp-sink's
flags): soft_reject (-r, 4xx; implies no PIPELINING), hard_reject (-f, 5xx;
idem), hang_up (-q: disconnect without replying), reply_421 (-Q),
delays {command: seconds} (-W), lmtp (-L), and the announcements to leave
out: pipelining (-p), eightbitmime (-8), esmtp (-e), enhanced (-E), dsn (-N).
smtp-sink announces neither SIZE, STARTTLS nor SMTPUTF8, and answers AUTH
with 250.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from peers.ports import free_port

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def wait_listening(address: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll until a TCP connect to (address, port) succeeds; RuntimeError
    after `timeout` seconds or if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on {address}:{port} after {timeout} s")
        time.sleep(0.05)


@dataclass
class Dump:
    """One message as smtp-sink dumped it: MAIL's and each RCPT's arguments
    as the client sent them, and the message (LF line ends, as dumped)."""

    mail_args: str
    rcpt_args: list[str]
    message: bytes


def parse_dump(data: bytes) -> Dump:
    """Parse one smtp-sink -d file (man smtp-sink, DUMP FILE FORMAT): its
    X- records, then a three-line Received header, then the message and an
    empty line."""
    lines = data.split(b"\n")
    mail, rcpts = "", []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received: "):
        key, _, value = lines[i].partition(b": ")
        if key == b"X-Mail-Args":
            mail = value.decode("utf-8", "replace")
        elif key == b"X-Rcpt-Args":
            rcpts.append(value.decode("utf-8", "replace"))
        i += 1
    i += 3  # the Received header: "Received: from", "\tby", "\t<date>"
    body = b"\n".join(lines[i:])
    if body.endswith(b"\n\n"):
        body = body[:-1]
    return Dump(mail, rcpts, body)


class SmtpSink:
    """One smtp-sink process; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        hostname: str = "sink.test",
        soft_reject: list[str] | tuple[str, ...] = (),
        hard_reject: list[str] | tuple[str, ...] = (),
        hang_up: list[str] | tuple[str, ...] = (),
        reply_421: list[str] | tuple[str, ...] = (),
        delays: dict[str, float] | None = None,
        lmtp: bool = False,
        pipelining: bool = True,
        eightbitmime: bool = True,
        esmtp: bool = True,
        enhanced: bool = True,
        dsn: bool = True,
        soft_reply: str | None = None,
        hard_reply: str | None = None,
    ):
        self.directory = Path(directory)
        self.address = address
        self.port = port or free_port(address)
        self.dump_dir = self.directory / "dump"
        self.log_path = self.directory / "smtp-sink.log"
        args = [SMTP_SINK, "-h", hostname, "-d", f"{self.dump_dir}/msg.", "-t", "30"]
        if os.geteuid() == 0:
            # Required as root; root itself, since pytest's tmp_path is 0700.
            args += ["-u", "root"]
        for flag, commands in (("-r", soft_reject), ("-f", hard_reject), ("-q", hang_up), ("-Q", reply_421)):
            if commands:
                args += [flag, ",".join(commands)]
        for command, seconds in (delays or {}).items():
            args += ["-W", f"{command}:{seconds:g}"]
        for flag, on in (("-L", lmtp), ("-p", not pipelining), ("-8", not eightbitmime), ("-e", not esmtp)):
            if on:
                args.append(flag)
        for flag, on in (("-E", not enhanced), ("-N", not dsn)):
            if on:
                args.append(flag)
        if soft_reply:
            args += ["-b", soft_reply]
        if hard_reply:
            args += ["-B", hard_reply]
        self.args = [*args, f"{address}:{self.port}", "64"]
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> SmtpSink:
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        try:
            wait_listening(self.address, self.port, timeout, self._proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"smtp-sink did not start: {e}\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def files(self) -> list[Path]:
        """The complete dump files, one per message received, oldest first.
        smtp-sink opens a file at MAIL and removes it if the transaction
        does not finish; a complete one has the Received header and ends
        with the empty line after the message."""
        done = []
        for p in self.dump_dir.glob("msg.*"):
            try:
                data = p.read_bytes()
                mtime = p.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if b"\nReceived: " in data and data.endswith(b"\n\n"):
                done.append((mtime, p))
        return [p for _, p in sorted(done)]

    def count(self) -> int:
        """Messages received (complete dump files)."""
        return len(self.files())

    def dumps(self) -> list[Dump]:
        return [parse_dump(p.read_bytes()) for p in self.files()]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Dump]:
        """The dumps once there are `count` (bounded wait, AssertionError)."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink has {self.count()} messages, not {count}, after {timeout} s")
            time.sleep(0.02)
        return self.dumps()


@pytest.fixture
def smtp_sink_factory(tmp_path):
    """factory(name="sink", **SmtpSink options) -> a started SmtpSink in
    tmp_path/name; every one is stopped at teardown."""
    sinks: list[SmtpSink] = []

    def factory(name: str = "sink", **options) -> SmtpSink:
        sink = SmtpSink(tmp_path / name, **options)
        sinks.append(sink)
        return sink.start()

    yield factory
    for sink in sinks:
        sink.stop()
