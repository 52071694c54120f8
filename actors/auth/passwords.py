"""Password hashes and SCRAM credentials of users (proto/users.proto).

- New hashes are argon2id (argon2-cffi's defaults, RFC 9106 §4's second
  recommended option: t=3, 64 MiB, p=4; ~0.1 s here), in PHC string form;
  scrypt PHC strings ("$scrypt$ln=15,r=8,p=1$<salt>$<hash>", hashlib) are
  verified too, for imported databases.
- Passwords are prepared with PRECIS OpaqueString (RFC 8265 §4.2: NFC,
  non-ASCII spaces mapped to U+0020) before hashing and verifying, so the
  same password typed on two systems matches. SCRAM credentials are made
  by `scramp` (which applies SASLprep, RFC 4013, as RFC 5802 §2.2 asks).
- `VerifyCache`: a slow hash is paid once per (user, password) per
  process and hour, like Dovecot's auth cache: the cache holds an HMAC of
  both under a per-process random key, never the password, and keys on the
  stored hash too, so a changed password misses.

Every function here may block for a hash's time: call it off the gevent
hub (store.blocking.run_blocking) on a serving path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections import OrderedDict

import argon2
import precis_i18n
import scramp
from gevent.monkey import get_original

from estafeta.proto import users_pb2

_OPAQUE = precis_i18n.get_profile("OpaqueString")
_HASHER = argon2.PasswordHasher()
_SCRAM = scramp.ScramMechanism("SCRAM-SHA-256")

#: PBKDF2-SHA256 iterations of new SCRAM credentials. RFC 7677 §4 asks for
#: at least 4096; a login costs the server only HMACs whatever the count
#: (the client pays the iterations: ~7 ms at 32768 here), while an offline
#: search of a stolen database pays them per guess.
SCRAM_ITERATIONS = 32768
#: Most octets of a password (a longer one is refused, not truncated).
MAX_PASSWORD = 1024


class PasswordError(ValueError):
    """A password that cannot be used (empty, too long, not PRECIS
    OpaqueString-valid); str() says why."""


def prepare(password: str) -> str:
    """The password as PRECIS OpaqueString enforces it (RFC 8265 §4.2).
    Raises PasswordError."""
    if not password:
        raise PasswordError("the password is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD:
        raise PasswordError(f"the password is longer than {MAX_PASSWORD} octets")
    if password.isascii() and password.isprintable():
        return password
    try:
        return _OPAQUE.enforce(password)
    except UnicodeEncodeError as e:
        raise PasswordError(f"the password has a character that is not allowed ({e.reason})") from None


def hash_password(password: str) -> str:
    """An argon2id PHC string for `password` (prepared). Raises PasswordError."""
    return _HASHER.hash(prepare(password))


def scram_credential(password: str, iterations: int = SCRAM_ITERATIONS) -> users_pb2.ScramCredential:
    """SCRAM-SHA-256 stored credentials for `password` (RFC 5802 §3).
    Raises PasswordError."""
    try:
        salt, stored_key, server_key, count = _SCRAM.make_auth_info(prepare(password), iteration_count=iterations)
    except scramp.ScramException as e:
        raise PasswordError(str(e)) from None
    return users_pb2.ScramCredential(salt=salt, iterations=count, stored_key=stored_key, server_key=server_key)


def set_password(user: users_pb2.User, password: str) -> None:
    """Give `user` this password: its hash and SCRAM credentials, and the
    time. Raises PasswordError."""
    user.password_hash = hash_password(password)
    user.scram_sha256.CopyFrom(scram_credential(password))
    user.password_set_at = time.time()


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _verify_scrypt(phc: str, password: str) -> bool:
    """ "$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt b64>$<hash b64>" (PHC format,
    as passlib writes it)."""
    try:
        _, _, params, salt, digest = phc.split("$")
        opts = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = 1 << int(opts["ln"]), int(opts["r"]), int(opts["p"])
        expected = _b64(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=_b64(salt), n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(expected)
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(got, expected)


def verify_password(phc: str, password: str) -> bool:
    """True if `password` matches the PHC string `phc` (argon2 or scrypt).
    False for an empty hash (receive-only user), an unknown scheme or a
    password PRECIS refuses. Blocks for one hash."""
    if not phc:
        return False
    try:
        prepared = prepare(password)
    except PasswordError:
        return False
    if phc.startswith("$argon2"):
        try:
            return _HASHER.verify(phc, prepared)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    if phc.startswith("$scrypt$"):
        return _verify_scrypt(phc, prepared)
    return False


class VerifyCache:
    """Successful verifications, remembered for `ttl` seconds (Dovecot's
    auth_cache_ttl default: one hour), at most `size` of them (least
    recently used dropped). Holds HMAC-SHA256(random key, user, stored
    hash, password) only. Failures are never cached (a wrong guess always
    pays the hash; limits.py slows and refuses guessing).

    Thread-safe (an OS lock, held for dictionary operations only): verify()
    runs in the hub's threadpool."""

    def __init__(self, ttl: float = 3600.0, size: int = 10_000):
        self.ttl = ttl
        self.size = size
        self._key = os.urandom(32)
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = get_original("_thread", "allocate_lock")()

    def _mac(self, user: str, phc: str, password: str) -> bytes:
        data = b"\0".join((user.encode("utf-8"), phc.encode("utf-8"), password.encode("utf-8", "surrogatepass")))
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verify(self, user: str, phc: str, password: str) -> bool:
        """verify_password through the cache; `user` is part of the key."""
        if not phc:
            return False
        mac = self._mac(user, phc, password)
        seen = self._seen
        with self._lock:
            when = seen.get(mac)
            if when is not None and time.monotonic() - when < self.ttl:
                seen.move_to_end(mac)
                return True
        ok = verify_password(phc, password)
        if ok:
            with self._lock:
                seen[mac] = time.monotonic()
                seen.move_to_end(mac)
                while len(seen) > self.size:
                    seen.popitem(last=False)
        return ok
