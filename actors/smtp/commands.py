"""The SMTP command handlers (RFC 5321 §4.1.1), one method per verb.

`Commands` is a mixin of SmtpServer (actors/smtp/protocol.py): a handler
gets the command's argument (bytes after the verb and its space), and uses
the server's state and its helpers: _reply() queues a counted reply,
_out takes a reply that can never be an error, _events gets the events.
"""

from __future__ import annotations

import binascii
from collections import deque
from typing import TYPE_CHECKING

from estafeta.actors.smtp import replies as R
from estafeta.actors.smtp.dsnparams import mail_dsn, rcpt_dsn, xtext_decode
from estafeta.actors.smtp.events import AuthStart, DataStart, Event, Helo, MailFrom, Quit, RcptTo, Reset, StartTls
from estafeta.actors.smtp.params import TRANSACTION_STATES, ServerParams, State
from estafeta.actors.smtp.parser import (
    PARAM_SYNTAX,
    ParseError,
    parse_helo,
    parse_mail_from,
    parse_path,
    parse_rcpt_to,
)
from estafeta.actors.smtp.replies import Reply

BAD_BODY = Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
BAD_SIZE = Reply(501, "5.5.4", "SIZE must be a number of octets")


def decode_auth_param(value: str | None) -> str:
    """The AUTH= MAIL parameter (RFC 4954 §5: xtext of "<>" or a mailbox) ->
    "" for <>, else the mailbox. Raises ParseError (501 5.5.4)."""
    if not value:
        raise ParseError(R.BAD_AUTH_PARAM)
    try:
        text = xtext_decode(value, "AUTH=")
    except ParseError:
        raise ParseError(R.BAD_AUTH_PARAM) from None
    if text == "<>":
        return ""
    path, end = parse_path(f"<{text}>", 0, R.BAD_AUTH_PARAM)
    if end != len(text) + 2:
        raise ParseError(R.BAD_AUTH_PARAM)
    return path


def _rcpt_key(path: str) -> str:
    """What makes two forward-paths the same recipient for the protocol:
    the local part as written, the domain in any case (RFC 5321 §2.4:
    only the local part may be case-sensitive); a bare postmaster in any
    case."""
    local, at, domain = path.rpartition("@")
    return f"{local}@{domain.lower()}" if at else path.lower()


