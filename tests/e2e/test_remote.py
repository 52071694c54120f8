"""Remote delivery end to end: `estafeta serve` relays for loopback clients
(relay_network), looks the destination's MX up in a real DNS server on
loopback (Knot, tests/peers/dns_server.py) and delivers over SMTP to real
MXes on 127.0.0.x (Postfix's smtp-sink, a private Postfix), retrying
temporary failures and returning failure DSNs to the sender.

Every MX of a test listens on one port (Config.remote_smtp_port) on its
own 127.0.0.x address; the DNS names them.
"""

from __future__ import annotations

import email
import email.policy
import time

import pytest
from e2e_harness import maildir_files, make_message, marker_of
from peers.dns_server import DnsServer
from peers.ports import free_port
from peers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

#: Addresses the tests' MXes listen on (all on lo).
MX1, MX2, MX3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def common_port() -> int:
    """A port free on every MX address."""
    for _ in range(50):
        port = free_port(MX1)
        if all(_free(a, port) for a in (MX2, MX3)):
            return port
    raise RuntimeError("no port free on every MX address")


def _free(address: str, port: int) -> bool:
    try:
        return free_port(address) != -1 and _bindable(address, port)
    except OSError:
        return False


def _bindable(address: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


@pytest.fixture
def knot(tmp_path):
    with DnsServer(tmp_path / "knot") as server:
        server.set_zone(
            "example.net",
            f"""
            @       MX 10 mx1
            @       MX 20 mx2
            mx1     A  {MX1}
            mx2     A  {MX2}
            """,
        )
        server.set_zone(
            "backup.test",
            f"""
            @       MX 10 down
            @       MX 20 up
            down    A  {MX3}
            up      A  {MX2}
            """,
        )
        server.set_zone("nomail.test", "@ MX 0 .")
        server.set_zone("implicit.test", f"@ A {MX1}")
        yield server


@pytest.fixture
def relay(daemon_factory, knot):
    """A daemon relaying for 127.0.0.0/8, resolving through Knot, with
    every MX on one port; returns (daemon, port)."""
    port = common_port()

    def start(**fields):
        d = daemon_factory(
            relay_network="127.0.0.0/8",
            resolver=knot.address,
            remote_smtp_port=port,
            **fields,
        )
        return d

    return start, port


def sink_at(tmp_path, address: str, port: int, name: str, **options) -> SmtpSink:
    return SmtpSink(tmp_path / name, address=address, port=port, **options).start()


def test_relayed_mail_goes_to_the_best_mx_and_is_traced(tmp_path, relay):
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "mx1")
    try:
        d = start()
        msg = make_message(subject="to the internet")
        assert d.send("alice@client.test", ["bob@example.net"], msg) == {}
        (dump,) = sink.wait_for(1, timeout=30)
        assert marker_of(dump.message) == marker_of(msg)
        # as received, after our Received header (smtp-sink writes LF line ends)
        assert dump.message.startswith(b"Received: from client.e2e.test")
        assert dump.message.endswith(msg.replace(b"\r\n", b"\n"))
        d.wait_queue_empty(30)
        line = d.wait_log(r"delivered id=(\w+) to=<bob@example.net> via=mx1.example.net\[127.0.0.2\]:\d+")
        queue_id = line.group(1)
        shown = d.cli("traces", "show", queue_id)
        assert shown.returncode == 0, shown.stderr
        for span in (
            "smtp.transaction",
            "queue.enqueue",
            "delivery.attempt",
            "courier.smtp",
            "dns.mx",
            "dns.a",
            "smtp.connect",
        ):
            assert span in shown.stdout, (span, shown.stdout)
    finally:
        sink.stop()


