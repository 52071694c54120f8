"""DiskWriter actor: owns the disk worker process (store/disk_worker.py).

Like an Erlang port owner: the worker is an OS process doing the daemon's
durable file work (queue writes, Maildir deliveries, see
store/disk_client.py for why a process); this actor starts it on start,
publishes its client in the shared DiskChannel, and closes it on stop
(the worker finishes what it was sent, then exits). If the worker exits
on its own — killed, crashed — the client's reader tells this actor
`DiskWorkerExited`, and the actor crashes with that reason, so its
supervisor restarts it (and with it a new worker) under the usual
intensity rules: a worker that cannot run makes the root give up.

While the worker is down, requests fail with OSError(EAGAIN): sessions
answer 451 4.3.0 (the client retries), queue items retry their delivery.
"""

from __future__ import annotations

import logging

from estafeta.proto import messages_pb2
from estafeta.store.disk_client import DiskChannel, DiskClient
from estafeta.supervisor.actor import Actor, Link

log = logging.getLogger("estafeta.disk")


class DiskWorkerExit(Exception):
    """The disk worker process ended while in use (its reason as message)."""


class DiskWriter(Actor):
    """Starts and watches one disk worker; registered as "disk"."""

    def __init__(self, link: Link | None, channel: DiskChannel, stop_timeout: float = 10.0):
        super().__init__(link)
        self._channel = channel
        self._stop_timeout = stop_timeout
        self._client: DiskClient | None = None

    def on_start(self) -> None:
        ref = self.actor_ref
        client = DiskClient(on_exit=lambda reason: _tell_exit(ref, client, reason))
        client.start()
        self._client = client
        self._channel.client = client
        log.info("disk worker started pid=%d", client.pid)

    def on_receive(self, message):
        if isinstance(message, messages_pb2.DiskWorkerExited):
            if self._client is not None and message.pid == self._client.pid:
                raise DiskWorkerExit(f"disk worker pid={message.pid} exited: {message.reason}")
            return None  # a previous worker's late notice
        raise TypeError(f"DiskWriter cannot handle {type(message).__name__}")

    def on_stop(self) -> None:
        self._release()

    def on_failure(self, *exc_info) -> None:
        self._release(kill=True)

    def _release(self, kill: bool = False) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._channel.client is client:
            self._channel.client = None
        if kill:
            client.kill()
        client.close(self._stop_timeout)


def _tell_exit(ref, client: DiskClient, reason: str) -> None:
    try:
        ref.tell(messages_pb2.DiskWorkerExited(pid=client.pid or 0, reason=reason))
    except Exception:  # noqa: BLE001 - the actor is gone already: nothing to tell
        pass
