"""The daemon's log formats (supervisor/log.py): TEXT lines and JSON objects
with the same fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from estafeta.supervisor import log as estafeta_log
from estafeta.supervisor.log import fields, kv


@pytest.fixture
def capture():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()

    def setup(fmt: str = "text") -> io.StringIO:
        estafeta_log.setup_logging("info", fmt)
        root.handlers[0].setStream(stream)
        return stream

    yield setup
    root.handlers[:], root.level = saved


def test_json_lines_carry_the_text_lines_fields(capture):
    out = capture("json")
    reason = kv('ChaosCrash: chaos "x"')
    logging.getLogger("estafeta.supervisor").info(
        "restart sup=items child=item-17 actor=QueueItem reason=%s restarts=2 delay=0.10s", reason
    )
    logging.getLogger("estafeta.session").info("queued id=Q1 from=<a@b> to=<c@d>,<e@f> size=12 message_id=-")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "INFO" and first["time"].endswith("Z") and len(first["time"]) == 24
    assert first["event"] == "restart" and first["child"] == "item-17" and first["reason"] == 'ChaosCrash: chaos "x"'
    assert first["message"].startswith("restart sup=items child=item-17")
    assert (second["event"], second["id"], second["from"], second["to"]) == ("queued", "Q1", "<a@b>", "<c@d>,<e@f>")


def test_text_stays_the_default(capture):
    out = capture()
    logging.getLogger("estafeta").warning("stopping now=1")
    line = out.getvalue().strip()
    assert line.endswith(" WARNING stopping now=1") and not line.startswith("{")


def test_fields_of_odd_messages():
    assert fields("tracing to /x") == {"event": "tracing"}
    assert fields("message=1 level=x") == {"_message": "1", "_level": "x"}
    assert fields(f"a={kv('two words')} b=2") == {"a": "two words", "b": "2"}
