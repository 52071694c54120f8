"""The daemon's log: stderr, one line per event.

Format: `2026-11-22T14:50:01.123Z INFO queued id=... from=<a@b> ...`.
Events (the first word of the message): listening, connection, queued,
delivered, deferred, failed, restart, quarantined, stopping, stopped; each
carries `id=<queue id>` where there is one.
"""

from __future__ import annotations

import logging
import sys
import time


class _Formatter(logging.Formatter):
    """UTC ISO-8601 time with milliseconds, level, message."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed wants (float) -> struct_time

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{t}.{int(record.msecs):03d}Z {record.levelname} {record.getMessage()}"
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "info") -> None:
    """Send every estafeta log line to stderr at `level` (debug/info/...).

    pykka's own error logs (with tracebacks) are kept at DEBUG only: our
    actor boundary logs each crash as one line already.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    if root.level > logging.DEBUG:
        logging.getLogger("pykka").setLevel(logging.CRITICAL)


def kv(value: object) -> str:
    """Format a log value: bare if simple, else quoted."""
    s = str(value)
    if s and all(c.isalnum() or c in "@.-_:/<>+=[]" for c in s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
