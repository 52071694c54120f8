"""SASL mechanisms of SMTP AUTH, sans-I/O: PLAIN (RFC 4616), LOGIN
(draft-murchison-sasl-login), SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
(RFC 5802, RFC 7677; channel binding tls-exporter, RFC 9266), the last two
through the `scramp` package.

A mechanism object lives for one AUTH exchange. The driver (the session)
feeds it the client's responses, already base64-decoded by the SMTP
protocol (actors/smtp), and gets a step back:

    mech = start("PLAIN", credentials, channel_binding=None)   # None: unknown name
    step = mech.step(initial_response)       # bytes, b"" for "=", None if none was sent
    Challenge(data)  -> proto.auth_challenge(data); the next response goes to step()
    Success(identity, data) -> proto.auth_succeeded(identity, data)
    Failure(reply, reason, username) -> proto.reject(reply)

Credentials come through the `Credentials` port (actors/users.py
UserCredentials implements it over the user database). PLAIN and LOGIN
check a password hash in their last step, which blocks for ~0.1 s unless
the verification cache knows the pair (actors/auth/passwords.py): run
step() off the gevent hub (store.blocking.run_blocking) when
`mech.blocking` is True. SCRAM steps only compute HMACs.

Failures never tell an unknown user from a wrong password (535 5.7.8 for
both; SCRAM answers an unknown user with made-up credentials, as scramp's
documentation shows, so the exchange looks the same).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from typing import Protocol

import scramp
import scramp.core

from estafeta.actors.addresses import AddressError, normalize_address
from estafeta.actors.smtp.replies import Reply
from estafeta.proto import users_pb2

# scramp refuses the channel binding name "tls-exporter" only because the
# stdlib's SSLSocket.get_channel_binding() cannot produce its data (scramp's
# README, "Missing tls-exporter channel binding support"). We hand it the
# data as bytes (actors/tls.py channel_binding: RFC 9266's exporter), for
# which the rest of its GS2 handling is generic, so the name is allowed here.
if "tls-exporter" not in scramp.core.CbName.SUPPORTED_TYPES:
    scramp.core.CbName.SUPPORTED_TYPES = frozenset(scramp.core.CbName.SUPPORTED_TYPES | {"tls-exporter"})
    scramp.core.CbName.UNSUPPORTED_TYPES = frozenset(scramp.core.CbName.UNSUPPORTED_TYPES - {"tls-exporter"})

#: The channel binding type of SCRAM-SHA-256-PLUS (RFC 9266).
CHANNEL_BINDING_TYPE = "tls-exporter"

#: RFC 4954 §6: 535 5.7.8 "Authentication credentials invalid".
BAD_CREDENTIALS = Reply(535, "5.7.8", "Authentication credentials invalid")
#: RFC 4954 §6: 432 4.7.12 "A password transition is needed" (the user has a
#: password hash but no SCRAM credential: one PLAIN login makes none, the
#: operator must set the password again with `estafeta user passwd`).
TRANSITION_NEEDED = Reply(432, "4.7.12", "A password transition is needed: log in with PLAIN, or reset the password")
#: RFC 4954 §6: 454 4.7.0 "Temporary authentication failure".
TEMPORARY_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure")
#: A SASL message that does not parse (RFC 4954 §4 asks 501 for what cannot
#: be decoded; 5.5.2 is a syntax error, RFC 3463 §3.6).
MALFORMED = Reply(501, "5.5.2", "Malformed SASL message")


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send "334 <base64 data>" (RFC 4954 §4) and feed the client's next
    line to step()."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as `identity` (normalised login name). `data`: the
    mechanism's additional data with success (SCRAM's server-final
    message), sent as a last 334 that the client answers with an empty
    line before the 235 (RFC 4954 §4); b"" if none."""

    identity: str
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Failure:
    """Refused: answer `reply`. reason: "bad-credentials" (count it against
    the client: limits.py), "malformed", "transition-needed"; username: the
    name the client gave ("" if none), for the log."""

    reply: Reply
    reason: str
    username: str = ""


Step = Challenge | Success | Failure


class Credentials(Protocol):
    """The credential-lookup port (actors/users.py UserCredentials)."""

    def check_password(self, username: str, password: str) -> str | None:
        """The normalised identity if `password` is right, else None (blocking)."""
        ...

    def scram(self, username: str) -> tuple[str, users_pb2.ScramCredential | None] | None:
        """(identity, SCRAM-SHA-256 credential or None if only a hash is
        stored) or None for no such user (non-blocking)."""
        ...


