"""actors/checks/inbound.py: the session's view of the checks — what runs
at connect, MAIL and end of DATA, the spans, the verdict."""

import pytest
from fakedns import FakeDns
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.dkim_sign import sign
from estafeta.actors.checks.dnsbl import DnsblZone
from estafeta.actors.checks.inbound import CheckSettings, InboundChecks
from estafeta.supervisor.config import parse_config

CLIENT = "192.0.2.10"


def msg(from_addr="alice@sender.test", extra=b""):
    return extra + f"From: {from_addr}\r\nTo: bob@ours.test\r\nSubject: s\r\n\r\nbody\r\n".encode()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    _, k = dkimkeys.write_key(d, "sender.test", "ed", dkimkeys.ED25519)
    return k


@pytest.fixture
def dns(key):
    return FakeDns(
        {
            "sender.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
            "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
            "_dmarc.quar.test": {"TXT": ["v=DMARC1; p=quarantine"]},
            key.record_name(): {"TXT": [key.record()]},
            "10.2.0.192.in-addr.arpa": {"PTR": ["mx.sender.test"]},
            "mx.sender.test": {"A": [CLIENT]},
            "11.2.0.192.bl.test": {"A": ["127.0.0.2"]},
        }
    )


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def settings(**kw):
    return CheckSettings(authserv_id="mx.ours.test", **kw)


def test_a_passing_message(dns, key, spans):
    tracer, exporter = spans
    c = InboundChecks(settings(), dns, tracer)
    assert c.at_connect(CLIENT) is None
    c.at_mail("mx.sender.test", "alice@sender.test")
    m = msg()
    forged = b"Authentication-Results: MX.ours.test; dmarc=pass header.from=sender.test\r\n"
    v = c.at_end_of_data(sign(m, "sender.test", [key]) + forged + m)
    assert (v.action, v.reply, v.removed) == ("accept", None, 1)
    head = v.message.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("Authentication-Results: mx.ours.test;\r\n\tiprev=pass policy.iprev=192.0.2.10")
    assert head.count("Authentication-Results:") == 1
    for part in (
        "spf=pass smtp.mailfrom=alice@sender.test",
        "dkim=pass header.d=sender.test",
        "arc=none",
        "dmarc=pass",
    ):
        assert part in head
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["check.iprev", "check.spf", "check.dkim", "check.arc", "check.dmarc"]
    spf = exporter.get_finished_spans()[1]
    assert spf.attributes["spf.result"] == "pass" and spf.attributes["spf.dns.lookup_count"] == 1
    row = v.report_row(CLIENT, "alice@sender.test", "bob@ours.test")
    assert row["result"] == "pass" and row["source_ip"] == CLIENT and row["p"] == "reject"


def test_forged_from_of_a_reject_domain(dns):
    c = InboundChecks(settings(), dns)
    c.at_connect("198.51.100.1")
    c.at_mail("evil.example", "x@evil.example")
    v = c.at_end_of_data(msg())
    assert v.action == "reject" and (v.reply.code, v.reply.enhanced) == (550, "5.7.1")
    assert b"dmarc=fail (p=reject dis=reject) header.from=sender.test" in v.message
    assert b"iprev=permerror" in v.message
    c = InboundChecks(settings(enforce_dmarc_reject=False), dns)
    c.at_connect("198.51.100.1")
    c.at_mail("evil.example", "x@evil.example")
    assert c.at_end_of_data(msg()).action == "quarantine"


def test_quarantine_and_no_policy(dns):
    c = InboundChecks(settings(), dns)
    c.at_connect(CLIENT)
    c.at_mail("h.example", "x@other.example")
    assert c.at_end_of_data(msg("a@quar.test")).action == "quarantine"
    v = c.at_end_of_data(msg("a@nopolicy.test"))
    assert v.action == "accept" and v.dmarc.result == "none" and v.report_row(CLIENT, "") is None


def test_dnsbl_at_connect(dns, spans):
    tracer, exporter = spans
    c = InboundChecks(settings(dnsbl_zones=(DnsblZone("bl.test"),)), dns, tracer)
    reply = c.at_connect("192.0.2.11")
    assert (reply.code, reply.enhanced) == (554, "5.7.1") and "bl.test" in reply.text
    assert [s.name for s in exporter.get_finished_spans()] == ["check.dnsbl"]
    assert c.at_connect(CLIENT) is None


def test_disabled_checks(dns):
    c = InboundChecks(settings(enabled=False), dns)
    assert c.at_connect(CLIENT) is None and c.at_mail("h", "x@sender.test") is None
    m = msg()
    assert c.at_end_of_data(m).message == m and dns.queries == []
    c = InboundChecks(settings(dmarc=False, arc=False, iprev=False), dns)
    c.at_connect(CLIENT)
    c.at_mail("h.example", "x@other.example")
    v = c.at_end_of_data(m)
    assert v.action == "accept" and b"dmarc=" not in v.message and b"iprev=" not in v.message
    assert b"spf=none smtp.mailfrom=x@other.example" in v.message


def test_settings_from_config():
    cfg = parse_config(
        'hostname: "mx.ours.test"\nchecks { trusted_arc_sealer: "lists.example" dnsbl { zone { name: "bl.test" weight: 2 } } }\n'
    )
    s = CheckSettings.from_config(cfg)
    assert s.authserv_id == "mx.ours.test" and s.trusted_arc_sealers == ("lists.example",)
    assert s.dnsbl_zones == (DnsblZone("bl.test", 2.0),) and s.enforce_dmarc_reject