def test_first_mx_down_second_mx_takes_it(tmp_path, relay):
    start, port = relay
    sink = sink_at(tmp_path, MX2, port, "up")  # nothing listens on MX3 ("down", preference 10)
    try:
        d = start()
        msg = make_message()
        assert d.send("alice@client.test", ["carol@backup.test"], msg) == {}
        (dump,) = sink.wait_for(1, timeout=30)
        assert marker_of(dump.message) == marker_of(msg)
        d.wait_log(r"delivered id=\w+ to=<carol@backup.test> via=up.backup.test\[127.0.0.3\]")
    finally:
        sink.stop()


def test_a_temporary_failure_is_retried_until_it_succeeds(tmp_path, relay):
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "soft", soft_reject=["RCPT"])
    d = start()
    msg = make_message()
    assert d.send("alice@client.test", ["dave@implicit.test"], msg) == {}
    d.wait_log(r"deferred id=\w+ to=<dave@implicit.test> error=\"?450")
    sink.stop()
    sink = sink_at(tmp_path, MX1, port, "ok")
    try:
        (dump,) = sink.wait_for(1, timeout=30)
        assert marker_of(dump.message) == marker_of(msg)
        d.wait_queue_empty(30)
    finally:
        sink.stop()


def _dsns(d, user: str, count: int, timeout: float = 30.0) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + timeout
    box = d.maildir("localhost", user)
    while True:
        files = maildir_files(box)
        if len(files) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(files) == count, (files, d.log_tail())
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def _status(report: email.message.EmailMessage) -> list[dict[str, str]]:
    """The per-recipient fields of a multipart/report's delivery-status."""
    (part,) = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = part.get_payload()
    return [dict(b.items()) for b in blocks[1:]]


def test_a_5xx_returns_one_failure_dsn_to_the_sender(tmp_path, relay):
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "hard", hard_reject=["RCPT"])
    try:
        d = start()
        msg = make_message(subject="will bounce")
        assert d.send("alice@localhost", ["erin@example.net", "frank@example.net"], msg) == {}
        (dsn,) = _dsns(d, "alice", 1)
        assert dsn.get_content_type() == "multipart/report"
        assert dsn.get_param("report-type") == "delivery-status"
        assert dsn["From"].addresses[0].username.upper() == "MAILER-DAEMON"
        fields = _status(dsn)
        assert sorted(f["Final-Recipient"] for f in fields) == ["rfc822; erin@example.net", "rfc822; frank@example.net"]
        for f in fields:
            assert f["Action"] == "failed" and f["Status"].startswith("5."), f
            assert f["Diagnostic-Code"].startswith("smtp; 5"), f
            assert "mx1.example.net" in f["Remote-MTA"], f
        assert "will bounce" in dsn.as_string()  # the original (or its header) is attached
        d.wait_queue_empty(30)
        # the DSN came from <> (its Return-Path): nobody is told if it fails
        assert maildir_files(d.maildir("localhost", "alice"))[0].read_bytes().startswith(b"Return-Path: <>\n")
    finally:
        sink.stop()


def test_null_mx_bounces_at_once(relay):
    start, _ = relay
    d = start()
    assert d.send("alice@localhost", ["nobody@nomail.test"], make_message()) == {}
    (dsn,) = _dsns(d, "alice", 1, timeout=20)
    (f,) = _status(dsn)
    assert f["Status"] == "5.1.10" and f["Action"] == "failed", f


def test_notify_never_suppresses_the_dsn_and_a_bounce_is_never_bounced(relay):
    start, _ = relay
    d = start()
    with d.smtp() as s:
        s.ehlo()
        s.mail("alice@localhost")
        assert s.rcpt("a@nomail.test", ["NOTIFY=NEVER"])[0] == 250
        assert s.data(make_message())[0] == 250
        s.mail("")  # a bounce from elsewhere: never bounced, the postmaster gets a copy
        assert s.rcpt("b@nomail.test")[0] == 250
        assert s.data(make_message())[0] == 250
    d.wait_log(r"failed id=\w+ to=<a@nomail.test>")
    d.wait_log(r"double bounce id=\w+ to=<b@nomail.test>")
    (copy,) = _dsns(d, "postmaster", 1, timeout=20)
    assert copy.get_content_type() == "multipart/report"
    d.wait_queue_empty(20)
    assert maildir_files(d.maildir("localhost", "alice")) == []


