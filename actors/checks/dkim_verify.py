"""DKIM verification (RFC 6376) of every signature, through dkimpy, its key
lookups routed through our resolver.

    verify_dkim(resolver, message, *, context=None, min_rsa_bits=1024) -> DkimResult

Algorithms: rsa-sha256 and ed25519-sha256 (RFC 8463); rsa-sha1 is not
accepted (RFC 8301 §3.1) and RSA keys shorter than `min_rsa_bits` fail
(RFC 8301 §3.2: at least 1024). Each signature gets an RFC 8601 §2.7.1
result:

- pass: the signature verifies;
- fail: it does not (body hash mismatch, bad signature);
- permerror: it cannot be verified and will not be on a retry — malformed
  signature (RFC 6376 §6.1.1), no key record (§6.1.2: NXDOMAIN or no TXT),
  a key record that does not parse, is revoked (empty p=) or too short,
  rsa-sha1;
- temperror: the key lookup failed temporarily (SERVFAIL, timeout).

A signature with l= (body length, §3.5) covers only part of the body: it
may pass, but `trusted_domains()` leaves it out unless asked, since
content can be appended after it (§8.2) — DMARC does not trust it by
default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from estafeta.actors.checks import dkimcrypto  # noqa: F401 - OpenSSL under dkimpy's RSA
from estafeta.actors.checks.dnsport import (
    DnsPort,
    Lookup,
    Recorder,
    is_temporary,
    is_temporary_rcode,
    lookup_attributes,
)
from estafeta.actors.checks.message import has_field

#: RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than this.
MIN_RSA_BITS = 1024
#: Most signatures verified on one message; later ones get permerror
#: (each costs a DNS lookup and a hash of the body: bounded like SPF's
#: lookups, against a message made of signatures).
MAX_SIGNATURES = 10
#: Signature algorithms accepted (RFC 6376 §3.3 as updated by RFC 8301, RFC 8463).
ALGORITHMS = (b"rsa-sha256", b"ed25519-sha256")


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """The verdict on one DKIM-Signature.

    - result: pass, fail, permerror, temperror (RFC 8601 §2.7.1);
    - domain (d=), selector (s=), algorithm (a=), identity (i=, "" if
      absent) — as in the signature, lower-cased domain and selector;
    - body_length: the l= value, or None without l=;
    - header_b: the first 12 characters of b= (RFC 6008 header.b, to tell
      two signatures of one domain apart);
    - reason: why it did not pass ("" when it did).
    """

    result: str
    domain: str
    selector: str
    algorithm: str
    identity: str
    body_length: int | None
    header_b: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DkimResult:
    """Every signature's verdict, in header order (topmost first), and the
    DNS queries made. `result` sums them up for the span: "none" without
    signatures, else "pass" if any passed, else the first one's result."""

    signatures: tuple[DkimSignature, ...]
    lookups: tuple[Lookup, ...] = ()

    @property
    def result(self) -> str:
        if not self.signatures:
            return "none"
        if any(s.result == "pass" for s in self.signatures):
            return "pass"
        return self.signatures[0].result

    def trusted_domains(self, trust_body_length: bool = False) -> tuple[str, ...]:
        """The d= domains of passing signatures that DMARC may use: those
        with l= only if `trust_body_length`."""
        return tuple(
            s.domain for s in self.signatures if s.result == "pass" and (trust_body_length or s.body_length is None)
        )

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.dkim span."""
        attrs: dict[str, Any] = {
            "dkim.result": self.result,
            "dkim.signatures": tuple(
                f"{s.result} d={s.domain} s={s.selector} a={s.algorithm}"
                + (f" l={s.body_length}" if s.body_length is not None else "")
                + (f" ({s.reason})" if s.reason else "")
                for s in self.signatures
            ),
        }
        attrs.update(lookup_attributes("dkim", self.lookups))
        return attrs


class _Capture(logging.Handler):
    """Keeps the last message dkimpy logs (its reasons for a False)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()


def _capturing_logger() -> tuple[logging.Logger, _Capture]:
    """A logger of our own (not registered with logging, not propagated)
    whose error messages are kept: dkimpy reports key problems only there."""
    logger = logging.Logger("estafeta.checks.dkimpy", logging.WARNING)  # dkimpy's debug() calls cost
    logger.propagate = False
    capture = _Capture()
    logger.addHandler(capture)
    return logger, capture


