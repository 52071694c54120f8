"""SIGHUP: read again what can be read again, without a restart and
without dropping open sessions.

`Reloader` is the entry point: named steps run in order on each SIGHUP,
each guarded (one that fails is logged and the others still run; a
second SIGHUP during a reload runs it once more afterwards). The daemon
registers, in every serving process:

- "directory": the Directory actor reads the user and alias files again
  (a Reload ask to "directory");
- "certificates": the CertificateWatcher reads the certificates again
  (a Reload ask to "certificates"), when the tree has one;
- "config" (every process of a daemon started with --config): the file
  is parsed and checked again; a bad file keeps the running configuration
  and logs the error with file, line and field (ConfigError's message). A
  good one: its LIVE_FIELDS are copied into the running Config object in
  place (so what is started later — a session, a restarted serving
  process — sees them) and handed to every function registered with
  `on_config`, which applies them to what is already running; every other
  changed field is named in the log as needing a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from estafeta.proto import config_pb2, reload_pb2
from estafeta.supervisor import registry
from estafeta.supervisor.config import ConfigError, load_config

log = logging.getLogger("estafeta.daemon")

#: Config fields a running daemon takes over on SIGHUP (the others need a
#: restart: listeners, processes, data_dir, tracing, routes, checks, ...).
#: All are read per session or per command, so new sessions get the new
#: values and open ones get them at their next command that reads them.
LIVE_FIELDS = (
    "log_level",
    "log_format",
    "relay_network",
    "max_recipients",
    "max_data_size_bytes",
    "max_errors",
    "idle_timeout_seconds",
    "data_timeout_seconds",
    "limits",
)


def apply_live_fields(running: config_pb2.Config, new: config_pb2.Config) -> list[str]:
    """Copy `new`'s LIVE_FIELDS into `running` in place (the others stay as
    they are); returns the names of the live fields whose value changed."""
    changed = [
        f.name
        for f in config_pb2.Config.DESCRIPTOR.fields
        if f.name in LIVE_FIELDS and getattr(new, f.name) != getattr(running, f.name)
    ]
    live = config_pb2.Config()
    for name in changed:
        running.ClearField(name)
        live.MergeFrom(_only(new, name))
    running.MergeFrom(live)
    return changed


def _only(cfg: config_pb2.Config, name: str) -> config_pb2.Config:
    """A Config holding nothing but `cfg`'s field `name`."""
    one = config_pb2.Config()
    one.CopyFrom(cfg)
    for field in config_pb2.Config.DESCRIPTOR.fields:
        if field.name != name:
            one.ClearField(field.name)
    return one


class Reloader:
    """Named reload steps, run in order by reload()."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], str]]] = []
        self._running = False
        self._again = False

    def register(self, name: str, step: Callable[[], str]) -> None:
        """Add (or replace) a step: `step()` returns a short note for the
        log ("" for none) or raises."""
        self._steps = [(n, s) for n, s in self._steps if n != name] + [(name, step)]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self._steps]

    def step(self, name: str) -> Callable[[], str] | None:
        """The step registered as `name` (e.g. the ConfigReload, to add an
        on_config hook), or None."""
        return next((s for n, s in self._steps if n == name), None)

    def reload(self) -> list[tuple[str, bool, str]]:
        """Run every step now; returns (name, ok, note or error) each."""
        out = []
        for name, step in self._steps:
            try:
                note = step()
            except Exception as e:  # noqa: BLE001 - logged, the other steps still run
                log.error("reload %s failed: %s", name, e)
                out.append((name, False, str(e)))
                continue
            log.info("reloaded %s%s", name, f" {note}" if note else "")
            out.append((name, True, note))
        return out

    def trigger(self) -> None:
        """From a signal handler: reload in a greenlet of its own (a reload
        asks actors and reads files: never in the handler itself)."""
        if self._running:
            self._again = True
            return
        self._running = True
        gevent.spawn(self._run)

    def _run(self) -> None:
        try:
            while True:
                self._again = False
                self.reload()
                if not self._again:
                    return
        finally:
            self._running = False


def ask_reload(name: str, timeout: float = 30.0) -> Callable[[], str]:
    """A step that asks the actor registered as `name` for a Reload; its
    ReloadResult becomes the note (errors raise). No actor by that name:
    nothing to do."""

    def step() -> str:
        if not registry.is_alive(name):
            return "(not running)"
        result: reload_pb2.ReloadResult = registry.whereis(name).ask(reload_pb2.Reload(), timeout=timeout)  # type: ignore[assignment]
        if result.error:
            raise RuntimeError("; ".join(result.error))
        return ",".join(result.reloaded) or "(unchanged)"

    return step


class ConfigReload:
    """The "config" step: parse `path` again; on success copy its
    LIVE_FIELDS into `running` (the Config object the process runs on) and
    call every on_config hook with `running`. The note: "changed=a,b" (every
    changed field, or "-"), then "applied=..." and "restart-needed=..."."""

    def __init__(self, path: str, running: config_pb2.Config):
        self.path = path
        self.running = running
        # What the file said at the last (re)load, to name what changed in it.
        self._last = config_pb2.Config()
        self._last.CopyFrom(running)
        self._hooks: list[Callable[[config_pb2.Config], None]] = []

    def on_config(self, hook: Callable[[config_pb2.Config], None]) -> None:
        """Call `hook(running_config)` after each successful reload that
        changed a live field."""
        self._hooks.append(hook)

    def __call__(self) -> str:
        try:
            new = load_config(self.path, self.running.data_dir)
        except ConfigError as e:
            raise RuntimeError(f"{e} (the running configuration is kept)") from None
        new.data_dir = self._last.data_dir  # made absolute at start
        changed = [
            f.name for f in config_pb2.Config.DESCRIPTOR.fields if getattr(new, f.name) != getattr(self._last, f.name)
        ]
        self._last = new
        applied = apply_live_fields(self.running, new)
        if applied:
            for hook in self._hooks:
                hook(self.running)
        later = [f for f in changed if f not in LIVE_FIELDS]
        note = f"changed={','.join(changed) or '-'}"
        note += f" applied={','.join(applied)}" if applied else ""
        return note + (f" restart-needed={','.join(later)}" if later else "")
