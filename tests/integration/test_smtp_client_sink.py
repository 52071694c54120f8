"""The SMTP client's I/O driver (actors/couriers/smtp_client_io.py) against
Postfix's smtp-sink scripted to succeed, answer 4xx/5xx, 421, stall or hang
up at each command — including after the final dot (unknown_after_dot) —
and as an LMTP server; the trace of an attempt."""

from __future__ import annotations

import pytest
from client_attempts import MESSAGE, attempt, codes
from peers.ports import free_port

from estafeta.actors.couriers.smtp_client_io import Timeouts
from estafeta.actors.smtp.client import Step, TlsPolicy
from estafeta.actors.smtp.transaction import Recipient


def to_sink(sink, tmp_path, *args, **kw):
    """The result of one attempt at `sink` (see client_attempts.attempt)."""
    return attempt(sink.address, sink.port, "sink.test", tmp_path, *args, **kw).result


def test_delivers_with_pipelining(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory()
    r = to_sink(sink, tmp_path)
    assert codes(r) == [250, 250] and r.session_error is None
    assert not r.try_next and not r.unknown_after_dot and r.connections == 1 and r.tls is None
    assert r.extensions.pipelining and r.extensions.dsn
    [dump] = sink.wait_for(1)
    assert dump.mail_args == "<a@y.test>"
    assert dump.rcpt_args == ["<b1@x.test>", "<b2@x.test>"]
    assert dump.message == MESSAGE.replace(b"\r\n", b"\n")  # dot-stuffed on the wire, unstuffed there


def test_dsn_parameters_and_8bitmime_reach_the_server(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory()
    rcpts = (Recipient("b1@x.test", ("FAILURE", "DELAY"), "rfc822;orig+1@x.test"), Recipient("b2@x.test", ("NEVER",)))
    r = to_sink(sink, tmp_path, rcpts, ret="HDRS", envid="q1", body="8BITMIME")
    assert codes(r) == [250, 250]
    [dump] = sink.wait_for(1)
    assert dump.mail_args == "<a@y.test> BODY=8BITMIME RET=HDRS ENVID=q1"
    assert dump.rcpt_args == [
        "<b1@x.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;orig+2B1@x.test",
        "<b2@x.test> NOTIFY=NEVER",
    ]


def test_no_dsn_no_8bitmime(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(dsn=False, eightbitmime=False)
    r = to_sink(sink, tmp_path, (Recipient("b@x.test", ("NEVER",)),), ret="FULL")
    assert codes(r) == [250]
    assert sink.wait_for(1)[0].rcpt_args == ["<b@x.test>"]
    r = to_sink(sink, tmp_path, ("b@x.test",), body="8BITMIME")
    assert r.recipients[0].reply.enhanced == "5.6.3" and not r.recipients[0].remote
    assert sink.count() == 1  # nothing more was sent


@pytest.mark.parametrize("option, code", [("soft_reject", 450), ("hard_reject", 500)])
@pytest.mark.parametrize(
    "command, step", [("MAIL", Step.MAIL), ("RCPT", Step.RCPT), ("DATA", Step.DATA), (".", Step.DOT)]
)
def test_refusal_at_each_command(smtp_sink_factory, tmp_path, option, code, command, step):
    sink = smtp_sink_factory(**{option: [command]})
    r = to_sink(sink, tmp_path)
    assert codes(r) == [code, code]
    assert all(v.step is step and v.remote for v in r.recipients)
    assert r.session_error is None and not r.try_next
    assert sink.count() == (1 if command == "." else 0)  # (smtp-sink keeps what it refuses at ".")


@pytest.mark.parametrize("option", ["soft_reject", "hard_reject"])
def test_refused_greeting_tries_next(smtp_sink_factory, tmp_path, option):
    sink = smtp_sink_factory(**{option: ["CONNECT"]})
    r = to_sink(sink, tmp_path)
    assert codes(r) == [None, None] and r.try_next
    assert r.session_error.step is Step.GREETING and r.session_error.remote


@pytest.mark.parametrize(
    "command, step",
    [("CONNECT", Step.GREETING), ("EHLO", Step.EHLO), ("MAIL", Step.MAIL), ("RCPT", Step.RCPT), ("DATA", Step.DATA)],
)
def test_hang_up_before_the_dot_tries_next(smtp_sink_factory, tmp_path, command, step):
    sink = smtp_sink_factory(hang_up=[command])
    r = to_sink(sink, tmp_path)
    assert codes(r) == [None, None]
    assert r.try_next and not r.unknown_after_dot
    assert r.session_error.step is step and r.session_error.reply.enhanced == "4.4.2"
    assert sink.count() == 0


def test_hang_up_after_the_dot_is_unknown(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(hang_up=["."])
    r = to_sink(sink, tmp_path)
    assert r.unknown_after_dot and not r.try_next
    assert codes(r) == [None, None] and r.session_error.step is Step.DOT
    assert len(sink.wait_for(1)) == 1  # the server did get the message


def test_421_ends_the_session(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(reply_421=["RCPT"])
    r = to_sink(sink, tmp_path)
    assert codes(r) == [None, None] and r.try_next
    assert r.session_error.reply.code == 421 and r.session_error.remote and r.session_error.step is Step.RCPT


def test_timeout_waiting_for_a_reply(smtp_sink_factory, tmp_path):
    # (smtp-sink's -W answers pipelined commands out of order: no pipelining.)
    sink = smtp_sink_factory(delays={"RCPT": 3}, pipelining=False)
    r = to_sink(sink, tmp_path, timeouts=Timeouts(rcpt=0.5))
    assert r.try_next and r.session_error.step is Step.RCPT
    assert "timeout after 0.5 s" in r.session_error.reply.text


def test_connection_refused(tmp_path):
    r = attempt("127.0.0.1", free_port(), "nobody.test", tmp_path).result
    assert r.try_next and r.session_error.reply.enhanced == "4.4.1" and r.session_error.step is None
    assert "Connection refused" in r.session_error.reply.text and r.extensions is None


def test_without_pipelining(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(pipelining=False)
    r = to_sink(sink, tmp_path)
    assert codes(r) == [250, 250] and not r.extensions.pipelining
    assert sink.wait_for(1)[0].rcpt_args == ["<b1@x.test>", "<b2@x.test>"]


def test_lmtp_per_recipient_replies(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(lmtp=True)
    a = attempt(
        sink.address,
        sink.port,
        "sink.test",
        tmp_path,
        ("u1@x.test", "u2@x.test", "u3@x.test"),
        lmtp=True,
        tls=TlsPolicy.NONE,
    )
    assert codes(a.result) == [250, 250, 250]
    assert all(v.step is Step.DOT for v in a.result.recipients)
    dots = [e for e in a.events("smtp.command") if e.attributes["smtp.command"] == "."]
    assert [e.attributes["estafeta.recipient"] for e in dots] == ["u1@x.test", "u2@x.test", "u3@x.test"]


def test_large_message_in_chunks(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory()
    line = b".a dotted line of text that goes on for a while, to be stuffed on the wire\r\n"
    message = b"Subject: big\r\n\r\n" + line * 20000  # ~1.5 MB: several chunks
    r = to_sink(sink, tmp_path, ("b@x.test",), message=message)
    assert codes(r) == [250]
    assert sink.wait_for(1)[0].message == message.replace(b"\r\n", b"\n")


def test_the_trace_of_an_attempt(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory(hard_reject=["RCPT"])
    a = attempt(sink.address, sink.port, "sink.test", tmp_path, ("b1@x.test",))
    [conn] = a.spans("smtp.connect")
    assert conn.attributes["server.address"] == "sink.test"
    assert conn.attributes["network.peer.address"] == "127.0.0.1"
    assert conn.attributes["network.peer.port"] == sink.port
    assert "PIPELINING" not in conn.attributes["estafeta.smtp.extensions"]  # -f implies -p
    names = [(e.name, e.attributes.get("smtp.command"), e.attributes["smtp.reply.code"]) for e in conn.events]
    assert names == [
        ("smtp.greeting", None, 220),
        ("smtp.command", "EHLO client.test", 250),
        ("smtp.command", "MAIL FROM:<a@y.test>", 250),
        ("smtp.command", "RCPT TO:<b1@x.test>", 500),
        ("smtp.command", "QUIT", 221),
    ]
    rcpt = conn.events[3].attributes
    assert rcpt["smtp.reply.enhanced"] == "5.3.0" and rcpt["estafeta.recipient"] == "b1@x.test"


def test_before_dot_gets_the_accepted_recipients(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory()
    seen = []
    r = to_sink(sink, tmp_path, ("b1@x.test", "b2@x.test"), before_dot=seen.append)
    assert seen == [(0, 1)] and codes(r) == [250, 250]
    refusing = smtp_sink_factory("refusing", hard_reject=["DATA"])
    r = to_sink(refusing, tmp_path, before_dot=seen.append)
    assert seen == [(0, 1)] and codes(r) == [500, 500]  # no content, no call


def test_before_dot_failing_aborts_without_the_dot(smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory()

    def journal(indexes):
        raise OSError(28, "No space left on device")

    r = to_sink(sink, tmp_path, before_dot=journal)
    assert codes(r) == [None, None] and not r.try_next and not r.unknown_after_dot
    assert r.session_error.reply.enhanced == "4.3.0" and "No space left" in r.session_error.reply.text
    assert sink.count() == 0


def test_a_cached_connection_carries_the_next_messages(smtp_sink_factory, tmp_path):
    """With a ConnectionCache the second and third deliveries to the same
    sink reuse the first connection (no new connect, greeting or EHLO: their
    smtp.connect span says reused); a connection the server dropped while
    idle is replaced by a fresh one without losing the message; idle
    connections are closed after the idle time."""
    from estafeta.actors.couriers.smtp_cache import ConnectionCache
    from estafeta.actors.couriers.smtp_client_io import ClientOptions

    sink = smtp_sink_factory()
    cache = ConnectionCache(idle_seconds=0.5)
    options = ClientOptions("client.test", timeouts=Timeouts(connect=10, mail=20, rcpt=20, data=20), tls=TlsPolicy.NONE)
    results = [
        attempt(sink.address, sink.port, "sink.test", tmp_path, client_options=options, cache=cache) for _ in range(3)
    ]
    assert [codes(a.result) for a in results] == [[250, 250]] * 3
    assert [a.result.connections for a in results] == [1, 0, 0]
    assert cache.reused == 2 and len(cache) == 1
    (reused,) = results[2].spans("smtp.connect")
    assert reused.attributes["estafeta.smtp.reused"] == 3
    assert not [e for e in results[2].events("smtp.command") if e.attributes["smtp.command"].startswith("EHLO")]
    assert len(sink.wait_for(3)) == 3
    # the server goes away and comes back: the idle connection is stale
    port = sink.port
    sink.stop()
    sink2 = smtp_sink_factory("sink2", port=port)
    a = attempt(sink2.address, port, "sink.test", tmp_path, client_options=options, cache=cache)
    assert codes(a.result) == [250, 250] and a.result.connections == 1
    assert len(sink2.wait_for(1)) == 1
    import gevent

    gevent.sleep(1.5)
    assert len(cache) == 0 and cache.expired == 1
