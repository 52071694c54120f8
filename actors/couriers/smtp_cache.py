"""Open SMTP connections kept between deliveries to the same server, as
Postfix's connection cache (scache) does: the next message to that server
skips the TCP handshake, the greeting, EHLO, STARTTLS and AUTH, and the
server skips them too.

After a transaction the driver (smtp_client_io.deliver) leaves the
connection idle in the cache, keyed by (address, port, host name, the
client options); the next delivery to that key takes it. An idle
connection is closed (QUIT) after IDLE_SECONDS (Postfix's
smtp_connection_cache_time_limit, 2 s), and a connection older than
REUSE_SECONDS (Postfix's smtp_connection_reuse_time_limit, 300 s) is not
reused. A connection the server closed while idle is found out at its
next MAIL (nothing was sent that could be delivered) and replaced by a
fresh one. Each process has its own cache; its greenlets share it
(cooperative: no locks).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent

if TYPE_CHECKING:
    from estafeta.actors.couriers.smtp_client_io import _Connection

#: Seconds an idle connection waits for the next message before QUIT.
IDLE_SECONDS = 2.0
#: Seconds after its connect during which a connection may be reused.
REUSE_SECONDS = 300.0
#: Most idle connections kept per key (more are closed).
MAX_IDLE_PER_KEY = 20


class ConnectionCache:
    """Idle connections by key (see the module docstring)."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        reuse_seconds: float = REUSE_SECONDS,
        max_per_key: int = MAX_IDLE_PER_KEY,
    ):
        self.idle_seconds = idle_seconds
        self.reuse_seconds = reuse_seconds
        self.max_per_key = max_per_key
        #: key -> [(idle since, connection)], the most recently used last.
        self._idle: dict[Any, list[tuple[float, _Connection]]] = {}
        self._sweeper: gevent.Greenlet | None = None
        #: Transactions run on reused connections, and connections closed idle.
        self.reused = 0
        self.expired = 0

    def take(self, key: Any) -> _Connection | None:
        """An idle connection for `key` (the most recently used), or None."""
        entries = self._idle.get(key)
        while entries:
            _, conn = entries.pop()
            if not entries:
                del self._idle[key]
            if time.monotonic() - conn.opened < self.reuse_seconds:
                self.reused += 1
                return conn
            conn.close()
        return None

    def give_back(self, key: Any, conn: _Connection) -> None:
        """Keep an idle connection for the next delivery to `key` (or close
        it: too old, the key's list full, not idle)."""
        now = time.monotonic()
        entries = self._idle.setdefault(key, [])
        if not (conn.client is not None and conn.client.idle) or now - conn.opened >= self.reuse_seconds:
            conn.close()
        elif len(entries) >= self.max_per_key:
            conn.close()
        else:
            entries.append((now, conn))
        if not entries:
            del self._idle[key]
        if self._sweeper is None and self._idle:
            self._sweeper = gevent.spawn(self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for idle_seconds; ends when none is left."""
        try:
            while self._idle:
                gevent.sleep(self.idle_seconds / 2)
                limit = time.monotonic() - self.idle_seconds
                for key in list(self._idle):
                    entries = self._idle.get(key, [])
                    keep = [(t, c) for t, c in entries if t > limit]
                    for t, c in entries:
                        if t <= limit:
                            self.expired += 1
                            c.close()
                    if keep:
                        self._idle[key] = keep
                    else:
                        self._idle.pop(key, None)
        finally:
            self._sweeper = None

    def close_all(self) -> None:
        """Close every idle connection (shutdown)."""
        idle, self._idle = self._idle, {}
        for entries in idle.values():
            for _, conn in entries:
                conn.close()

    def __len__(self) -> int:
        return sum(len(e) for e in self._idle.values())
