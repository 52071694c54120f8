"""DSN messages (actors/dsn.py), read back with Python's `email` package
(policy=default): RFC 3464 multipart/report, RFC 6533 for internationalised
envelopes, RET and the size limit, and what must never get in (a second
line from a remote reply, a bare LF)."""

from __future__ import annotations

import email
import re
from email import policy

import pytest

from estafeta.actors import dsn as dsnmod
from estafeta.actors.dsn import (
    DELAYED,
    DELIVERED,
    FAILED,
    RELAYED,
    OriginalEnvelope,
    RecipientReport,
    build_dsn,
    needs_8bitmime,
    smtp_diagnostic,
)
from estafeta.actors.smtp.dsnparams import OriginalRecipient
from estafeta.actors.smtp.replies import Reply
from estafeta.proto import common_pb2

ARRIVAL = 1796400000.0  # Fri, 04 Dec 2026 16:00:00 +0000
NOW = ARRIVAL + 200
ENV = OriginalEnvelope(
    "00c0ffee00000001", "alice@example.org", ARRIVAL, envid="QQ314159", received_from_mta="client.example.org"
)
MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: lunch\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nShall we?\r\n"
)
BOB_FAILED = RecipientReport(
    "bob@example.net",
    FAILED,
    "5.1.1",
    original_recipient=OriginalRecipient("rfc822", "Bob@example.net"),
    diagnostic_code="smtp; 550 5.1.1 No such user",
    remote_mta="mx.example.net",
    last_attempt=ARRIVAL + 100,
)
CAROL_DELAYED = RecipientReport(
    "carol@example.net",
    DELAYED,
    "4.4.1",
    diagnostic_code="smtp; 451 4.4.1 Try again later",
    remote_mta="mx2.example.net",
    last_attempt=ARRIVAL + 150,
    will_retry_until=ARRIVAL + 5 * 86400,
)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def status_blocks(part) -> list:
    """The message/delivery-status part's blocks (`email` parses each into
    a header-only message): per-message fields, then one per recipient."""
    assert part.get_content_type() == "message/delivery-status"
    return list(part.get_payload())


def check_wire(data: bytes):
    assert not re.search(rb"(?<!\r)\n", data), "a bare LF"
    assert not re.search(rb"\r(?!\n)", data), "a bare CR"
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_failure_dsn_reads_as_rfc_3464():
    data = build_dsn("mx.example.org", ENV, [BOB_FAILED, CAROL_DELAYED], MESSAGE, now=NOW)
    check_wire(data)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    assert msg["To"].addresses[0].addr_spec == "alice@example.org"
    assert b"\r\nTo: <alice@example.org>\r\n" in data
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Date"] == "Fri, 04 Dec 2026 16:03:20 +0000"
    assert msg["Message-ID"].endswith("@mx.example.org>") and "00c0ffee00000001" in msg["Message-ID"]
    text, status, original = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    body = text.get_content()
    assert "could not be delivered" in body and "will not try again" in body
    assert "<bob@example.net>: the server mx.example.net said: 550 5.1.1 No such user" in body
    assert "not been delivered yet" in body and "Wed, 09 Dec 2026 16:00:00 +0000" in body
    assert status.get_content_type() == "message/delivery-status"
    per_message, bob, carol = status_blocks(status)
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Received-From-MTA"] == "dns; client.example.org"
    assert per_message["Arrival-Date"] == "Fri, 04 Dec 2026 16:00:00 +0000"
    assert per_message["X-Estafeta-Queue-ID"] == "00c0ffee00000001"
    assert bob["Original-Recipient"] == "rfc822; Bob@example.net"
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert (bob["Action"], bob["Status"]) == ("failed", "5.1.1")
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Last-Attempt-Date"] == "Fri, 04 Dec 2026 16:01:40 +0000"
    assert bob["Will-Retry-Until"] is None
    assert (carol["Action"], carol["Status"]) == ("delayed", "4.4.1")
    assert carol["Will-Retry-Until"] == "Wed, 09 Dec 2026 16:00:00 +0000"
    assert carol["Original-Recipient"] is None
    # A failure returns the whole message (RET unset, under the limit).
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_payload(0)
    assert inner["Subject"] == "lunch" and inner.get_content().strip() == "Shall we?"
    assert MESSAGE in data
    assert not needs_8bitmime(data)


