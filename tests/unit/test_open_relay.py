"""The open-relay suite against the relay and sender policy
(actors/policy.py) and the protocol's own address parsing (actors/smtp):
every trick a relay tester tries, sent as real command lines through the
sans-I/O server, must end with no remote recipient accepted — unless the
client authenticated or is in relay_network (the positive controls, which
show the harness can accept a relay at all). The end-to-end run of the
same tricks against the daemon is tests/e2e/test_open_relay_daemon.py.
The tricks are tests/open_relay_tricks.py's."""

from __future__ import annotations

import base64

import pytest
from open_relay_tricks import SPOOFED_SENDERS, TRICKS

from estafeta.actors import smtp
from estafeta.actors.addresses import AddressRules
from estafeta.actors.aliases import AliasTable, Resolver, parse_aliases
from estafeta.actors.policy import Client, RelayPolicy, owns
from estafeta.actors.smtp import Mode, ServerParams, SmtpServer
from estafeta.actors.users import UserTable, build_domain
from estafeta.proto import users_pb2

RULES = AddressRules("+", ".")
POLICY = RelayPolicy(["10.0.0.0/8", "2001:db8:1::/48"])


def make_resolver() -> Resolver:
    db = users_pb2.UserDb(domain="example.test")
    db.user.add(name="alice", password_hash="$argon2id$x")
    db.user.add(name="bob", password_hash="$argon2id$x")
    db.user.add(name="carol", password_hash="$argon2id$x", admin_of=["carol.test"])
    aliases = parse_aliases("sales: alice, bob\n*: bob\nfwd: friend@remote.test\n", "example.test", RULES)
    users = UserTable({"example.test": build_domain("example.test", db, [], RULES)})
    return Resolver(
        {"example.test": True, "localhost": False}, users, AliasTable({"example.test": aliases}), RULES, "example.test"
    )


RESOLVER = make_resolver()


class Session:
    """The protocol driven with the policy, as the session will do it.
    Records the final recipients that were accepted."""

    def __init__(self, mode=Mode.SMTP, peer="192.0.2.50", identity="", tls=True):
        p = ServerParams("mx.example.test", 100_000, mode=mode, auth_mechanisms=("PLAIN",))
        self.server = SmtpServer(p, peer, tls=tls)
        self.client = Client(peer, identity)
        self.accepted: list = []
        self.replies: list[str] = []
        self.server.greet()
        self.server.data_to_send()

    def send(self, *lines: str) -> list[str]:
        s = self.server
        s.receive_data("".join(line + "\r\n" for line in lines).encode("utf-8"))
        while (e := s.next_event()) is not smtp.NEED_DATA and e is not smtp.CLOSED:
            if isinstance(e, smtp.AuthStart):
                s.auth_succeeded(self.client.identity)  # the identity is set up by the test
            elif isinstance(e, smtp.MailFrom):
                refusal = POLICY.check_sender(RESOLVER, self.client, e.reverse_path)
                s.reject(refusal) if refusal else s.accept()
            elif isinstance(e, smtp.RcptTo):
                res = POLICY.check_recipient(RESOLVER, self.client, e.forward_path)
                if res.accepted:
                    self.accepted += res.recipients
                    s.accept()
                else:
                    s.reject(res.reply)
            elif isinstance(e, smtp.DECISIONS):
                s.accept()
        out = s.data_to_send().decode()
        self.replies += [line for line in out.split("\r\n") if line]
        return [line for line in out.split("\r\n") if line and line[3] == " "]

    def relayed(self) -> list[str]:
        return [r.address for r in self.accepted if r.kind == "remote"]


@pytest.mark.parametrize("rcpt", TRICKS)
def test_unauthenticated_mx_client_never_relays(rcpt):
    s = Session()
    s.send("EHLO attacker.test", "MAIL FROM:<spammer@attacker.test> SMTPUTF8")
    s.send(f"RCPT TO:{rcpt}")
    assert s.relayed() == []
    # Whatever the trick, accepted recipients are local mailboxes only.
    assert all(r.kind == "mailbox" for r in s.accepted)


@pytest.mark.parametrize("rcpt", TRICKS[:2] + TRICKS[5:7] + TRICKS[12:15])
def test_relay_denied_reply(rcpt):
    s = Session()
    s.send("EHLO attacker.test", "MAIL FROM:<spammer@attacker.test>")
    assert s.send(f"RCPT TO:{rcpt}") == ["554 5.7.1 Relay access denied"]


