"""End-to-end harness: run the real `estafeta serve` as a subprocess and talk
to it over loopback SMTP.

Everything here is bounded in time: every wait takes a timeout in seconds
and fails the test with the daemon's log tail when it runs out. All traffic
goes to 127.0.0.1.

Shapes:
    Daemon(tmp_path, **config)      one daemon process on a free port
    config_text(port, data_dir, **fields) -> str   text-format Config
    maildir_files(data_dir, domain, user) -> list[Path]
    split_delivered(data) -> (headers: list[(name, value)], original: bytes)
    make_message(...) -> bytes      a CRLF message with a unique marker
    estafeta_cli(*args) -> CompletedProcess
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from peers.ports import free_port

#: Seconds to wait for the daemon's first 220 greeting after start.
START_TIMEOUT = 30.0

#: Header carrying the per-message marker tests use to find a message.
MARKER = "X-E2E-Marker"


def estafeta_command() -> list[str]:
    """The command to run: $ESTAFETA_E2E_COMMAND (split on spaces) if set,
    else the `estafeta` console script of the Python running the tests (the
    venv's), else `python -m estafeta.supervisor.cli`."""
    override = os.environ.get("ESTAFETA_E2E_COMMAND")
    if override:
        return override.split()
    script = Path(sys.executable).with_name("estafeta")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "estafeta.supervisor.cli"]


