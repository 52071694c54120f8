"""RCPT TO decisions as the session makes them: the Directory's tables
(DirectoryTables, DirectoryView.resolve) under the relay policy
(actors/policy.py), for a configuration without user or alias files —
the decisions of the first version, which the resolver keeps."""

import pytest

from estafeta.actors.directory import DirectoryTables, DirectoryView
from estafeta.actors.policy import Client, RelayPolicy
from estafeta.actors.recipients import queue_recipients
from estafeta.actors.smtp.dsnparams import RcptDsn, parse_notify, parse_orcpt
from estafeta.proto import queue_pb2
from estafeta.supervisor.config import parse_config


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    cfg = parse_config(
        f'data_dir: "{tmp_path_factory.mktemp("data")}"\n'
        'local_domain { name: "localhost" }\n'
        'local_domain { name: "Example.TEST" user: "alice" user: "Bob" }\n'
        'local_domain { name: "bücher.test" }\n'
    )
    tables = DirectoryTables(cfg)
    tables.refresh(force=True)
    return DirectoryView(tables.resolver)


POLICY = RelayPolicy(["10.0.0.0/8"])
OUTSIDE = Client("192.0.2.1")


@pytest.mark.parametrize(
    "address, code, mailbox",
    [
        ("anyone@localhost", 0, "localhost/anyone"),
        ("AnyOne@LOCALHOST", 0, "localhost/anyone"),
        ("alice@example.test", 0, "example.test/alice"),
        ("bob@example.test", 0, "example.test/bob"),
        ("carol@example.test", 550, ""),
        ("postmaster@example.test", 0, "example.test/postmaster"),
        ("PostMaster@example.test", 0, "example.test/postmaster"),
        ("postmaster", 0, "localhost/postmaster"),
        ("someone@elsewhere.test", 554, ""),
        ("someone@[127.0.0.1]", 554, ""),
        ("x@bücher.test", 0, "xn--bcher-kva.test/x"),
        ("jöran@localhost", 0, "localhost/jöran"),
        ('"john doe"@localhost', 0, "localhost/john doe"),
        ('"../../etc"@localhost', 553, ""),
        ('".hidden"@localhost', 553, ""),
        ("a/b@localhost", 553, ""),
        ("nobody", 553, ""),
        ("a" * 64 + "@localhost", 0, "localhost/" + "a" * 64),
        ("a" * 65 + "@localhost", 553, ""),
    ],
)
def test_rcpt_decisions(view, address, code, mailbox):
    res = POLICY.check_recipient(view.resolver, OUTSIDE, address)
    if code:
        assert res.reply.code == code and res.reply.enhanced.startswith(str(code)[0] + ".")
    else:
        assert res.accepted and [r.mailbox for r in res.recipients] == [mailbox]


def test_relay_only_for_relay_network_and_authenticated_clients(view):
    assert POLICY.check_recipient(view.resolver, OUTSIDE, "victim@gmail.com").reply.enhanced == "5.7.1"
    for client in (Client("10.1.2.3"), Client("192.0.2.1", "alice@example.test")):
        res = POLICY.check_recipient(view.resolver, client, "victim@gmail.com")
        assert [(r.kind, r.address) for r in res.recipients] == [("remote", "victim@gmail.com")]


def test_queue_recipients_keep_the_given_address_as_orcpt(view):
    (r,) = queue_recipients(view.resolve("AnyOne@LOCALHOST").recipients, "AnyOne@LOCALHOST")
    assert (r.address, r.mailbox, r.original_recipient) == (
        "anyone@localhost",
        "localhost/anyone",
        "rfc822;AnyOne@LOCALHOST",
    )
    (r,) = queue_recipients(view.resolve("anyone@localhost").recipients, "anyone@localhost")
    assert r.original_recipient == "" and r.status == queue_pb2.PENDING
    dsn = RcptDsn(parse_notify("SUCCESS,FAILURE"), parse_orcpt("rfc822;first@example.net"))
    (r,) = queue_recipients(view.resolve("AnyOne@LOCALHOST").recipients, "AnyOne@LOCALHOST", dsn)
    assert r.original_recipient == "rfc822;first@example.net" and list(r.notify) == ["FAILURE", "SUCCESS"]
    (r,) = queue_recipients(view.resolve("jöran@localhost").recipients, "Jöran@localhost")
    assert r.original_recipient == "utf-8;Jöran@localhost"


def test_unstarted_view_raises(view):
    with pytest.raises(RuntimeError):
        DirectoryView().resolve("a@localhost")