def test_percent_and_bang_reach_the_catch_all_locally():
    s = Session()
    s.send("EHLO attacker.test", "MAIL FROM:<spammer@attacker.test>")
    assert s.send("RCPT TO:<victim%remote.test@example.test>", "RCPT TO:<remote.test!victim@example.test>") == [
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
    ]
    assert [r.mailbox for r in s.accepted] == ["example.test/bob"] * 2  # delivered here, never forwarded


def test_unauthenticated_submission_is_refused():
    for tls in (False, True):
        s = Session(Mode.SUBMISSION, tls=tls)
        s.send("EHLO attacker.test")
        assert s.send("MAIL FROM:<alice@example.test>")[0].startswith("530 5.7.0")
        assert s.send("RCPT TO:<victim@remote.test>")[0].startswith("503")
        assert s.relayed() == []
    s = Session(Mode.SUBMISSIONS, tls=True)
    s.send("EHLO attacker.test")
    assert s.send("MAIL FROM:<>") == ["530 5.7.0 Authentication required"]


def login(identity: str, mode=Mode.SUBMISSION) -> Session:
    s = Session(mode, peer="198.51.100.7", identity=identity)
    s.send("EHLO client.test")
    ir = base64.b64encode(b"\0" + identity.encode() + b"\0pw").decode()
    assert s.send(f"AUTH PLAIN {ir}") == ["235 2.7.0 Authentication successful"]
    return s


@pytest.mark.parametrize("sender", SPOOFED_SENDERS)
def test_spoofed_sender_after_auth_is_refused(sender):
    s = login("alice@example.test")
    assert s.send(f"MAIL FROM:<{sender}>") == [
        "550 5.7.1 Sender address rejected: not owned by user alice@example.test"
    ]


@pytest.mark.parametrize(
    "sender", ["alice@example.test", "ALICE@Example.Test", "a.lice+news@example.test", "sales@example.test", ""]
)
def test_own_addresses_after_auth(sender):
    s = login("alice@example.test")
    assert s.send(f"MAIL FROM:<{sender}>") == ["250 2.1.0 Ok"]
    assert s.send("RCPT TO:<friend@remote.test>") == ["250 2.1.5 Ok"]  # authenticated: relays
    assert s.relayed() == ["friend@remote.test"]


def test_domain_admin_may_use_any_address_of_the_domain():
    s = login("carol@example.test")
    assert s.send("MAIL FROM:<anything@carol.test>") == ["250 2.1.0 Ok"]
    assert owns(RESOLVER, "carol@example.test", "x@CAROL.test")
    assert not owns(RESOLVER, "alice@example.test", "x@carol.test")


def test_relay_network_client_may_relay():
    """The positive control: the same harness does accept a relay."""
    for peer in ("10.1.2.3", "::ffff:10.9.9.9", "2001:db8:1:2::5"):
        s = Session(peer=peer)
        s.send("EHLO inside.test", "MAIL FROM:<app@inside.test>")
        assert s.send("RCPT TO:<victim@remote.test>") == ["250 2.1.5 Ok"]
        assert s.relayed() == ["victim@remote.test"]
    s = Session(peer="11.0.0.1")
    s.send("EHLO outside.test", "MAIL FROM:<app@outside.test>")
    assert s.send("RCPT TO:<victim@remote.test>") == ["554 5.7.1 Relay access denied"]


def test_local_alias_to_remote_is_not_a_relay_decision():
    s = Session()
    s.send("EHLO attacker.test", "MAIL FROM:<someone@attacker.test>")
    assert s.send("RCPT TO:<fwd@example.test>") == ["250 2.1.5 Ok"]
    assert s.relayed() == ["friend@remote.test"]  # the domain's owner forwards; no client chose it


def test_auth_parameter_is_trusted_only_for_own_mailboxes():
    alice = Client("198.51.100.7", "alice@example.test")
    assert POLICY.auth_parameter(RESOLVER, alice, "sales@example.test", "alice@example.test") == "sales@example.test"
    assert POLICY.auth_parameter(RESOLVER, alice, "boss@bank.test", "alice@example.test") == ""
    assert POLICY.auth_parameter(RESOLVER, alice, None, "alice@example.test") == "alice@example.test"
    assert POLICY.auth_parameter(RESOLVER, Client("192.0.2.1"), "alice@example.test", "x@y.test") == ""


def test_bad_relay_network_is_an_error():
    with pytest.raises(ValueError):
        RelayPolicy(["10.0.0.0/33"])