class Commands:
    """Command handlers; see the module docstring."""

    if TYPE_CHECKING:  # provided by SmtpServer (actors/smtp/protocol.py)
        params: ServerParams
        state: State
        esmtp: bool
        helo_name: str
        smtputf8: bool
        recipient_count: int
        _rcpt_attempts: int
        _out: list[bytes]
        _events: deque[Event]
        _ehlo_reply: Reply
        _helo_reply: Reply
        tls: bool
        authenticated: bool
        _loopback: bool
        _starttls_offered: bool  # a property of Security
        _mechanisms: tuple[str, ...]
        _auth: str | None
        _rcpt_first: str | None
        _rcpt_seen: set[str] | None
        _rcpt_key: str

        def _reply(self, reply: Reply) -> None: ...
        def _reset_transaction(self) -> None: ...
        def _close_now(self) -> None: ...

    def _ehlo(self, arg: bytes, extended: bool = True) -> None:
        try:
            name = parse_helo(arg)
        except ParseError as e:
            self._reply(e.reply)
            return
        # RFC 5321 §4.1.4: EHLO/HELO in a transaction resets it, like RSET.
        if self.state in TRANSACTION_STATES:
            self._events.append(Reset())
        self._reset_transaction()
        self.state = State.READY
        self.esmtp = extended
        self.helo_name = name
        self._out.append((self._ehlo_reply if extended else self._helo_reply).wire)
        self._events.append(Helo(name, extended))

    def _helo(self, arg: bytes) -> None:
        self._ehlo(arg, extended=False)

    def _mail(self, arg: bytes) -> None:
        state = self.state
        if state is not State.READY:
            self._reply(R.NEED_HELO if state is State.GREETED else R.NESTED_MAIL)
            return
        if self.params.auth_required and not self.authenticated:
            # RFC 4954 §6 (530 5.7.0); RFC 3207 §4 when TLS must come first.
            self._reply(R.AUTH_REQUIRED if self.tls or self._loopback else R.STARTTLS_FIRST)
            return
        try:
            path, params = parse_mail_from(arg.decode("utf-8"))
        except UnicodeDecodeError:
            self._reply(R.BAD_CHARACTERS)
            return
        except ParseError as e:
            self._reply(e.reply)
            return
        size = body = auth = None
        utf8 = False
        if params:
            if not self.esmtp:
                self._reply(R.PARAMS_NEED_EHLO)
                return
            try:
                size, body, utf8, auth = self._mail_params(params)
            except ParseError as e:
                self._reply(e.reply)
                return
        if not utf8 and not path.isascii():
            self._reply(R.NON_ASCII_ADDRESS)  # RFC 6531 §3.7.4.1
            return
        dsn = None
        if params and ("RET" in params or "ENVID" in params):
            try:
                dsn = mail_dsn(params)
            except ParseError as e:
                self._reply(e.reply)
                return
        self._events.append(MailFrom(path, params, size, utf8, body, dsn, auth))

    def _mail_params(self, params: dict[str, str | None]) -> tuple[int | None, str | None, bool, str | None]:
        """MAIL FROM's ESMTP parameters: (SIZE, BODY, SMTPUTF8, AUTH=), RET
        and ENVID left to mail_dsn. Raises ParseError with the reply: 501
        5.5.4 for a bad SIZE, BODY, SMTPUTF8 or AUTH value, 555 5.5.4 for
        an unknown parameter, 552 5.3.4 for a SIZE over the limit (RFC
        1870 §6.1)."""
        size = body = auth = None
        utf8 = False
        for key, value in params.items():
            if key == "SIZE":  # RFC 1870 §3
                if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
                    raise ParseError(BAD_SIZE)
                size = int(value)
            elif key == "BODY":  # RFC 6152 §2 (BINARYMIME is not offered)
                body = (value or "").upper()
                if body not in ("7BIT", "8BITMIME"):
                    raise ParseError(BAD_BODY)
            elif key == "SMTPUTF8" and value is None:  # RFC 6531 §3.4
                utf8 = True
            elif key in ("RET", "ENVID"):  # RFC 3461 §4.3, §4.4: checked by mail_dsn
                pass
            elif key == "AUTH" and self._mechanisms:  # RFC 4954 §5, only where AUTH is offered
                auth = decode_auth_param(value)  # ParseError
            else:
                raise ParseError(PARAM_SYNTAX if key == "SMTPUTF8" else R.UNKNOWN_PARAMETER)
        if size is not None and size > self.params.max_message_size:
            raise ParseError(R.MESSAGE_TOO_BIG)  # RFC 1870 §6.1
        return size, body, utf8, auth

    def _rcpt(self, arg: bytes) -> None:
        if self.state is not State.MAIL and self.state is not State.RCPT:
            self._reply(R.NEED_MAIL)
            return
        try:
            path, params = parse_rcpt_to(arg.decode("utf-8"))
        except UnicodeDecodeError:
            self._reply(R.BAD_CHARACTERS)
            return
        except ParseError as e:
            self._reply(e.reply)
            return
        dsn = None
        if params:  # RFC 3461 §4.1, §4.2: NOTIFY and ORCPT are the only RCPT parameters
            if not self.esmtp:
                self._reply(R.PARAMS_NEED_EHLO)
                return
            if not params.keys() <= {"NOTIFY", "ORCPT"}:
                self._reply(R.UNKNOWN_PARAMETER)
                return
            try:
                dsn = rcpt_dsn(params, smtputf8=self.smtputf8)
            except ParseError as e:
                self._reply(e.reply)
                return
        if not self.smtputf8 and not path.isascii():
            self._reply(R.NON_ASCII_ADDRESS)  # RFC 6531 §3.7.4.1
        else:
            first = self._rcpt_first
            if first is not None:  # keys only from the second recipient on
                key = self._rcpt_key = _rcpt_key(path)
                seen = self._rcpt_seen
                if seen is None:
                    seen = self._rcpt_seen = {_rcpt_key(first)}
                if key in seen:  # delivered once, with the first RCPT's DSN parameters: no event
                    self._out.append(R.DUPLICATE_RCPT.wire)
                    return
            if self.recipient_count >= self.params.max_recipients:
                self._reply(R.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
            else:
                self._rcpt_attempts += 1
                self._events.append(RcptTo(path, params, dsn))

    def _data_cmd(self, arg: bytes) -> None:
        state = self.state
        if arg:
            self._reply(R.NO_ARGUMENTS)
        elif state is State.RCPT:
            self._events.append(DataStart())
        elif state is State.MAIL:
            # RFC 5321 §3.3: all RCPTs refused -> 554 "no valid recipients".
            self._reply(R.NO_VALID_RECIPIENTS if self._rcpt_attempts else R.NEED_RCPT)
        else:
            self._reply(R.NEED_HELO if state is State.GREETED else R.NEED_MAIL)

    def _rset(self, arg: bytes) -> None:
        if arg:
            self._reply(R.NO_ARGUMENTS)
            return
        self._reset_transaction()  # RFC 5321 §4.1.1.5
        self._out.append(R.OK.wire)
        self._events.append(Reset())

    def _noop(self, arg: bytes) -> None:
        self._out.append(R.OK.wire)  # RFC 5321 §4.1.1.9: an argument is ignored

    def _vrfy(self, arg: bytes) -> None:
        self._reply(R.CANNOT_VRFY if arg.strip() else R.NEED_ARGUMENT)

    def _help(self, arg: bytes) -> None:
        self._out.append(R.HELP.wire)

    def _expn(self, arg: bytes) -> None:
        self._reply(R.NOT_IMPLEMENTED)  # RFC 5321 §3.5.2: EXPN is optional

    def _starttls(self, arg: bytes) -> None:
        """STARTTLS (RFC 3207 §4): no argument; after EHLO, outside a
        transaction, once per connection, where a certificate exists."""
        state = self.state
        if arg:
            self._reply(R.NO_ARGUMENTS)
        elif not self._starttls_offered:
            self._reply(R.TLS_ACTIVE if self.tls else R.NOT_IMPLEMENTED)
        elif state is State.GREETED:
            self._reply(R.NEED_HELO)
        elif state in TRANSACTION_STATES:
            self._reply(R.TLS_IN_TRANSACTION)
        else:
            self._events.append(StartTls())

    def _auth_cmd(self, arg: bytes) -> None:
        """AUTH mechanism [initial-response] (RFC 4954 §4)."""
        state = self.state
        if state is State.GREETED:
            self._reply(R.NEED_HELO)
        elif self.authenticated:
            self._reply(R.AUTH_ALREADY)  # RFC 4954 §4: 503 after a successful AUTH
        elif state in TRANSACTION_STATES:
            self._reply(R.AUTH_IN_TRANSACTION)  # RFC 4954 §4: 503 in a transaction
        elif not self.params.auth_required or not self.params.auth_mechanisms:
            self._reply(R.AUTH_NOT_ENABLED)
        elif not self._mechanisms:
            self._reply(R.AUTH_NEEDS_TLS)  # RFC 4954 §6: 538, plaintext and not loopback
        else:
            words = arg.split()
            if not words or len(words) > 2:
                self._reply(R.AUTH_SYNTAX)
                return
            mechanism = words[0].upper().decode("ascii", "replace")
            if mechanism not in self._mechanisms:
                needs_tls = mechanism.endswith("-PLUS") and not self.tls and mechanism in self.params.auth_mechanisms
                self._reply(R.AUTH_NEEDS_TLS if needs_tls else R.AUTH_UNKNOWN_MECHANISM)
                return
            initial: bytes | None = None
            if len(words) == 2:
                if words[1] == b"=":  # RFC 4954 §4: a zero-length initial response
                    initial = b""
                else:
                    try:
                        initial = binascii.a2b_base64(words[1], strict_mode=True)
                    except binascii.Error:
                        self._reply(R.AUTH_BAD_BASE64)
                        return
            self._auth = mechanism
            self._events.append(AuthStart(mechanism, initial))

    def _quit(self, arg: bytes) -> None:
        self._out.append(R.BYE.wire)
        self._close_now()
        self._events.append(Quit())


HANDLERS = {
    b"EHLO": Commands._ehlo,
    b"HELO": Commands._helo,
    b"MAIL": Commands._mail,
    b"RCPT": Commands._rcpt,
    b"DATA": Commands._data_cmd,
    b"RSET": Commands._rset,
    b"NOOP": Commands._noop,
    b"QUIT": Commands._quit,
    b"VRFY": Commands._vrfy,
    b"HELP": Commands._help,
    b"EXPN": Commands._expn,
    b"STARTTLS": Commands._starttls,
    b"AUTH": Commands._auth_cmd,
}
