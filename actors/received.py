"""The Received header field a session prepends (RFC 5321 §4.4, RFC 5322
§3.6.7), with what TLS and AUTH add to it:

    Received: from client.example ([192.0.2.1])
        (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))
        (authenticated as alice@example.org)
        by mx.example.org (estafeta) with ESMTPSA id 0001A2B3C4D5E6F7
        for <bob@example.org>; Tue, 1 Dec 2026 10:00:00 +0100

The TLS comment is Postfix's wording; the "with" keyword is RFC 3848's
(ESMTPS, ESMTPA, ESMTPSA) or RFC 6531's (UTF8SMTP...), as the protocol's
`protocol_name` gives it. A plain session's field is exactly the first
version's (no comments), built with one f-string.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from estafeta.actors.tls import TlsInfo


class DateCache:
    """RFC 5322 date-time for Received fields (local time, as Postfix
    writes it), recomputed once a second: formatdate costs ~10 us."""

    def __init__(self):
        self._sec = -1
        self._text = ""

    def now(self) -> str:
        sec = int(time.time())
        if sec != self._sec:
            self._sec, self._text = sec, formatdate(sec, localtime=True)
        return self._text


#: The process's date cache (sessions and the maildrop pickup share it).
dates = DateCache()


def _comment(text: str) -> str:
    """RFC 5322 §3.2.2 ctext: parentheses and backslashes quoted."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def received_header(
    helo: str,
    peer_address: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    date: str,
    recipient: str | None = None,
    tls: TlsInfo | None = None,
    identity: str = "",
) -> bytes:
    """The whole field, CRLF-terminated, UTF-8. `recipient`: the "for"
    clause (one recipient only, as the first version); `tls`: the
    connection's TlsInfo; `identity`: the authenticated user ("" none)."""
    for_clause = f"\r\n\tfor <{recipient}>" if recipient else ""
    extra = ""
    if tls is not None:
        extra += f"\r\n\t({tls.received_comment()})"
    if identity:
        extra += f"\r\n\t(authenticated as {_comment(identity)})"
    return (
        f"Received: from {helo or 'unknown'} ([{peer_address}]){extra}\r\n"
        f"\tby {hostname} (estafeta) with {protocol} id {queue_id}"
        f"{for_clause}; {date}\r\n"
    ).encode()


def local_received_header(
    hostname: str, uid: int, login: str, queue_id: str, date: str, recipient: str | None = None
) -> bytes:
    """The Received field of a local submission (`estafeta sendmail`,
    picked up from the maildrop): no client host, the submitting user
    instead, as Postfix writes it ("by host (Postfix, from userid 1000)"):

        Received: by mx.example.org (estafeta, from userid 1000 (alice))
            with local id 0001A2B3C4D5E6F7
            for <bob@example.org>; Tue, 1 Dec 2026 10:00:00 +0100

    CRLF-terminated, UTF-8; `login` is quoted as comment text."""
    for_clause = f"\r\n\tfor <{recipient}>" if recipient else ""
    who = f"from userid {uid} ({_comment(login)})" if login and login != str(uid) else f"from userid {uid}"
    return (f"Received: by {hostname} (estafeta, {who})\r\n\twith local id {queue_id}{for_clause}; {date}\r\n").encode()
