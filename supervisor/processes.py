"""ServingProcess actor: one more serving process of the daemon.

Python runs one thread of work per process, so estafeta uses several CPUs
by running Config.processes copies of its tree (supervisor/app.py): the
daemon's own process is number 0, and it starts numbers 1..N-1 as child
processes, `estafeta serve --process I/N/PID` (PID: the daemon's), each handed the daemon's
effective Config on its stdin (binary protobuf) and the shared memory of
the queue gauge (actors/queue.py) and of the limits' counters
(actors/limits.py) as inherited file descriptors. Every process listens on
the same addresses (SO_REUSEPORT: the kernel spreads connections over
them), accepts and delivers its own mail (its number is in each queue id)
and has its own disk worker; they share the data directory.

A ServingProcess owns one child like an Erlang port owner: it starts it
on start, and when the child exits on its own it crashes, so its
supervisor starts a new one (OTP intensity and backoff apply). On stop it
sends SIGTERM — the child then drains like the daemon does: stops
accepting, lets sessions finish, exits 0 — and waits up to stop_timeout
seconds before SIGKILL. The children die with the daemon
(supervisor/osproc.py) and do not act on SIGINT (a Ctrl-C in a terminal
reaches the whole process group; the daemon forwards the stop itself).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import gevent

from estafeta.proto import config_pb2, messages_pb2
from estafeta.supervisor.actor import Actor, Link

log = logging.getLogger("estafeta.daemon")

#: Child processes running now (for the daemon's signal handler).
_live: set[subprocess.Popen] = set()
#: Listening sockets the daemon bound before dropping privileges
#: (supervisor/privileges.py prebind): each child gets its own.
CHILD_SOCKETS: dict | None = None
#: The daemon's config file (absolute), passed on as `--config` so that each
#: serving process reads it again on SIGHUP itself (supervisor/reload.py).
CONFIG_PATH: str | None = None


def signal_all(signum: int) -> None:
    """Send `signum` to every serving child process now (the daemon's first
    SIGTERM/SIGINT: they start draining while it drains itself)."""
    for proc in list(_live):
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
            except OSError:
                pass


def _ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class ServingProcessExit(Exception):
    """The child process exited while it should have been serving."""


class ServingProcess(Actor):
    """Runs serving process `index` of `count` as a child OS process."""

    def __init__(
        self,
        link: Link | None,
        cfg: config_pb2.Config,
        index: int,
        count: int,
        stop_timeout: float,
        gauge_fd: int | None = None,
        limits_fd: int | None = None,
    ):
        super().__init__(link)
        self._gauge_fd = gauge_fd
        self._limits_fd = limits_fd
        self._cfg = cfg
        self._index = index
        self._count = count
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen | None = None
        self._watcher: gevent.Greenlet | None = None

    def on_start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "estafeta.supervisor.cli",
            "serve",
            "--process",
            f"{self._index}/{self._count}/{os.getpid()}",
        ]
        fds: tuple[int, ...] = ()
        if self._gauge_fd is not None:
            cmd += ["--gauge-fd", str(self._gauge_fd)]
            fds = (self._gauge_fd,)
        if self._limits_fd is not None:
            cmd += ["--limits-fd", str(self._limits_fd)]
            fds += (self._limits_fd,)
        if CONFIG_PATH:
            cmd += ["--config", CONFIG_PATH]
        if CHILD_SOCKETS:
            from estafeta.supervisor.privileges import child_arguments

            listen_fds, socket_fds = child_arguments(CHILD_SOCKETS, self._index)
            cmd += ["--listen-fds", listen_fds]
            fds += socket_fds
        # SIGHUP ignored from the start: a reload signal that comes while the
        # child is still starting must not kill it (its serve() then takes
        # SIGHUP as a reload; ignored dispositions survive exec).
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, close_fds=True, pass_fds=fds, preexec_fn=_ignore_sighup)
        self._proc = proc
        _live.add(proc)
        try:
            proc.stdin.write(self._cfg.SerializeToString())
            proc.stdin.close()
        except OSError as e:  # it died at once: the watcher reports it
            log.warning("process %d/%d pid=%d did not take its config: %s", self._index, self._count, proc.pid, e)
        ref = self.actor_ref
        self._watcher = gevent.spawn(_watch, proc, ref)
        log.info("process started number=%d/%d pid=%d", self._index, self._count, proc.pid)

    def on_receive(self, message):
        if isinstance(message, messages_pb2.ServingProcessExited):
            if self._proc is not None and message.pid == self._proc.pid:
                raise ServingProcessExit(
                    f"process {self._index}/{self._count} pid={message.pid} exited with status {message.status}"
                )
            return None
        raise TypeError(f"ServingProcess cannot handle {type(message).__name__}")

    def on_stop(self) -> None:
        self._end(graceful=True)

    def on_failure(self, *exc_info) -> None:
        self._end(graceful=False)

    def _end(self, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if self._watcher is not None:
            self._watcher.kill(block=False)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
                try:
                    proc.wait(timeout=self._stop_timeout if graceful else 5.0)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "process %d/%d pid=%d did not stop in %.0fs: killed",
                        self._index,
                        self._count,
                        proc.pid,
                        self._stop_timeout,
                    )
                    proc.kill()
                    proc.wait(timeout=5.0)
        finally:
            _live.discard(proc)


def _watch(proc: subprocess.Popen, ref) -> None:
    status = proc.wait()
    try:
        ref.tell(messages_pb2.ServingProcessExited(pid=proc.pid, status=status))
    except Exception:  # noqa: BLE001 - the actor is gone (it stopped the process)
        pass
