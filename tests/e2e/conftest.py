"""Fixtures of the end-to-end tests: real `estafeta serve` processes.

    daemon_factory(**config_fields) -> Daemon   started, on a free port,
                                                config and data in tmp_path
    daemon                                      one started with the base config
    held                                        mail to held@localhost stays queued
    host_factory(**options) -> MailHost         a daemon with submission listeners,
                                                TLS, users (tests/e2e/mailhost.py)

At teardown every daemon still running gets SIGTERM and must exit 0 within
its shutdown timeout (a test that stopped or killed it itself is left
alone). When a test fails, the tail of each daemon's stderr log is added to
the report, and the whole log stays in tmp_path.
"""

from __future__ import annotations

import signal

import pytest
from e2e_harness import Daemon, DaemonError
from mailhost import MailHost, start_host

#: Seconds a daemon gets to exit after SIGTERM at teardown (its
#: shutdown_timeout_seconds is 5 in the base config).
TEARDOWN_TIMEOUT = 30.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for d in getattr(item, "_estafeta_daemons", []):
            report.sections.append((f"estafeta log ({report.when})", d.log_tail(80)))


@pytest.fixture
def daemon_factory(request, tmp_path):
    """Start daemons: factory(name="d", start=True, **config_fields)."""
    daemons: list[Daemon] = []

    def factory(name: str = "d", start: bool = True, **fields) -> Daemon:
        d = Daemon(tmp_path / name, **fields)
        daemons.append(d)
        _reported(request).append(d)
        if start:
            d.start()
        return d

    yield factory
    _stop_all(daemons)


def _reported(request) -> list[Daemon]:
    """The daemons whose log tails a failure report of this test shows."""
    if not hasattr(request.node, "_estafeta_daemons"):
        request.node._estafeta_daemons = []
    return request.node._estafeta_daemons


def _stop_all(daemons: list[Daemon]) -> None:
    errors = []
    for d in daemons:
        if not d.alive():
            continue
        d.signal(signal.SIGTERM)
        try:
            code = d.wait_exit(TEARDOWN_TIMEOUT)
        except DaemonError as e:
            d.kill()
            errors.append(str(e))
            continue
        if code != 0:
            errors.append(f"estafeta serve exited {code} on SIGTERM at teardown\n{d.log_tail()}")
    for d in daemons:
        d.close()
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def host_factory(request, tmp_path):
    """Start mail hosts: factory(name="h", **start_host options). Their
    daemons are stopped like daemon_factory's, their peers too."""
    hosts: list[MailHost] = []

    def factory(name: str = "h", **options) -> MailHost:
        host = start_host(tmp_path / name, **options)
        hosts.append(host)
        _reported(request).append(host.daemon)
        return host

    yield factory
    try:
        _stop_all([h.daemon for h in hosts])
    finally:
        for h in hosts:
            h.close()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    """A running daemon with the base config (localhost: every local part;
    users.test: alice and bob only)."""
    return daemon_factory()


@pytest.fixture
def held(daemon_factory) -> Daemon:
    """A running daemon where mail to held@localhost is deferred once and
    then stays queued (retries an hour apart)."""
    d = daemon_factory(start=False, retry="{ initial_seconds: 3600 max_seconds: 3600 }")
    d.block_mailbox("localhost", "held")
    return d.start()
