"""DKIM signing (RFC 6376 §5) through dkimpy.

    sign(message, domain, keys) -> bytes

One signature per key of the domain — dual rsa-sha256 and ed25519-sha256
signatures (RFC 8463 §4: until every verifier knows Ed25519) when it has a
key of each — with relaxed/relaxed canonicalisation (§3.4). The header
fields signed are those of RFC 6376 §5.4.1 present in the message, each
instance; From, Subject, To, Date and Message-ID are "over-signed" (§5.4.2):
listed once more than they occur, so none can be added after signing
without breaking the signature. Signing happens once, at enqueue; the
result is prepended to the message every courier sends.
"""

from __future__ import annotations

from collections.abc import Sequence

import dkim

from estafeta.actors.checks import dkimcrypto  # noqa: F401 - OpenSSL under dkimpy's RSA
from estafeta.actors.checks.dkimkeys import DkimKey

#: RFC 6376 §5.4.1: the header fields that SHOULD be signed (as dkimpy
#: lists them).
SIGNED_FIELDS = tuple(x.decode() for x in dkim.DKIM.SHOULD)
#: Over-signed: one more instance in h= than in the message (§5.4.2).
OVERSIGNED_FIELDS = ("from", "subject", "to", "date", "message-id")


class SigningError(ValueError):
    """The message cannot be signed (no From header field, a header section
    dkimpy cannot parse, a key dkimpy refuses)."""


def signed_headers(names: Sequence[str]) -> list[bytes]:
    """The h= list for a message whose header field names are `names` (in
    order): every instance of a SIGNED_FIELDS field, then one more of each
    OVERSIGNED_FIELDS field."""
    present = [n.lower() for n in names if n.lower() in SIGNED_FIELDS]
    return [n.encode() for n in present + list(OVERSIGNED_FIELDS)]


def sign(message: bytes, domain: str, keys: Sequence[DkimKey]) -> bytes:
    """The DKIM-Signature header fields (CRLF line ends, folded) to prepend
    to `message` (bytes, CRLF line ends), one per key, in the order of
    `keys`; b"" when there are no keys. `domain` is the d= domain (A-label).
    Raises SigningError."""
    if not keys:
        return b""
    try:
        d = dkim.DKIM(message, linesep=b"\r\n")
    except dkim.MessageFormatError as e:
        raise SigningError(f"header section cannot be parsed: {e}") from None
    names = [n.decode("ascii", "replace") for n, _ in d.headers]
    if "from" not in (n.lower() for n in names):
        raise SigningError("no From header field (RFC 6376 §5.4: From must be signed)")
    include = signed_headers(names)
    out = []
    for key in keys:
        try:
            out.append(
                d.sign(
                    key.selector.encode(),
                    domain.encode(),
                    key.private,
                    signature_algorithm=key.algorithm.encode(),
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                )
            )
        except dkim.DKIMException as e:
            raise SigningError(f"{key.record_name()}: {e}") from None
    return b"".join(out)
