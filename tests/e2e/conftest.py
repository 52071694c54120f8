"""Fixtures of the end-to-end tests: real `estafeta serve` processes.

    daemon_factory(**config_fields) -> Daemon   started, on a free port,
                                                config and data in tmp_path
    daemon                                      one started with the base config
    held                                        mail to held@localhost stays queued

At teardown every daemon still running gets SIGTERM and must exit 0 within
its shutdown timeout (a test that stopped or killed it itself is left
alone). When a test fails, the tail of each daemon's stderr log is added to
the report, and the whole log stays in tmp_path.
"""

from __future__ import annotations

import signal

import pytest
from e2e_harness import Daemon, DaemonError

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
    request.node._estafeta_daemons = daemons

    def factory(name: str = "d", start: bool = True, **fields) -> Daemon:
        d = Daemon(tmp_path / name, **fields)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield factory
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