def estafeta_cli(*args: str, timeout: float = 60.0, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `estafeta ARGS...`; stdout/stderr captured as text."""
    return subprocess.run(
        estafeta_command() + [str(a) for a in args],
        capture_output=True,
        timeout=timeout,
        input=input,
        text=input is None,
    )


def _render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    value = str(value)
    return value if value.startswith("{") else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Fields every test daemon gets unless the test overrides them: quick
#: retries and shutdown, spans flushed often, a second domain with a user
#: list (for 550 5.1.1), a host name we can look for in Received.
BASE_FIELDS: dict[str, object] = {
    "hostname": "mx.e2e.test",
    "local_domain": ['{ name: "localhost" }', '{ name: "users.test" user: "alice" user: "bob" }'],
    "retry": "{ initial_seconds: 0.2 max_seconds: 2 }",
    "shutdown_timeout_seconds": 5.0,
    "tracing": "{ flush_interval_seconds: 0.2 }",
}


def config_text(port: int, data_dir: Path, **fields) -> str:
    """A text-format Config: BASE_FIELDS updated by `fields` (a value None
    drops the field; a list repeats it; "{...}" is a message)."""
    merged: dict[str, object] = {"data_dir": str(data_dir), "smtp_address": f"127.0.0.1:{port}"}
    merged.update(BASE_FIELDS)
    merged.update(fields)
    lines = []
    for name, value in merged.items():
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{name}: {_render(v)}" if not str(v).startswith("{") else f"{name} {v}")
    return "\n".join(lines) + "\n"


class DaemonError(AssertionError):
    """The daemon did not do what the harness waited for (log tail included)."""


class Daemon:
    """One `estafeta serve` process on 127.0.0.1:<port> (its web page on
    `http_address`, another free port), data under
    `data_dir`, config in `<root>/estafeta.conf`, stderr appended to
    `<root>/estafeta.log` (a marker line starts each run).

    start() waits for a 220 greeting; stop() sends SIGTERM and returns the
    exit status; kill() is SIGKILL; restart-safe on the same data_dir and
    port. Call close() (the fixture does) to make sure nothing is left.
    """

    def __init__(self, root: Path, port: int | None = None, data_dir: Path | None = None, **fields):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # The web page (Config.http_address, process 0) on a free port too,
        # unless the test sets it ("" turns it off).
        fields.setdefault("http_address", f"127.0.0.1:{free_port()}")
        self.http_address = fields["http_address"]
        self.data_dir = Path(data_dir or self.root / "data")
        self.config_path = self.root / "estafeta.conf"
        self.log_path = self.root / "estafeta.log"
        self.config_path.write_text(config_text(self.port, self.data_dir, **fields))
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self._log_offset = 0

    # ------------------------------------------------------------ process
    def start(self, timeout: float = START_TIMEOUT) -> Daemon:
        """Start and wait until the port answers with 220."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(f"----- e2e harness: run {self.runs} -----\n".encode())
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                estafeta_command() + ["serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until a connection gets a 220 greeting (then QUIT)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"estafeta serve exited {self.proc.returncode} at start\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    greeting = s.makefile("rb").readline()
                    if greeting.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return
                    last = greeting
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise DaemonError(f"no 220 on port {self.port} within {timeout}s (last: {last!r})\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        """The exit status, or DaemonError if still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DaemonError(f"estafeta serve still running {timeout}s after the signal\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait at most `timeout` s; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Make sure the process is gone (SIGKILL if it must)."""
        if self.alive():
            self.kill()

    # ---------------------------------------------------------------- log
    def log_text(self, all_runs: bool = False) -> str:
        """The log of the current run (or of every run)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", "replace") if all_runs else data[self._log_offset :].decode("utf-8", "replace")

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_text(all_runs=True).splitlines()
        return f"--- last {min(n, len(lines))} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    def events(self, name: str, all_runs: bool = True) -> list[str]:
        """Log lines whose event (the word after the level) is `name`."""
        rx = re.compile(rf"^\S+ [A-Z]+ {re.escape(name)}\b")
        return [line for line in self.log_text(all_runs).splitlines() if rx.match(line)]

    def wait_log(self, pattern: str, timeout: float = 15.0, all_runs: bool = False) -> re.Match:
        """Until a log line matches the regex `pattern`."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text(all_runs))
            if m:
                return m
            if time.monotonic() > deadline:
                raise DaemonError(f"no log line matching {pattern!r} within {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    # ------------------------------------------------------------- smtp
    def smtp(self, timeout: float = 30.0) -> smtplib.SMTP:
        """A connected smtplib client (EHLO not sent yet)."""
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.e2e.test", timeout=timeout)

    def send(self, from_addr: str, to_addrs, msg: bytes, **kw) -> dict:
        """One transaction on a fresh connection; smtplib's sendmail result."""
        with self.smtp() as s:
            return s.sendmail(from_addr, to_addrs, msg, **kw)

    # -------------------------------------------------------------- queue
    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    def queued_ids(self) -> list[str]:
        """Ids with an <id>.item file in the queue directory."""
        try:
            return sorted(
                p.name[: -len(".item")]
                for p in self.queue_dir.iterdir()
                if p.name.endswith(".item") and not p.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    def wait_queue_empty(self, timeout: float = 60.0) -> None:
        """Until no item file is left (every message delivered or failed)."""
        deadline = time.monotonic() + timeout
        while self.queued_ids():
            if time.monotonic() > deadline:
                raise DaemonError(f"{len(self.queued_ids())} items still queued after {timeout}s\n{self.log_tail()}")
            if not self.alive():
                raise DaemonError(f"daemon exited {self.proc.returncode} while the queue drained\n{self.log_tail()}")
            time.sleep(0.1)

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """`estafeta ARGS... --config <this daemon's config>`."""
        return estafeta_cli(*args, "--config", str(self.config_path), timeout=timeout)

    # ------------------------------------------------------------ mailbox
    def maildir(self, domain: str, user: str) -> Path:
        return self.data_dir / "mail" / domain / user

    def block_mailbox(self, domain: str, user: str) -> Path:
        """Make <domain>/<user> undeliverable (deliveries defer with 451):
        a plain file stands where its Maildir directory should be (the
        tests run as root, so permissions would not stop a write).
        Returns the file; unlink it to unblock."""
        path = self.maildir(domain, user)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not a maildir\n")
        return path

    def delivered(self, domain: str, user: str) -> list[Path]:
        return maildir_files(self.maildir(domain, user))

    def wait_delivered(self, domain: str, user: str, count: int, timeout: float = 30.0) -> list[Path]:
        """Until the Maildir holds at least `count` messages; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.delivered(domain, user)
            if len(files) >= count:
                return files
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"{len(files)}/{count} messages in {self.maildir(domain, user)} after {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Pids of every process below `pid` (children, grandchildren, ...):
    the other serving processes and the disk workers of a daemon."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def alive_pids(pids: set[int]) -> set[int]:
    """The pids of `pids` that still run (zombies count as gone)."""
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
        except OSError:
            pass
    return out


def maildir_files(mailbox: Path) -> list[Path]:
    """Delivered messages of a Maildir: the files of new/ and cur/ (never
    tmp/, where a file is not delivered yet)."""
    out = []
    for sub in ("new", "cur"):
        d = Path(mailbox) / sub
        if d.is_dir():
            out.extend(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(out)


_FIELD = re.compile(rb"([!-9;-~]+):[ \t]*((?:[^\r\n]*\r?\n)(?:[ \t][^\r\n]*\r?\n)*)")


#: Our Authentication-Results (authserv-id: the test daemons' host name),
#: which a checked session puts below its Received field.
OUR_RESULTS = re.compile(rb"Authentication-Results:[ \t]*mx\.e2e\.test;", re.IGNORECASE)


def split_delivered(data: bytes, added: int = 3) -> tuple[list[tuple[str, str]], bytes]:
    """Split a delivered file into its first `added` header fields (name,
    unfolded value) — and our Authentication-Results right after them,
    when the session was checked (actors/checks/) — and the rest, which
    must be the message as sent (with LF line ends: Maildir files have
    them)."""
    fields, pos = [], 0
    for k in range(added + 1):
        m = _FIELD.match(data, pos)
        if k == added and (m is None or not OUR_RESULTS.match(data, pos)):
            break
        if not m:
            raise AssertionError(f"header field expected at byte {pos}: {data[pos : pos + 80]!r}")
        fields.append(
            (m.group(1).decode(), re.sub(rb"\r?\n[ \t]", b" ", m.group(2)).decode("utf-8", "replace").strip())
        )
        pos = m.end()
    return fields, data[pos:]


def assert_delivered_copy(
    data: bytes, sent: bytes, recipient: str | None = None, reverse_path: str | None = None
) -> None:
    """The delivered file is `sent` byte for byte but for its line ends
    (LF in a Maildir file, store/maildir.py), after Return-Path,
    Delivered-To (local delivery), one Received (reception) header and,
    from a checked session, our Authentication-Results."""
    fields, rest = split_delivered(data)
    names = [n.lower() for n, _ in fields]
    assert names in (
        ["return-path", "delivered-to", "received"],
        ["return-path", "delivered-to", "received", "authentication-results"],
    ), fields
    if reverse_path is not None:
        assert fields[0][1] == f"<{reverse_path}>", fields[0]
    if recipient is not None:
        assert fields[1][1].lower() == recipient.lower(), fields[1]
    want = sent.replace(b"\r\n", b"\n")
    assert rest == want, f"body differs: delivered {len(rest)} bytes, sent {len(sent)} ({len(want)} with LF ends)"


def make_message(
    marker: str | None = None, body: bytes | None = None, subject: str = "e2e", extra: bytes = b""
) -> bytes:
    """A small CRLF message with a unique `X-E2E-Marker` and Message-ID."""
    marker = marker or uuid.uuid4().hex
    head = (
        (
            f"From: Sender <sender@client.test>\r\n"
            f"To: Rcpt <rcpt@localhost>\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <{marker}@client.test>\r\n"
            f"{MARKER}: {marker}\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )
    if body is None:
        body = b"".join(f"line {i} of {marker}\r\n".encode() for i in range(20))
    return head + body


_MARKER_RX = re.compile(rb"^" + MARKER.encode() + rb": ([^\r\n]+)\r?\n", re.M | re.I)


def marker_of(data: bytes) -> str | None:
    """The X-E2E-Marker value of a message (header section only; CRLF or
    LF line ends)."""
    end = data.find(b"\n\r\n") if b"\r\n" in data[:200] else data.find(b"\n\n")
    m = _MARKER_RX.search(data, 0, end + 1 if end >= 0 else len(data))
    return m.group(1).decode() if m else None


def count_markers(files: list[Path]) -> dict[str, int]:
    """Marker -> number of delivered files carrying it."""
    counts: dict[str, int] = {}
    for f in files:
        m = marker_of(f.read_bytes())
        if m is not None:
            counts[m] = counts.get(m, 0) + 1
    return counts


def have(program: str) -> str | None:
    """Path of `program` on PATH or in /usr/sbin (smtp-source lives there)."""
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin")


def raw_session(port: int, timeout: float = 15.0) -> RawSmtp:
    return RawSmtp(port, timeout)


class RawSmtp:
    """A byte-level SMTP client for what smtplib will not send (bare LF,
    pipelined batches, a DATA cut in the middle)."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, bytes]:
        """One (possibly multi-line) reply: (code, all its lines)."""
        lines = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                raise ConnectionError(f"connection closed; got so far {b''.join(lines)!r}")
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    def cmd(self, line: bytes) -> tuple[int, bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
