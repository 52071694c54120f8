"""Ports on 127.0.0.1 for tests that need a particular kind of port."""

from __future__ import annotations

import socket

import pytest


def privileged_free_port() -> int:
    """A port below 1024 free on 127.0.0.1 at the time of asking (only root
    can bind it); skips the test when there is none."""
    for port in range(1023, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free privileged port on 127.0.0.1")
