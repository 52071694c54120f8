"""Delivery status notifications: `build_dsn` makes the message a sender
gets back when mail to some recipients failed, is delayed, or (when
NOTIFY=SUCCESS asked for it) was delivered or relayed.

The format is RFC 3464's: a multipart/report (RFC 6522) with
report-type=delivery-status of three parts —

1. text/plain for a person: what happened to which recipient, and why;
2. message/delivery-status: the per-message fields (Reporting-MTA,
   Original-Envelope-Id, Received-From-MTA, Arrival-Date, and the
   extension field X-Estafeta-Queue-ID) and one block per recipient
   (Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
   Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until);
3. the original message (message/rfc822) when a failure is reported,
   RET is not HDRS and the message is at most `full_limit` bytes; its
   header only (text/rfc822-headers, RFC 6522 §4) otherwise (RFC 3461
   §4.3: RET concerns failure reports).

For an internationalised envelope (SMTPUTF8, RFC 6531) the report is
RFC 6533's: report-type=global-delivery-status, message/global-delivery-
status (UTF-8 allowed; a non-ASCII address is "utf-8; <address>"),
message/global or message/global-headers; the DSN must then be sent with
SMTPUTF8.

The header (RFC 5322): From "Mail Delivery System
<MAILER-DAEMON@reporting-mta>" as Postfix writes it; To the reverse-path;
a Subject by the gravest action (Postfix's wording); Date; a Message-ID;
Auto-Submitted: auto-replied (RFC 3834 §5: a reply made by software, so
no auto-responder answers it). A DSN is sent with the null reverse-path
MAIL FROM:<> (RFC 3461 §6.2, RFC 5321 §4.5.5), which is the caller's job,
as is never making one for a message whose own reverse-path is null:
`build_dsn` refuses that (ValueError).

Every line ends with CRLF, and no line of the report's own making is
longer than 78 characters when it can be folded (fields are folded at
spaces). CR, LF and other controls in any value (a remote server's reply
text, an address) become spaces: nothing can inject a field.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import secrets
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import quoprimime
from typing import Protocol

from estafeta.actors.smtp.dsnparams import OriginalRecipient, utf8_address_encode
from estafeta.proto import common_pb2, queue_pb2

FAILED = "failed"
DELAYED = "delayed"
DELIVERED = "delivered"
RELAYED = "relayed"
EXPANDED = "expanded"
#: RFC 3464 §2.3.3 action-values.
ACTIONS = (FAILED, DELAYED, DELIVERED, RELAYED, EXPANDED)
#: Largest original message returned whole, bytes; a larger one gets its
#: header only. Postfix's bounce_size_limit.
FULL_LIMIT = 50000
#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters.
_FOLD_AT = 78
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_LONE_LF = re.compile(rb"(?<!\r)\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")

#: Subject per gravest action (Postfix's bounce templates' wording).
_SUBJECTS = {
    FAILED: "Undelivered Mail Returned to Sender",
    DELAYED: "Delayed Mail (still being retried)",
    DELIVERED: "Successful Mail Delivery Report",
    RELAYED: "Successful Mail Delivery Report",
    EXPANDED: "Successful Mail Delivery Report",
}


class ReplyLike(Protocol):
    """actors/smtp/replies.Reply or proto common_pb2.Reply."""

    code: int
    enhanced: str
    text: str


def smtp_diagnostic(reply: ReplyLike) -> str:
    """A Diagnostic-Code value (RFC 3464 §2.3.6, diagnostic-type "smtp")
    from an SMTP reply: "smtp; 550 5.1.1 No such user", the lines of a
    multi-line reply joined by spaces."""
    text = " ".join(line.strip() for line in reply.text.splitlines() if line.strip())
    parts = [str(reply.code), reply.enhanced, text]
    return "smtp; " + " ".join(p for p in parts if p)


@dataclass(frozen=True)
class OriginalEnvelope:
    """What the DSN says about the message it reports on.

    queue_id: its queue id (X-Estafeta-Queue-ID, and in the Message-ID);
    reverse_path: its MAIL FROM, who gets the DSN (never "": no DSN for a
    DSN); arrival: Unix time it was accepted (Arrival-Date); envid: the
    ENVID it came with, decoded (Original-Envelope-Id, RFC 3461 §4.4);
    received_from_mta: the client's name, e.g. its EHLO name
    (Received-From-MTA: dns; <name>), or "".
    """

    queue_id: str
    reverse_path: str
    arrival: float
    envid: str | None = None
    received_from_mta: str = ""


@dataclass(frozen=True)
class RecipientReport:
    """One recipient's entry (RFC 3464 §2.3).

    final_recipient: the address delivery was attempted to (the RCPT TO);
    action: failed, delayed, delivered, relayed or expanded; status: the
    enhanced status code, e.g. "5.1.1" (RFC 3463); original_recipient: from
    ORCPT (RFC 3461 §4.2), or None; diagnostic_code: e.g.
    "smtp; 550 5.1.1 No such user" (see smtp_diagnostic), or "";
    remote_mta: the server that gave it, a host name (Remote-MTA: dns;
    <name>), or ""; last_attempt: Unix time of the last attempt, or None;
    will_retry_until: Unix time the mail system gives up (delayed only), or
    None. Raises ValueError for an unknown action or a malformed status.
    """

    final_recipient: str
    action: str
    status: str
    original_recipient: OriginalRecipient | None = None
    diagnostic_code: str = ""
    remote_mta: str = ""
    last_attempt: float | None = None
    will_retry_until: float | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"DSN action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"DSN status {self.status!r} is not an enhanced status code (RFC 3463)")


def dsn_date(t: float) -> str:
    """An RFC 5322 date-time in UTC: "Fri, 04 Dec 2026 16:08:00 +0000"."""
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(t, datetime.UTC))


def needs_8bitmime(data: bytes) -> bool:
    """Whether a message (a DSN) has 8-bit octets, so must be sent with
    BODY=8BITMIME (RFC 6152)."""
    return not data.isascii()


# ---------------------------------------------------------------- fields
def _clean(value: str, international: bool) -> str:
    """One line, no controls; non-ASCII made "?" unless `international`."""
    value = _CONTROLS.sub(" ", value).strip()
    if not international and not value.isascii():
        value = "".join(c if c.isascii() else "?" for c in value)
    return value


def _fold(name: str, value: str) -> str:
    """ "Name: value" CRLF, folded at spaces before _FOLD_AT characters
    where there is a space to fold at (RFC 5322 §2.2.3)."""
    line = f"{name}: "
    lines = []
    for word in value.split(" "):
        if len(line) + len(word) > _FOLD_AT and line.strip() and not line.endswith(": "):
            lines.append(line.rstrip(" "))
            line = " "
        line += word + " "
    lines.append(line.rstrip(" "))
    return "\r\n".join(lines) + "\r\n"


def _address_field(address: str, international: bool) -> str:
    """An address-type; address value (RFC 3464 §2.3.2): rfc822 for an
    ASCII address, utf-8 for another (RFC 6533 §3: as it is in a global
    report, as utf-8-addr-xtext in a plain one)."""
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {address if international else utf8_address_encode(address)}"


def _original_field(orcpt: OriginalRecipient, international: bool) -> str:
    """Original-Recipient's value (RFC 3464 §2.3.1): the ORCPT's type and
    address; a non-ASCII address as _address_field writes it."""
    if orcpt.address.isascii():
        return f"{orcpt.addr_type}; {orcpt.address}"
    return _address_field(orcpt.address, international)


def _status_part(
    reporting_mta: str, envelope: OriginalEnvelope, recipients: Sequence[RecipientReport], intl: bool
) -> str:
    """The body of the message/(global-)delivery-status part."""
    f = []
    f.append(_fold("Reporting-MTA", f"dns; {_clean(reporting_mta, intl)}"))
    f.append(_fold("X-Estafeta-Queue-ID", _clean(envelope.queue_id, False)))
    if envelope.envid is not None:
        f.append(_fold("Original-Envelope-Id", _clean(envelope.envid, False)))
    if envelope.received_from_mta:
        f.append(_fold("Received-From-MTA", f"dns; {_clean(envelope.received_from_mta, intl)}"))
    f.append(_fold("Arrival-Date", dsn_date(envelope.arrival)))
    for r in recipients:
        f.append("\r\n")
        if r.original_recipient is not None:
            orcpt = OriginalRecipient(r.original_recipient.addr_type, _clean(r.original_recipient.address, True))
            f.append(_fold("Original-Recipient", _original_field(orcpt, intl)))
        f.append(_fold("Final-Recipient", _address_field(_clean(r.final_recipient, True), intl)))
        f.append(_fold("Action", r.action))
        f.append(_fold("Status", r.status))
        if r.remote_mta:
            f.append(_fold("Remote-MTA", f"dns; {_clean(r.remote_mta, intl)}"))
        if r.diagnostic_code:
            f.append(_fold("Diagnostic-Code", _clean(r.diagnostic_code, intl)))
        if r.last_attempt is not None:
            f.append(_fold("Last-Attempt-Date", dsn_date(r.last_attempt)))
        if r.will_retry_until is not None and r.action == DELAYED:
            f.append(_fold("Will-Retry-Until", dsn_date(r.will_retry_until)))
    return "".join(f)


# ---------------------------------------------------------------- the text
def _why(r: RecipientReport) -> str:
    """One recipient's lines in the human-readable part: its address and
    what the remote server said (or the status), wrapped at 78."""
    said = r.diagnostic_code.partition(";")[2] if ";" in r.diagnostic_code else r.diagnostic_code
    said = _clean(said, True)
    who = f"<{_clean(r.final_recipient, True)}>"
    if r.remote_mta and said:
        line = f"{who}: the server {_clean(r.remote_mta, True)} said: {said}"
    else:
        line = f"{who}: {said or 'status ' + r.status}"
    return textwrap.fill(line, _FOLD_AT, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)


def _human_text(reporting_mta: str, recipients: Sequence[RecipientReport], note: str) -> str:
    by_action: dict[str, list[RecipientReport]] = {}
    for r in recipients:
        by_action.setdefault(r.action, []).append(r)
    out = [f"This is the mail system at {reporting_mta}.", ""]
    if FAILED in by_action:
        out += [
            "Your message could not be delivered to the recipients below; the mail",
            "system has given up and will not try again.",
            "",
            *(_why(r) for r in by_action[FAILED]),
            "",
        ]
    if DELAYED in by_action:
        until = [r.will_retry_until for r in by_action[DELAYED] if r.will_retry_until is not None]
        until_text = f" until {dsn_date(max(until))}" if until else ""
        out += [
            "Your message has not been delivered yet to the recipients below.",
            f"The mail system will keep trying{until_text};",
            "you do not need to send it again.",
            "",
            *(_why(r) for r in by_action[DELAYED]),
            "",
        ]
    if DELIVERED in by_action:
        out += [
            "Your message was delivered to the recipients below.",
            "",
            *(f"<{_clean(r.final_recipient, True)}>" for r in by_action[DELIVERED]),
            "",
        ]
    passed_on = by_action.get(RELAYED, []) + by_action.get(EXPANDED, [])
    if passed_on:
        out += [
            "Your message was passed on for the recipients below to a mail system",
            "that does not send delivery reports: you will get none from there.",
            "",
            *(f"<{_clean(r.final_recipient, True)}>" for r in passed_on),
            "",
        ]
    out += [note]
    return ("\n".join(out) + "\n").replace("\n", "\r\n")


def _text_part(text: str, international: bool) -> bytes:
    if text.isascii():
        head = "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
        body = text
    elif international:
        head = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        body = text
    else:
        head = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        # quoprimime encodes code points below 256 as octets: give it UTF-8's.
        body = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), eol="\r\n")
        if not body.endswith("\r\n"):
            body += "\r\n"
    return f"Content-Description: Notification\r\n{head}\r\n{body}".encode()


# ---------------------------------------------------------------- the whole
def _original(message: bytes, full: bool) -> bytes:
    """The message (or its header) with CRLF line ends, ending in CRLF."""
    message = _LONE_LF.sub(b"\r\n", message)
    if not full:
        m = _HEADER_END.search(message)
        message = message[: m.start()] + b"\r\n" if m else message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def _returned(message: bytes, failed: bool, ret: str | None, full_limit: int, intl: bool) -> tuple[bytes, bytes, str]:
    """(the third part's head, its body, the sentence about it for the
    text part): the whole message for a failure unless RET=HDRS or it is
    over full_limit bytes (RFC 3461 §4.3), its header otherwise."""
    full = failed and ret != "HDRS" and len(message) <= full_limit
    if full:
        note = "The message is attached."
        kind = "message/global" if intl else "message/rfc822"
    else:
        note = "The message's header is attached."
        if failed and ret != "HDRS":
            note = (
                f"The message is {len(message)} bytes, more than the {full_limit} returned whole:\n"
                "only its header is attached."
            )
        kind = "message/global-headers" if intl else "text/rfc822-headers"
    body = _original(message, full)
    encoding = "8bit" if intl or not body.isascii() else "7bit"
    head = (
        f"Content-Description: Undelivered message{'' if full else ' header'}\r\n"
        f"Content-Type: {kind}\r\nContent-Transfer-Encoding: {encoding}\r\n"
    )
    return head.encode(), body, note


def _boundary(now: float, original: bytes) -> str:
    """A MIME boundary found nowhere in the returned `original` (RFC 2046
    §5.1.1: at most 70 characters)."""
    boundary = f"{int(now)}.{secrets.token_hex(12)}/estafeta"
    while f"--{boundary}".encode() in original:  # bounded: 96 random bits each time
        boundary = f"{int(now)}.{secrets.token_hex(12)}/estafeta"
    return boundary


def _head(
    reporting_mta: str, to: str, queue_id: str, gravest: str, now: float, intl: bool, report_type: str, boundary: str
) -> bytes:
    """The DSN's header section up to its Content-Type (RFC 6522 §3:
    multipart/report of `report_type`), without the blank line; `gravest`:
    the action the Subject names."""
    mta = _clean(reporting_mta, False)
    return "".join(
        [
            _fold("From", f"Mail Delivery System <MAILER-DAEMON@{mta}>"),
            _fold("To", f"<{_clean(to, intl)}>"),
            _fold("Subject", _SUBJECTS[gravest]),
            _fold("Date", dsn_date(now)),
            _fold("Message-ID", f"<{int(now)}.{_clean(queue_id, False)}.{secrets.token_hex(4)}@{mta}>"),
            _fold("Auto-Submitted", "auto-replied"),
            "MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/report; report-type={report_type};\r\n\tboundary="{boundary}"\r\n',
        ]
    ).encode("utf-8")


def build_dsn(
    reporting_mta: str,
    envelope: OriginalEnvelope,
    recipients: Sequence[RecipientReport],
    message: bytes,
    *,
    to: str | None = None,
    ret: str | None = None,
    international: bool = False,
    full_limit: int = FULL_LIMIT,
    now: float | None = None,
) -> bytes:
    """The DSN message (see the module docstring), bytes with CRLF line
    ends, ready to queue from MAIL FROM:<> to `to`.

    reporting_mta: this server's host name; recipients: the entries to
    report, at least one; message: the original message as queued; to:
    who gets the report, default envelope.reverse_path (another address,
    e.g. the postmaster's, for a message from <>: a double bounce, which
    the text then explains); ret: "FULL", "HDRS" or None (as MAIL RET=
    gave it); international: the original envelope was SMTPUTF8 (then the
    RFC 6533 forms, sent with SMTPUTF8); full_limit: largest message
    returned whole, bytes; now: Unix time of the report (Date). Raises
    ValueError when there is nobody to send it to (a null reverse-path and
    no `to`: no DSN of a DSN, RFC 3461 §6.2) or no recipient.
    """
    to = envelope.reverse_path if to is None else to
    if not to:
        raise ValueError("no DSN for a message with the null reverse-path <> (RFC 3461 §6.2)")
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    now = time.time() if now is None else now
    intl = international
    failed = any(r.action == FAILED for r in recipients)
    original_head, original, note = _returned(message, failed, ret, full_limit, intl)
    status = _status_part(reporting_mta, envelope, recipients, intl).encode()
    if not envelope.reverse_path:
        note = (
            "This copy is for the postmaster: the message came from the null\n"
            "reverse-path <> (it was itself a delivery report), so no report can\n"
            "go back to its sender.\n\n" + note
        )
    text = _text_part(_human_text(_clean(reporting_mta, intl), recipients, note), intl)
    report_type = "global-delivery-status" if intl else "delivery-status"
    boundary = _boundary(now, original)
    gravest = next(a for a in ACTIONS if any(r.action == a for r in recipients))
    head = _head(reporting_mta, to, envelope.queue_id, gravest, now, intl, report_type, boundary)
    if needs_8bitmime(text + status + original):
        head += b"Content-Transfer-Encoding: 8bit\r\n"
    sep = f"\r\n--{boundary}\r\n".encode()
    status_head = f"Content-Description: Delivery report\r\nContent-Type: message/{report_type}\r\n"
    if intl:
        status_head += "Content-Transfer-Encoding: 8bit\r\n"
    return b"".join(
        [
            head,
            b"\r\nThis is a MIME-encapsulated message.\r\n",
            sep[2:],
            text,
            sep,
            status_head.encode(),
            b"\r\n",
            status,
            sep,
            original_head,
            b"\r\n",
            original,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


# ---------------------------------------------------------------- the queue's side
class QueueReport(Protocol):
    """What the queue knows of one recipient to report (actors/bounces.py's
    Report): its queue file entry, the action, the reply that decided it,
    the remote host that gave it ("" for ours) and, for a delay, until
    when we retry (Unix time, 0 for none)."""

    @property
    def recipient(self) -> queue_pb2.Recipient: ...
    @property
    def action(self) -> str: ...
    @property
    def reply(self) -> common_pb2.Reply: ...
    @property
    def remote_mta(self) -> str: ...
    @property
    def will_retry_until(self) -> float: ...


#: Status when a reply has no enhanced code (RFC 3463 X.0.0).
_DEFAULT_STATUS = {FAILED: "5.0.0", DELAYED: "4.0.0"}


def _orcpt(text: str) -> OriginalRecipient | None:
    """A Recipient.original_recipient ("rfc822;bob@example.org", as
    str(OriginalRecipient)) back as an OriginalRecipient."""
    if not text:
        return None
    addr_type, semi, address = text.partition(";")
    return OriginalRecipient(addr_type.strip().lower(), address.strip()) if semi else OriginalRecipient("rfc822", text)


def recipient_report(r: QueueReport) -> RecipientReport:
    """One queue report as a RecipientReport: Status the reply's enhanced
    code (X.0.0 of the action's class without one); Diagnostic-Code
    "smtp; <reply>" for a remote server's reply, "X-Estafeta; <reply>" for
    ours (as Postfix writes X-Postfix)."""
    reply = r.reply
    status = reply.enhanced or _DEFAULT_STATUS.get(r.action, "2.0.0")
    diagnostic = ""
    if reply.code:
        diagnostic = smtp_diagnostic(reply)
        if not r.remote_mta:
            diagnostic = "X-Estafeta; " + diagnostic.partition("; ")[2]
    return RecipientReport(
        final_recipient=r.recipient.address,
        action=r.action,
        status=status,
        original_recipient=_orcpt(r.recipient.original_recipient),
        diagnostic_code=diagnostic,
        remote_mta=r.remote_mta,
        last_attempt=r.recipient.last_attempt_at or None,
        will_retry_until=(r.will_retry_until or None) if r.action == DELAYED else None,
    )


def build_dsn_for_item(
    *,
    reporting_mta: str,
    item: queue_pb2.QueueItem,
    to: str,
    reports: Sequence[QueueReport],
    original: bytes,
    max_full_bytes: int = FULL_LIMIT,
    now: float | None = None,
) -> bytes:
    """build_dsn for a queued message: its envelope from the queue file
    (id, reverse-path, arrival, ENVID, RET, SMTPUTF8, the client's EHLO
    name as Received-From-MTA), `reports` as recipient_report makes them,
    sent to `to` (the reverse-path, or the postmaster for a double
    bounce). Raises ValueError as build_dsn does."""
    helo = item.helo if item.protocol != "local" else ""
    envelope = OriginalEnvelope(
        queue_id=item.id,
        reverse_path=item.reverse_path,
        arrival=item.created_at,
        envid=item.dsn_envid or None,
        received_from_mta=helo,
    )
    return build_dsn(
        reporting_mta,
        envelope,
        [recipient_report(r) for r in reports],
        original,
        to=to,
        ret=item.dsn_ret or None,
        international=item.smtputf8,
        full_limit=max_full_bytes,
        now=now,
    )
