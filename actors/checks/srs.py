"""The Sender Rewriting Scheme: forwarding with a reverse-path of our own
domain, and decoding the bounces that come back to it.

    Srs(secrets, domain).forward("alice@example.net") -> "SRS0=HHHH=TT=example.net=alice@fwd.example.org"
    Srs(secrets, domain).reverse("SRS0=HHHH=TT=example.net=alice@fwd.example.org") -> "alice@example.net"
    load_secrets(data_dir) -> list[bytes]

When we forward a message to another domain (an alias to a remote
address), the next hop checks SPF against the reverse-path's domain, which
has not authorised us: SRS gives the message a reverse-path in our domain
that still names the original sender, so the next hop's SPF passes and a
bounce comes back to us, which decodes it and returns it to the sender.

The scheme is the "Guarded" scheme of Shevek's SRS paper as libsrs2,
PostSRSd and srslib write it, so their addresses and ours decode each
other with the same secret:

- SRS0=HHHH=TT=<sender domain>=<sender local part>@<our domain> when we
  are the first forwarder: TT the day (days since the epoch, modulo 1024,
  in two base32 characters "A-Z2-7"), HHHH the first `hash_length`
  characters of the base64 HMAC-SHA1, keyed with our secret, of
  TT + domain + local part in lower case;
- SRS1=HHHH=<first hop>==HHHH=TT=...@<our domain> when we forward an SRS0
  address (we keep the first hop's part, so bounces go to it directly),
  HHHH over first hop + its part; an SRS1 address is re-hashed likewise.

Decoding is case-insensitive (the prefix, the hash, the timestamp: some
MTAs change the case of local parts), accepts "=", "+" or "-" after
SRS0/SRS1 (libsrs2's separators), refuses a hash shorter than
`hash_length`, a wrong hash (each secret of the rotation is tried) and a
timestamp older than `max_age_days`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets as _secrets
import time
from collections.abc import Callable, Sequence

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY = 86400
#: The timestamp counts days modulo this (two base32 characters).
TIMESTAMP_WRAP = 1024

_SRS0 = re.compile(r"SRS0[-+=]([^=]+)=([^=]+)=([^=]+)=(.+)", re.IGNORECASE | re.DOTALL)
_SRS0_OPAQUE = re.compile(r"SRS0([-+=].+)", re.IGNORECASE | re.DOTALL)
_SRS1 = re.compile(r"SRS1[-+=]([^=]+)=([^=]+)=([-+=].+)", re.IGNORECASE | re.DOTALL)


class SrsError(ValueError):
    """An address that does not decode: not SRS, a bad hash, an expired
    timestamp. The message says which."""


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise SrsError(f'"{address}" is not an address (local-part@domain)')
    return local, domain


class Srs:
    """SRS forward and reverse for our `domain` with `secrets` (the first
    one makes new addresses; every one is accepted in reverse, for
    rotation). `clock` gives the time in seconds since the epoch."""

    def __init__(
        self,
        secrets: Sequence[bytes],
        domain: str,
        *,
        hash_length: int = 4,
        max_age_days: int = 21,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("SRS needs a non-empty secret")
        if not 4 <= hash_length <= 27:
            raise ValueError("hash_length must be 4 to 27 (base64 of SHA-1)")
        if not 1 <= max_age_days < TIMESTAMP_WRAP:
            raise ValueError(f"max_age_days must be 1 to {TIMESTAMP_WRAP - 1}")
        self.secrets = list(secrets)
        self.domain = domain.rstrip(".").lower()
        self.hash_length = hash_length
        self.max_age_days = max_age_days
        self.clock = clock

    # -- the parts --------------------------------------------------------

    def _hash(self, data: str, secret: bytes | None = None) -> str:
        mac = hmac.new(secret or self.secrets[0], data.lower().encode("utf-8", "surrogateescape"), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode("ascii")[: self.hash_length]

    def _check_hash(self, given: str, data: str, address: str) -> None:
        if len(given) < self.hash_length:
            raise SrsError(f'"{address}": hash too short')
        for secret in self.secrets:
            want = self._hash(data, secret)
            if hmac.compare_digest(given[: self.hash_length].lower(), want.lower()):
                return
        raise SrsError(f'"{address}": hash does not match')

    def timestamp(self, now: float | None = None) -> str:
        """The two-character day stamp of `now` (default: the clock)."""
        day = int((self.clock() if now is None else now) // _DAY) % TIMESTAMP_WRAP
        return _ALPHABET[day >> 5] + _ALPHABET[day & 31]

    def _check_timestamp(self, stamp: str, address: str) -> None:
        stamp = stamp.upper()
        if len(stamp) != 2 or any(c not in _ALPHABET for c in stamp):
            raise SrsError(f'"{address}": bad timestamp')
        then = _ALPHABET.index(stamp[0]) << 5 | _ALPHABET.index(stamp[1])
        today = int(self.clock() // _DAY) % TIMESTAMP_WRAP
        if (today - then) % TIMESTAMP_WRAP > self.max_age_days:
            raise SrsError(f'"{address}": expired (older than {self.max_age_days} days)')

    # -- the scheme -------------------------------------------------------

    @staticmethod
    def is_srs(address: str) -> bool:
        """True if the local part of `address` is an SRS0 or SRS1 address."""
        local = address.rpartition("@")[0]
        return bool(_SRS0_OPAQUE.fullmatch(local) or _SRS1.fullmatch(local))

    def forward(self, sender: str) -> str:
        """The reverse-path to use when forwarding mail from `sender`: ""
        stays "" (a bounce is never rewritten); a sender of our own domain
        is kept; else SRS0 (or SRS1 for an SRS address). Raises SrsError for
        a sender that is not an address."""
        if not sender:
            return ""
        local, domain = _split(sender)
        if domain.rstrip(".").lower() == self.domain:
            return sender
        m = _SRS1.fullmatch(local)
        if m:  # hop > 2: keep the first hop's part, hash it again
            hop, opaque = m.group(2), m.group(3)
            return f"SRS1={self._hash(hop + opaque)}={hop}={opaque}@{self.domain}"
        m = _SRS0_OPAQUE.fullmatch(local)
        if m:  # second hop: bounces go straight back to the first
            opaque = m.group(1)
            return f"SRS1={self._hash(domain + opaque)}={domain}={opaque}@{self.domain}"
        ts = self.timestamp()
        return f"SRS0={self._hash(ts + domain + local)}={ts}={domain}={local}@{self.domain}"

    def reverse(self, address: str) -> str:
        """Where a bounce to `address` (an SRS address of ours) goes: the
        original sender (SRS0) or the first hop's SRS0 address (SRS1).
        Raises SrsError."""
        local, _domain = _split(address)
        m = _SRS1.fullmatch(local)
        if m:
            given, hop, opaque = m.groups()
            self._check_hash(given, hop + opaque, address)
            return f"SRS0{opaque}@{hop}"
        m = _SRS0.fullmatch(local)
        if m:
            given, stamp, domain, orig_local = m.groups()
            self._check_hash(given, stamp + domain + orig_local, address)
            self._check_timestamp(stamp, address)
            return f"{orig_local}@{domain}"
        raise SrsError(f'"{address}" is not an SRS address')


#: The secrets file under the data directory.
SECRETS_FILE = "srs.secret"


def load_secrets(data_dir: str) -> list[bytes]:
    """The SRS secrets from ``<data_dir>/srs.secret``: one per line, the
    first used for new addresses, all accepted when decoding (rotate by
    adding a new first line; drop an old one after max_age_days). The file
    is created (mode 0600) with a random 256-bit secret if missing. Raises
    OSError, ValueError for a file without a secret."""
    path = os.path.join(data_dir, SECRETS_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(_secrets.token_bytes(32)).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
    for _ in range(50):  # another process may have created it and not yet written it
        with open(path, "rb") as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        if lines:
            return lines
        time.sleep(0.01)
    raise ValueError(f"{path}: no secret in the file")