def test_give_up_and_delay_warning_dsns(tmp_path, relay):
    """A message that keeps failing temporarily gets one delayed-delivery
    DSN after delay_warning_seconds, then a failure DSN at the give-up time."""
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "soft", soft_reject=["RCPT"])
    try:
        d = start(retry="{ initial_seconds: 0.3 max_seconds: 0.6 give_up_after_seconds: 4 delay_warning_seconds: 1 }")
        assert d.send("alice@localhost", ["greg@implicit.test"], make_message()) == {}
        dsns = _dsns(d, "alice", 2, timeout=30)
        actions = sorted(_status(m)[0]["Action"] for m in dsns)
        assert actions == ["delayed", "failed"], actions
        delayed = next(m for m in dsns if _status(m)[0]["Action"] == "delayed")
        assert "Will-Retry-Until" in _status(delayed)[0]
        d.wait_queue_empty(20)
    finally:
        sink.stop()


def test_500_messages_at_concurrency_10_each_delivered_exactly_once(tmp_path, relay, knot):
    """Several domains on several MXes, one to three recipients a message:
    every (message, recipient) arrives once."""
    from concurrent.futures import ThreadPoolExecutor

    start, port = relay
    for n, mx in enumerate((MX1, MX2, MX3)):
        knot.set_zone(f"d{n}.test", f"@ MX 10 mx\nmx A {mx}")
    sinks = [sink_at(tmp_path, mx, port, f"sink{n}") for n, mx in enumerate((MX1, MX2, MX3))]
    try:
        d = start()
        sent: dict[str, list[str]] = {}

        def send(k: int) -> None:
            rcpts = [f"u{k}@d{(k + j) % 3}.test" for j in range(1 + k % 3)]
            msg = make_message(body=f"message {k}\r\n".encode() * (1 + k % 7))
            sent[marker_of(msg)] = rcpts
            assert d.send(f"s{k}@client.test", rcpts, msg) == {}

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(send, range(500)))
        total = sum(len(r) for r in sent.values())
        expected = {n: sum(1 for r in sent.values() for a in r if a.endswith(f"@d{n}.test")) for n in range(3)}
        got: dict[tuple[str, str], int] = {}
        for n, sink in enumerate(sinks):
            for dump in sink.wait_for(expected[n], timeout=120):
                for rcpt in dump.rcpt_args:
                    key = (marker_of(dump.message), rcpt.strip("<>").split(">")[0])
                    got[key] = got.get(key, 0) + 1
        want = {(m, a): 1 for m, rcpts in sent.items() for a in rcpts}
        assert got == want, (len(got), total)
        d.wait_queue_empty(60)
    finally:
        for sink in sinks:
            sink.stop()


def test_sigkill_during_remote_delivery_loses_nothing(tmp_path, relay):
    """SIGKILL while deliveries are in flight (the sink answers the final
    dot slowly): after a restart every message arrives; a message arrives
    twice only where the log says "possible duplicate" (cut after the final
    dot, RFC 5321 §6.1's at-least-once)."""
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "slow", delays={".": 1})
    try:
        d = start(retry="{ initial_seconds: 0.2 max_seconds: 1 }")
        markers = []
        for k in range(60):
            msg = make_message(body=f"killed {k}\r\n".encode())
            markers.append(marker_of(msg))
            assert d.send("s@client.test", [f"r{k}@implicit.test"], msg) == {}
        deadline = time.monotonic() + 30
        while sink.count() < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        d.kill()
        d.start()
        dumps = sink.wait_for(60, timeout=120)
        d.wait_queue_empty(60)
        counts: dict[str, int] = {}
        for dump in sink.dumps():
            counts[marker_of(dump.message)] = counts.get(marker_of(dump.message), 0) + 1
        assert set(counts) == set(markers), "a message was lost"
        duplicates = sum(c - 1 for c in counts.values())
        logged = len([line for line in d.log_text(all_runs=True).splitlines() if "possible duplicate" in line])
        assert duplicates <= logged, (duplicates, logged)
        assert len(dumps) >= 60
    finally:
        sink.stop()


