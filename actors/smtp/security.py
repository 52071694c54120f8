"""STARTTLS (RFC 3207) and AUTH (RFC 4954) in the SMTP server protocol:
the driver's methods for them and the offers of EHLO.

`Security` is a mixin of SmtpServer (actors/smtp/protocol.py), like
`Commands`: it uses the server's state and helpers (_take_pending,
_reply, _out, _events, _buf). The command handlers (STARTTLS, AUTH) are in
commands.py; the driver contract is in protocol.py's docstring.
"""

from __future__ import annotations

import binascii
import ipaddress
from collections import deque
from typing import TYPE_CHECKING

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.events import AuthAborted, Authenticated, AuthResponse, AuthStart, Event, ProtocolUsageError
from estafeta.actors.smtp.params import Mode, ServerParams, State
from estafeta.actors.smtp.replies import Reply


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (the client is
    on this host: AUTH may go without TLS there)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class Security:
    """STARTTLS and AUTH steps; see the module docstring."""

    if TYPE_CHECKING:  # provided by SmtpServer (actors/smtp/protocol.py)
        params: ServerParams
        state: State
        tls: bool
        esmtp: bool
        helo_name: str
        authenticated: bool
        auth_identity: str
        auth_mechanism: str
        starttls_discarded: int
        _pending: Event | None
        _out: list[bytes]
        _events: deque[Event]
        _buf: bytearray
        _pos: int
        _discarding: bool
        _ehlo_reply: Reply
        _loopback: bool
        _channel_binding: bool
        _mechanisms: tuple[str, ...]
        _auth: str | None
        _auth_final: str

        def _take_pending(self) -> Event: ...
        def _reply(self, reply: Reply) -> None: ...
        def _reset_transaction(self) -> None: ...

    def tls_started(self, channel_binding: bool = False) -> None:
        """The TLS handshake after an accepted StartTls succeeded: the
        conversation starts over from before EHLO (RFC 3207 §4.2: all
        knowledge from before TLS is discarded — EHLO name, authentication,
        transaction). `channel_binding`: the connection's tls-exporter data
        is available (SCRAM-SHA-256-PLUS may be offered). Raises
        ProtocolUsageError outside State.TLS."""
        if self.state is not State.TLS:
            raise ProtocolUsageError("tls_started() only after an accepted StartTls")
        self.state = State.GREETED
        self.tls = True
        self.esmtp = False
        self.helo_name = ""
        self.authenticated = False
        self.auth_identity = self.auth_mechanism = ""
        self._channel_binding = channel_binding
        self._reset_transaction()
        self._refresh_offers()

    def auth_challenge(self, data: bytes) -> None:
        """Answer the pending AuthStart/AuthResponse with "334 <base64 data>"
        (RFC 4954 §4); the client's next line becomes an AuthResponse."""
        self._take_auth_pending()
        self._out.append(b"334 " + binascii.b2a_base64(data, newline=False) + b"\r\n")
        self._await_auth_line()

    def auth_succeeded(self, identity: str, data: bytes = b"") -> None:
        """Answer the pending AuthStart/AuthResponse: authenticated as
        `identity`. With `data` (the mechanism's additional data with
        success, e.g. SCRAM's server-final message) it goes in a last 334,
        and the 235 follows the client's empty answer (RFC 4954 §4);
        otherwise 235 2.7.0 now. Authenticated is emitted with the 235."""
        self._take_auth_pending()
        if data:
            self._out.append(b"334 " + binascii.b2a_base64(data, newline=False) + b"\r\n")
            self._await_auth_line()
            self._auth_final = identity
        else:
            self._authenticated(identity)

    def _take_auth_pending(self) -> None:
        event = self._take_pending()
        if type(event) is not AuthStart and type(event) is not AuthResponse:
            self._pending = event
            raise ProtocolUsageError(f"{type(event).__name__} is not an AUTH step")

    def _authenticated(self, identity: str) -> None:
        mechanism = self._auth or ""
        self._end_auth()
        self.authenticated = True
        self.auth_identity = identity
        self.auth_mechanism = mechanism
        self._out.append(R.AUTH_OK.wire)
        self._events.append(Authenticated(identity, mechanism))

    def _await_auth_line(self) -> None:
        """The next line is an AUTH response, not a command: an instance
        attribute `_command` shadows the method (so the command path checks
        nothing per line) until _end_auth or the line removes it."""
        self._command = self._auth_line

    @property
    def _auth_waiting(self) -> bool:
        return "_command" in self.__dict__

    def _end_auth(self) -> None:
        self.__dict__.pop("_command", None)
        self._auth = None
        self._auth_final = ""

    def _abort_auth(self, reason: str, reply: Reply) -> None:
        self._end_auth()
        self._events.append(AuthAborted(reason, reply))
        self._reply(reply)

    def _auth_line(self, line: bytes) -> None:
        """A line of an AUTH exchange (RFC 4954 §4): "*" cancels; else
        base64 (an empty line is an empty response)."""
        self.__dict__.pop("_command", None)
        if line == b"*":
            self._abort_auth("cancelled", R.AUTH_CANCELLED)
            return
        if self._auth_final:
            if line:
                self._abort_auth("bad-final", R.AUTH_BAD_FINAL)
            else:
                self._authenticated(self._auth_final)
            return
        try:
            data = binascii.a2b_base64(line, strict_mode=True) if line else b""
        except binascii.Error:
            self._abort_auth("bad-base64", R.AUTH_BAD_BASE64)
            return
        self._events.append(AuthResponse(data))

    def _refresh_offers(self) -> None:
        """What EHLO offers in this state (RFC 3207 §4.2: no STARTTLS once
        TLS is on; RFC 4954 §4 with RFC 8314: AUTH over TLS, or from
        loopback; -PLUS only with channel binding)."""
        p = self.params
        mechs: tuple[str, ...] = ()
        if p.auth_required and p.auth_mechanisms and (self.tls or self._loopback):
            mechs = tuple(m for m in p.auth_mechanisms if self._channel_binding or not m.endswith("-PLUS"))
        self._mechanisms = mechs
        self._ehlo_reply = p.ehlo_reply(self._starttls_offered, mechs)

    @property
    def _starttls_offered(self) -> bool:
        """STARTTLS is offered: a certificate, no TLS yet, not port 465."""
        p = self.params
        return p.starttls and not self.tls and p.mode is not Mode.SUBMISSIONS

    def _start_tls(self, reply: Reply) -> None:
        """Accepted StartTls: queue the 220, drop every byte received behind
        the STARTTLS line unread (RFC 3207 §4.2), wait for tls_started()."""
        if reply.code != 220:
            raise ProtocolUsageError("StartTls is accepted with 220")
        self._out.append(reply.wire)
        self.starttls_discarded = len(self._buf) - self._pos
        self._buf.clear()
        self._pos = 0
        self._discarding = False
        self.state = State.TLS
