"""ARC (RFC 8617): verifying the chain of an incoming message, and sealing
a message we forward, through dkimpy.

    verify_arc(resolver, message, *, context=None, min_rsa_bits=1024) -> ArcResult
    seal(message, domain, key, authserv_id, *, timestamp=None) -> bytes

Verification (§5.2) gives the chain validation status, reported as
``arc=none|pass|fail`` in Authentication-Results (RFC 8617 §4.1.3,
RFC 8601). A message whose chain passes and whose most recent ARC-Seal was
made by a sealer we trust (Config.checks.trusted_arc_sealer) may be let
through a DMARC failure (RFC 8617 §7.2, local policy): the sealer vouches
for the authentication results it saw before forwarding broke them.

Sealing (§5.1) adds the next ARC set — ARC-Authentication-Results (a copy
of our own Authentication-Results, found by our authserv-id),
ARC-Message-Signature and ARC-Seal — signed with the domain's RSA key
(dkimpy seals with rsa-sha256 only). Our Authentication-Results must carry
an ``arc=`` result (the verdict on the incoming chain), which becomes the
seal's cv=.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dkim

from estafeta.actors.checks.dkim_verify import KeyLookup
from estafeta.actors.checks.dkimkeys import RSA, DkimKey
from estafeta.actors.checks.dnsport import DnsPort, Lookup, Recorder, is_temporary_rcode, lookup_attributes
from estafeta.actors.checks.message import has_field


@dataclass(frozen=True, slots=True)
class ArcResult:
    """The chain validation status of an incoming message (RFC 8617 §4.4).

    - result: "none" (no ARC sets), "pass", "fail";
    - instances: how many ARC sets (the highest i=);
    - sealer: d= of the most recent ARC-Seal ("" without one), lower case;
    - oldest_pass: the lowest instance whose ARC-Message-Signature still
      verifies (RFC 8617 §5.2 step 6 and the header.oldest-pass of
      Authentication-Results; 0 when not computed);
    - reason: dkimpy's reason for a failure, or a DNS failure seen;
    - lookups: the key queries made.
    """

    result: str
    instances: int = 0
    sealer: str = ""
    oldest_pass: int = 0
    reason: str = ""
    lookups: tuple[Lookup, ...] = ()

    def trusted_pass(self, trusted_sealers: Iterable[str]) -> bool:
        """True if the chain passes and its most recent seal is by one of
        `trusted_sealers` (domains, compared in lower case)."""
        return self.result == "pass" and self.sealer in {s.lower().rstrip(".") for s in trusted_sealers}

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.arc span."""
        attrs: dict[str, Any] = {
            "arc.result": self.result,
            "arc.instances": self.instances,
            "arc.sealer": self.sealer,
            "arc.reason": self.reason,
        }
        attrs.update(lookup_attributes("arc", self.lookups))
        return attrs


def verify_arc(resolver: DnsPort, message: bytes, *, context: Any = None, min_rsa_bits: int = 1024) -> ArcResult:
    """The ARC chain status of `message` (bytes, CRLF line ends). Never
    raises."""
    if not has_field(message, b"arc-"):  # no ARC set (most mail): no dkimpy parse
        return ArcResult("none")
    logger = logging.Logger("estafeta.checks.arc", logging.WARNING)
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    recorder = Recorder(resolver, context)
    try:
        a = dkim.ARC(message, logger=logger, minkey=min_rsa_bits)
        cv, results, reason = a.verify(dnsfunc=KeyLookup(recorder))
    except (dkim.DKIMException, ValueError, TypeError, IndexError, KeyError) as e:
        cv, results, reason = dkim.CV_Fail, [], f"{type(e).__name__}: {e}"
    lookups = recorder.recorded()
    if cv == dkim.CV_None and not results:
        return ArcResult("none", lookups=lookups)
    result = "pass" if cv == dkim.CV_Pass else "fail"  # None: a seal said cv=fail, the chain ended (§5.2 step 2)
    temporary = [x for x in lookups if is_temporary_rcode(x.rcode)]
    if result == "fail" and temporary:
        reason = f"{reason}; DNS {temporary[0].rcode} for {temporary[0].name}"
    instances = max((r["instance"] for r in results), default=0)
    newest = next((r for r in results if r["instance"] == instances), None)
    sealer = newest["as-domain"].decode("ascii", "replace").lower() if newest and "as-domain" in newest else ""
    oldest = 0
    if result == "pass":
        oldest = min((r["instance"] for r in results if r.get("ams-valid")), default=0)
    return ArcResult(result, instances, sealer, oldest, "" if result == "pass" else str(reason)[:200], lookups)


class SealError(ValueError):
    """The message cannot be sealed (no RSA key, a header section dkimpy
    cannot parse, too many ARC sets)."""


def seal(message: bytes, domain: str, key: DkimKey, authserv_id: str, *, timestamp: int | None = None) -> bytes:
    """The next ARC set (three header fields, CRLF line ends) to prepend to
    `message`, which must carry our Authentication-Results (authserv-id
    `authserv_id`) with an arc= result; b"" if it carries none (dkimpy then
    does not seal: RFC 8617 §5.1.1 needs the results it attests). `key`
    must be an RSA key (rsa-sha256). Raises SealError."""
    if key.algorithm != RSA:
        raise SealError(f"{key.record_name()}: ARC seals with rsa-sha256 only; this key is {key.algorithm}")
    try:
        headers = dkim.arc_sign(
            message,
            key.selector.encode(),
            domain.encode(),
            key.private,
            authserv_id.lower().encode(),  # authres lower-cases the one it parses
            timestamp=timestamp,
        )
    except dkim.DKIMException as e:
        raise SealError(str(e)) from None
    return b"".join(headers)
