"""The daemon's log: stderr, one line per event.

Format TEXT: `2026-11-22T14:50:01.123Z INFO queued id=... from=<a@b> ...`.
Events (the first word of the message): listening, connection, queued,
delivered, deferred, failed, restart, quarantined, stopping, stopped; each
carries `id=<queue id>` where there is one.

Format JSON (Config.log_format, for Loki or journald): the same line as one
JSON object: {"time": "2026-11-22T14:50:01.123Z", "level": "INFO",
"event": "queued", "id": "...", "from": "<a@b>", ..., "message": "queued
id=... from=<a@b> ..."} — every key=value of the message as a field
(quoted values unquoted, as `kv` wrote them), the whole message too.
"""

from __future__ import annotations

import json
import logging
import re
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


#: key=value in a message: a bare value or one quoted by kv().
_KV = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_RESERVED = frozenset({"time", "level", "event", "message"})


def fields(message: str) -> dict[str, str]:
    """The event (first word) and every key=value of a log message; quoted
    values unquoted. A key that collides with time/level/event/message
    gets a "_" prefix."""
    out: dict[str, str] = {}
    head = message.split(" ", 1)[0]
    if head and "=" not in head:
        out["event"] = head
    for m in _KV.finditer(message):
        key, value = m.group(1), m.group(2)
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out["_" + key if key in _RESERVED else key] = value
    return out


class _JsonFormatter(_Formatter):
    """One JSON object per line: time, level, the message's fields, the message."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage()
        obj = {"time": f"{t}.{int(record.msecs):03d}Z", "level": record.levelname}
        obj.update(fields(message))
        obj["message"] = message
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            obj["traceback"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Send every estafeta log line to stderr at `level` (debug/info/...),
    as text lines or (`fmt` "json") JSON objects.

    pykka's own error logs (with tracebacks) are kept at DEBUG only: our
    actor boundary logs each crash as one line already.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _Formatter())
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
