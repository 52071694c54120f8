"""actors/recipients.py: what final recipients become in the queue file."""

from __future__ import annotations

from estafeta.actors.aliases import FinalRecipient
from estafeta.actors.recipients import queue_recipients
from estafeta.actors.smtp.dsnparams import RcptDsn, parse_notify, parse_orcpt
from estafeta.actors.smtp.replies import Reply
from estafeta.proto import queue_pb2

UNKNOWN = Reply(550, "5.1.1", "No such user here")


def test_each_kind():
    final = [
        FinalRecipient("mailbox", "alice@example.org", "team@example.org", mailbox="example.org/alice"),
        FinalRecipient("remote", "friend@remote.test", "team@example.org"),
        FinalRecipient("pipe", "team@example.org", "team@example.org", command="/usr/bin/handler --work"),
        FinalRecipient("unknown", "nobody@example.org", "team@example.org", reply=UNKNOWN),
    ]
    mailbox, remote, pipe, unknown = queue_recipients(final, "team@example.org", now=1000.0)
    assert (mailbox.address, mailbox.mailbox, mailbox.status) == (
        "alice@example.org",
        "example.org/alice",
        queue_pb2.PENDING,
    )
    assert (remote.address, remote.mailbox, remote.pipe_command) == ("friend@remote.test", "", "")
    assert (pipe.address, pipe.pipe_command) == ("team@example.org", "/usr/bin/handler --work")
    assert (unknown.status, unknown.last_error, unknown.dsn_due, unknown.done_at) == (
        queue_pb2.FAILED,
        "550 5.1.1 No such user here",
        "failed",  # the item sends the failure DSN at its first attempt
        1000.0,
    )
    # ORCPT: the address given at RCPT where the final one differs (RFC 3461 §4.2).
    assert [r.original_recipient for r in (mailbox, remote, pipe, unknown)] == [
        "rfc822;team@example.org",
        "rfc822;team@example.org",
        "",
        "rfc822;team@example.org",
    ]


def test_the_clients_notify_and_orcpt_win():
    final = [FinalRecipient("unknown", "nobody@example.org", "Team@example.org", reply=UNKNOWN)]
    (r,) = queue_recipients(final, "Team@example.org", RcptDsn(parse_notify("NEVER"), parse_orcpt("rfc822;x@y.test")))
    assert r.dsn_due == "" and list(r.notify) == ["NEVER"] and r.original_recipient == "rfc822;x@y.test"
    (r,) = queue_recipients(final, "Team@example.org", RcptDsn(parse_notify("SUCCESS,DELAY"), None))
    assert r.dsn_due == ""  # FAILURE not asked for


def test_a_remote_target_of_an_alias_is_marked_forwarded_by_its_domain():
    """An alias of a local domain forwarding off-site: the Enqueuer gives
    that recipient an SRS reverse-path and the message an ARC seal of the
    domain; a remote address given as such is not forwarded."""
    final = [
        FinalRecipient("remote", "friend@remote.test", "fwd@Example.ORG"),
        FinalRecipient("mailbox", "alice@example.org", "fwd@Example.ORG", mailbox="example.org/alice"),
    ]
    forwarded, local = queue_recipients(final, "fwd@Example.ORG")
    assert (forwarded.forwarded_by, local.forwarded_by) == ("example.org", "")
    (relayed,) = queue_recipients([FinalRecipient("remote", "x@remote.test", "x@remote.test")], "x@remote.test")
    assert relayed.forwarded_by == ""
