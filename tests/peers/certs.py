"""TLS certificates made by the tests: a private CA and server certificates
it issues, written as PEM files (the `cryptography` package).

    ca = TestCA(tmp_path / "ca")                 # ca.cert_path: the CA's PEM
    cert = ca.issue(["mx.example.test"], ips=["127.0.0.1"])
    cert.fullchain_path, cert.key_path           # server certificate + chain, key
    cert.install_certbot(cert_dir, "mx.example.test")   # <dir>/<name>/fullchain.pem, privkey.pem
    self_signed(tmp_path / "ss", ["mx.test"])    # one self-signed certificate

Keys are ECDSA P-256 by default (fast to make), RSA 2048 on request.
Certificates are valid from one hour ago (clock skew) for `days` days.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key(kind: str):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key kind {kind!r}: 'ec' or 'rsa'")


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)


def _san(names: list[str], ips: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    entries += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    return x509.SubjectAlternativeName(entries)


@dataclass
class IssuedCert:
    """A server certificate as files: `cert_path` (the leaf), `fullchain_path`
    (leaf then issuer, certbot's fullchain.pem), `key_path` (PKCS#8, 0600);
    and the PEM bytes themselves."""

    cert_path: Path
    fullchain_path: Path
    key_path: Path
    cert_pem: bytes
    fullchain_pem: bytes
    key_pem: bytes

    def install_certbot(self, cert_dir: Path, name: str) -> Path:
        """Write it in certbot's layout, <cert_dir>/<name>/fullchain.pem and
        privkey.pem, replacing what is there; returns <cert_dir>/<name>."""
        d = Path(cert_dir) / name
        _write(d / "privkey.pem", self.key_pem, 0o600)
        _write(d / "fullchain.pem", self.fullchain_pem)
        return d


class TestCA:
    """A private certificate authority under `directory` (ca.pem, ca.key)."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "estafeta test CA", key: str = "ec", days: int = 30):
        self.directory = Path(directory)
        self._key = _key(key)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        not_before, not_after = _validity(days)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = _write(self.directory / "ca.pem", self.cert_pem)
        _write(self.directory / "ca.key", _key_pem(self._key), 0o600)
        self._issued = 0

    def issue(
        self, names: list[str], *, ips: list[str] | tuple[str, ...] = (), key: str = "ec", days: int = 30
    ) -> IssuedCert:
        """A server certificate for DNS `names` (the first is the common
        name) and IP addresses `ips`, signed by this CA, written under
        <directory>/<n>-<first name>/."""
        leaf_key = _key(key)
        not_before, not_after = _validity(days)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(_san(list(names), list(ips)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self._issued += 1
        d = self.directory / f"{self._issued}-{names[0]}"
        cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(leaf_key)
        return IssuedCert(
            cert_path=_write(d / "cert.pem", cert_pem),
            fullchain_path=_write(d / "fullchain.pem", cert_pem + self.cert_pem),
            key_path=_write(d / "privkey.pem", key_pem, 0o600),
            cert_pem=cert_pem,
            fullchain_pem=cert_pem + self.cert_pem,
            key_pem=key_pem,
        )


def self_signed(
    directory: Path, names: list[str], *, ips: list[str] | tuple[str, ...] = (), key: str = "ec", days: int = 30
) -> IssuedCert:
    """One self-signed server certificate for `names` under `directory`
    (fullchain.pem is the certificate alone)."""
    k = _key(key)
    not_before, not_after = _validity(days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_san(list(names), list(ips)), critical=False)
        .sign(k, hashes.SHA256())
    )
    d = Path(directory)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _key_pem(k)
    return IssuedCert(
        cert_path=_write(d / "cert.pem", cert_pem),
        fullchain_path=_write(d / "fullchain.pem", cert_pem),
        key_path=_write(d / "privkey.pem", key_pem, 0o600),
        cert_pem=cert_pem,
        fullchain_pem=cert_pem,
        key_pem=key_pem,
    )
