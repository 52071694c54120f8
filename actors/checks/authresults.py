"""Authentication-Results (RFC 8601) through the `authres` package.

    build(authserv_id, *, iprev=None, spf=None, dkim=None, arc=None, dmarc=None) -> bytes
    remove_ours(message, authserv_id) -> tuple[bytes, int]
    authserv_id_of(value) -> str

`build` makes our header field (CRLF-terminated, one result per line) from
the checks' results, in the order they ran: iprev (§2.7.3,
policy.iprev), spf (§2.7.2, smtp.mailfrom or smtp.helo), one dkim per
signature (§2.7.1, header.d/s/a/b; RFC 6008 header.b), arc (RFC 8617
§4.1.3, header.oldest-pass) and dmarc (RFC 7489 §11.2, header.from, the
policy in a comment). A message without checks gets "none" (§2.2).

`remove_ours` deletes, before ours is added, every incoming
Authentication-Results whose authserv-id is ours (§5: such fields could be
forged by the sender; a border MTA MUST remove them). Comparisons of
authserv-ids are case-insensitive (§2.5).
"""

from __future__ import annotations

import re

import authres
import authres.arc
import authres.dmarc
from authres.core import AuthenticationResultProperty

from estafeta.actors.checks.arc import ArcResult
from estafeta.actors.checks.dkim_verify import DkimResult
from estafeta.actors.checks.dmarc import DmarcResult
from estafeta.actors.checks.iprev import IprevResult
from estafeta.actors.checks.message import header_fields, remove_fields
from estafeta.actors.checks.spf import SpfResult

FIELD_NAME = "Authentication-Results"
#: reason= texts are cut to this many characters (the field stays readable
#: and every line under RFC 5322's 998).
MAX_REASON = 100


def _reason(text: str) -> str | None:
    text = " ".join(text.split())
    return text[:MAX_REASON] or None


def _results(
    iprev: IprevResult | None,
    spf: SpfResult | None,
    dkim: DkimResult | None,
    arc: ArcResult | None,
    dmarc: DmarcResult | None,
) -> list:
    out: list = []
    if iprev is not None:
        r = authres.IPRevAuthenticationResult(
            result=iprev.result, policy_iprev=iprev.client_ip, policy_iprev_comment=iprev.name or None
        )
        out.append(r)
    if spf is not None:
        if spf.identity == "mailfrom":
            out.append(authres.SPFAuthenticationResult(result=spf.result, smtp_mailfrom=spf.mail_from))
        else:
            out.append(authres.SPFAuthenticationResult(result=spf.result, smtp_helo=spf.helo or "unknown"))
    if dkim is not None:
        if not dkim.signatures:
            out.append(authres.DKIMAuthenticationResult(result="none"))
        for s in dkim.signatures:
            r = authres.DKIMAuthenticationResult(
                result=s.result,
                result_comment=f"body length limited, l={s.body_length}" if s.body_length is not None else None,
                reason=_reason(s.reason),
                header_d=s.domain or None,
                header_s=s.selector or None,
                header_a=s.algorithm or None,
            )
            if s.header_b:  # RFC 6008 §4
                r.properties.append(AuthenticationResultProperty("header", "b", s.header_b))
            out.append(r)
    if arc is not None:
        r = authres.arc.ARCAuthenticationResult(result=arc.result, reason=_reason(arc.reason))
        if arc.oldest_pass:
            r.header_oldest_pass = str(arc.oldest_pass)
        out.append(r)
    if dmarc is not None:
        out.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=dmarc.result,
                result_comment=dmarc.comment() or None,
                header_from=dmarc.from_domain or None,
            )
        )
    return out


def build(
    authserv_id: str,
    *,
    iprev: IprevResult | None = None,
    spf: SpfResult | None = None,
    dkim: DkimResult | None = None,
    arc: ArcResult | None = None,
    dmarc: DmarcResult | None = None,
) -> bytes:
    """Our Authentication-Results header field, with CRLF line ends, each
    result on a line of its own (folded), e.g.

        Authentication-Results: mx.example.org;
        \tspf=pass smtp.mailfrom=alice@example.net;
        \tdkim=pass header.d=example.net header.s=sel header.a=rsa-sha256 header.b=abcdefgh;
        \tdmarc=pass (p=reject dis=none) header.from=example.net
    """
    results = _results(iprev, spf, dkim, arc, dmarc)
    texts = [str(r) for r in results] or ["none"]
    body = ";\r\n\t".join(texts)
    return f"{FIELD_NAME}: {authserv_id};\r\n\t{body}\r\n".encode("utf-8", "surrogateescape")


def _skip_cfws(value: str, i: int) -> int:
    """Index of the first character after the comments and white space at
    value[i:] (RFC 5322 §3.2.2 CFWS, comments nested, quoted-pairs)."""
    depth = 0
    while i < len(value):
        c = value[i]
        if depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == "(":
            depth = 1
        elif not c.isspace():
            return i
        i += 1
    return i


_TOKEN_END = re.compile(r'[\s;()"]')


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results value (unfolded), in
    lower case: its first token after comments (§2.2); "" if none."""
    i = _skip_cfws(value, 0)
    if value.startswith('"', i):  # a quoted-string authserv-id (RFC 5322 value)
        j = value.find('"', i + 1)
        return value[i + 1 : j if j > 0 else len(value)].lower()
    m = _TOKEN_END.search(value, i)
    return value[i : m.start() if m else len(value)].lower()


def remove_ours(message: bytes, authserv_id: str) -> tuple[bytes, int]:
    """`message` without the Authentication-Results fields that claim
    `authserv_id` (RFC 8601 §5), and how many were removed."""
    ours = authserv_id.lower()
    fields, _ = header_fields(message)
    drop = [f for f in fields if f.name.lower() == "authentication-results" and authserv_id_of(f.value()) == ours]
    return remove_fields(message, drop), len(drop)