def test_delay_only_dsn_returns_the_header():
    data = build_dsn("mx.example.org", ENV, [CAROL_DELAYED], MESSAGE, now=NOW)
    msg = parse(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text, status, original = msg.iter_parts()
    assert "could not be delivered" not in text.get_content()
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"Shall we?" not in data and b"Subject: lunch\r\n" in data
    assert status_blocks(status)[1]["Action"] == "delayed"


def test_success_dsn():
    reports = [
        RecipientReport("bob@example.net", DELIVERED, "2.0.0", remote_mta="mx.example.net", last_attempt=NOW),
        RecipientReport("dan@example.net", RELAYED, "2.0.0", remote_mta="old.example.net", last_attempt=NOW),
    ]
    msg = parse(build_dsn("mx.example.org", ENV, reports, MESSAGE, ret="FULL", now=NOW))
    assert msg["Subject"] == "Successful Mail Delivery Report"
    text, status, original = msg.iter_parts()
    assert "was delivered" in text.get_content() and "does not send delivery reports" in text.get_content()
    _, bob, dan = status_blocks(status)
    assert (bob["Action"], bob["Status"], dan["Action"]) == ("delivered", "2.0.0", "relayed")
    assert bob["Diagnostic-Code"] is None
    # RET=FULL concerns failure reports (RFC 3461 §4.3): a success gets the header.
    assert original.get_content_type() == "text/rfc822-headers"


def test_ret_hdrs_and_the_size_limit():
    msg = parse(build_dsn("mx.example.org", ENV, [BOB_FAILED], MESSAGE, ret="HDRS", now=NOW))
    assert list(msg.iter_parts())[2].get_content_type() == "text/rfc822-headers"
    big = MESSAGE + b"x" * 100 + b"\r\n"
    msg = parse(build_dsn("mx.example.org", ENV, [BOB_FAILED], big, full_limit=len(big) - 1, now=NOW))
    text, _, original = msg.iter_parts()
    assert original.get_content_type() == "text/rfc822-headers"
    assert f"{len(big)} bytes" in text.get_content() and "only its header" in text.get_content()
    msg = parse(build_dsn("mx.example.org", ENV, [BOB_FAILED], big, full_limit=len(big), now=NOW))
    assert list(msg.iter_parts())[2].get_content_type() == "message/rfc822"


def test_internationalised_envelope_uses_rfc_6533():
    env = OriginalEnvelope("00c0ffee00000002", "jürgen@bücher.example", ARRIVAL)
    failed = RecipientReport(
        "用户@example.net",
        FAILED,
        "5.1.1",
        original_recipient=OriginalRecipient("utf-8", "用户@example.net"),
        diagnostic_code="smtp; 550 5.1.1 Benutzer unbekannt: Jürgen",
        remote_mta="mx.example.net",
    )
    message = "From: jürgen@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
    data = build_dsn("mx.example.org", env, [failed], message, international=True, now=NOW)
    check_wire(data)
    assert needs_8bitmime(data)
    msg = email.message_from_string(data.decode("utf-8"), policy=policy.default)  # RFC 6532 header fields
    assert msg.get_param("report-type") == "global-delivery-status"
    assert msg["To"].addresses[0].addr_spec == "jürgen@bücher.example"
    text, status, original = parse(data).iter_parts()  # bodies: from the bytes
    assert "<用户@example.net>" in text.get_content()
    assert status.get_content_type() == "message/global-delivery-status"
    assert "Final-Recipient: utf-8; 用户@example.net\r\n".encode() in data
    assert "Original-Recipient: utf-8; 用户@example.net\r\n".encode() in data
    assert "Diagnostic-Code: smtp; 550 5.1.1 Benutzer unbekannt: Jürgen\r\n".encode() in data
    assert original.get_content_type() == "message/global"
    assert message in data
    headers_only = build_dsn("mx.example.org", env, [failed], message, international=True, ret="HDRS", now=NOW)
    assert list(parse(headers_only).iter_parts())[2].get_content_type() == "message/global-headers"


def test_plain_report_keeps_its_fields_ascii():
    failed = RecipientReport(
        "bob@example.net", FAILED, "5.1.1", diagnostic_code="smtp; 550 5.1.1 Benutzer unbekannt: Jürgen"
    )
    data = build_dsn("mx.example.org", ENV, [failed], MESSAGE, now=NOW)
    text, status, _ = parse(data).iter_parts()
    assert status_blocks(status)[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 Benutzer unbekannt: J?rgen"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Benutzer unbekannt: Jürgen" in text.get_content()
    # A non-ASCII address in a plain report: utf-8-addr-xtext (RFC 6533 §3).
    odd = RecipientReport("jöran@example.net", FAILED, "5.1.1")
    data = build_dsn("mx.example.org", ENV, [odd], MESSAGE, now=NOW)
    assert b"Final-Recipient: utf-8; j\\x{F6}ran@example.net\r\n" in data


def test_eight_bit_original_in_a_plain_report():
    message = b"Subject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9\r\n"
    data = build_dsn("mx.example.org", ENV, [BOB_FAILED], message, now=NOW)
    assert needs_8bitmime(data)
    original = list(parse(data).iter_parts())[2]
    assert original["Content-Transfer-Encoding"] == "8bit"
    assert message in data


def test_nothing_can_inject_a_line():
    evil = RecipientReport(
        "bob@example.net",
        FAILED,
        "5.1.1",
        diagnostic_code="smtp; 550 5.1.1 no\r\nX-Injected: yes\r\n\r\nAction: delivered",
        remote_mta="mx.example.net\r\nX-Also: yes",
    )
    data = build_dsn("mx.example.org", ENV, [evil], MESSAGE, now=NOW)
    check_wire(data)
    assert b"\r\nX-Injected" not in data and b"\r\nX-Also" not in data
    _, bob = status_blocks(list(parse(data).iter_parts())[1])
    assert bob["Action"] == "failed"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 no X-Injected: yes Action: delivered"


def test_long_fields_are_folded_and_read_back_whole():
    text = " ".join(f"word{i}" for i in range(60))
    long = RecipientReport("bob@example.net", FAILED, "5.7.1", diagnostic_code=f"smtp; 550 5.7.1 {text}")
    data = build_dsn("mx.example.org", ENV, [long], MESSAGE, now=NOW)
    ours = data.split(b"Content-Type: message/rfc822")[0]
    assert max(len(line) for line in ours.split(b"\r\n")) <= 78
    _, bob = status_blocks(list(parse(data).iter_parts())[1])
    assert bob["Diagnostic-Code"] == f"smtp; 550 5.7.1 {text}"


def test_bare_lf_in_the_original_becomes_crlf():
    data = build_dsn("mx.example.org", ENV, [BOB_FAILED], b"Subject: x\n\nbody\nmore", now=NOW)
    check_wire(data)
    assert b"Subject: x\r\n\r\nbody\r\nmore\r\n" in data


def test_boundary_never_appears_in_the_original(monkeypatch):
    tokens = iter(["aa" * 12, "bb" * 12, "cc" * 4])
    monkeypatch.setattr(dsnmod.secrets, "token_hex", lambda n: next(tokens))
    message = MESSAGE + f"--{int(NOW)}.{'aa' * 12}/estafeta\r\n".encode()
    data = build_dsn("mx.example.org", ENV, [BOB_FAILED], message, now=NOW)
    assert parse(data).get_param("boundary") == f"{int(NOW)}.{'bb' * 12}/estafeta"
    assert len(list(parse(data).iter_parts())) == 3


def test_refusals():
    with pytest.raises(ValueError, match="null reverse-path"):
        build_dsn("mx.example.org", OriginalEnvelope("q", "", ARRIVAL), [BOB_FAILED], MESSAGE)
    with pytest.raises(ValueError):
        build_dsn("mx.example.org", ENV, [], MESSAGE)
    with pytest.raises(ValueError):
        RecipientReport("bob@example.net", "bounced", "5.1.1")
    with pytest.raises(ValueError):
        RecipientReport("bob@example.net", FAILED, "550")


def test_smtp_diagnostic_from_replies():
    assert smtp_diagnostic(Reply(550, "5.1.1", "No such user\nhere")) == "smtp; 550 5.1.1 No such user here"
    assert smtp_diagnostic(common_pb2.Reply(code=451, enhanced="", text="later")) == "smtp; 451 later"


# -- from the queue file -------------------------------------------------------------------


def queued_item(reverse_path="alice@example.org"):
    from estafeta.proto import queue_pb2

    item = queue_pb2.QueueItem(
        id="00c0ffee00000003",
        reverse_path=reverse_path,
        created_at=ARRIVAL,
        helo="client.example.org",
        protocol="esmtp",
        dsn_ret="HDRS",
        dsn_envid="QQ314159",
    )
    bob = item.recipients.add(address="bob@example.net", original_recipient="rfc822;Bob@example.net")
    bob.last_attempt_at = ARRIVAL + 100
    carol = item.recipients.add(address="carol@example.net")
    return item, bob, carol


def test_a_queued_item_and_its_reports():
    from estafeta.actors.bounces import Report

    item, bob, carol = queued_item()
    reports = [
        Report(
            bob, FAILED, common_pb2.Reply(code=550, enhanced="5.1.1", text="No such user"), remote_mta="mx.example.net"
        ),
        Report(carol, FAILED, common_pb2.Reply(code=556, enhanced="5.1.10", text="null MX")),
    ]
    data = dsnmod.build_dsn_for_item(
        reporting_mta="mx.example.org", item=item, to="alice@example.org", reports=reports, original=MESSAGE, now=NOW
    )
    msg = parse(data)
    assert msg["To"].addresses[0].addr_spec == "alice@example.org"
    _, status, original = msg.iter_parts()
    per_message, b, c = status_blocks(status)
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Received-From-MTA"] == "dns; client.example.org"
    assert per_message["X-Estafeta-Queue-ID"] == "00c0ffee00000003"
    assert b["Original-Recipient"] == "rfc822; Bob@example.net"
    assert b["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert b["Remote-MTA"] == "dns; mx.example.net"
    assert b["Last-Attempt-Date"] == "Fri, 04 Dec 2026 16:01:40 +0000"
    assert (c["Status"], c["Diagnostic-Code"], c["Remote-MTA"]) == ("5.1.10", "X-Estafeta; 556 5.1.10 null MX", None)
    assert c["Last-Attempt-Date"] is None
    assert original.get_content_type() == "text/rfc822-headers"  # RET=HDRS from the queue file


def test_a_double_bounce_goes_to_the_postmaster():
    from estafeta.actors.bounces import Report

    item, bob, _ = queued_item(reverse_path="")
    reports = [Report(bob, FAILED, common_pb2.Reply(code=550, enhanced="5.1.1", text="No such user"))]
    data = dsnmod.build_dsn_for_item(
        reporting_mta="mx.example.org",
        item=item,
        to="postmaster@example.org",
        reports=reports,
        original=MESSAGE,
        now=NOW,
    )
    msg = parse(data)
    assert msg["To"].addresses[0].addr_spec == "postmaster@example.org"
    assert "copy is for the postmaster" in next(msg.iter_parts()).get_content()
    with pytest.raises(ValueError):
        build_dsn("mx.example.org", OriginalEnvelope("q", "", ARRIVAL), [BOB_FAILED], MESSAGE, to="")
