"""Directory decisions for RCPT TO (pure function, no actor)."""

import pytest

from estafeta.actors.directory import LocalDomains, check_recipient, mailbox_local_part
from estafeta.supervisor.config import parse_config

CFG = parse_config(
    'local_domain { name: "localhost" }\n'
    'local_domain { name: "Example.TEST" user: "alice" user: "Bob" }\n'
    'local_domain { name: "bücher.test" }\n'
)
DOMAINS = LocalDomains(CFG)


@pytest.mark.parametrize(
    "address, accepted, code, mailbox",
    [
        ("anyone@localhost", True, 0, "localhost/anyone"),
        ("AnyOne@LOCALHOST", True, 0, "localhost/anyone"),
        ("alice@example.test", True, 0, "example.test/alice"),
        ("bob@example.test", True, 0, "example.test/bob"),
        ("carol@example.test", False, 550, ""),
        ("postmaster@example.test", True, 0, "example.test/postmaster"),
        ("PostMaster@example.test", True, 0, "example.test/postmaster"),
        ("postmaster", True, 0, "localhost/postmaster"),
        ("someone@elsewhere.test", False, 554, ""),
        ("someone@[127.0.0.1]", False, 554, ""),
        ("x@bücher.test", True, 0, "xn--bcher-kva.test/x"),
        ("jöran@localhost", True, 0, "localhost/jöran"),
        ('"john doe"@localhost', True, 0, "localhost/john doe"),
        ('"../../etc"@localhost', False, 553, ""),
        ('".hidden"@localhost', False, 553, ""),
        ("a/b@localhost", False, 553, ""),
        ("nobody", False, 553, ""),
    ],
)
def test_check_recipient(address, accepted, code, mailbox):
    v = check_recipient(DOMAINS, address)
    assert v.accepted is accepted
    if not accepted:
        assert v.reply.code == code
        assert v.reply.enhanced.startswith(str(code)[0] + ".")
    else:
        assert v.mailbox == mailbox


def test_relay_denied_is_5_7_1():
    v = check_recipient(DOMAINS, "victim@gmail.com")
    assert (v.reply.code, v.reply.enhanced) == (554, "5.7.1")


def test_local_part_length_limit():
    assert mailbox_local_part("a" * 64) == "a" * 64
    assert mailbox_local_part("a" * 65) is None