class Mechanism:
    """One AUTH exchange of one mechanism; see the module docstring."""

    name = ""
    #: True if step() may block for a password hash (PLAIN, LOGIN).
    blocking = False

    def step(self, response: bytes | None) -> Step:
        raise NotImplementedError


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Plain(Mechanism):
    """PLAIN (RFC 4616): message = [authzid] NUL authcid NUL passwd. An
    authzid other than the authcid itself is refused (no proxy login)."""

    name = "PLAIN"
    blocking = True

    def __init__(self, credentials: Credentials):
        self._credentials = credentials

    def step(self, response: bytes | None) -> Step:
        if response is None:  # no initial response: an empty challenge (RFC 4616 §2)
            return Challenge(b"")
        parts = response.split(b"\0")
        text = [_text(p) for p in parts]
        if len(parts) != 3 or any(t is None for t in text) or not parts[1] or not parts[2]:
            return Failure(MALFORMED, "malformed")
        authzid, authcid, password = text[0] or "", text[1] or "", text[2] or ""
        identity = self._credentials.check_password(authcid, password)
        if identity is None:
            return Failure(BAD_CREDENTIALS, "bad-credentials", authcid)
        if authzid and authzid != authcid:
            try:
                same = normalize_address(authzid) == identity
            except AddressError:
                same = False
            if not same:
                return Failure(BAD_CREDENTIALS, "bad-credentials", authcid)
        return Success(identity)


class Login(Mechanism):
    """LOGIN (draft-murchison-sasl-login-00): "Username:" then "Password:"
    challenges; an initial response is the user name."""

    name = "LOGIN"
    blocking = True

    def __init__(self, credentials: Credentials):
        self._credentials = credentials
        self._username: str | None = None

    def step(self, response: bytes | None) -> Step:
        if self._username is None:
            if response is None:
                return Challenge(b"Username:")
            name = _text(response)
            if not name:
                return Failure(MALFORMED, "malformed")
            self._username = name
            return Challenge(b"Password:")
        password = _text(response or b"")
        if not password:
            return Failure(BAD_CREDENTIALS, "bad-credentials", self._username)
        identity = self._credentials.check_password(self._username, password)
        if identity is None:
            return Failure(BAD_CREDENTIALS, "bad-credentials", self._username)
        return Success(identity)


def _saslname(name: str) -> str:
    """RFC 5802 §5.1: "=2C" is ",", "=3D" is "=" in a user name."""
    return name.replace("=2C", ",").replace("=3D", "=")


class Scram(Mechanism):
    """SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 7677) over scramp's
    ScramServer. `channel_binding`: the connection's tls-exporter data
    (RFC 9266), or None without TLS. Given, it is used for -PLUS, and for
    plain SCRAM it lets scramp refuse a client that says "y" (it thinks the
    server cannot bind: a downgrade, RFC 5802 §6)."""

    #: scramp needs these for the made-up credentials of unknown users.
    _SECRET = os.urandom(32)

    def __init__(self, name: str, credentials: Credentials, channel_binding: bytes | None):
        self.name = name
        self._credentials = credentials
        self._identity = ""
        self._username = ""
        self._no_scram = False
        cb = (CHANNEL_BINDING_TYPE, channel_binding) if channel_binding else None
        self._server = scramp.ScramMechanism(name).make_server(self._auth_fn, channel_binding=cb)
        self._stage = 0

    def _auth_fn(self, username: str):
        self._username = _saslname(username)
        found = self._credentials.scram(self._username)
        if found is not None:
            identity, cred = found
            if cred is not None:
                self._identity = identity
                return cred.salt, cred.stored_key, cred.server_key, cred.iterations
            self._no_scram = True
        # Unknown user (or no SCRAM credential): the same exchange, then 535.
        u = self._username.encode("utf-8")
        salt = hmac.digest(self._SECRET, b"salt:" + u, "sha256")[:16]
        stored = hmac.digest(self._SECRET, b"sk:" + u, "sha256")
        server = hmac.digest(self._SECRET, b"vk:" + u, "sha256")
        return salt, stored, server, 4096

    def step(self, response: bytes | None) -> Step:
        server = self._server
        try:
            if self._stage == 0:
                if not response:  # SCRAM is client-first: ask for it (RFC 4954 §4 empty challenge)
                    return Challenge(b"") if response is None else Failure(MALFORMED, "malformed")
                text = _text(response)
                if text is None:
                    return Failure(MALFORMED, "malformed")
                server.set_client_first(text)
                if self._no_scram:
                    return Failure(TRANSITION_NEEDED, "transition-needed", self._username)
                self._stage = 1
                return Challenge(server.get_server_first().encode("utf-8"))
            text = _text(response or b"")
            if text is None:
                return Failure(MALFORMED, "malformed", self._username)
            server.set_client_final(text)
            final = server.get_server_final().encode("utf-8")
        except scramp.ScramException:
            return Failure(BAD_CREDENTIALS, "bad-credentials", self._username)
        if not self._identity:  # made-up credentials cannot verify; belt and braces
            return Failure(BAD_CREDENTIALS, "bad-credentials", self._username)
        return Success(self._identity, final)


#: Mechanism name -> whether it needs channel binding data.
MECHANISMS = {"SCRAM-SHA-256-PLUS": True, "SCRAM-SHA-256": False, "PLAIN": False, "LOGIN": False}


def start(name: str, credentials: Credentials, channel_binding: bytes | None = None) -> Mechanism | None:
    """A new exchange of mechanism `name` (upper case, as the protocol
    passes it), or None if estafeta has no such mechanism or it needs
    channel binding and `channel_binding` is None."""
    if name == "PLAIN":
        return Plain(credentials)
    if name == "LOGIN":
        return Login(credentials)
    if name in ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"):
        if MECHANISMS[name] and not channel_binding:
            return None
        return Scram(name, credentials, channel_binding)
    return None
