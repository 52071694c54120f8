"""actors/bounces.py: who wants which DSN (RFC 3461 §4.1), and replies
read back from a recipient's last error; actors/item.py next_delay: the
retry schedule."""

from __future__ import annotations

import random

import pytest

from estafeta.actors import bounces
from estafeta.actors.item import next_delay
from estafeta.proto import config_pb2
from estafeta.supervisor.config import default_config


@pytest.mark.parametrize(
    "notify, failed, delayed, delivered, relayed",
    [
        ((), True, True, False, False),  # the default: FAILURE and DELAY
        (("NEVER",), False, False, False, False),
        (("SUCCESS",), False, False, True, True),
        (("FAILURE",), True, False, False, False),
        (("DELAY",), False, True, False, False),
        (("SUCCESS", "FAILURE", "DELAY"), True, True, True, True),
    ],
)
def test_wants_follows_notify(notify, failed, delayed, delivered, relayed):
    got = [bounces.wants(notify, a) for a in (bounces.FAILED, bounces.DELAYED, bounces.DELIVERED, bounces.RELAYED)]
    assert got == [failed, delayed, delivered, relayed]


def test_reply_of_reads_a_code_or_takes_the_defaults():
    r = bounces.reply_of("550 5.1.1 <bob@example.net>: no such user", 451, "4.0.0")
    assert (r.code, r.enhanced, r.text) == (550, "5.1.1", "<bob@example.net>: no such user")
    r = bounces.reply_of("courier failed: timeout", 451, "4.0.0")
    assert (r.code, r.enhanced, r.text) == (451, "4.0.0", "courier failed: timeout")


def test_retry_schedule_doubles_to_the_cap_with_jitter():
    retry = default_config().retry
    assert (retry.initial_seconds, retry.max_seconds) == (60, 3600)
    rnd = random.Random(1)
    for attempts, base in [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (50, 3600)]:
        for _ in range(20):
            assert base * 0.9 <= next_delay(retry, attempts, rnd) <= base * 1.1
    quick = config_pb2.Retry(initial_seconds=0.2, max_seconds=2)
    assert next_delay(quick, 0, rnd) <= 0.22  # a crash before any attempt waits like a first failure