def test_smarthost_route_and_mda_transport(tmp_path, relay):
    """route "*" through a smarthost (its address, not the MX), and a local
    domain routed to an MDA command (exit 0 delivered, 75 retried, other
    codes bounced)."""
    start, port = relay
    sink = sink_at(tmp_path, MX2, port, "smarthost")
    out = tmp_path / "mda"
    out.mkdir()
    script = tmp_path / "mda.sh"
    script.write_text(
        f'#!/bin/sh\ncase "$1" in tempfail) exit 75;; fail) echo "no such box" >&2; exit 67;; esac\ncat > {out}/"$1"\n'
    )
    script.chmod(0o755)
    try:
        d = start(
            transport=[
                f'{{ name: "relay" smarthost {{ address: "{MX2}:{port}" }} }}',
                f'{{ name: "pipe" mda {{ command: "{script}" command: "%to_user%" }} }}',
            ],
            route=['{ domain: "*" transport: "relay" }', '{ domain: "users.test" transport: "pipe" }'],
        )
        msg = make_message()
        assert d.send("alice@localhost", ["x@nowhere-in-dns.test"], msg) == {}
        (dump,) = sink.wait_for(1, timeout=30)
        assert marker_of(dump.message) == marker_of(msg)
        assert d.send("alice@localhost", ["alice@users.test"], msg) == {}
        d.wait_log(r"delivered id=\w+ to=<alice@users.test> via=mda:pipe")
        assert (out / "alice").read_bytes().endswith(msg)
    finally:
        sink.stop()


def test_starttls_to_a_postfix_mx_verified_and_traced(tmp_path, relay, postfix_mx_factory, knot):
    """A private Postfix as the MX with a certificate of the test CA (in
    outbound.ca_file): STARTTLS, verified, recorded in the trace."""
    from peers.certs import TestCA

    start, port = relay
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue(["mx.tls.test"], ips=[MX1])
    knot.set_zone("tls.test", f"@ MX 10 mx\nmx A {MX1}")
    mx = postfix_mx_factory(address=MX1, port=port, hostname="mx.tls.test", domains=["tls.test"], tls_cert=cert)
    d = start(outbound=f'{{ ca_file: "{ca.cert_path}" }}')
    msg = make_message(subject="over tls")
    assert d.send("alice@client.test", ["henry@tls.test"], msg) == {}
    (got,) = mx.wait_for("henry@tls.test", 1, timeout=60)
    assert marker_of(got) == marker_of(msg)
    queue_id = d.wait_log(r"delivered id=(\w+) to=<henry@tls.test>").group(1)
    shown = d.cli("traces", "show", queue_id).stdout
    (line,) = [x for x in shown.splitlines() if x.strip().startswith("smtp.starttls")]
    assert "estafeta.tls.verified=true" in line and "tls.protocol.version=" in line, shown
    (line,) = [x for x in shown.splitlines() if x.strip().startswith("dns.mx")]
    assert "dns.question.name=tls.test" in line and "dns.answers=" in line, shown


