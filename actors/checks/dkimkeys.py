"""DKIM keys: files under the data directory, generation, DNS records.

A domain's signing keys are the files ``<data_dir>/dkim/<domain>/<selector>.key``
(domain as an A-label in lower case; mode 0600, directories 0700), each a
PKCS#8 PEM private key (what ``openssl genpkey`` writes): RSA (signs
rsa-sha256, RFC 6376 §3.3; 2048 bits, RFC 8301 §3.2) or Ed25519 (signs
ed25519-sha256, RFC 8463). The key type decides the algorithm; the file
name is the selector (RFC 6376 §3.1). The public key is published at
``<selector>._domainkey.<domain>`` as a TXT record (RFC 6376 §3.6.1,
RFC 8463 §4):

    v=DKIM1; k=rsa; p=<base64 of the DER SubjectPublicKeyInfo>
    v=DKIM1; k=ed25519; p=<base64 of the 32-octet public key>
"""

from __future__ import annotations

import base64
import os
import re
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

#: Algorithms and the key type that signs them.
RSA, ED25519 = "rsa-sha256", "ed25519-sha256"
#: RSA modulus of generated keys, bits (RFC 8301 §3.2: 1024 at least, 2048 advised).
RSA_BITS = 2048
#: A selector is a dot-atom of DNS labels (RFC 6376 §3.1); we allow one
#: label of letters, digits, hyphens and underscores (it names a file).
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")


class KeyFileError(ValueError):
    """A key file that cannot be used (message names the file and why)."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key of a domain.

    - algorithm: RSA or ED25519;
    - private: the private key as dkimpy takes it (PEM for RSA, the base64
      of the 32-octet seed for Ed25519);
    - public: the p= value of its DNS record (base64).
    """

    domain: str
    selector: str
    algorithm: str
    private: bytes
    public: str

    @property
    def k(self) -> str:
        """The k= tag of the key record: "rsa" or "ed25519"."""
        return "rsa" if self.algorithm == RSA else "ed25519"

    def record(self) -> str:
        """The TXT record to publish, as one string."""
        return f"v=DKIM1; k={self.k}; p={self.public}"

    def record_name(self) -> str:
        """Where to publish it: <selector>._domainkey.<domain>."""
        return f"{self.selector}._domainkey.{self.domain}"

    def zone_line(self) -> str:
        """The record as a zone-file line (BIND syntax), its text split into
        character-strings of at most 255 octets (RFC 1035 §3.3.14)."""
        text = self.record()
        parts = " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))
        return f"{self.record_name()}. IN TXT ( {parts} )"


def valid_selector(selector: str) -> bool:
    return bool(_SELECTOR.fullmatch(selector))


def generate_pem(algorithm: str) -> bytes:
    """A new private key for `algorithm` (RSA: 2048 bits, e=65537), as
    PKCS#8 PEM."""
    if algorithm == RSA:
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(65537, RSA_BITS)
    elif algorithm == ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r} (one of {RSA}, {ED25519})")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(domain: str, selector: str, pem: bytes) -> DkimKey:
    """A DkimKey from a PEM private key (PKCS#8 or PKCS#1 RSA). Raises
    ValueError for anything else (encrypted, another key type, too short)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a usable PEM private key: {e}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise ValueError(f"RSA key of {key.key_size} bits is shorter than 1024 (RFC 8301 §3.2)")
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        return DkimKey(domain, selector, RSA, private, base64.b64encode(spki).decode())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        raw_pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return DkimKey(domain, selector, ED25519, base64.b64encode(seed), base64.b64encode(raw_pub).decode())
    raise ValueError(f"a {type(key).__name__} cannot sign DKIM (RSA or Ed25519 only)")


def domain_dir(data_dir: str, domain: str) -> str:
    return os.path.join(data_dir, "dkim", domain)


def key_path(data_dir: str, domain: str, selector: str) -> str:
    return os.path.join(domain_dir(data_dir, domain), f"{selector}.key")


def default_selector(algorithm: str, now: float | None = None) -> str:
    """A new key's selector when none is given: the algorithm's key type
    and the date, e.g. "rsa-20260101", "ed25519-20260101" (a new one for
    each rotation, so old and new records can coexist)."""
    k = "rsa" if algorithm == RSA else "ed25519"
    return f"{k}-{time.strftime('%Y%m%d', time.gmtime(now))}"


def write_key(data_dir: str, domain: str, selector: str, algorithm: str) -> tuple[str, DkimKey]:
    """Generate a key and write it to its file (mode 0600; the directories
    0700). Raises FileExistsError if the selector's file exists (a key is
    never overwritten), ValueError for a bad selector or algorithm."""
    if not valid_selector(selector):
        raise ValueError(f'"{selector}" is not a selector (one DNS label: letters, digits, "-", "_")')
    pem = generate_pem(algorithm)
    path = key_path(data_dir, domain, selector)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return path, key_from_pem(domain, selector, pem)


def load_keys(data_dir: str, domain: str) -> tuple[DkimKey, ...]:
    """Every key of `domain` (RSA first, then Ed25519; by selector within
    each), or () when it has none. Raises KeyFileError naming a file that is
    not a usable key, or that other users can read."""
    d = domain_dir(data_dir, domain)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".key"))
    except FileNotFoundError:
        return ()
    keys = []
    for name in names:
        path = os.path.join(d, name)
        selector = name[: -len(".key")]
        if not valid_selector(selector):
            raise KeyFileError(f"{path}: file name is not a selector")
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise KeyFileError(f"{path}: mode {st.st_mode & 0o777:o} lets others read the key (must be 0600)")
        with open(path, "rb") as f:
            pem = f.read()
        try:
            keys.append(key_from_pem(domain, selector, pem))
        except ValueError as e:
            raise KeyFileError(f"{path}: {e}") from None
    keys.sort(key=lambda k: (k.algorithm != RSA, k.selector))
    return tuple(keys)


class KeyStore:
    """The keys of every domain, read from the files once and again when a
    domain's directory changes (its mtime: a key added or removed)."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._cache: dict[str, tuple[float, tuple[DkimKey, ...]]] = {}

    def keys_for(self, domain: str) -> tuple[DkimKey, ...]:
        """`domain`'s keys (see load_keys); () if it has none."""
        try:
            mtime = os.stat(domain_dir(self.data_dir, domain)).st_mtime
        except FileNotFoundError:
            self._cache.pop(domain, None)
            return ()
        cached = self._cache.get(domain)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        keys = load_keys(self.data_dir, domain)
        self._cache[domain] = (mtime, keys)
        return keys
