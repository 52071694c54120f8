"""The test certificates (tests/peers/certs.py) work with real TLS: a
client trusting the test CA verifies a server certificate it issued."""

import socket
import ssl
import threading

from peers.certs import TestCA, self_signed


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> dict:
    a, b = socket.socketpair()
    result: dict = {}

    def serve():
        with server_ctx.wrap_socket(a, server_side=True) as s:
            s.recv(1)

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b, server_hostname=hostname) as c:
        result["peer"] = c.getpeercert()
        result["version"] = c.version()
        c.sendall(b"x")
    t.join(5)
    return result


def test_issued_certificate_verifies_against_the_ca(tmp_path):
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["mx.example.test"], ips=["127.0.0.1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert.fullchain_path, cert.key_path)
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    got = _handshake(server, client, "mx.example.test")
    assert ("DNS", "mx.example.test") in got["peer"]["subjectAltName"]
    assert got["version"] in ("TLSv1.2", "TLSv1.3")
    d = cert.install_certbot(tmp_path / "certs", "mx.example.test")
    assert (d / "fullchain.pem").read_bytes() == cert.fullchain_pem
    assert (d / "privkey.pem").stat().st_mode & 0o777 == 0o600


def test_self_signed_is_not_trusted_by_default(tmp_path):
    cert = self_signed(tmp_path, ["mx.test"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert.fullchain_path, cert.key_path)
    client = ssl.create_default_context()
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: _swallow(server, a))
    t.start()
    try:
        client.wrap_socket(b, server_hostname="mx.test")
        raise AssertionError("a self-signed certificate verified")
    except ssl.SSLCertVerificationError:
        pass
    finally:
        b.close()
        t.join(5)


def _swallow(ctx, sock):
    try:
        ctx.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError):
        pass
    finally:
        sock.close()
