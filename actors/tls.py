"""TLS for the listeners (stdlib ssl): certificates, contexts, and what a
connection's TLS is (for the Received header, the trace and SCRAM-PLUS).

Certificates are read in certbot's layout, <cert_dir>/<name>/fullchain.pem
and privkey.pem (e.g. /etc/letsencrypt/live). `CertStore` builds one
SSLContext per certificate (TLS 1.2 and later, no compression, no
renegotiation) and serves the one the client's SNI names — by the DNS names
in the certificate (subjectAltName, wildcards one label deep), then by
directory name — else the one for the server's hostname, else the first by
name. `refresh()` polls the files' stamps (store/watch.py, as maddy does:
no inotify) and rebuilds what changed; a new context is served to the next
connection, open ones keep theirs. A certificate that fails to load keeps
the previous one (logged).

With no certificate configured, `ensure_self_signed` makes one for the
hostname under <data_dir>/tls/selfsigned/<hostname>/ (same layout; the
`cryptography` package), so STARTTLS works out of the box.

`connection_info(sock)` gives the TLS version, cipher and bits of a
connection, and `channel_binding(sock)` its tls-exporter channel binding
(RFC 9266: 32 octets exported with the label "EXPORTER-Channel-Binding"
and no context). The stdlib has no call for an exporter, so it is made by
OpenSSL's SSL_export_keying_material through ctypes, on the SSL pointer of
CPython's _ssl socket object — checked against the object's own idea of
its protocol version before use, and given up (None: SCRAM-SHA-256-PLUS is
then not offered) wherever that check fails. RFC 9266 §3 allows it for TLS
1.2 only with the extended master secret (RFC 7627): checked too.
"""

from __future__ import annotations

import ctypes
import datetime
import logging
import os
import ssl
import sys
from dataclasses import dataclass

import gevent
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from estafeta.proto import reload_pb2
from estafeta.store.blocking import run_blocking
from estafeta.store.queuefile import atomic_write
from estafeta.store.watch import Stamps
from estafeta.supervisor.actor import Actor, Link

log = logging.getLogger("estafeta.tls")

FULLCHAIN = "fullchain.pem"
PRIVKEY = "privkey.pem"


class TlsError(Exception):
    """No usable certificate, or one that cannot be loaded; str() names the files."""


