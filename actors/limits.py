"""Limits against abuse (Config.limits), shared by every serving process.

What is counted, as mox counts it (smtpserver/server.go, mox-/limitauth.go,
ratelimit/): client addresses masked at three levels — /32, /26, /21 for
IPv4 and /64, /48, /32 for IPv6 (IPv4-mapped IPv6 counts as IPv4) — each
with its own limit, over fixed windows:

- new connections per minute, and connections open at once: past either,
  421 4.7.0 at the greeting (loopback clients exempt with exempt_loopback);
- failed AUTH attempts per minute and per day: each 535 past the
  auth_failures_before_delay-th in a minute from one /32 (/64) is delayed
  (mox: one second per failure beyond three); past the limits, AUTH gets
  454 4.7.0 and new submission connections 421 4.7.0;
- messages and recipients per authenticated user per hour: 451 4.7.1 at
  MAIL, 452 4.7.1 at RCPT.

Every refusal is a 4xx (the client may come back later) with an enhanced
code of class 4.7 (security or policy, RFC 3463 §3.8); the caller logs it
and records it in the trace.

Sharing: the counts live in a `CounterTable`, a memfd (memfd_create(2))
that the daemon creates and every serving process maps, like the queue
gauge (actors/queue.py). Each process writes only its own region of it (so
writes need no lock between processes) and a count is the sum over the
regions. A sqlite table would serialise every accept of every process on a
file lock and cost a write transaction per connection; the shared table
costs a few struct reads. Counts are approximate where it does not matter:
two processes may both admit the last connection of a window, and a full
region (16384 counters) stops counting new addresses rather than evict an
open-connection count (it then admits: limits fail open, never closed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import mmap
import os
import struct
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

from estafeta.actors.smtp.replies import Reply
from estafeta.proto import config_pb2
from estafeta.supervisor.config import DEFAULT_LIMITS, MAX_PROCESSES

MINUTE = 60
HOUR = 3600
DAY = 86400
#: "expires" of a counter that never expires (connections open at once).
_NEVER = 0xFFFFFFFF

TOO_FAST = Reply(421, "4.7.0", "Connection rate from your network too high, try again later")
TOO_MANY = Reply(421, "4.7.0", "Too many connections from your network, try again later")
AUTH_BLOCKED_CONNECT = Reply(421, "4.7.0", "Too many failed authentication attempts from your network, try again later")
AUTH_BLOCKED = Reply(454, "4.7.0", "Too many failed authentication attempts, try again later")


class CounterTable:
    """Counters in shared memory: `regions` regions (one per serving
    process) of BUCKETS records (key u64, expires u32, count i32), open
    addressing over PROBES slots. A process adds to its own region
    (`region`) and reads the sum over all. `memfd` None: private memory
    (one process, tests).

    Keys are 64-bit hashes (0 marks a never-used slot); `expires` is in
    whole seconds of CLOCK_MONOTONIC, which every process on the host
    shares; a slot whose expiry has passed is free for another key but
    does not end a probe sequence."""

    BUCKETS = 16384
    PROBES = 8
    _REC = struct.Struct("<QIi")

    def __init__(self, regions: int = 1, region: int = 0, memfd: int | None = None):
        if not 0 <= region < regions <= MAX_PROCESSES:
            raise ValueError(f"region {region} of {regions}")
        self.regions = regions
        self.region = region
        self._region_size = self.BUCKETS * self._REC.size
        size = self._region_size * MAX_PROCESSES
        if memfd is None:
            self._mem: bytearray | mmap.mmap = bytearray(size)
        else:
            if os.fstat(memfd).st_size < size:
                os.ftruncate(memfd, size)
            self._mem = mmap.mmap(memfd, size)

    @classmethod
    def shared_memory(cls) -> int:
        """A new memfd for a table shared by the serving processes (pass it
        to them as the queue gauge's is). Raises OSError."""
        fd = os.memfd_create("estafeta-limits", 0)
        os.ftruncate(fd, cls.BUCKETS * cls._REC.size * MAX_PROCESSES)
        return fd

    def clear_region(self) -> None:
        """Zero this process's region (at start: counts of a previous life
        of this process, e.g. connections it had open, are void)."""
        start = self._region_size * self.region
        self._mem[start : start + self._region_size] = bytes(self._region_size)

    def _slots(self, region: int, key: int):
        base = self._region_size * region
        size = self._REC.size
        first = key % self.BUCKETS
        for i in range(self.PROBES):
            yield base + ((first + i) % self.BUCKETS) * size

    def total(self, key: int, now: int) -> int:
        """The count of `key` over every region (expired counts are 0)."""
        unpack = self._REC.unpack_from
        mem = self._mem
        total = 0
        for region in range(self.regions):
            for off in self._slots(region, key):
                k, expires, count = unpack(mem, off)
                if k == 0:
                    break
                if k == key:
                    if expires > now:
                        total += count
                    break
        return total

    def add(self, key: int, n: int, expires: int, now: int) -> None:
        """Add `n` (may be negative) to `key` in this process's region. A
        count that reaches 0 frees its slot. A key is in at most one slot
        of a region: its own slot is looked for over the whole probe
        sequence before a free one is taken."""
        unpack, pack = self._REC.unpack_from, self._REC.pack_into
        mem = self._mem
        free = None
        for off in self._slots(self.region, key):
            k, exp, count = unpack(mem, off)
            if k == key:
                if exp > now:
                    count += n
                    pack(mem, off, key, exp if count > 0 else 1, max(count, 0))
                elif n > 0:
                    pack(mem, off, key, expires, n)
                return
            if free is None and (k == 0 or exp <= now):
                free = off
            if k == 0:
                break
        if n > 0 and free is not None:
            pack(mem, free, key, expires, n)


@lru_cache(maxsize=16384)
def _key(*parts: bytes) -> int:
    k = int.from_bytes(hashlib.blake2b(b"\0".join(parts), digest_size=8).digest(), "little")
    return k or 1


@lru_cache(maxsize=4096)
def masked(address: str) -> tuple[bytes, ...] | None:
    """The three masked forms of a client address (mox: /32 /26 /21 for
    IPv4, /64 /48 /32 for IPv6; IPv4-mapped is IPv4), as bytes naming the
    level and the network; None if it is not an IP address. Cached: a
    client comes back."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    width = ip.max_prefixlen
    bits = (32, 26, 21) if ip.version == 4 else (64, 48, 32)
    value = int(ip)
    out = []
    for b in bits:
        net = value >> (width - b) << (width - b)
        out.append(b"%d/%d/" % (ip.version, b) + net.to_bytes(width // 8, "big"))
    return tuple(out)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or ::ffff:127.x (cheap string tests first)."""
    if address.startswith("127.") or address == "::1" or address.startswith("::ffff:127."):
        return True
    return False


class Limits:
    """The limits of Config.limits over a CounterTable. Called by a
    listener or session (see each method); `clock`: seconds, monotonic."""

    def __init__(
        self,
        cfg: config_pb2.Limits,
        table: CounterTable | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.configure(cfg)
        self.table = table or CounterTable()
        self._clock = clock

    def configure(self, cfg: config_pb2.Limits) -> None:
        """Take (new) limits: at start, and on a SIGHUP reload (the counts
        so far are kept: they live in the table)."""

        def levels(name: str) -> Sequence[int]:
            values = list(getattr(cfg, name))
            return values if len(values) == 3 else DEFAULT_LIMITS[name]

        self.conn_rate = levels("connections_per_minute")
        self.conn_open = levels("connections_at_once")
        self.fail_minute = levels("auth_failures_per_minute")
        self.fail_day = levels("auth_failures_per_day")
        self.before_delay = cfg.auth_failures_before_delay
        self.delay = cfg.auth_failure_delay_seconds
        self.messages_per_hour = cfg.messages_per_user_hour
        self.recipients_per_hour = cfg.recipients_per_user_hour
        self.exempt_loopback = cfg.exempt_loopback

    def _now(self) -> int:
        return int(self._clock())

    @staticmethod
    def _window(kind: bytes, window: int, now: int) -> tuple[bytes, int]:
        w = now // window
        return kind + b"%d:" % w, (w + 1) * window

    def _over(self, prefix: bytes, masks: Sequence[bytes], limits: Sequence[int], now: int, extra: int = 1) -> bool:
        t = self.table
        return any(lim and t.total(_key(prefix, m), now) + extra > lim for m, lim in zip(masks, limits, strict=True))

    def _count(self, prefix: bytes, masks: Sequence[bytes], expires: int, now: int, n: int = 1) -> None:
        for m in masks:
            self.table.add(_key(prefix, m), n, expires, now)

    def _exempt(self, address: str) -> bool:
        return self.exempt_loopback and is_loopback(address)

    # ------------------------------------------------------------ connections
    def connection_opened(self, address: str, submission: bool = False) -> Reply | None:
        """A new connection from `address` (at accept, before the greeting):
        None admits it (and counts it: call connection_closed() when it
        ends), else the 421 to send before closing. `submission`: a
        SUBMISSION(S) listener, where too many AUTH failures also refuse."""
        exempt = self._exempt(address)
        if exempt and not submission:
            return None
        masks = masked(address)
        if masks is None:
            return None
        now = self._now()
        if submission and self._auth_over(masks, now):
            return AUTH_BLOCKED_CONNECT
        if exempt:
            return None
        prefix, expires = self._window(b"conn-rate:", MINUTE, now)
        if self._over(prefix, masks, self.conn_rate, now):
            return TOO_FAST
        if self._over(b"conn-open:", masks, self.conn_open, now):
            return TOO_MANY
        self._count(prefix, masks, expires, now)
        self._count(b"conn-open:", masks, _NEVER, now)
        return None

    def connection_closed(self, address: str) -> None:
        """A connection admitted by connection_opened() ended."""
        masks = None if self._exempt(address) else masked(address)
        if masks is None:
            return
        self._count(b"conn-open:", masks, _NEVER, self._now(), n=-1)

    # ------------------------------------------------------------ AUTH
    def _auth_over(self, masks: Sequence[bytes], now: int, extra: int = 1) -> bool:
        m_prefix, _ = self._window(b"auth-fail-m:", MINUTE, now)
        d_prefix, _ = self._window(b"auth-fail-d:", DAY, now)
        return self._over(m_prefix, masks, self.fail_minute, now, extra) or self._over(
            d_prefix, masks, self.fail_day, now, extra
        )

    def auth_allowed(self, address: str) -> Reply | None:
        """At AUTH: None, or 454 4.7.0 when `address` has had too many
        failures (per minute or per day, at any mask level)."""
        masks = masked(address)
        if masks is not None and self._auth_over(masks, self._now()):
            return AUTH_BLOCKED
        return None

    def auth_failed(self, address: str) -> float:
        """A failed AUTH (bad credentials) from `address`: counted; returns
        the seconds to wait before sending the 535 (0 for the first
        auth_failures_before_delay in a minute from its /32 or /64)."""
        masks = masked(address)
        if masks is None:
            return 0.0
        now = self._now()
        m_prefix, m_exp = self._window(b"auth-fail-m:", MINUTE, now)
        d_prefix, d_exp = self._window(b"auth-fail-d:", DAY, now)
        self._count(m_prefix, masks, m_exp, now)
        self._count(d_prefix, masks, d_exp, now)
        failures = self.table.total(_key(m_prefix, masks[0]), now)
        beyond = failures - self.before_delay
        return min(beyond, 10) * self.delay if beyond > 0 else 0.0

    def auth_succeeded(self, address: str) -> None:
        """A successful AUTH. Failures are not forgiven (they age out with
        their window): a success does not make the next guesses cheaper."""

    # ------------------------------------------------------------ users
    def _user_limit(self, kind: bytes, identity: str, limit: int, reply: Reply) -> Reply | None:
        if not limit:
            return None
        now = self._now()
        prefix, expires = self._window(kind, HOUR, now)
        key = _key(prefix, identity.encode("utf-8"))
        if self.table.total(key, now) >= limit:
            return reply
        self.table.add(key, 1, expires, now)
        return None

    def message_allowed(self, identity: str) -> Reply | None:
        """At MAIL from an authenticated user: None (counted), or 451 4.7.1
        past messages_per_user_hour."""
        reply = Reply(451, "4.7.1", f"Message limit reached ({self.messages_per_hour} per hour), try again later")
        return self._user_limit(b"user-msg:", identity, self.messages_per_hour, reply)

    def recipient_allowed(self, identity: str) -> Reply | None:
        """At RCPT from an authenticated user: None (counted), or 452 4.7.1
        past recipients_per_user_hour."""
        reply = Reply(452, "4.7.1", f"Recipient limit reached ({self.recipients_per_hour} per hour), try again later")
        return self._user_limit(b"user-rcpt:", identity, self.recipients_per_hour, reply)