class KeyLookup:
    """dkimpy's dnsfunc (``dnsfunc(name, timeout=5) -> bytes | None``) over
    a Recorder, remembering the last answer so that a False from dkimpy can
    be told apart: no key (permerror) or DNS failure (temperror)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.last_rcode = ""
        self.last_record: bytes | None = None

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self.recorder.query(qname, "TXT")
        self.last_rcode = answer.rcode
        self.last_record = answer.records[0].encode("utf-8", "surrogateescape") if answer.records else None
        if is_temporary(answer):
            raise dkim.DnsTimeoutError(f"DNS {answer.rcode} for {qname} TXT")
        return self.last_record


def _text(v: bytes | None) -> str:
    return v.decode("ascii", "replace") if v else ""


def _signature_tags(raw_value: bytes) -> dict[bytes, bytes]:
    try:
        return parse_tag_value(raw_value)
    except InvalidTagValueList:
        return {}


def _why_false(lookup: KeyLookup, capture: _Capture) -> tuple[str, str]:
    """(result, reason) for a verify() that returned False: dkimpy says
    False for a missing or bad key as for a bad signature."""
    if lookup.last_rcode and is_temporary_rcode(lookup.last_rcode):
        return "temperror", f"key lookup: DNS {lookup.last_rcode}"
    if lookup.last_record is None:
        return "permerror", "no key record"
    try:
        key = parse_tag_value(lookup.last_record)
    except InvalidTagValueList:
        return "permerror", "key record does not parse"
    if not key.get(b"p"):
        return "permerror", "key revoked (empty p=)"
    if capture.last:  # dkimpy logs only key problems (evaluate_pk) before returning False
        return "permerror", capture.last[:200]
    return "fail", "signature did not verify"


def _verify_one(d: dkim.DKIM, idx: int, tags: dict, lookup: KeyLookup, capture: _Capture) -> tuple[str, str]:
    if tags.get(b"a") not in ALGORITHMS:
        a = _text(tags.get(b"a")) or "none"
        return "permerror", f"algorithm {a} not accepted (RFC 8301, RFC 8463)"
    lookup.last_rcode, lookup.last_record, capture.last = "", None, ""
    try:
        ok = d.verify(idx=idx, dnsfunc=lookup)
    except dkim.ValidationError as e:
        msg = str(e)
        if msg.startswith("body hash mismatch"):
            return "fail", "body hash mismatch"
        return "permerror", msg[:200]
    except dkim.KeyFormatError as e:  # raised for a key shorter than minkey
        return "permerror", str(e)[:200]
    except dkim.DKIMException as e:  # MessageFormatError, ParameterError, ...
        return "permerror", str(e)[:200]
    except (ValueError, TypeError, IndexError, KeyError) as e:
        # dkimpy lets some malformed input through to its crypto (an RSA
        # signature checked with an Ed25519 key: nacl's ValueError).
        return "permerror", f"{type(e).__name__}: {e}"[:200]
    if ok:
        return "pass", ""
    return _why_false(lookup, capture)


def verify_dkim(
    resolver: DnsPort, message: bytes, *, context: Any = None, min_rsa_bits: int = MIN_RSA_BITS
) -> DkimResult:
    """Verify every DKIM-Signature of `message` (bytes as received, CRLF
    line ends). Never raises: problems are per-signature results."""
    if not has_field(message, b"dkim-signature"):  # most mail: no dkimpy parse at all
        return DkimResult(())
    logger, capture = _capturing_logger()
    try:
        d = dkim.DKIM(message, logger=logger, minkey=min_rsa_bits)
    except dkim.MessageFormatError:  # not a header section dkimpy can read
        return DkimResult(())
    # dkimpy's own parse, so that idx means the same signature to verify().
    sig_values = [v for n, v in d.headers if n.lower() == b"dkim-signature"]
    if not sig_values:
        return DkimResult(())
    recorder = Recorder(resolver, context)
    lookup = KeyLookup(recorder)
    out = []
    for idx, raw in enumerate(sig_values):
        tags = _signature_tags(raw)
        b = b"".join(tags.get(b"b", b"").split())
        length = tags.get(b"l")
        sig: dict[str, Any] = dict(
            domain=_text(tags.get(b"d")).lower(),
            selector=_text(tags.get(b"s")).lower(),
            algorithm=_text(tags.get(b"a")),
            identity=_text(tags.get(b"i")),
            body_length=int(length) if length and length.isdigit() else None,
            header_b=_text(b[:12]),
        )
        if not tags:
            result, reason = "permerror", "signature does not parse"
        elif idx >= MAX_SIGNATURES:
            result, reason = "permerror", f"more than {MAX_SIGNATURES} signatures"
        else:
            result, reason = _verify_one(d, idx, tags, lookup, capture)
        out.append(DkimSignature(result, reason=reason, **sig))
    return DkimResult(tuple(out), recorder.recorded())