def make_context(fullchain: str, privkey: str) -> ssl.SSLContext:
    """A server SSLContext for one certificate: TLS 1.2+ (RFC 8996 retired
    1.0 and 1.1), Python's default cipher list, no compression (CRIME), no
    renegotiation. Raises TlsError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(fullchain, privkey)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load {fullchain} with {privkey}: {e}") from None
    return ctx


def certificate_names(fullchain: str) -> list[str]:
    """The DNS names of the first certificate in a PEM file (its
    subjectAltName, else its common name), lower case. [] if unreadable."""
    try:
        with open(fullchain, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.lower().rstrip(".") for n in names]


@dataclass
class _Cert:
    name: str  # directory name
    context: ssl.SSLContext
    names: list[str]


class CertStore:
    """The certificates of <cert_dir>/*/ (certbot's layout), by SNI name.

    `context` is what a listener wraps new connections with (its SNI
    callback switches to the named certificate's context); None when there
    is no certificate at all (no STARTTLS, no SUBMISSIONS). refresh() is
    blocking (stat, read): call it off the hub, at start and every
    Tls.reload_poll_seconds (CertificateWatcher does)."""

    def __init__(self, cert_dirs: list[str], hostname: str):
        self.cert_dirs = [d for d in cert_dirs if d]
        self.hostname = hostname.lower().rstrip(".")
        self.context: ssl.SSLContext | None = None
        self.errors: dict[str, str] = {}
        self._certs: dict[str, _Cert] = {}  # directory path -> cert
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._stamps = Stamps()

    def _candidates(self) -> list[str]:
        out = []
        for base in self.cert_dirs:
            try:
                entries = sorted(os.scandir(base), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir() and os.path.exists(os.path.join(entry.path, FULLCHAIN)):
                    out.append(entry.path)
        return out

    def refresh(self) -> bool:
        """Load new and changed certificates, drop removed ones; True if
        anything changed. Raises nothing: a bad certificate is logged and
        kept in `errors`, its previous version (if any) stays in use."""
        dirs = self._candidates()
        files = [os.path.join(d, f) for d in dirs for f in (FULLCHAIN, PRIVKEY)]
        changed = set(self._stamps.changed(files))
        if not changed:
            return False
        certs = {d: c for d, c in self._certs.items() if d in dirs}
        for d in dirs:
            chain, key = os.path.join(d, FULLCHAIN), os.path.join(d, PRIVKEY)
            if d in certs and chain not in changed and key not in changed:
                continue
            try:
                ctx = make_context(chain, key)
            except TlsError as e:
                self.errors[d] = str(e)
                log.error("certificate not loaded dir=%s error=%s", d, e)
                continue
            self.errors.pop(d, None)
            certs[d] = _Cert(os.path.basename(d), ctx, certificate_names(chain))
            log.info("certificate loaded dir=%s names=%s", d, ",".join(certs[d].names) or "-")
        self._certs = certs
        self._publish()
        return True

    def _publish(self) -> None:
        by_name: dict[str, ssl.SSLContext] = {}
        for cert in self._certs.values():
            by_name.setdefault(cert.name.lower(), cert.context)
        for cert in self._certs.values():  # names in certificates win over directory names
            for n in cert.names:
                by_name[n] = cert.context
        default = self._lookup(by_name, self.hostname)
        if default is None and self._certs:
            default = next(iter(sorted(self._certs.items())))[1].context
        if default is not None:
            default.sni_callback = self._on_sni
        self._by_name = by_name
        self.context = default

    @staticmethod
    def _lookup(by_name: dict[str, ssl.SSLContext], name: str) -> ssl.SSLContext | None:
        ctx = by_name.get(name)
        if ctx is None and "." in name:
            ctx = by_name.get("*." + name.split(".", 1)[1])
        return ctx

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context SNI `server_name` gets (the default one without a match)."""
        if server_name:
            ctx = self._lookup(self._by_name, server_name.lower().rstrip("."))
            if ctx is not None:
                return ctx
        return self.context

    def _on_sni(self, sslobj, server_name, _context) -> None:
        ctx = self.context_for(server_name)
        if ctx is not None and ctx is not sslobj.context:
            sslobj.context = ctx
        return None


def ensure_self_signed(directory: str, hostname: str, days: int = 825) -> str:
    """Make a self-signed certificate for `hostname` at
    <directory>/<hostname>/{fullchain,privkey}.pem unless one is there;
    returns <directory>/<hostname>. ECDSA P-256, valid from an hour ago for
    `days` days (825: what browsers accepted for a leaf). Written atomically
    (the key first, mode 0600). Raises OSError."""
    d = os.path.join(directory, hostname)
    chain, keyfile = os.path.join(d, FULLCHAIN), os.path.join(d, PRIVKEY)
    if os.path.exists(chain) and os.path.exists(keyfile):
        return d
    os.makedirs(d, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(keyfile, key_pem, mode=0o600)
    atomic_write(chain, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("self-signed certificate made for %s in %s", hostname, d)
    return d


def cert_store_for(cert_dir: str, self_signed: bool, data_dir: str, hostname: str) -> CertStore:
    """The CertStore of a configuration (Config.tls): cert_dir's
    certificates; when it has none and `self_signed`, a self-signed one for
    `hostname` under <data_dir>/tls/selfsigned/. Loads them (blocking)."""
    store = CertStore([cert_dir], hostname)
    store.refresh()
    if store.context is None and self_signed:
        base = os.path.join(data_dir, "tls", "selfsigned")
        ensure_self_signed(base, hostname.lower().rstrip(".") or "localhost")
        store = CertStore([cert_dir, base], hostname)
        store.refresh()
    return store


# ------------------------------------------------------------ a connection
@dataclass(frozen=True)
class TlsInfo:
    """A TLS connection's parameters: version ("TLSv1.3"), cipher (OpenSSL
    name, "TLS_AES_256_GCM_SHA384"), bits (secret bits), server_name (SNI,
    "" if none). For the Received header (RFC 3848 ESMTPS; Postfix writes
    "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))")
    and the trace (OTel tls.protocol.version, tls.cipher)."""

    version: str
    cipher: str
    bits: int
    server_name: str = ""

    def received_comment(self) -> str:
        """ "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits)",
        for a Received header's comment."""
        return f"using {self.version} with cipher {self.cipher} ({self.bits} bits)"

    def span_attributes(self) -> dict[str, str | int]:
        """OpenTelemetry attributes (semantic conventions' tls.*)."""
        proto, _, ver = self.version.partition("v")
        return {
            "tls.protocol.name": proto.lower() or "tls",
            "tls.protocol.version": ver or self.version,
            "tls.cipher": self.cipher,
            "tls.server.name": self.server_name,
        }


def connection_info(sock, server_name: str = "") -> TlsInfo:
    """TlsInfo of a handshaken ssl.SSLSocket (stdlib or gevent's)."""
    name, _proto, bits = sock.cipher() or ("", "", 0)
    return TlsInfo(sock.version() or "", name, bits or 0, server_name)


def _libssl():
    """(SSL_export_keying_material, SSL_get_version, SSL_ctrl) of the libssl
    that CPython's _ssl module uses, or None."""
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        export = lib.SSL_export_keying_material
        get_version = lib.SSL_get_version
        ctrl = lib.SSL_ctrl
    except (OSError, AttributeError, ImportError):
        return None
    export.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_int,
    ]
    export.restype = ctypes.c_int
    get_version.argtypes = [ctypes.c_void_p]
    get_version.restype = ctypes.c_char_p
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    return export, get_version, ctrl


# CPython's PySSLSocket is {PyObject_HEAD; PyObject *Socket; SSL *ssl; ...}
# (Modules/_ssl.c, unchanged since 3.7): the SSL pointer follows the object
# header (two words, without Py_TRACE_REFS) and one pointer.
_SSL_OFFSET = 3 * ctypes.sizeof(ctypes.c_void_p)
_LIBSSL = _libssl() if sys.implementation.name == "cpython" and not hasattr(sys, "gettotalrefcount") else None
_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
_SSL_CTRL_GET_EXTMS_SUPPORT = 122


def _ssl_pointer(sslobj) -> int | None:
    """The SSL* of a CPython _ssl._SSLSocket, checked: the protocol version
    OpenSSL reports through it must be the one the object reports."""
    if _LIBSSL is None or type(sslobj).__name__ != "_SSLSocket":
        return None
    ptr = ctypes.c_void_p.from_address(id(sslobj) + _SSL_OFFSET).value
    if not ptr:
        return None
    version = _LIBSSL[1](ptr)
    if version is None or version.decode("ascii", "replace") != sslobj.version():
        return None
    return ptr


def channel_binding(sock) -> bytes | None:
    """The tls-exporter channel binding of a handshaken connection (RFC
    9266 §2: 32 octets, label "EXPORTER-Channel-Binding", no context), or
    None where it cannot be had: not CPython, an unexpected object layout,
    TLS 1.2 without extended master secret (RFC 9266 §3). `sock`: an
    ssl.SSLSocket or SSLObject (stdlib or gevent's)."""
    sslobj = getattr(sock, "_sslobj", None)
    if sslobj is None:
        return None
    ptr = _ssl_pointer(sslobj)
    if ptr is None:
        return None
    export, _, ctrl = _LIBSSL
    if sslobj.version() == "TLSv1.2" and ctrl(ptr, _SSL_CTRL_GET_EXTMS_SUPPORT, 0, None) != 1:
        return None
    out = ctypes.create_string_buffer(32)
    if export(ptr, out, 32, _EXPORTER_LABEL, len(_EXPORTER_LABEL), None, 0, 0) != 1:
        return None
    return out.raw


class CertificateWatcher(Actor):
    """Owns a CertStore's refreshes: every `poll_seconds`
    (Tls.reload_poll_seconds) it looks at the certificate files (off the
    hub) and loads what changed; a `Reload` (SIGHUP) does it at once and is
    answered with a ReloadResult. The listeners read `store.context` for
    each new connection, so a renewed certificate is served to the next
    one. Registered as "certificates"."""

    def __init__(self, link: Link | None, store: CertStore, poll_seconds: float = 60.0):
        super().__init__(link)
        self._store = store
        self._poll_seconds = poll_seconds
        self._poller: gevent.Greenlet | None = None

    def on_start(self) -> None:
        self._poller = gevent.spawn(self._poll)

    def on_stop(self) -> None:
        self._stop_poller()

    def on_failure(self, *exc_info) -> None:
        self._stop_poller()

    def _stop_poller(self) -> None:  # not _stop: pykka's Actor has one
        if self._poller is not None:
            self._poller.kill(block=False)
            self._poller = None

    def _poll(self) -> None:
        while True:
            gevent.sleep(self._poll_seconds)
            try:
                run_blocking(self._store.refresh)
            except Exception as e:  # noqa: BLE001 - a bad look must not stop looking
                log.error("certificate poll failed: %s", e)

    def on_receive(self, message):
        if isinstance(message, reload_pb2.Reload):
            changed = run_blocking(self._store.refresh)
            return reload_pb2.ReloadResult(
                reloaded=["certificates"] if changed else [],
                error=list(self._store.errors.values()),
                trace=message.trace,
            )
        raise TypeError(f"CertificateWatcher cannot handle {type(message).__name__}")
