"""Ports on 127.0.0.1 for tests that need a particular kind of port."""

from __future__ import annotations

import socket
import threading

import pytest

# Ports handed out by free_port in this process. The kernel may give the
# same ephemeral port to two bind(0) calls in a row once the first socket is
# closed, and a test that asks for several ports before binding any of them
# (a daemon's SMTP, submission and submissions listeners) then got one port
# twice (estafeta refused its config: "listed twice").
_given: set[tuple[str, int]] = set()
_lock = threading.Lock()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on `address` at the time of asking, never one this
    process was handed before. RuntimeError after 1,000 tries."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with _lock:
        for _ in range(1000):
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((address, 0))
                port = s.getsockname()[1]
            if (address, port) not in _given:
                _given.add((address, port))
                return port
    raise RuntimeError(f"no fresh free port on {address}")


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
