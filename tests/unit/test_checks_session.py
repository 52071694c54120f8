"""actors/checks/session.py and actors/reports.py: who is checked, what
the end of DATA does with each DMARC verdict (reject, Junk, accept), the
evaluations kept for reports; actors/enqueue.py with an Outbound: DKIM
signing at enqueue, SRS and ARC for recipients an alias forwards;
actors/policy.py: RCPT of an SRS address."""

from __future__ import annotations

import os
import time

import gevent
import pytest
from fakedns import FakeDns
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from estafeta.actors.addresses import AddressRules
from estafeta.actors.aliases import AliasTable, Resolver, parse_aliases
from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.arc import verify_arc
from estafeta.actors.checks.dkim_verify import verify_dkim
from estafeta.actors.checks.outbound import Outbound
from estafeta.actors.checks.session import JUNK, JUNK_MARK, MailAuth
from estafeta.actors.enqueue import Enqueuer, Envelope
from estafeta.actors.policy import BAD_SRS, Client, RelayPolicy
from estafeta.actors.reports import DmarcReports, ReportBuffer
from estafeta.actors.smtp.params import Mode
from estafeta.actors.users import UserTable
from estafeta.proto import queue_pb2, reports_pb2
from estafeta.store.dmarcreports import DmarcReportStore
from estafeta.store.queue import QueueStore
from estafeta.supervisor.config import parse_config

CLIENT = "192.0.2.10"


def msg(from_addr: str) -> bytes:
    return f"From: {from_addr}\r\nTo: bob@ours.test\r\nSubject: s\r\n\r\nbody\r\n".encode()


def config(tmp_path, extra: str = ""):
    return parse_config(f'hostname: "mx.ours.test"\ndata_dir: "{tmp_path}"\n' + extra)


@pytest.fixture
def dns():
    return FakeDns(
        {
            "sender.test": {"TXT": ["v=spf1 ip4:192.0.2.10 -all"]},
            "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
            "_dmarc.quar.test": {"TXT": ["v=DMARC1; p=quarantine"]},
            "quar.test": {"TXT": ["v=spf1 -all"]},
            "10.2.0.192.in-addr.arpa": {"PTR": ["mx.sender.test"]},
            "mx.sender.test": {"A": [CLIENT]},
        }
    )


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_who_is_checked(tmp_path, dns):
    auth = MailAuth.from_config(config(tmp_path), dns)
    assert auth is not None
    assert auth.for_session(Mode.SMTP, relay=False) is not None
    assert auth.for_session(Mode.SMTP, relay=True) is None  # relay_network clients are ours
    assert auth.for_session(Mode.SUBMISSION, relay=False) is None
    assert auth.for_session(Mode.SUBMISSIONS, relay=False) is None
    assert MailAuth.from_config(config(tmp_path, "checks { enabled: false }\n"), dns) is None


def test_pass_reject_and_quarantine(tmp_path, dns, spans):
    tracer, exporter = spans
    reports = ReportBuffer()
    auth = MailAuth.from_config(config(tmp_path), dns, tracer, reports)
    checks = auth.for_session(Mode.SMTP, relay=False)
    session = tracer.start_span("smtp.session")
    assert checks.at_connect(CLIENT, session) is None
    session.end()

    # an aligned SPF pass: accepted, our Authentication-Results on top
    txn = tracer.start_span("smtp.transaction")
    checks.at_mail("mx.sender.test", "alice@sender.test", txn)
    out = checks.at_end_of_data(msg("alice@sender.test"), "alice@sender.test", ["bob@ours.test"], txn)
    txn.end()
    assert out.reply is None and out.folder == ""
    assert out.message.startswith(b"Authentication-Results: mx.ours.test;")
    assert b"dmarc=pass" in out.message.split(b"\r\n\r\n")[0]

    # a forged From of the p=reject domain, from a client its SPF does not name
    txn = tracer.start_span("smtp.transaction")
    checks.at_mail("mx.sender.test", "bounce@quar.test", txn)
    out = checks.at_end_of_data(msg("ceo@sender.test"), "bounce@quar.test", ["bob@ours.test"], txn)
    txn.end()
    assert out.reply is not None and (out.reply.code, out.reply.enhanced) == (550, "5.7.1")
    assert "sender.test" in out.reply.text
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert finished["smtp.transaction"].attributes["estafeta.refused"] == "dmarc_reject"

    # a p=quarantine failure: the Junk mark on top, the Junk folder
    txn = tracer.start_span("smtp.transaction")
    checks.at_mail("mx.sender.test", "x@quar.test", txn)
    out = checks.at_end_of_data(msg("x@quar.test"), "x@quar.test", ["bob@ours.test"], txn)
    txn.end()
    assert out.reply is None and out.folder == JUNK
    assert out.message.startswith(JUNK_MARK + b"Authentication-Results: mx.ours.test;")
    assert txn.attributes["estafeta.checks.action"] == "quarantine"

    # the check spans hang under the session's and the transactions' spans
    by_parent = {(s.name, s.parent.span_id if s.parent else None) for s in exporter.get_finished_spans()}
    assert ("check.iprev", session.get_span_context().span_id) in by_parent
    assert ("check.dmarc", txn.get_span_context().span_id) in by_parent

    rows = reports.take()
    assert [(r["header_from"], r["disposition"]) for r in rows] == [
        ("sender.test", "none"),
        ("sender.test", "reject"),
        ("quar.test", "quarantine"),
    ]
    assert rows[0]["source_ip"] == CLIENT and rows[0]["envelope_to"] == "ours.test"


