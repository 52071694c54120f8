"""Authentication of mail on the way out, as the enqueuer and the alias
expansion use it: DKIM signing, SRS, ARC sealing.

    out = Outbound.from_config(cfg)                 # keys and SRS secret under data_dir
    out.dkim_signature(message) -> bytes            # at enqueue of our users' mail: prepend
    out.forward(message, reverse_path, domain) -> (reverse_path, bytes)   # an alias forwarding off-site
    out.bounce_to(address) -> str | None            # RCPT TO an SRS address of ours: the original sender
    out.srs_recipient(address) -> str | None        # the same for the relay policy ("" for a forged one)

DKIM: the message is signed once, at enqueue, for its RFC5322.From domain
when that domain has keys under <data_dir>/dkim/, else for the From
domain's organisational domain when that one has keys (relaxed DMARC
alignment still passes, RFC 7489 §3.1.1); with every key of the domain
(dual rsa-sha256 + ed25519-sha256). Mail from a domain without keys goes
out unsigned.

Forwarding (an alias to a remote address): the reverse-path is rewritten
with SRS into `Config.srs.domain` (when Config.srs.enabled), and the
message, which carries our Authentication-Results, is ARC-sealed (when
Config.dkim_signing.arc_seal) with the RSA key of the forwarding domain
(RFC 8617 §5.1).
"""

from __future__ import annotations

import os
from typing import Any

from estafeta.actors.checks.arc import SealError, seal
from estafeta.actors.checks.dkim_sign import sign
from estafeta.actors.checks.dkimkeys import RSA, KeyStore
from estafeta.actors.checks.dmarc import org_domain
from estafeta.actors.checks.message import FromError, from_domain
from estafeta.actors.checks.srs import Srs, SrsError, load_secrets


class Outbound:
    """Signing keys (KeyStore), the SRS instance (None when SRS is off),
    our authserv-id (to find our Authentication-Results when sealing)."""

    def __init__(self, keys: KeyStore, srs: Srs | None, authserv_id: str, *, sign: bool = True, arc_seal: bool = True):
        self.keys = keys
        self.srs = srs
        self.authserv_id = authserv_id
        self.sign_enabled = sign
        self.arc_seal = arc_seal

    @classmethod
    def from_config(cls, cfg: Any) -> Outbound:
        """From Config (data_dir, dkim_signing, srs, checks.authserv_id).
        Creates <data_dir>/srs.secret when SRS is on and it is missing.
        Raises OSError."""
        data_dir = os.path.abspath(cfg.data_dir)
        srs = None
        if cfg.srs.enabled:
            srs = Srs(
                load_secrets(data_dir),
                cfg.srs.domain or cfg.hostname,
                hash_length=cfg.srs.hash_length,
                max_age_days=cfg.srs.max_age_days,
            )
        return cls(
            KeyStore(data_dir),
            srs,
            cfg.checks.authserv_id or cfg.hostname,
            sign=cfg.dkim_signing.enabled,
            arc_seal=cfg.dkim_signing.arc_seal,
        )

    def signing_domain(self, message: bytes) -> str:
        """The d= domain for `message`: its From domain or that domain's
        organisational domain, whichever has keys first; "" for none."""
        try:
            domain = from_domain(message)
        except FromError:
            return ""
        for d in dict.fromkeys((domain, org_domain(domain))):
            if self.keys.keys_for(d):
                return d
        return ""

    def dkim_signature(self, message: bytes) -> bytes:
        """The DKIM-Signature fields to prepend to `message` (b"" when
        signing is off or its domain has no keys). Raises
        dkim_sign.SigningError, dkimkeys.KeyFileError."""
        return self.dkim_sign(message)[1]

    def dkim_sign(self, message: bytes) -> tuple[str, bytes]:
        """(the d= domain, the DKIM-Signature fields to prepend) for
        `message`; ("", b"") when signing is off or no domain of it has
        keys. Raises dkim_sign.SigningError, dkimkeys.KeyFileError."""
        if not self.sign_enabled:
            return "", b""
        domain = self.signing_domain(message)
        return (domain, sign(message, domain, self.keys.keys_for(domain))) if domain else ("", b"")

    def forward(self, message: bytes, reverse_path: str, forwarding_domain: str) -> tuple[str, bytes]:
        """(the reverse-path to forward with, the ARC set to prepend) for
        `message` forwarded off-site by an alias of `forwarding_domain`.
        The ARC set is b"" when sealing is off, the domain has no RSA key,
        or the message has no Authentication-Results of ours. Raises
        SrsError for a reverse-path that is not an address."""
        new_path = self.srs.forward(reverse_path) if self.srs is not None else reverse_path
        arc = b""
        if self.arc_seal:
            rsa = [k for k in self.keys.keys_for(forwarding_domain) if k.algorithm == RSA]
            if rsa:
                try:
                    arc = seal(message, forwarding_domain, rsa[0], self.authserv_id)
                except SealError:
                    arc = b""
        return new_path, arc

    def srs_recipient(self, address: str) -> str | None:
        """For RCPT TO `address` (actors/policy.py): None when it is not an
        SRS address of our SRS domain (or SRS is off), "" when it is one
        that does not decode (forged, expired: refuse it), else where the
        bounce goes (see bounce_to)."""
        if self.srs is None or not Srs.is_srs(address):
            return None
        if address.rpartition("@")[2].rstrip(".").lower() != self.srs.domain:
            return None
        return self.bounce_to(address) or ""

    def bounce_to(self, address: str) -> str | None:
        """For RCPT TO `address` in our SRS domain: where the bounce goes
        (the original sender, or the first hop's SRS0 address); None when
        SRS is off, the address is not SRS or not ours, or it does not
        decode (a forged or expired address: refuse the recipient)."""
        if self.srs is None or not Srs.is_srs(address):
            return None
        if address.rpartition("@")[2].rstrip(".").lower() != self.srs.domain:
            return None
        try:
            return self.srs.reverse(address)
        except SrsError:
            return None
