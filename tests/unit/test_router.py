"""actors/couriers/router.py: each recipient's route (pure), and the
grouping of an item's recipients into deliveries."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from estafeta.actors.couriers import router
from estafeta.actors.couriers.router import LMTP, MAILDIR, MDA, SMTP, RouteKey
from estafeta.proto import config_pb2, queue_pb2


def table(text: str = "") -> router.RouteTable:
    cfg = config_pb2.Config()
    text_format.Parse(text, cfg)
    return router.RouteTable(cfg)


def rcpt(address: str, mailbox: str = "") -> queue_pb2.Recipient:
    return queue_pb2.Recipient(address=address, mailbox=mailbox, status=queue_pb2.PENDING)


TRANSPORTS = """
transport { name: "relay" smarthost { address: "smarthost.test:587" } }
transport { name: "dovecot" lmtp { address: "/run/dovecot/lmtp" } }
transport { name: "procmail" mda { command: "/usr/bin/procmail" } }
"""


def test_without_rules_local_mailboxes_go_to_maildirs_and_the_rest_to_mx():
    t = table()
    assert router.route(rcpt("bob@localhost", "localhost/bob"), t) == RouteKey(MAILDIR, "", "")
    assert router.route(rcpt("Bob@Example.NET"), t) == RouteKey(SMTP, "example.net", "")
    assert router.route(rcpt("bob@example.net."), t) == RouteKey(SMTP, "example.net", "")


def test_idn_domains_are_compared_as_a_labels():
    t = table(TRANSPORTS + 'route { domain: "bücher.example" transport: "relay" }')
    assert router.route(rcpt("x@xn--bcher-kva.example"), t) == RouteKey(SMTP, "relay", "relay")
    assert router.route(rcpt("x@BÜCHER.example"), t) == RouteKey(SMTP, "relay", "relay")
    assert router.route(rcpt("x@bücher.test"), t) == RouteKey(SMTP, "xn--bcher-kva.test", "")


def test_rules_pick_transports_of_every_kind():
    t = table(
        TRANSPORTS
        + """
        route { domain: "partner.test" transport: "relay" }
        route { domain: "example.org" transport: "dovecot" }
        route { domain: "lists.test" transport: "procmail" }
        route { domain: "direct.test" transport: "mx" }
        route { domain: "*" transport: "relay" }
        """
    )
    assert router.route(rcpt("a@partner.test"), t) == RouteKey(SMTP, "relay", "relay")
    # a rule for a local domain takes its mailboxes elsewhere (e.g. Dovecot)
    assert router.route(rcpt("a@example.org", "example.org/a"), t) == RouteKey(LMTP, "dovecot", "dovecot")
    assert router.route(rcpt("a@lists.test"), t) == RouteKey(MDA, "procmail", "procmail")
    assert router.route(rcpt("a@direct.test"), t) == RouteKey(SMTP, "direct.test", "")
    # "*" takes every other remote domain, never a local mailbox
    assert router.route(rcpt("a@anywhere.test"), t) == RouteKey(SMTP, "relay", "relay")
    assert router.route(rcpt("a@localhost", "localhost/a"), t) == RouteKey(MAILDIR, "", "")


def test_a_local_rule_without_a_mailbox_goes_to_the_mx():
    t = table('route { domain: "example.com" transport: "local" }')
    assert router.route(rcpt("a@example.com", "example.com/a"), t) == RouteKey(MAILDIR, "", "")
    assert router.route(rcpt("a@example.com"), t) == RouteKey(SMTP, "example.com", "")


def test_a_rule_naming_an_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="no transport named 'nope'"):
        table('route { domain: "x.test" transport: "nope" }')


def test_group_one_delivery_per_route_and_destination_in_index_order():
    t = table(TRANSPORTS + 'route { domain: "partner.test" transport: "relay" }')
    rcpts = [
        rcpt("a@localhost", "localhost/a"),
        rcpt("b@example.net"),
        rcpt("c@partner.test"),
        rcpt("d@EXAMPLE.net"),
        rcpt("e@localhost", "localhost/e"),
    ]
    groups = router.group(enumerate(rcpts), t)
    assert groups == [
        (RouteKey(MAILDIR, "", ""), [0, 4]),
        (RouteKey(SMTP, "example.net", ""), [1, 3]),
        (RouteKey(SMTP, "relay", "relay"), [2]),
    ]
    assert groups[1][0].to_proto().destination == "example.net"


def test_group_splits_smtp_deliveries_at_the_recipient_limit():
    t = table("outbound { max_recipients_per_transaction: 2 }")
    rcpts = [rcpt(f"u{i}@example.net") for i in range(5)] + [
        rcpt(f"l{i}@localhost", f"localhost/l{i}") for i in range(3)
    ]
    groups = router.group(enumerate(rcpts), t)
    assert [g[1] for g in groups] == [[0, 1], [2, 3], [4], [5, 6, 7]]  # Maildir copies are not split


def test_group_keeps_forwarded_recipients_with_their_own_reverse_path_apart():
    """A recipient an alias forwards off-site has its SRS reverse-path
    (Recipient.reverse_path): never in one transaction with the others of
    its destination, which use the item's."""
    forwarded = rcpt("x@example.net")
    forwarded.reverse_path = "SRS0=abcd=AA=sender.test=alice@fwd.test"
    rcpts = [rcpt("a@example.net"), forwarded, rcpt("b@example.net")]
    assert router.group(enumerate(rcpts), table()) == [
        (RouteKey(SMTP, "example.net", ""), [0, 2]),
        (RouteKey(SMTP, "example.net", ""), [1]),
    ]


def test_a_pipe_alias_goes_to_the_mda_courier_whatever_the_rules():
    t = table(
        TRANSPORTS + 'route { domain: "*" transport: "relay" } route { domain: "example.org" transport: "local" }'
    )
    piped = queue_pb2.Recipient(address="list@example.org", pipe_command="/usr/bin/handler --work")
    assert router.route(piped, t) == RouteKey(MDA, "pipe", "") == router.PIPE
    assert router.group([(0, piped), (1, rcpt("bob@example.org", "example.org/bob"))], t) == [
        (router.PIPE, [0]),
        (RouteKey(MAILDIR, "", ""), [1]),
    ]
