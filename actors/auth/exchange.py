"""Driving a session's SMTP AUTH exchanges (RFC 4954 §4): the protocol
(actors/smtp) parses AUTH and its responses, the mechanisms
(actors/auth/mechanisms.py) compute the steps, and this puts them
together with the limits against guessing (actors/limits.py), the log
and the trace:

    AuthStart    -> limits.auth_allowed (454 4.7.0 past the failure limits),
                    mechanisms.start, the first step
    AuthResponse -> the next step
    a step: Challenge -> 334; Success -> 235 (limits told); Failure -> the
                    mechanism's reply (535 5.7.8 bad credentials: counted
                    against the client's networks, and past
                    auth_failures_before_delay the 535 waits)

PLAIN and LOGIN check a password hash in their last step (~0.1 s unless
the verification cache knows the pair): such a step runs in the hub's
threadpool (store.blocking.run_blocking), never on the hub itself.

Log lines: "authenticated from=<ip> user=<identity> mechanism=<M>" and
"auth failed from=<ip> user=<name given> mechanism=<M> reason=<why>
reply=<reply>"; the session span gets enduser.id and an "auth.failed"
event for each failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gevent

from estafeta.actors import smtp
from estafeta.actors.auth import mechanisms
from estafeta.actors.limits import Limits
from estafeta.store.blocking import run_blocking
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.session")


@dataclass(frozen=True)
class AuthEnv:
    """What the AUTH exchanges of a serving process share: the credential
    port (the Directory's DirectoryView.credentials) and the limits (None:
    no limits, tests)."""

    credentials: mechanisms.Credentials
    limits: Limits | None = None


class AuthExchange:
    """The AUTH exchanges of one connection (one at a time). `peer`: the
    client's IP address; `span`: the session's span; `channel_binding`: the
    connection's tls-exporter data (RFC 9266), None without TLS or where
    it cannot be had (then no -PLUS)."""

    __slots__ = ("_env", "_peer", "_span", "channel_binding", "_mech")

    def __init__(self, env: AuthEnv, peer: str, span, channel_binding: bytes | None = None):
        self._env = env
        self._peer = peer
        self._span = span
        self.channel_binding = channel_binding
        self._mech: mechanisms.Mechanism | None = None

    def start(self, event: smtp.AuthStart, proto: smtp.SmtpServer) -> None:
        """AUTH <mechanism> [initial-response]: the first step."""
        limits = self._env.limits
        if limits is not None:
            refusal = limits.auth_allowed(self._peer)
            if refusal is not None:
                self._failed(event.mechanism, "", "blocked", refusal)
                proto.reject(refusal)
                return
        mech = mechanisms.start(event.mechanism, self._env.credentials, self.channel_binding)
        if mech is None:  # offered, so only -PLUS without channel binding data gets here
            proto.reject(smtp.replies.AUTH_UNKNOWN_MECHANISM)
            return
        self._mech = mech
        self._step(event.initial_response, proto)

    def respond(self, event: smtp.AuthResponse, proto: smtp.SmtpServer) -> None:
        """The client's answer to a 334."""
        if self._mech is None:  # cannot happen: the protocol asks only inside an exchange
            proto.reject(smtp.replies.AUTH_CANCELLED)
            return
        self._step(event.response, proto)

    def aborted(self, event: smtp.AuthAborted) -> None:
        """The client ended the exchange ("*", bad base64, ...): not a
        failed login (nothing was checked)."""
        mech, self._mech = self._mech, None
        log.info("auth aborted from=%s mechanism=%s reason=%s", self._peer, mech.name if mech else "-", event.reason)

    def authenticated(self, event: smtp.Authenticated) -> None:
        """235 was queued: the session is `event.identity`'s."""
        self._mech = None
        self._span.set_attributes({"enduser.id": event.identity, "estafeta.auth.mechanism": event.mechanism})
        log.info("authenticated from=%s user=%s mechanism=%s", self._peer, event.identity, event.mechanism)

    def _step(self, data: bytes | None, proto: smtp.SmtpServer) -> None:
        mech = self._mech
        step = run_blocking(mech.step, data) if mech.blocking else mech.step(data)
        if isinstance(step, mechanisms.Challenge):
            proto.auth_challenge(step.data)
            return
        if isinstance(step, mechanisms.Success):
            if self._env.limits is not None:
                self._env.limits.auth_succeeded(self._peer)
            proto.auth_succeeded(step.identity, step.data)  # Authenticated follows with the 235
            return
        self._mech = None
        self._failed(mech.name, step.username, step.reason, step.reply)
        limits = self._env.limits
        if limits is not None and step.reason == "bad-credentials":
            delay = limits.auth_failed(self._peer)
            if delay:
                gevent.sleep(delay)  # mox: a second per failure past the first few
        proto.reject(step.reply)

    def _failed(self, mechanism: str, username: str, reason: str, reply: smtp.Reply) -> None:
        self._span.add_event(
            "auth.failed",
            {"estafeta.auth.mechanism": mechanism, "estafeta.auth.user": username, "estafeta.auth.reason": reason},
        )
        log.warning(
            "auth failed from=%s user=%s mechanism=%s reason=%s reply=%s",
            self._peer,
            kv(username or "-"),
            mechanism,
            reason,
            kv(str(reply)),
        )
