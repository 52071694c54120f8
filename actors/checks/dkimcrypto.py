"""OpenSSL (through `cryptography`) under dkimpy's RSA.

dkimpy computes RSA in pure Python (dkim.crypto: PKCS#1 v1.5 over
Python integers): ~6 ms to sign with a 2048-bit key, ~0.35 ms to verify.
Importing this module points dkimpy's two RSA primitives — the module-level
names ``dkim.RSASSA_PKCS1_v1_5_sign`` and ``dkim.RSASSA_PKCS1_v1_5_verify``
that DKIM and ARC signing and verification call (dkim.DomainSigner) — at
OpenSSL's, with the same contract and results: PKCS#1 v1.5 (RFC 8017
§8.2) is deterministic, so a signature has the same octets either way
(tests/unit/test_checks_dkim.py checks it), and verification accepts the
same signatures. Everything else (canonicalisation, tags, Ed25519 through
PyNaCl) stays dkimpy's. tests/bench/checks.py measures the difference.
"""

from __future__ import annotations

from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}
#: Keys made from dkimpy's key dicts, by modulus: our signing keys (few)
#: and the public keys of the signers we verify (many: bounded).
_private: dict[int, rsa.RSAPrivateKey] = {}
_public: dict[tuple[int, int], rsa.RSAPublicKey] = {}
_MAX_KEYS = 1000


def rsa_sign(hash: Any, private_key: dict) -> bytes:
    """dkimpy's RSASSA_PKCS1_v1_5_sign: `hash` is its HashThrough (name,
    digest()), `private_key` its parsed RSAPrivateKey dict."""
    n = private_key["modulus"]
    key = _private.get(n)
    if key is None:
        numbers = rsa.RSAPrivateNumbers(
            p=private_key["prime1"],
            q=private_key["prime2"],
            d=private_key["privateExponent"],
            dmp1=private_key["exponent1"],
            dmq1=private_key["exponent2"],
            iqmp=private_key["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(private_key["publicExponent"], n),
        )
        key = numbers.private_key()
        if len(_private) >= _MAX_KEYS:
            _private.clear()
        _private[n] = key
    return key.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(_HASHES[hash.name.lower()]))


def rsa_verify(hash: Any, signature: bytes, public_key: dict) -> bool:
    """dkimpy's RSASSA_PKCS1_v1_5_verify: True if `signature` is the
    PKCS#1 v1.5 signature of `hash` by `public_key` (modulus,
    publicExponent)."""
    ident = (public_key["modulus"], public_key["publicExponent"])
    key = _public.get(ident)
    if key is None:
        try:
            key = rsa.RSAPublicNumbers(ident[1], ident[0]).public_key()
        except ValueError:  # a key OpenSSL refuses (even exponent, ...): dkimpy's own check
            return _pure_verify(hash, signature, public_key)
        if len(_public) >= _MAX_KEYS:
            _public.clear()
        _public[ident] = key
    try:
        key.verify(bytes(signature), hash.digest(), padding.PKCS1v15(), utils.Prehashed(_HASHES[hash.name.lower()]))
    except (InvalidSignature, ValueError):
        return False
    return True


_pure_verify = dkim.RSASSA_PKCS1_v1_5_verify
dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign
dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