def test_lmtp_transport_to_dovecot(tmp_path, relay, dovecot_factory):
    """A route to Dovecot's LMTP (RFC 2033): one reply per recipient after
    the data; an unknown user fails with Dovecot's 550 and a DSN."""
    start, _ = relay
    dc = dovecot_factory(users={"ivy@dove.test": "x", "jack@dove.test": "y"})
    d = start(
        transport=f'{{ name: "dovecot" lmtp {{ address: "{dc.lmtp_socket}" }} }}',
        route='{ domain: "dove.test" transport: "dovecot" }',
    )
    msg = make_message(subject="by lmtp")
    assert d.send("alice@localhost", ["ivy@dove.test", "jack@dove.test", "nobody@dove.test"], msg) == {}
    for user in ("ivy@dove.test", "jack@dove.test"):
        (got,) = dc.wait_for(user, 1, timeout=30)
        assert marker_of(got) == marker_of(msg)
    (dsn,) = _dsns(d, "alice", 1)
    (f,) = _status(dsn)
    assert f["Final-Recipient"] == "rfc822; nobody@dove.test" and f["Status"].startswith("5."), f


def test_notify_success_gets_a_delivered_dsn_and_a_relayed_one(tmp_path, relay):
    """NOTIFY=SUCCESS: our final delivery (a local mailbox) reports
    "delivered"; a remote server without DSN (smtp-sink -N) takes it, so we
    report "relayed" (RFC 3461 §6.2.1); ENVID and ORCPT come back."""
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "nodsn", dsn=False)
    try:
        d = start()
        with d.smtp() as s:
            s.ehlo()
            assert s.has_extn("dsn")
            assert s.mail("alice@localhost", ["RET=HDRS", "ENVID=QQ314159"])[0] == 250
            assert s.rcpt("kate@localhost", ["NOTIFY=SUCCESS", "ORCPT=rfc822;kate@localhost"])[0] == 250
            assert s.rcpt("leo@implicit.test", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
            assert s.data(make_message(subject="tell me"))[0] == 250
        sink.wait_for(1, timeout=30)
        reports = _dsns(d, "alice", 1, timeout=30)
        fields = _status(reports[0])
        actions = {f["Final-Recipient"]: f["Action"] for f in fields}
        assert actions == {"rfc822; kate@localhost": "delivered", "rfc822; leo@implicit.test": "relayed"}, fields
        (kate,) = [f for f in fields if f["Final-Recipient"] == "rfc822; kate@localhost"]
        assert kate["Original-Recipient"] == "rfc822; kate@localhost"
        (status_part,) = [p for p in reports[0].walk() if p.get_content_type() == "message/delivery-status"]
        assert status_part.get_payload()[0]["Original-Envelope-Id"] == "QQ314159"
        assert "tell me" in reports[0].as_string()  # RET=HDRS: the header is there
        d.wait_queue_empty(20)
        shown = d.cli("traces", "list").stdout
        assert shown
    finally:
        sink.stop()


def test_smtp_courier_crashes_defer_and_lose_nothing(tmp_path, relay):
    """SmtpCourier crashing on 30 % of its deliveries (chaos): each crash
    is a temporary failure retried with backoff; all 100 messages arrive
    once, nothing is quarantined, the daemon stays up."""
    start, port = relay
    sink = sink_at(tmp_path, MX1, port, "chaos")
    try:
        d = start(
            chaos='{ crash { actor: "SmtpCourier" probability: 0.3 } }',
            retry="{ initial_seconds: 0.2 max_seconds: 1 }",
        )
        markers = []
        with d.smtp() as s:
            for k in range(100):
                msg = make_message(body=f"courier chaos {k}\r\n".encode())
                markers.append(marker_of(msg))
                s.sendmail("s@client.test", [f"r{k}@implicit.test"], msg)
        sink.wait_for(100, timeout=90)
        d.wait_queue_empty(60)
        counts: dict[str, int] = {}
        for dump in sink.dumps():
            counts[marker_of(dump.message)] = counts.get(marker_of(dump.message), 0) + 1
        assert counts == {m: 1 for m in markers}
        assert any("actor=SmtpCourier" in line for line in d.events("restart")), d.log_tail()
        assert not d.events("quarantined") and d.alive()
    finally:
        sink.stop()
