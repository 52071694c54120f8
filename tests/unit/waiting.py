"""wait_for(): poll a condition from a greenlet, for the unit tests."""

from __future__ import annotations

import time

import gevent


def wait_for(pred, timeout: float = 5.0, poll: float = 0.002):
    """pred()'s first true value, polled every `poll` seconds (yielding to
    other greenlets); AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        gevent.sleep(poll)
