"""One delivery attempt of the SMTP client's driver (deliver()) against a
real peer, with its spans kept in memory: the helper of the
test_smtp_client_*.py tests.

    a = attempt(sink.address, sink.port, "sink.test", tmp_path, ("b@x.test",), tls=TlsPolicy.NONE)
    a.result                     # the AttemptResult
    a.spans("smtp.connect")      # finished spans of that name
    a.events("smtp.command")     # events of that name, all spans
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from estafeta.actors.couriers.smtp_client_io import AttemptResult, ClientOptions, Timeouts, Transaction, deliver
from estafeta.actors.smtp.client import TlsPolicy
from estafeta.actors.smtp.transaction import Envelope, Recipient

MESSAGE = b"From: a@y.test\r\nSubject: test\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
#: Short enough that a stuck test fails in seconds, long enough for a busy machine.
TIMEOUTS = Timeouts(
    connect=10, greeting=20, ehlo=20, starttls=20, auth=20, mail=20, rcpt=20, data=20, final_dot=30, quit=5
)


@dataclass
class Attempt:
    result: AttemptResult
    finished: list[ReadableSpan]

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished if s.name == name]

    def events(self, name: str) -> list:
        return [e for s in self.finished for e in s.events if e.name == name]


def codes(result: AttemptResult) -> list[int | None]:
    """Each recipient's reply code, None when undecided."""
    return [v.reply.code if v else None for v in result.recipients]


def attempt(
    address: str,
    port: int,
    host_name: str,
    directory: Path,
    rcpts=("b1@x.test", "b2@x.test"),
    message: bytes = MESSAGE,
    *,
    reverse_path: str = "a@y.test",
    body: str = "",
    smtputf8: bool = False,
    ret: str = "",
    envid: str = "",
    before_dot=None,
    **options,
) -> Attempt:
    """Write `message` to a body file in `directory`, deliver it to
    `rcpts` (addresses or Recipient) with ClientOptions("client.test",
    **options) (TIMEOUTS unless given), and return the result and spans."""
    path = Path(directory) / "body"
    path.write_bytes(message)
    envelope = Envelope(
        reverse_path,
        tuple(r if isinstance(r, Recipient) else Recipient(r) for r in rcpts),
        len(message),
        body=body,
        smtputf8=smtputf8,
        ret=ret,
        envid=envid,
    )
    options.setdefault("timeouts", TIMEOUTS)
    options.setdefault("tls", TlsPolicy.OPPORTUNISTIC)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("attempt") as span:
            result = deliver(
                address,
                port,
                host_name,
                Transaction(envelope, str(path)),
                ClientOptions("client.test", **options),
                span,
                tracer,
                before_dot,
            )
        return Attempt(result, list(exporter.get_finished_spans()))
    finally:
        provider.shutdown()
