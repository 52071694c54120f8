"""A minimal SMTP server over real sockets built from the pure pieces —
the protocol (actors/smtp), TLS (actors/tls.py), the SASL mechanisms
(actors/auth), the policy (actors/policy.py) and the limits
(actors/limits.py) — so real clients (smtplib, swaks, msmtp, openssl
s_client, scramp's client) can be tested against the pieces alone, in
their unit tests (tests/unit/test_tls_auth.py). The daemon's SmtpSession
(actors/session.py, actors/transaction.py, actors/auth/exchange.py)
drives them the same way; tests/e2e/test_submission.py tests that.

Runs in a gevent greenlet per connection (the tests are monkey-patched).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import gevent

from estafeta.actors import smtp
from estafeta.actors.auth import mechanisms
from estafeta.actors.policy import Client, RelayPolicy
from estafeta.actors.tls import CertStore, channel_binding, connection_info


@dataclass
class Env:
    params: smtp.ServerParams
    certs: CertStore | None
    credentials: object  # mechanisms.Credentials
    resolver: object | None = None  # aliases.Resolver, for RCPT
    policy: RelayPolicy = field(default_factory=RelayPolicy)
    limits: object | None = None  # limits.Limits
    messages: list = field(default_factory=list)  # (identity, reverse_path, recipients, body, tls info)
    log: list = field(default_factory=list)


def serve(env: Env, sock: socket.socket, peer: str) -> None:
    implicit = env.params.mode is smtp.Mode.SUBMISSIONS
    info = None
    cb = None
    if env.limits is not None:
        refusal = env.limits.connection_opened(peer, submission=env.params.mode is not smtp.Mode.SMTP)
        if refusal is not None:
            sock.sendall(refusal.wire)
            sock.close()
            return
    try:
        if implicit:
            sock = env.certs.context.wrap_socket(sock, server_side=True)
            cb = channel_binding(sock)
            info = connection_info(sock)
        proto = smtp.SmtpServer(env.params, peer, tls=implicit, channel_binding=cb is not None)
        proto.greet()
        mech = None
        txn: dict = {}
        while True:
            event = proto.next_event()
            if event is smtp.NEED_DATA:
                sock.sendall(proto.data_to_send())
                data = sock.recv(65536)
                proto.receive_data(data) if data else proto.receive_eof()
            elif event is smtp.CLOSED:
                sock.sendall(proto.data_to_send())
                return
            elif isinstance(event, smtp.StartTls):
                if env.certs is None or env.certs.context is None:
                    proto.reject(smtp.replies.TLS_NOT_AVAILABLE)
                    continue
                proto.accept()
                sock.sendall(proto.data_to_send())
                env.log.append(("starttls", proto.starttls_discarded))
                try:
                    sock = env.certs.context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    env.log.append(("handshake-failed", str(e)))
                    return  # RFC 3207 §4.1: no reply is possible
                cb = channel_binding(sock)
                info = connection_info(sock)
                proto.tls_started(channel_binding=cb is not None)
            elif isinstance(event, smtp.AuthStart | smtp.AuthResponse):
                if isinstance(event, smtp.AuthStart):
                    if env.limits is not None:
                        refusal = env.limits.auth_allowed(peer)
                        if refusal is not None:
                            proto.reject(refusal)
                            continue
                    mech = mechanisms.start(event.mechanism, env.credentials, cb)
                    if mech is None:
                        proto.reject(smtp.replies.AUTH_UNKNOWN_MECHANISM)
                        continue
                    step = mech.step(event.initial_response)
                else:
                    step = mech.step(event.response)
                if isinstance(step, mechanisms.Challenge):
                    proto.auth_challenge(step.data)
                elif isinstance(step, mechanisms.Success):
                    if env.limits is not None:
                        env.limits.auth_succeeded(peer)
                    proto.auth_succeeded(step.identity, step.data)
                else:
                    env.log.append(("auth-failed", step.reason, step.username))
                    if env.limits is not None and step.reason == "bad-credentials":
                        delay = env.limits.auth_failed(peer)
                        if delay:
                            gevent.sleep(delay)
                    proto.reject(step.reply)
                    mech = None
            elif isinstance(event, smtp.MailFrom):
                client = Client(peer, proto.auth_identity)
                refusal = None
                if env.resolver is not None:
                    refusal = env.policy.check_sender(env.resolver, client, event.reverse_path)
                if refusal is None and env.limits is not None and proto.auth_identity:
                    refusal = env.limits.message_allowed(proto.auth_identity)
                if refusal is not None:
                    proto.reject(refusal)
                    continue
                txn = {"from": event.reverse_path, "rcpt": []}
                proto.accept()
            elif isinstance(event, smtp.RcptTo):
                client = Client(peer, proto.auth_identity)
                if env.resolver is not None:
                    res = env.policy.check_recipient(env.resolver, client, event.forward_path)
                    if not res.accepted:
                        proto.reject(res.reply)
                        continue
                if env.limits is not None and proto.auth_identity:
                    refusal = env.limits.recipient_allowed(proto.auth_identity)
                    if refusal is not None:
                        proto.reject(refusal)
                        continue
                txn["rcpt"].append(event.forward_path)
                proto.accept()
            elif isinstance(event, smtp.MessageReceived):
                env.messages.append(
                    (proto.auth_identity, txn["from"], txn["rcpt"], event.body, info, proto.protocol_name)
                )
                proto.accept()
            elif isinstance(event, smtp.DECISIONS):
                proto.accept()
    except OSError as e:
        env.log.append(("io-error", str(e)))
    finally:
        if env.limits is not None:
            env.limits.connection_closed(peer)
        sock.close()


class Server:
    """Listens on 127.0.0.1:<free port>; one greenlet per connection."""

    def __init__(self, env: Env, host: str = "127.0.0.1"):
        self.env = env
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._loop = gevent.spawn(self._accept)
        self._conns: list = []

    def _accept(self) -> None:
        while True:
            conn, addr = self.sock.accept()
            self._conns.append(gevent.spawn(serve, self.env, conn, addr[0]))

    def close(self) -> None:
        self._loop.kill()
        for g in self._conns:
            g.kill()
        self.sock.close()