def test_report_buffer_is_bounded():
    b = ReportBuffer(limit=2)
    for i in range(3):
        b.add({"i": i})
    assert b.dropped == 1 and [r["i"] for r in b.take()] == [0, 1] and b.take() == []
    b.add({"i": 9})
    b.put_back([{"i": 7}, {"i": 8}])
    assert [r["i"] for r in b.rows] == [7, 9] and b.dropped == 2


def test_reports_actor_writes_the_buffer_and_trims(tmp_path):
    path = str(tmp_path / "dmarc.db")
    buffer = ReportBuffer()
    # (trims=True would also trim at start: at a moment the test does not know)
    ref = DmarcReports.start(None, path, buffer, 3600.0, flush_seconds=3600.0)  # flushed by the asks below only
    try:
        row = {"time": 1.0, "source_ip": CLIENT, "header_from": "old.test", "result": "fail", "disposition": "none"}
        buffer.add(row)
        assert ref.ask(_flush()) == 1
        buffer.add({**row, "header_from": "new.test", "time": 4e9})
        assert ref.ask(_trim()) == 1  # the row from 1970 is past an hour's retention
    finally:
        ref.stop()  # writes what is left
    store = DmarcReportStore(path)
    assert [e.header_from for e in store.evaluations()] == ["new.test"]
    store.close()


def test_reports_actor_flushes_on_its_timer(tmp_path):
    path = str(tmp_path / "dmarc.db")
    buffer = ReportBuffer()
    ref = DmarcReports.start(None, path, buffer, 3600.0, flush_seconds=0.05)
    try:
        buffer.add({"time": 4e9, "source_ip": CLIENT, "header_from": "t.test", "result": "pass", "disposition": "none"})
        deadline = time.monotonic() + 10
        while buffer.rows and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert not buffer.rows
    finally:
        ref.stop()
    store = DmarcReportStore(path)
    assert [e.header_from for e in store.evaluations()] == ["t.test"]
    store.close()


def _flush():
    return reports_pb2.FlushDmarcReports()


def _trim():
    return reports_pb2.TrimDmarcReports()


# ------------------------------------------------------------ the Enqueuer


class _Tracer:
    def __init__(self):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer, self.exporter = provider.get_tracer("test"), exporter


def _rcpt(address: str, mailbox: str = "", forwarded_by: str = "") -> queue_pb2.Recipient:
    return queue_pb2.Recipient(address=address, mailbox=mailbox, status=queue_pb2.PENDING, forwarded_by=forwarded_by)


