"""What the SMTP client sends in one mail transaction, and the decisions
it makes before sending anything.

- `Envelope` / `Recipient`: the reverse-path, the recipients with their
  DSN parameters (RFC 3461), the message's size and its MAIL parameters
  as they were received.
- `refusal()`: the transaction cannot go to this server as it is
  (SIZE, 8BITMIME, SMTPUTF8): the permanent reply every recipient gets.
- `mail_command()` / `rcpt_command()`: the command lines, with the
  parameters the server's extensions allow.
- `DotStuffer`: dot-stuffing of the content in bulk (RFC 5321 §4.5.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from estafeta.actors.smtp.clientreplies import Extensions
from estafeta.actors.smtp.dsnparams import (
    MailDsn,
    OriginalRecipient,
    RcptDsn,
    format_mail_dsn,
    format_notify,
    format_rcpt_dsn,
)
from estafeta.actors.smtp.replies import Reply

# C0 controls, SP and DEL never belong in an address or a parameter we send
# (a CR or LF would inject a command); quoted local parts keep their quotes,
# and a quoted space is the one exception (RFC 5321 §4.1.2 qtextSMTP).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One forward-path of the transaction.

    address: the mailbox as queued, without angle brackets (RFC 5321
    §4.1.2), e.g. "bob@example.net" or '"b o b"@example.net';
    notify: RFC 3461 §4.1 NOTIFY values: () when none was given, ("NEVER",),
    or a subset of "SUCCESS", "FAILURE", "DELAY";
    orcpt: RFC 3461 §4.2 original recipient, decoded (not xtext):
    "addr-type;address", e.g. "rfc822;bob@example.net"; "" for none."""

    address: str
    notify: tuple[str, ...] = ()
    orcpt: str = ""

    def __post_init__(self):
        if not self.address or _CONTROL.search(self.address):
            raise ValueError(f"bad recipient address {self.address!r}")
        if self.notify:
            format_notify(self.notify)  # ValueError unless NEVER or some of SUCCESS, FAILURE, DELAY
        if self.orcpt and (";" not in self.orcpt or _CONTROL.search(self.orcpt)):
            raise ValueError(f"ORCPT must be 'addr-type;address': {self.orcpt!r}")

    def dsn(self) -> RcptDsn:
        """The DSN parameters as actors/smtp/dsnparams.py has them."""
        orcpt = None
        if self.orcpt:
            kind, _, address = self.orcpt.partition(";")
            orcpt = OriginalRecipient(kind.lower(), address)
        return RcptDsn(frozenset(v.upper() for v in self.notify) or None, orcpt)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One mail transaction as queued (RFC 5321 §3.3).

    reverse_path: "" for the null reverse-path <> (§4.5.5);
    recipients: at least one;
    size: octets of the message as queued (RFC 1870 SIZE= is this);
    body: "" (not declared), "7BIT" or "8BITMIME" (RFC 6152 BODY=);
    smtputf8: the SMTPUTF8 parameter was given when it was received (RFC 6531);
    ret: "", "FULL" or "HDRS" (RFC 3461 §4.3); envid: the decoded ENVID
    (RFC 3461 §4.4), "" for none.
    Raises ValueError for a value that cannot go on the wire (a control
    character in an address, an unknown BODY or RET, no recipient)."""

    reverse_path: str
    recipients: tuple[Recipient, ...]
    size: int
    body: str = ""
    smtputf8: bool = False
    ret: str = ""
    envid: str = ""

    def __post_init__(self):
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if _CONTROL.search(self.reverse_path) or _CONTROL.search(self.envid):
            raise ValueError(f"bad reverse-path or ENVID {self.reverse_path!r} {self.envid!r}")
        if self.body not in ("", "7BIT", "8BITMIME"):
            raise ValueError(f"BODY must be 7BIT or 8BITMIME, not {self.body!r}")
        if self.ret not in ("", "FULL", "HDRS"):
            raise ValueError(f"RET must be FULL or HDRS, not {self.ret!r}")
        if self.size < 0:
            raise ValueError("size must not be negative")

    @property
    def non_ascii_addresses(self) -> bool:
        """True if the reverse-path or a forward-path is not ASCII."""
        return not self.reverse_path.isascii() or any(not r.address.isascii() for r in self.recipients)


# ---------------------------------------------------------------- decisions
def refusal(env: Envelope, ext: Extensions, peer: str, headers_non_ascii: bool) -> Reply | None:
    """The permanent reply every recipient gets when the transaction cannot
    be sent to this server as it is; None when it can. In order:

    - SIZE (RFC 1870 §4, §6): the server's limit is below the message's
      size: 552 5.3.4, nothing sent (the server would refuse it anyway).
    - 8BITMIME (RFC 6152 §3): a message declared BODY=8BITMIME must not be
      sent as is to a server that does not offer 8BITMIME, and estafeta does
      not convert to 7 bit (MIME downgrading): 554 5.6.3, "conversion
      required but not supported" (RFC 3463). A message with 8-bit octets
      that was not declared is sent as is, as it came (Postfix does the same
      unless told to convert).
    - SMTPUTF8 (RFC 6531 §3.2): a transaction that needs it — a non-ASCII
      reverse-path or forward-path, or SMTPUTF8 given on the way in and a
      non-ASCII header section (`headers_non_ascii`, which the driver reads
      from the message) — cannot go to a server without it: 553 5.6.7 (the
      code Postfix uses for both). Otherwise it is sent without the
      parameter.

    `peer` names the server in the reply text ("mx.example.net[192.0.2.1]")."""
    limit = ext.size
    if limit and env.size > limit:
        return Reply(552, "5.3.4", f"message size {env.size} exceeds the size limit {limit} of {peer}")
    if env.body == "8BITMIME" and not ext.eightbitmime:
        return Reply(
            554,
            "5.6.3",
            f"{peer} does not support 8BITMIME and the message is declared 8-bit; conversion to 7 bit is not done",
        )
    if not ext.smtputf8:
        if env.non_ascii_addresses:
            return Reply(553, "5.6.7", f"{peer} does not support SMTPUTF8, needed for a non-ASCII address")
        if env.smtputf8 and headers_non_ascii:
            return Reply(553, "5.6.7", f"{peer} does not support SMTPUTF8, needed for non-ASCII header fields")
    return None


# ---------------------------------------------------------------- commands
def uses_smtputf8(env: Envelope, ext: Extensions) -> bool:
    """MAIL carries SMTPUTF8 (RFC 6531 §3.4): the server offers it and the
    transaction asked for it or needs it."""
    return ext.smtputf8 and (env.smtputf8 or env.non_ascii_addresses)


def mail_command(env: Envelope, ext: Extensions) -> str:
    """The MAIL line (no CRLF), RFC 5321 §4.1.1.2, with SIZE= (RFC 1870)
    when SIZE is offered, BODY= (RFC 6152) as received when 8BITMIME is
    offered, SMTPUTF8 (RFC 6531) per uses_smtputf8(), RET= and ENVID=
    (RFC 3461 §4.3-4.4, written by actors/smtp/dsnparams.py) only when DSN
    is offered. Call refusal() first."""
    parts = [f"MAIL FROM:<{env.reverse_path}>"]
    if ext.size is not None:
        parts.append(f"SIZE={env.size}")
    if env.body and ext.eightbitmime:
        parts.append(f"BODY={env.body}")
    if uses_smtputf8(env, ext):
        parts.append("SMTPUTF8")
    if ext.dsn:
        parts += format_mail_dsn(MailDsn(env.ret or None, env.envid or None))
    return " ".join(parts)


def rcpt_command(rcpt: Recipient, ext: Extensions, *, smtputf8: bool = False) -> str:
    """The RCPT line (no CRLF), RFC 5321 §4.1.1.3, with NOTIFY= and ORCPT=
    (RFC 3461 §4.1-4.2; a non-ASCII ORCPT as RFC 6533 "utf-8", raw UTF-8 only
    when the transaction is `smtputf8`) only when the server offers DSN."""
    line = f"RCPT TO:<{rcpt.address}>"
    if ext.dsn and (rcpt.notify or rcpt.orcpt):
        line = " ".join([line, *format_rcpt_dsn(rcpt.dsn(), smtputf8=smtputf8)])
    return line


# ---------------------------------------------------------------- content
class DotStuffer:
    """Dot-stuffing of the message content for DATA (RFC 5321 §4.5.2: a
    line that begins with "." gets one more), chunk by chunk, in bulk: one
    bytes.replace of b"\\r\\n." per chunk, and a look at the two octets
    before the chunk for a line start that straddles chunks.

    Only lines after a CRLF (or the very first line) are stuffed: the
    server unstuffs exactly those, so a dot after a bare LF stays as is.
    end() is the terminator: b".\\r\\n" after a content that ends with CRLF,
    b"\\r\\n.\\r\\n" otherwise (the content then gets its missing line end)."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b"\r\n"  # the last two octets sent (the start counts as a line start)

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = chunk.replace(b"\r\n.", b"\r\n..")
        tail = self._tail
        if chunk[0] == 0x2E and tail == b"\r\n":  # "." at a line start from the previous chunk
            out = b"." + out
        elif chunk[:2] == b"\n." and tail[-1:] == b"\r":  # the CRLF itself straddles
            out = b"\n." + out[1:]
        self._tail = chunk[-2:] if len(chunk) > 1 else tail[-1:] + chunk
        return out

    def end(self) -> bytes:
        return b".\r\n" if self._tail == b"\r\n" else b"\r\n.\r\n"
