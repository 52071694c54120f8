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

from estafeta.actors.tls import TlsInfo


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