def test_enqueue_signs_our_mail_and_forwards_with_srs_and_arc(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    keys = {}
    for sel, alg in (("r", dkimkeys.RSA), ("e", dkimkeys.ED25519)):
        _, keys[sel] = dkimkeys.write_key(str(data), "ours.test", sel, alg)
    cfg = config(data, 'srs { enabled: true domain: "ours.test" }\n')
    (tmp_path / "queue").mkdir()
    store = QueueStore(str(tmp_path / "queue"))
    t = _Tracer()
    enq = Enqueuer(store, t.tracer, Outbound.from_config(cfg))
    dns = FakeDns({k.record_name(): {"TXT": [k.record()]} for k in keys.values()})

    # our user's mail: DKIM-signed once, at enqueue, with both keys
    received = b"Received: from client by mx.ours.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    env = Envelope("alice@ours.test", [_rcpt("x@example.net")], sign=True)
    item = enq.enqueue(enq.new_id(), env, received + msg("alice@ours.test"))
    body = store.read_body(item.id)
    assert body.count(b"DKIM-Signature:") == 2 and item.body_size == len(body)
    assert verify_dkim(dns, body).trusted_domains() == ("ours.test", "ours.test")
    assert not item.recipients[0].reverse_path

    # unchecked mail is not signed: a message from outside stays as it came
    env = Envelope("someone@sender.test", [_rcpt("bob@ours.test", "ours.test/bob")])
    plain = msg("someone@sender.test")
    assert store.read_body(enq.enqueue(enq.new_id(), env, plain).id) == plain

    # an alias forwards one recipient off-site: SRS for it only, ARC seal
    # over our Authentication-Results
    arriving = b"Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=a@sender.test; arc=none\r\n"
    arriving += msg("a@sender.test")
    env = Envelope(
        "a@sender.test",
        [_rcpt("bob@ours.test", "ours.test/bob"), _rcpt("friend@remote.test", forwarded_by="ours.test")],
    )
    item = enq.enqueue(enq.new_id(), env, arriving)
    local, forwarded = item.recipients
    assert local.reverse_path == ""
    assert forwarded.reverse_path.startswith("SRS0=") and forwarded.reverse_path.endswith("=sender.test=a@ours.test")
    body = store.read_body(item.id)
    assert body.startswith(b"ARC-Seal: i=1;") and body.endswith(arriving)
    assert verify_arc(dns, body).result == "pass"
    assert Outbound.from_config(cfg).bounce_to(forwarded.reverse_path) == "a@sender.test"
    attrs = [s.attributes for s in t.exporter.get_finished_spans() if s.name == "queue.enqueue"]
    assert attrs[0]["estafeta.dkim.signed"] == "ours.test"
    assert attrs[2]["estafeta.arc.sealed"] == "ours.test" and attrs[2]["estafeta.srs.reverse_path"]


def test_enqueue_queues_unsigned_when_the_key_is_unusable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path, _ = dkimkeys.write_key(str(data), "ours.test", "r", dkimkeys.ED25519)
    os.chmod(path, 0o644)  # readable by others: refused (KeyFileError)
    (tmp_path / "queue").mkdir()
    store = QueueStore(str(tmp_path / "queue"))
    t = _Tracer()
    enq = Enqueuer(store, t.tracer, Outbound.from_config(config(data)))
    m = msg("alice@ours.test")
    item = enq.enqueue(enq.new_id(), Envelope("alice@ours.test", [_rcpt("x@example.net")], sign=True), m)
    assert store.read_body(item.id) == m
    (span,) = t.exporter.get_finished_spans()
    assert "0600" in span.attributes["estafeta.dkim.error"] and not span.status.is_ok


# ------------------------------------------------------------ RCPT of SRS addresses


def test_rcpt_of_an_srs_address_reaches_the_original_sender(tmp_path):
    cfg = config(tmp_path, 'srs { enabled: true domain: "fwd.ours.test" }\n')
    out = Outbound.from_config(cfg)
    rules = AddressRules("+", ".")
    resolver = Resolver(
        {"ours.test": False},
        UserTable({}),
        AliasTable({"ours.test": parse_aliases("fwd: friend@remote.test\n", "ours.test", rules)}),
        rules,
        "ours.test",
    )
    policy = RelayPolicy([], srs=out.srs_recipient)
    stranger = Client("198.51.100.7")
    remote = out.srs.forward("alice@sender.test")
    res = policy.check_recipient(resolver, stranger, remote)  # a bounce for a remote sender: relayed to it
    assert res.accepted
    assert [(r.kind, r.address, r.original) for r in res.recipients] == [("remote", "alice@sender.test", remote)]
    local = out.srs.forward("bob@ours.test")
    res = policy.check_recipient(resolver, stranger, local)
    assert [(r.kind, r.mailbox) for r in res.recipients] == [("mailbox", "ours.test/bob")]
    forged = "SRS0=zzzz=AA=sender.test=alice@fwd.ours.test"
    assert policy.check_recipient(resolver, stranger, forged).reply == BAD_SRS
    # not ours, or not SRS: the usual rules (no relay for strangers)
    other = remote.replace("@fwd.ours.test", "@elsewhere.test")
    assert not policy.check_recipient(resolver, stranger, other).accepted
    assert RelayPolicy([]).check_recipient(resolver, stranger, remote).reply.code == 554
